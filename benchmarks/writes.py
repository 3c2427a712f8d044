"""Case 7: writes that scale -- connect + disconnect beside many connections.

Each timer is one ``connect`` then ``disconnect`` of a bound method (weak) on
a signal that already holds ``n`` connections: any-sender ones, or one per
sender (each sender with its own receiver), or 2,000 sender routes beside 200
any-sender receivers.  Then a send that meets a receiver that has just died,
against a normal send (concsignals only).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import plots
from .cases import Case, register, timing_samples
from .harness import Settings, Timer, cpu_clock
from .peers import LIBRARIES, Sender, django_signal, make_positional_receiver
from .peers import make_receiver as make_function

if TYPE_CHECKING:
    from .churn import Pair

from .report import TIMING_HEADERS, CaseResult, Table, Target, fmt_ratio, timing_rows

SIZES = (1_000, 10_000, 20_000, 50_000)
SIZES_QUICK = (1_000, 5_000)
#: django.dispatch and pydispatcher connect in O(n) (a duplicate scan), so
#: building their signals costs O(n^2): they are measured up to this size.
QUADRATIC_UP_TO = 10_000
ROUTES, ROUTES_ANY = 2_000, 200
NO_SENDERS = ("psygnal",)  # no sender-specific connections

NOTES = [
    "Each sample is one `connect(obj.handler)` + `disconnect(obj.handler)` "
    "pair (weak bound method), per pair, thread CPU time.",
    "`sender`: the signal holds n connections, one per sender (each sender "
    "its own receiver); the pair connects for one of those senders. "
    "psygnal has no sender-specific connections.",
    f"django.dispatch and pydispatcher are measured up to {QUADRATIC_UP_TO:,} "
    "connections: building larger signals one connect at a time takes them "
    "minutes (each connect scans every connection).",
    "floor: a dict insert and delete keyed by Django's receiver identity, as "
    "in case 3.",
]


def libraries(n: int) -> tuple[str, ...]:
    if n > QUADRATIC_UP_TO:
        return tuple(x for x in LIBRARIES if x not in ("django", "pydispatcher"))
    return LIBRARIES


def build(
    n: int, names: tuple[str, ...], mode: str, keep: list[object]
) -> dict[str, tuple[Pair, Any]]:
    """Each library's signal holding ``n`` connections; its pair and sender.

    ``mode``: ``any`` (n any-sender receivers), ``sender`` (n senders with one
    receiver each), ``routes`` (2,000 sender routes + 200 any-sender) or
    ``flat`` (as many any-sender receivers).
    """
    import blinker
    import psygnal

    import concsignals

    senders = [Sender() for _ in range(n)]
    functions = [make_function() for _ in range(n)]
    positional = [make_positional_receiver() for _ in range(n)]
    keep += [senders, functions, positional]
    own = {"sender": n, "routes": ROUTES}.get(mode, 0)
    target = senders[0] if mode == "sender" else None
    found: dict[str, tuple[Pair, Any]] = {}
    for name in names:
        if name == "floor":
            registry: dict[object, object] = {}
            found[name] = (floor_pair(registry), None)
            continue
        if name == "psygnal":
            psy = psygnal.SignalInstance((object, object))
            keep.append(psy)
            for r in positional:
                psy.connect(r)
            found[name] = ((psy.connect, psy.disconnect), None)
            continue
        sig: Any = {
            "concsignals": concsignals.Signal,
            "django": django_signal,
            "blinker": blinker.Signal,
            "pydispatcher": object,
        }[name]()
        keep.append(sig)
        connect = connect_function(name, sig)
        for i, r in enumerate(functions):
            connect(r, senders[i] if i < own else None)
        found[name] = (pair(name, sig, target), target)
    return found


def connect_function(name: str, sig: Any) -> Callable[[Any, Any], Any]:
    if name == "pydispatcher":
        from pydispatch import dispatcher

        def connect(r: Any, s: Any) -> Any:
            return dispatcher.connect(
                r, signal=sig, sender=dispatcher.Any if s is None else s
            )

        return connect
    if name == "blinker":
        return lambda r, s: sig.connect(r, sender=blinker_any() if s is None else s)
    return lambda r, s: sig.connect(r, sender=s)


def blinker_any() -> Any:
    import blinker

    return blinker.ANY


def pair(name: str, sig: Any, sender: Any) -> Pair:
    if name == "pydispatcher":
        from pydispatch import dispatcher

        s = dispatcher.Any if sender is None else sender
        return (
            lambda m: dispatcher.connect(m, signal=sig, sender=s),
            lambda m: dispatcher.disconnect(m, signal=sig, sender=s),
        )
    if name == "blinker":
        s = blinker_any() if sender is None else sender
        return (lambda m: sig.connect(m, sender=s), lambda m: sig.disconnect(m, s))
    return (
        lambda m: sig.connect(m, sender=sender),
        lambda m: sig.disconnect(m, sender=sender),
    )


def floor_pair(registry: dict[object, object]) -> Pair:
    import weakref

    def floor_connect(m: Any) -> None:
        registry[(id(m.__self__), id(m.__func__))] = weakref.WeakMethod(m)

    def floor_disconnect(m: Any) -> None:
        del registry[(id(m.__self__), id(m.__func__))]

    return (floor_connect, floor_disconnect)


def dead_send_timer(keep: list[object]) -> dict[str, Timer]:
    """A normal send to 100 receivers, and one that meets a just-dead one."""
    import concsignals

    sig = concsignals.Signal()
    functions = [make_function() for _ in range(100)]
    keep += [sig, functions]
    for r in functions:
        sig.connect(r)

    def normal(loops: int) -> float:
        it = itertools.repeat(None, loops)
        t0 = cpu_clock()
        for _ in it:
            sig.send(Sender, payload=1)
        return cpu_clock() - t0

    def meets_dead(loops: int) -> float:
        spent = 0.0
        for _ in range(loops):
            doomed = make_function()
            sig.connect(doomed)
            sig.send(Sender, payload=1)  # builds the tuple that holds it
            del doomed  # dies now
            t0 = cpu_clock()
            sig.send(Sender, payload=1)
            spent += cpu_clock() - t0
        return spent

    return {"floor": normal, "concsignals": meets_dead}


def sizes(settings: Settings) -> tuple[int, ...]:
    return SIZES_QUICK if settings.quick else SIZES


def groups(settings: Settings, keep: list[object]) -> dict[str, dict[str, Timer]]:
    # Imported here: cases.py imports this module, and churn imports cases.
    from .churn import Handler, attribute, churn_timer

    found: dict[str, dict[str, Timer]] = {}
    plans = [
        (f"{mode}/{n}", n, mode) for mode in ("any", "sender") for n in sizes(settings)
    ]
    plans += [
        ("routes", ROUTES + ROUTES_ANY, "routes"),
        ("flat", ROUTES + ROUTES_ANY, "flat"),
    ]
    for label, n, mode in plans:
        names = libraries(n)
        if mode == "sender":
            names = tuple(x for x in names if x not in NO_SENDERS)
        obj = Handler()
        keep.append(obj)
        found[label] = {
            name: churn_timer(p, obj, attribute(name))
            for name, (p, _) in build(n, names, mode, keep).items()
        }
    found["dead-send"] = dead_send_timer(keep)
    return found


def run(settings: Settings) -> CaseResult:
    samples = timing_samples(CASE, settings)
    ns = sizes(settings)
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method="connect + disconnect of one bound method beside n connections "
        f"(n = {', '.join(f'{n:,}' for n in ns)}), any-sender and "
        f"sender-specific, and beside {ROUTES:,} sender routes + {ROUTES_ANY} "
        "any-sender receivers; then a send that meets a dead receiver.",
        notes=NOTES,
    )
    for mode in ("any", "sender"):
        for n in ns:
            names = libraries(n)
            if mode == "sender":
                names = tuple(x for x in names if x not in NO_SENDERS)
            result.tables.append(
                Table(
                    f"{mode}: connect + disconnect beside {n:,} connections",
                    TIMING_HEADERS,
                    timing_rows(samples[f"{mode}/{n}"], names),
                )
            )
    for label, what in (("routes", "2,000 routes + 200 any"), ("flat", "2,200 any")):
        result.tables.append(
            Table(
                f"any-sender connect + disconnect beside {what}",
                TIMING_HEADERS,
                timing_rows(samples[label], libraries(ROUTES + ROUTES_ANY)),
            )
        )
    dead = samples["dead-send"]
    result.tables.append(
        Table(
            "a send to 100 receivers (concsignals)",
            ["send", "median", "best"],
            [
                ["normal", *fmt2(dead.median("floor"), dead.best("floor"))],
                [
                    "meets a receiver that just died",
                    *fmt2(dead.median("concsignals"), dead.best("concsignals")),
                ],
            ],
        )
    )
    targets(result, samples, ns)
    summary(result, samples, ns)
    result.plot = lambda out: plot(samples, ns, out)
    return result


def summary(result: CaseResult, samples: Any, ns: tuple[int, ...]) -> None:
    small, big = ns[0], ns[-1]
    ours = (
        samples[f"any/{small}"].best("concsignals"),
        samples[f"any/{big}"].best("concsignals"),
    )
    blinker = samples[f"any/{big}"].best("blinker")
    django = samples[f"any/{min(big, QUADRATIC_UP_TO)}"].best("django")
    result.summary.append(
        "**Writes cost the same at any size.** One any-sender connect + "
        f"disconnect takes {ours[0] * 1e6:.1f} µs beside {small:,} connections "
        f"and {ours[1] * 1e6:.1f} µs beside {big:,} (blinker: "
        f"{blinker * 1e6:.1f} µs beside {big:,}; django.dispatch, which scans "
        f"every connection, {django * 1e6:.0f} µs beside "
        f"{min(big, QUADRATIC_UP_TO):,}); case {CASE.number}."
    )


def plot(samples: Any, ns: tuple[int, ...], out: Path) -> list[tuple[str, str]]:
    panels = {}
    for mode, title in (("any", "any-sender"), ("sender", "sender-specific")):
        names = [x for x in LIBRARIES if mode == "any" or x not in NO_SENDERS]
        panels[title] = {
            name: [
                samples[f"{mode}/{n}"].median(name) * 1e6
                if name in libraries(n)
                else math.nan
                for n in ns
            ]
            for name in names
        }
    plots.lines(
        out / "writes_time.png",
        "connect + disconnect of one bound method beside n connections (median)",
        panels,
        [f"{n:,}" for n in ns],
        "connections already on the signal",
        "µs per connect + disconnect",
    )
    return [("writes_time.png", "connect + disconnect beside many connections")]


def fmt2(a: float, b: float) -> list[str]:
    from .report import fmt_time

    return [fmt_time(a), fmt_time(b)]


def targets(result: CaseResult, samples: Any, ns: tuple[int, ...]) -> None:
    small, big = ns[0], (20_000 if 20_000 in ns else ns[-1])
    for mode in ("any", "sender"):
        lo = samples[f"{mode}/{small}"].best("concsignals")
        hi = samples[f"{mode}/{big}"].best("concsignals")
        result.targets.append(
            Target(
                f"{mode} write at {big:,} connections within 3x of "
                f"{small:,}, and <= 25 µs per pair",
                f"{hi / lo:.2f}x; {hi * 1e6:.1f} µs",
                hi / lo <= 3 and hi <= 25e-6,
            )
        )
    routes = samples["routes"].best("concsignals")
    flat = samples["flat"].best("concsignals")
    result.targets.append(
        Target(
            f"any-sender write beside {ROUTES:,} routes within 3x of a flat signal",
            fmt_ratio(routes / flat),
            routes / flat <= 3,
        )
    )
    dead = samples["dead-send"]
    ratio = dead.best("concsignals") / dead.best("floor")
    result.targets.append(
        Target(
            "a send that meets a dead receiver within 10x of a normal send",
            fmt_ratio(ratio),
            ratio <= 10,
        )
    )


CASE = register(
    Case(
        "writes", "7. Writes that scale: connect + disconnect beside many", run, groups
    )
)

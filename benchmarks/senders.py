"""Case 2: sender-specific send, 10,000 senders with a connection each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import plots
from .cases import Case, register, timing_samples
from .harness import OneOff, Samples, Settings, Timer, cpu_clock
from .peers import (
    Sender,
    django_signal,
    emit_timer,
    make_receiver,
    pydispatcher_timer,
    send_timer,
)
from .report import (
    TIMING_HEADERS,
    CaseResult,
    Table,
    Target,
    fmt_ratio,
    fmt_time,
    timing_rows,
)

SENDERS = 10_000
SENDERS_QUICK = 2_000  # --quick: the same case, smaller, to keep CI fast


def sender_count(settings: Settings) -> int:
    return SENDERS_QUICK if settings.quick else SENDERS


ONE = "concsignals, 1 connection"
ROWS = (
    "floor",
    "concsignals",
    ONE,
    "django",
    "django (use_caching)",
    "blinker",
    "psygnal",
    "pydispatcher",
)
GROUP = "senders"
SETUP = "connect-all"

NOTES = [
    "Every library but psygnal connects each receiver for its own sender. "
    "psygnal has no per-sender connections: its row connects all the "
    "receivers and each one checks `sender is mine` itself, which is what a "
    "psygnal user would have to write.",
    "floor: a dict from sender to its tuple of receivers, then the inline floor "
    "loop over that tuple.",
    f"`{ONE}`: the same send on a signal with a single connection, for "
    "comparison: the cost should not depend on the other senders' connections.",
]


def make_filtering_receiver(mine: object) -> Callable[..., Any]:
    """A psygnal receiver that answers only for its own sender."""

    def receiver(sender: object, payload: object) -> int | None:
        if sender is mine:
            return 1
        return None

    return receiver


def make_index_floor(
    index: dict[object, tuple[Callable[..., Any], ...]], signal: object
) -> Callable[..., Any]:
    def floor(sender: object, **named: Any) -> list[tuple[Any, Any]]:
        responses = []
        for r in index.get(sender, ()):
            responses.append((r, r(signal=signal, sender=sender, **named)))
        return responses

    return floor


def groups(
    settings: Settings, keep: list[object]
) -> dict[str, dict[str, Timer | OneOff]]:
    import blinker
    import psygnal
    from pydispatch import dispatcher

    import concsignals

    count = sender_count(settings)
    senders = [Sender() for _ in range(count)]
    receivers = [make_receiver() for _ in range(count)]
    filtering = [make_filtering_receiver(s) for s in senders]
    keep += [senders, receivers, filtering]
    target = senders[count // 2]

    ours = concsignals.Signal()
    one = concsignals.Signal()
    theirs = django_signal()
    cached = django_signal(use_caching=True)
    blink = blinker.Signal()
    psy = psygnal.SignalInstance((object, object))
    pyd_signal = object()
    keep += [ours, one, theirs, cached, blink, psy, pyd_signal]
    pairs = list(zip(senders, receivers, strict=True))
    connects: dict[str, Callable[[object, Any], Any]] = {
        "floor": lambda s, r: index.__setitem__(s, (r,)),
        "concsignals": lambda s, r: ours.connect(r, sender=s),
        "django": lambda s, r: theirs.connect(r, sender=s),
        "django (use_caching)": lambda s, r: cached.connect(r, sender=s),
        "blinker": lambda s, r: blink.connect(r, sender=s),
        "pydispatcher": lambda s, r: dispatcher.connect(r, signal=pyd_signal, sender=s),
    }
    index: dict[object, tuple[Callable[..., Any], ...]] = {}
    setup = {}
    for name, connect in connects.items():
        t0 = cpu_clock()
        for s, r in pairs:
            connect(s, r)
        setup[name] = OneOff(cpu_clock() - t0)
    t0 = cpu_clock()
    for f in filtering:
        psy.connect(f)
    setup["psygnal"] = OneOff(cpu_clock() - t0)
    one.connect(receivers[count // 2], sender=target)
    return {
        SETUP: setup,
        GROUP: {
            "floor": send_timer(make_index_floor(index, ours), target),
            "concsignals": send_timer(ours.send, target),
            ONE: send_timer(one.send, target),
            "django": send_timer(theirs.send, target),
            "django (use_caching)": send_timer(cached.send, target),
            "blinker": send_timer(blink.send, target),
            "psygnal": emit_timer(psy.emit, target),
            "pydispatcher": pydispatcher_timer(pyd_signal, target),
        },
    }


def run(settings: Settings) -> CaseResult:
    measured = timing_samples(CASE, settings)
    samples, setup = measured[GROUP], measured[SETUP]
    count = sender_count(settings)
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method=f"{count:,} senders, each with its own receiver connected for it "
        "(weak); one `send(sender, payload=1)` to one of them, which calls one "
        "receiver. Times are per send.",
        notes=NOTES,
    )
    result.tables.append(
        Table(
            f"send to one of {count:,} senders",
            TIMING_HEADERS,
            timing_rows(samples, ROWS),
        )
    )
    setup_rows = [
        [
            name,
            fmt_time(setup.median(name)),
            fmt_time(setup.median(name) / count),
            fmt_ratio(setup.ratio(name, "concsignals")),
        ]
        for name in ROWS
        if name != ONE
    ]
    result.tables.append(
        Table(
            f"setting up: connecting all {count:,} receivers, each for its sender "
            "(CPU time, once per worker process)",
            ["library", "median", "per connect", "time ÷ concsignals"],
            setup_rows,
        )
    )
    r = samples.ratio("concsignals", ONE)
    result.targets.append(
        Target(
            f"as fast with {count:,} sender-specific connections as with one "
            "(within 1.15x)",
            f"{r:.3f}x the 1-connection time",
            r <= 1.15,
        )
    )
    result.plot = lambda out: plot(samples, count, out)
    return result


def plot(samples: Samples, count: int, out: Path) -> list[tuple[str, str]]:
    plots.bars(
        out / "senders.png",
        f"Send to one of {count:,} senders (median, log scale)",
        {name: samples.median(name) * 1e6 for name in ROWS},
        "µs per send",
        logx=True,
    )
    return [("senders.png", "Sender-specific send, time per send")]


CASE = register(
    Case("senders", "2. Sender-specific send: one of many senders", run, groups)
)

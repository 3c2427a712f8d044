"""Case 12: per-connection delivery (``connect(..., via=, wait=)``) against
the same work written by hand.

Four groups, built side by side in one process and measured in the same
worker processes:

* ``unused``: a send whose receivers have no ``via`` against the floor of
  case 1 -- the options must cost nothing when unused (the other groups'
  signals, with options, live in the same process meanwhile);
* ``serial``: calls through a ``Serial`` (fire and forget) against a
  ``queue.Queue`` and one consumer thread;
* ``loop``: a call on an event loop running in another thread, waited for,
  against ``loop.call_soon_threadsafe`` and a ``Future``;
* ``fire-and-forget``: a send to 10 receivers ``via=pool, wait=False``
  against 10 ``pool.submit`` calls.

Each group's ratio is judged on the best sample of each timer (best of every
round of every worker process): on two shared cores the best is the run the
other work disturbed least; the median of the paired per-round ratios is
shown beside it.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from time import perf_counter
from typing import Any

from .cases import Case, register, timing_samples
from .harness import Samples, Settings, Timer
from .peers import Sender, make_floor, make_receiver, send_timer
from .receivers import Noop
from .report import CaseResult, Table, Target, fmt_ratio, fmt_time

UNUSED_COUNTS = (10, 100)
FIRE_RECEIVERS = 10
POOL_THREADS = 4

#: (group, the target in words, the largest ratio that meets it).
TARGETS = (
    ("unused/10", "no `via`, 10 receivers: within 1.12x of the floor", 1.12),
    ("unused/100", "no `via`, 100 receivers: within 1.12x of the floor", 1.12),
    ("serial", "`Serial` throughput within 1.3x of `queue.Queue` + a thread", 1.3),
    ("loop", "a call on another thread's loop within 1.3x of hand-written", 1.3),
    (
        "fire-and-forget",
        f"fire and forget to {FIRE_RECEIVERS} pool receivers within 1.3x of "
        f"{FIRE_RECEIVERS} `pool.submit` calls",
        1.3,
    ),
)

NOTES = [
    "unused: `signal.send(sender, payload=1)`, receivers connected without "
    "options, against case 1's floor (this thread's CPU time); the signals of "
    "the other groups, with `via`, exist in the same process.",
    "serial: per call, `signal.send(sender, payload=1)` to one receiver "
    "connected `via=concsignals.Serial(), wait=False`, then the last call's "
    "Future waited for; hand-written: `q.put(...)` per call to a "
    "`queue.Queue` one consumer thread drains, calling the same receiver, "
    "then `q.join()`. Wall time per call.",
    "loop: per call, `signal.send(sender, payload=1)` to one plain receiver "
    "connected `via=loop` (wait=True), the loop running in another thread; "
    "hand-written: `loop.call_soon_threadsafe(...)` of a callback that calls "
    "the receiver and sets a `concurrent.futures.Future` the sender waits "
    "on. Wall time per call.",
    f"fire-and-forget: per send, `signal.send(sender, payload=1)` to "
    f"{FIRE_RECEIVERS} receivers connected `via=pool, wait=False` on a "
    f"{POOL_THREADS}-thread pool, until `send` returns; hand-written: "
    f"{FIRE_RECEIVERS} `pool.submit(r, signal=..., sender=..., payload=1)` "
    "calls, their `(r, future)` pairs in a list. The calls are waited for "
    "after the clock stops. Wall time per send.",
    "Receivers return at once: what is left is the cost of getting each call "
    "to where it runs.",
]


# -- a: a send without options stays where it is -------------------------------


def unused_timers(n: int, keep: list[object]) -> dict[str, Timer]:
    import concsignals

    receivers = [make_receiver() for _ in range(n)]
    sig = concsignals.Signal()
    for r in receivers:
        sig.connect(r)
    sender = Sender()
    keep += [receivers, sig, sender]
    return {
        "hand-written": send_timer(make_floor(receivers, sig), sender),
        "concsignals": send_timer(sig.send, sender),
    }


# -- b: Serial throughput -------------------------------------------------------


def serial_timers(keep: list[object]) -> dict[str, Timer]:
    import concsignals

    receiver = Noop()
    sig = concsignals.Signal()
    serial = concsignals.Serial()
    sig.connect(receiver, via=serial, wait=False)
    sender = Sender()
    keep += [receiver, sig, serial, sender]

    def ours(loops: int) -> float:
        it = itertools.repeat(None, loops)
        send = sig.send
        t0 = perf_counter()
        for _ in it:
            responses = send(sender, payload=1)
        responses[0][1].result()
        return perf_counter() - t0

    calls: queue.Queue[Any] = queue.Queue()

    def consume() -> None:
        while True:
            named = calls.get()
            receiver(signal=sig, **named)
            calls.task_done()

    threading.Thread(target=consume, name="bench-consumer", daemon=True).start()

    def hand(loops: int) -> float:
        it = itertools.repeat(None, loops)
        put = calls.put
        t0 = perf_counter()
        for _ in it:
            put({"sender": sender, "payload": 1})
        calls.join()
        return perf_counter() - t0

    return {"hand-written": hand, "concsignals": ours}


# -- c: a call on another thread's event loop ----------------------------------


def loop_in_thread(keep: list[object]) -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="bench-loop", daemon=True).start()
    keep.append(loop)
    return loop


def loop_timers(keep: list[object]) -> dict[str, Timer]:
    import concsignals

    loop = loop_in_thread(keep)
    receiver = Noop()
    sig = concsignals.Signal()
    sig.connect(receiver, via=loop)
    sender = Sender()
    keep += [receiver, sig, sender]

    def call(fut: Future[Any], named: dict[str, Any]) -> None:
        try:
            fut.set_result(receiver(signal=sig, **named))
        except BaseException as err:  # as a dispatcher would: into the Future
            fut.set_exception(err)

    def hand(loops: int) -> float:
        it = itertools.repeat(None, loops)
        soon = loop.call_soon_threadsafe
        t0 = perf_counter()
        for _ in it:
            fut: Future[Any] = Future()
            soon(call, fut, {"sender": sender, "payload": 1})
            fut.result()
        return perf_counter() - t0

    return {"hand-written": hand, "concsignals": wall_send_timer(sig.send, sender)}


def wall_send_timer(send: Callable[..., Any], sender: object) -> Timer:
    def timer(loops: int) -> float:
        it = itertools.repeat(None, loops)
        t0 = perf_counter()
        for _ in it:
            send(sender, payload=1)
        return perf_counter() - t0

    return timer


# -- d: fire and forget to a pool ------------------------------------------------


def fire_timers(keep: list[object]) -> dict[str, Timer]:
    import concsignals

    pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="bench-fire")
    receivers = [Noop() for _ in range(FIRE_RECEIVERS)]
    sig = concsignals.Signal()
    for r in receivers:
        sig.connect(r, via=pool, wait=False)
    sender = Sender()
    keep += [pool, receivers, sig, sender]

    def ours(loops: int) -> float:
        sent = []
        it = itertools.repeat(None, loops)
        send = sig.send
        t0 = perf_counter()
        for _ in it:
            sent.append(send(sender, payload=1))
        elapsed = perf_counter() - t0
        wait([f for responses in sent for _, f in responses])
        return elapsed

    def hand(loops: int) -> float:
        sent = []
        it = itertools.repeat(None, loops)
        submit = pool.submit
        named = {"signal": sig, "sender": sender, "payload": 1}
        t0 = perf_counter()
        for _ in it:
            sent.append([(r, submit(r, **named)) for r in receivers])
        elapsed = perf_counter() - t0
        wait([f for responses in sent for _, f in responses])
        return elapsed

    return {"hand-written": hand, "concsignals": ours}


# -- the case ----------------------------------------------------------------------


def groups(settings: Settings, keep: list[object]) -> dict[str, dict[str, Timer]]:
    found = {f"unused/{n}": unused_timers(n, keep) for n in UNUSED_COUNTS}
    found["serial"] = serial_timers(keep)
    found["loop"] = loop_timers(keep)
    found["fire-and-forget"] = fire_timers(keep)
    return found


HEADERS = [
    "what",
    "hand-written (best)",
    "concsignals (best)",
    "best ÷ best",
    "median of paired ratios",
    "spread (concsignals)",
]


def rows(samples: dict[str, Samples]) -> list[list[str]]:
    found = []
    for label, _, _ in TARGETS:
        s = samples[label]
        found.append(
            [
                label,
                fmt_time(s.best("hand-written")),
                fmt_time(s.best("concsignals")),
                fmt_ratio(best_ratio(s)),
                fmt_ratio(s.ratio("concsignals", "hand-written")),
                f"±{s.spread('concsignals') / 2:.1%}",
            ]
        )
    return found


def best_ratio(s: Samples) -> float:
    return s.best("concsignals") / s.best("hand-written")


def targets(samples: dict[str, Samples]) -> list[Target]:
    found = []
    for label, text, limit in TARGETS:
        s = samples[label]
        r = best_ratio(s)
        median = s.ratio("concsignals", "hand-written")
        found.append(Target(text, f"{r:.3f}x (median {median:.3f}x)", r <= limit))
    return found


def run(settings: Settings) -> CaseResult:
    samples = timing_samples(CASE, settings)
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method="Each way of delivering a call, timed against the same work "
        "written by hand with the standard library, in one group per way: "
        "every round samples both, in a shuffled order. Times are per call "
        "(per send for the fire-and-forget group).",
        notes=list(NOTES),
    )
    result.tables.append(Table("per-connection delivery", HEADERS, rows(samples)))
    result.targets = targets(samples)
    return result


CASE = register(
    Case(
        "delivery",
        "12. Per-connection delivery: via=, wait= against hand-written code",
        run,
        groups,
        standalone=True,
    )
)

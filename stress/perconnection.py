"""The pieces of the ``per-connection`` scenario: receivers connected with
``via=``, ``wait=`` and ``phase=``, and the checks those options add.

Targets
-------
:class:`Targets` builds one of every kind of target a connection can name
(``concsignals.INLINE``, a thread pool, a ``Serial`` on its own thread, a
``Serial`` running as jobs of the pool, an event loop running in a thread of
its own; with ``--executor processes``, a pool of two processes) and a
second pool that some sends fan out on.  :data:`KINDS` pairs each with
``wait=True``/``False`` and with a sync or an ``async def`` probe.

What a send adds to ``check_send``
----------------------------------
A fire-and-forget slot (``wait=False``) holds a ``Future``.  Before a send is
checked its Futures are waited for with ``concurrent.futures.wait`` (one
that never resolves stops the thread, and the watchdog calls it a deadlock;
so does a cancelled one ``wait`` never counts as done) and each is judged:
its result is the probe's token, or the probe's own ``ProbeError`` when it
may raise, or it is cancelled because the call was not made; anything else
is a violation.  Then the slot holds the token and
``check_send``'s rules apply as to any slot.  The send counts as ended when
its last Future resolved (``ctx.s1`` is taken then): a fire-and-forget call
whose receiver was connected until then must have been made.

Phases: every probe records when its call began and ended (ticks), and for
each send every call of a lower phase must have ended before any call of a
higher phase began.  A fire-and-forget call is not waited for, so it holds
back no later phase; it is still held back by the calls before it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Any

from .record import (
    Board,
    Probe,
    ProbeError,
    Record,
    SendContext,
    Sender,
    Violations,
    _connected_throughout,
    check_send,
    probe_of,
    tick,
)

#: (begin tick, end tick, probe) of each call of one send, appended by probes
#: on any thread (``list.append`` is atomic).
Spans = list[tuple[int, int, "DeliveredProbe"]]


class DeliveredProbe(Probe):
    """A probe that knows its connection's options and times its calls."""

    __slots__ = ("phase", "remote", "wait")

    def __init__(self, rec: Record, wait: bool, phase: int) -> None:
        super().__init__(rec)
        self.wait = wait
        self.phase = phase
        #: Called in another process, where its calls are not recorded.
        self.remote = False

    def __call__(
        self,
        signal: Any = None,
        sender: Any = None,
        ctx: Any = None,
        spans: Spans | None = None,
        **named: Any,
    ) -> Any:
        return self.timed(signal, sender, ctx, spans)

    def method(
        self,
        signal: Any = None,
        sender: Any = None,
        ctx: Any = None,
        spans: Spans | None = None,
        **named: Any,
    ) -> Any:
        return self.timed(signal, sender, ctx, spans)

    def timed(
        self, signal: Any, sender: object, ctx: SendContext | None, spans: Spans | None
    ) -> Any:
        begin = tick()
        try:
            return self.hit(signal, sender, ctx)
        finally:
            if spans is not None:
                spans.append((begin, tick(), self))


class AsyncDeliveredProbe(DeliveredProbe):
    """The same, as an ``async def`` receiver (a task on its loop)."""

    __slots__ = ()

    async def __call__(  # type: ignore[override]
        self,
        signal: Any = None,
        sender: Any = None,
        ctx: Any = None,
        spans: Spans | None = None,
        **named: Any,
    ) -> Any:
        return self.timed(signal, sender, ctx, spans)


class Targets:
    """One target of every kind, and the pool some sends fan out on.

    ``processes``: a pool of two spawned processes too (``--executor
    processes``), whose calls are not recorded (see ``RemoteProbe``).
    """

    def __init__(self, processes: bool = False) -> None:
        import concsignals

        self.pool = ThreadPoolExecutor(2, thread_name_prefix="stress-via")
        self.fan = ThreadPoolExecutor(2, thread_name_prefix="stress-fan")
        self.serial = concsignals.Serial()
        self.serial_on_pool = concsignals.Serial(executor=self.pool)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="stress-via-loop", daemon=True
        )
        self._thread.start()
        self.by_name: dict[str, Any] = {
            "none": None,
            "inline": concsignals.INLINE,
            "pool": self.pool,
            "serial": self.serial,
            "serial-on-pool": self.serial_on_pool,
            "loop": self.loop,
        }
        self.kinds = KINDS
        self.procs: ProcessPoolExecutor | None = None
        if processes:
            self.procs = self.by_name["processes"] = started_process_pool()
            self.kinds += REMOTE_KINDS

    def close(self) -> None:
        """After the run: every call ended, every thread of ours gone."""
        self.serial.shutdown(wait=True)
        self.serial_on_pool.shutdown(wait=True)
        self.fan.shutdown(wait=True)
        self.pool.shutdown(wait=True)
        if self.procs is not None:
            self.procs.shutdown(wait=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


#: (target name, wait, probe class): every kind of connection the scenario
#: makes.  Async probes go to the loop, where they run as tasks.
KINDS: tuple[tuple[str, bool, type[DeliveredProbe]], ...] = (
    ("none", True, DeliveredProbe),
    ("none", False, DeliveredProbe),
    ("inline", True, DeliveredProbe),
    ("pool", True, DeliveredProbe),
    ("serial", True, DeliveredProbe),
    ("serial-on-pool", True, DeliveredProbe),
    ("loop", True, DeliveredProbe),
    ("loop", True, AsyncDeliveredProbe),
    ("inline", False, DeliveredProbe),
    ("pool", False, DeliveredProbe),
    ("serial", False, DeliveredProbe),
    ("loop", False, DeliveredProbe),
    ("loop", False, AsyncDeliveredProbe),
)
REMOTE_KINDS = (
    ("processes", True, DeliveredProbe),
    ("processes", False, DeliveredProbe),
)
PHASES = (-1, 0, 0, 0, 1, 2)


def started_process_pool() -> ProcessPoolExecutor:
    """Two spawned workers, started now, before the threads run (spawn, not
    fork: forking while threads hold locks is unsafe)."""
    procs = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    for fut in [procs.submit(time.sleep, 0.2) for _ in range(2)]:
        fut.result()
    return procs


def connect_delivered(
    signal: Any,
    board: Board,
    rng: random.Random,
    target: Sender | None,
    targets: Targets,
) -> DeliveredProbe:
    """Connect a fresh probe of a random kind and phase; the board keeps it."""
    via, wait, cls = rng.choice(targets.kinds)
    phase = rng.choice(PHASES)
    is_async = cls is AsyncDeliveredProbe
    label = f"{'async ' if is_async else ''}probe via={via} wait={wait} phase={phase}"
    rec = Record(label, target, rng.random() < 0.1)
    rec.bound = not is_async and rng.random() < 0.3
    probe = cls(rec, wait, phase)
    probe.remote = via == "processes"
    board.add(rec, keep=probe)
    rec.connect_call = tick()
    signal.connect(
        rec.receiver(),
        sender=target,
        weak=rng.random() < 0.8,
        via=targets.by_name[via],
        wait=wait,
        phase=phase,
    )
    rec.connect_ret = tick()  # last: no one disconnects it before this is set
    return probe


# -- sending and checking -----------------------------------------------------------


#: How a send is made: ``send``; ``fan``: through ``signal.using(pool)``;
#: ``submit`` (always robust), waited for; ``asend`` on this thread's loop.
SEND_WAYS = ("send", "send", "fan", "submit", "asend")


def deliver(
    how: str, signal: Any, sender: object, robust: bool, named: dict[str, Any]
) -> Any:
    """One send the way ``how`` says (``fan``: ``signal`` is the view)."""
    if how == "submit":
        return signal.submit(sender, **named).result()
    if how == "asend":
        send = signal.asend_robust if robust else signal.asend
        return _own_loop().run_until_complete(send(sender, **named))
    if robust:
        return signal.send_robust(sender, **named)
    return signal.send(sender, **named)


_local = threading.local()


def _own_loop() -> asyncio.AbstractEventLoop:
    loop = getattr(_local, "loop", None)
    if loop is None:
        loop = _local.loop = asyncio.new_event_loop()
    return loop


def close_own_loop() -> None:
    """At the end of a sending thread: close the loop its ``asend`` ran on."""
    loop = getattr(_local, "loop", None)
    if loop is not None:
        _local.loop = None
        loop.close()


def wait_for_futures(results: list[tuple[Any, Any]]) -> None:
    """Wait, as a user would, until every Future in ``results`` is done.

    One that never is stops this thread, and the watchdog calls it a deadlock
    with this line on the thread's stack: a call lost on its way, or a Future
    cancelled without ``set_running_or_notify_cancel()``, which
    ``concurrent.futures.wait`` never counts as done.
    """
    wait([f for _, f in results if isinstance(f, Future)])


def settle(
    v: Violations, ctx: SendContext, results: list[tuple[Any, Any]]
) -> list[tuple[Any, Any]]:
    """The results with each fire-and-forget Future (done by now) judged and
    replaced by the value it stands for."""
    settled = []
    for receiver, response in results:
        probe = probe_of(receiver)
        if isinstance(probe, DeliveredProbe) and not probe.wait:
            if not isinstance(response, Future):
                v.add("wrong response", f"{probe.rec!r} (wait=False) got {response!r}")
            else:
                response = _outcome(v, ctx, probe.rec, response)
        settled.append((receiver, response))
    return settled


def _outcome(v: Violations, ctx: SendContext, rec: Record, fut: Future[Any]) -> Any:
    """A cancelled Future says the call was not made (its receiver was
    disconnected before it began): :func:`check_forgotten` judges that."""
    if fut.cancelled():
        return rec.token
    err = fut.exception()
    if err is None:
        return fut.result()
    if not isinstance(err, ProbeError):
        v.add("foreign exception", f"{rec!r} (wait=False): its Future has {err!r}")
    elif err.token != rec.token or not ctx.raise_ok:
        v.add("wrong error", f"{rec!r} (wait=False) got {err!r} in its Future")
    return rec.token  # the probe's own error, where it may raise


def check_forgotten(
    v: Violations, ctx: SendContext, sender: object, results: list[tuple[Any, Any]]
) -> None:
    """A fire-and-forget call whose receiver stayed connected until its Future
    was done must have been made; a call made must not be called off."""
    called = {id(rec) for rec, _t in list(ctx.calls)}
    for receiver, fut in results:
        probe = probe_of(receiver)
        if not isinstance(probe, DeliveredProbe) or not isinstance(fut, Future):
            continue
        if probe.remote:  # its calls are not recorded
            continue
        rec = probe.rec
        if fut.cancelled() and id(rec) in called:
            v.add("lost result", f"{rec!r} (wait=False) was called, Future cancelled")
        elif id(rec) not in called and _connected_throughout(rec, sender, ctx):
            v.add("missing", f"{rec!r} (wait=False) stayed connected, was not called")


def check_phases(v: Violations, spans: Spans) -> None:
    """Every call of a lower phase ended before any call of a higher one
    began (fire-and-forget calls hold back no later phase)."""
    ends: dict[int, int] = {}  # phase -> latest end of its waited-for calls
    for _begin, end, probe in spans:
        if probe.wait:
            ends[probe.phase] = max(end, ends.get(probe.phase, 0))
    for begin, _end, probe in spans:
        for phase, end in ends.items():
            if phase < probe.phase and end > begin:
                v.add(
                    "phase order",
                    f"{probe.rec!r} (phase {probe.phase}) began at tick {begin}, "
                    f"before a call of phase {phase} ended at {end}",
                )
                return


def checked_send(
    v: Violations,
    signal: Any,
    sender: object,
    board: Board,
    how: str,
    rng: random.Random,
    fan: Any,
) -> None:
    """One send on every kind of target, checked as every send is, and more."""
    mode = rng.random()
    robust = how == "submit" or mode < 0.3
    ctx = SendContext(v, raise_ok=mode < 0.4)
    spans: Spans = []
    raw = error = None
    ctx.s0 = tick()
    try:
        view = signal.using(fan) if how == "fan" else signal
        raw = deliver(how, view, sender, robust, {"ctx": ctx, "spans": spans})
        wait_for_futures(raw)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # anything, so a foreign one is reported
        error = err
    ctx.s1 = tick()  # the send's end: its last fire-and-forget call's
    results = None if raw is None else settle(v, ctx, raw)
    check_send(ctx, board.records, sender, results, error, robust=robust)
    if raw is not None:
        check_forgotten(v, ctx, sender, raw)
    check_phases(v, list(spans))
    error = None  # break the cycle error -> traceback -> this frame -> error

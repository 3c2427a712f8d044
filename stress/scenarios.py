"""The scenarios: each one a way to make a dispatcher break its promises.

Every scenario builds its signal(s) from the factory it is given, so the same
scenario runs against the real :class:`concsignals.Signal` and against the
broken dispatchers in :mod:`stress.broken`.  Every send is checked by
:func:`stress.record.check_send`; every connect and disconnect is bracketed by
ticks.  Scenarios marked ``core`` use only ``connect``, ``disconnect``,
``send`` and ``send_robust`` (plus ``using``/``asend`` when ``--executor``
asks for them).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from .record import (
    Board,
    Probe,
    Record,
    SendContext,
    Sender,
    check_send,
    claim,
    tick,
)
from .runner import Options, Run, SignalFactory, Worker

SendPath = Callable[[Any, object, bool, SendContext], Any]

# For code that runs on threads the harness does not own (receivers on pool
# threads): Random's methods are single C calls, safe to share under the GIL.
_shared_rng = random.Random(0)


# -- sending --------------------------------------------------------------------


def inline_path(signal: Any, sender: object, robust: bool, ctx: SendContext) -> Any:
    if robust:
        return signal.send_robust(sender, ctx=ctx)
    return signal.send(sender, ctx=ctx)


def pool_path(pool: Executor) -> SendPath:
    def send(signal: Any, sender: object, robust: bool, ctx: SendContext) -> Any:
        view = signal.using(pool)
        if robust:
            return view.send_robust(sender, ctx=ctx)
        return view.send(sender, ctx=ctx)

    return send


_loops = threading.local()


def loop_path(signal: Any, sender: object, robust: bool, ctx: SendContext) -> Any:
    """``asend`` on an event loop owned by the calling thread."""
    loop = getattr(_loops, "loop", None)
    if loop is None:
        loop = _loops.loop = asyncio.new_event_loop()
    send = signal.asend_robust if robust else signal.asend
    return loop.run_until_complete(send(sender, ctx=ctx))


def do_send(
    run: Run,
    signal: Any,
    sender: object,
    board: Board,
    path: SendPath,
    rng: random.Random | None = None,
    depth: int = 0,
) -> None:
    """One checked send: a third robust, some allowed to raise."""
    mode = (rng or random).random()
    robust = mode < 0.3
    ctx = SendContext(run.violations, raise_ok=mode < 0.4, depth=depth)
    results = error = None
    ctx.s0 = tick()
    try:
        results = path(signal, sender, robust, ctx)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # anything, so a foreign one is reported
        error = err
    ctx.s1 = tick()
    check_send(ctx, board.records, sender, results, error, robust=robust)
    error = None  # break the cycle error -> traceback -> this frame -> error


async def do_asend(
    run: Run, signal: Any, sender: object, board: Board, rng: random.Random
) -> None:
    """One checked ``asend``/``asend_robust`` on the running loop."""
    mode = rng.random()
    robust = mode < 0.3
    ctx = SendContext(run.violations, raise_ok=mode < 0.4)
    results = error = None
    ctx.s0 = tick()
    try:
        send = signal.asend_robust if robust else signal.asend
        results = await send(sender, ctx=ctx)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # anything, so a foreign one is reported
        error = err
    ctx.s1 = tick()
    check_send(ctx, board.records, sender, results, error, robust=robust)
    error = None  # break the cycle error -> traceback -> this frame -> error


# -- writing --------------------------------------------------------------------


def connect_probe(
    signal: Any,
    board: Board,
    rng: random.Random,
    target: Sender | None,
    *,
    mortal: bool = False,
    action: Callable[..., None] | None = None,
    cls: type[Probe] = Probe,
) -> Probe:
    """Connect a fresh probe; the board keeps it alive unless ``mortal``."""
    rec = Record("probe" if cls is Probe else "async-probe", target, rng.random() < 0.1)
    probe = cls(rec, action)
    rec.bound = cls is Probe and rng.random() < 0.3
    weak = mortal or rng.random() < 0.8
    board.add(rec, keep=None if mortal else probe)
    rec.connect_call = tick()
    signal.connect(rec.receiver(), sender=target, weak=weak)
    if rng.random() < 0.05:  # connecting twice must change nothing
        signal.connect(rec.receiver(), sender=target, weak=weak)
    # Set last: no one disconnects a record before its connect_ret is set.
    rec.connect_ret = tick()
    return probe


def disconnect_record(
    run: Run,
    signal: Any,
    board: Board,
    rec: Record,
    unplug: Callable[[Any, Any], bool] | None = None,
) -> bool:
    """Disconnect ``rec`` unless someone else does; it must have been connected.
    ``unplug(receiver, sender)``: how (default: ``signal.disconnect``)."""
    if rec.connect_ret is None or not claim(rec):
        return False
    receiver = rec.receiver()
    target = None if rec.target is None else rec.target()
    if receiver is None or (rec.target is not None and target is None):
        board.retire(rec)  # its probe or its sender is gone: nothing to undo
        return False
    rec.disc_thread = threading.get_ident()
    rec.disc_call = tick()
    if unplug is None:
        ok = signal.disconnect(receiver, sender=target)
    else:
        ok = unplug(receiver, target)
    rec.disc_ret = tick()
    if ok is not True:
        run.violations.add(
            "disconnect result", f"disconnect of connected {rec!r} returned {ok!r}"
        )
    board.retire(rec)
    return True


def disconnect_random(run: Run, signal: Any, board: Board, rng: Any) -> bool:
    live = board.live
    if not live:
        return False
    return disconnect_record(run, signal, board, live[rng.randrange(len(live))])


# -- the scenarios --------------------------------------------------------------


class Scenario:
    """Base: a name, a one-line description, and the run's life cycle."""

    name = ""
    title = ""
    core = True  # uses only the core API (beyond what --executor asks for)
    memory = True  # memory is sampled and must stay flat

    def skip_reason(self, factory: SignalFactory, opts: Options) -> str:
        return path_skip_reason(factory, opts.executor)

    def setup(self, run: Run) -> None:
        raise NotImplementedError

    def finish(self, run: Run) -> None:
        """Checks made once the workers have stopped."""


def path_skip_reason(factory: SignalFactory, executor: str) -> str:
    if executor == "inline":
        return ""
    if executor == "threads":
        return needs_pool(factory)
    if executor == "async":
        return needs_asend(factory)
    if executor == "processes":
        return needs_pool(factory)
    return f"unknown executor {executor!r}"


def needs_pool(factory: SignalFactory) -> str:
    signal = factory()
    if not hasattr(signal, "using"):
        return f"{factory.__qualname__} has no using()"
    with ThreadPoolExecutor(1) as pool:
        try:
            signal.using(pool).send(None)
        except NotImplementedError as err:
            return f"parallel fan-out not available yet (NotImplementedError: {err})"
    return ""


def needs_asend(factory: SignalFactory) -> str:
    signal = factory()
    if not hasattr(signal, "asend"):
        return f"{factory.__qualname__} has no asend()"
    try:
        asyncio.run(signal.asend(None))
    except NotImplementedError as err:
        return f"asend not available yet (NotImplementedError: {err})"
    return ""


def make_path(run: Run) -> SendPath:
    """The send path ``--executor`` asks for; a pool is shut down after the run."""
    if run.opts.executor == "threads":
        pool = ThreadPoolExecutor(4, thread_name_prefix="stress-pool")
        run.cleanups.append(lambda: pool.shutdown(wait=True))
        return pool_path(pool)
    if run.opts.executor == "processes":
        # spawn, not fork: forking while worker threads hold locks is unsafe.
        ctx = multiprocessing.get_context("spawn")
        procs = ProcessPoolExecutor(2, mp_context=ctx)
        for fut in [procs.submit(time.sleep, 0.2) for _ in range(2)]:
            fut.result()  # start both workers now, before the threads run
        run.cleanups.append(lambda: procs.shutdown(wait=True))
        return pool_path(procs)
    if run.opts.executor == "async":
        return loop_path
    return inline_path


def split_threads(opts: Options) -> tuple[int, int]:
    """(writers, senders), at least one of each."""
    writers = max(1, opts.threads // 2)
    return writers, max(1, opts.threads - writers)


def spawn_split(
    run: Run,
    writer: Callable[[Worker], None],
    sender: Callable[[Worker], None],
    *,
    writers_halved: bool = False,
) -> None:
    """Start the writers and senders of :func:`split_threads`; with
    ``writers_halved``, half as many writers (at least one), as two of the
    scenarios of ``elsewhere.py`` have run since they were written."""
    writers, senders = split_threads(run.opts)
    if writers_halved:
        writers = max(1, writers // 2)
    for _ in range(writers):
        run.spawn("writer", writer)
    for _ in range(senders):
        run.spawn("sender", sender)


class SendersVsWriters(Scenario):
    name = "senders-vs-writers"
    title = "many threads send while others connect/disconnect their own receivers"

    def setup(self, run: Run) -> None:
        signal = run.factory()
        board = Board()
        path = make_path(run)
        senders = [Sender(f"s{i}") for i in range(4)]
        targets: list[Sender | None] = [None, None, *senders]
        run.state["senders"] = senders

        def writer(w: Worker) -> None:
            own: list[Probe] = []
            while run.running:
                if len(own) < 6 and (not own or w.rng.random() < 0.55):
                    target = w.rng.choice(targets)
                    own.append(connect_probe(signal, board, w.rng, target))
                else:
                    probe = own.pop(w.rng.randrange(len(own)))
                    disconnect_record(run, signal, board, probe.rec)
                w.writes += 1
                run.pace(w)

        def sender(w: Worker) -> None:
            while run.running:
                do_send(run, signal, w.rng.choice(targets), board, path, w.rng)
                w.sends += 1

        spawn_split(run, writer, sender)


def collect_sometimes(probe: Probe, signal: Any, sender: object, ctx: Any) -> None:
    """Action: run the garbage collector from inside a send, now and then."""
    roll = random.random()
    if roll < 0.002:
        gc.collect()
    elif roll < 0.02:
        gc.collect(0)


class WeakReceiversDying(Scenario):
    name = "weak-receivers-dying"
    title = "receivers in reference cycles collected by gc mid-send, under churn"
    # Receivers here run the collector themselves, and a gc.collect() that
    # finds another one under way returns at once: the memory samples would
    # count garbage.  Lifetimes are checked directly instead (finish()).
    memory = False

    def setup(self, run: Run) -> None:
        signal = run.factory()
        board = Board()
        path = make_path(run)
        senders = [Sender(f"s{i}") for i in range(3)]
        targets: list[Sender | None] = [None, None, *senders]
        dropped: deque[weakref.ref[Probe]] = deque(maxlen=1000)
        run.state.update(senders=senders, dropped=dropped)
        old_threshold = gc.get_threshold()
        gc.set_threshold(100, 5, 5)
        run.cleanups.append(lambda: gc.set_threshold(*old_threshold))

        def writer(w: Worker) -> None:
            own: list[Probe] = []
            while run.running:
                if len(own) < 8 and (not own or w.rng.random() < 0.55):
                    mortal = w.rng.random() < 0.7
                    probe = connect_probe(
                        signal,
                        board,
                        w.rng,
                        w.rng.choice(targets),
                        mortal=mortal,
                        action=collect_sometimes if w.rng.random() < 0.3 else None,
                    )
                    if mortal:
                        probe.cycle = [probe]  # only the collector can free it
                    own.append(probe)
                else:
                    probe = own.pop(w.rng.randrange(len(own)))
                    rec = probe.rec
                    if probe.cycle is None:
                        disconnect_record(run, signal, board, rec)
                    else:
                        rec.dropped = tick()
                        board.retire(rec)
                        dropped.append(weakref.ref(probe))
                    del probe
                w.writes += 1
                run.pace(w)
            # This thread lets go of the rest as it ends, while senders may be
            # finishing a last send: say so first, or they would be "missing".
            for probe in own:
                probe.rec.dropped = tick()

        def sender(w: Worker) -> None:
            while run.running:
                do_send(run, signal, w.rng.choice(targets), board, path, w.rng)
                w.sends += 1

        spawn_split(run, writer, sender)

    def finish(self, run: Run) -> None:
        gc.collect()
        alive = sum(1 for ref in run.state["dropped"] if ref() is not None)
        if alive:
            run.violations.add(
                "weak receiver kept alive",
                f"{alive} dropped weak receivers still alive after gc.collect()",
            )


class Reentrancy(Scenario):
    name = "reentrancy"
    title = "receivers connect, disconnect (themselves, others) and send mid-send"

    def setup(self, run: Run) -> None:
        signal = run.factory()
        side = run.factory()
        board = Board()
        side_board = Board()
        path = make_path(run)
        cap = 12

        def disconnect_self(probe: Probe, sig: Any, sender: object, ctx: Any) -> None:
            disconnect_record(run, signal, board, probe.rec)

        def disconnect_other(probe: Probe, sig: Any, sender: object, ctx: Any) -> None:
            disconnect_random(run, signal, board, random)

        def connect_new(probe: Probe, sig: Any, sender: object, ctx: Any) -> None:
            if len(board) < cap:
                connect_probe(signal, board, _shared_rng, None)

        def send_again(probe: Probe, sig: Any, sender: object, ctx: Any) -> None:
            if ctx.depth < 2:
                do_send(run, signal, None, board, path, depth=ctx.depth + 1)

        def send_side(probe: Probe, sig: Any, sender: object, ctx: Any) -> None:
            if ctx.depth < 2:
                do_send(run, side, None, side_board, path, depth=ctx.depth + 1)

        actions: list[Callable[..., None] | None] = [
            None,
            None,
            disconnect_self,
            disconnect_other,
            connect_new,
            send_again,
            send_side,
        ]
        rng0 = random.Random(run.opts.seed)
        for action in (None, send_again, disconnect_other, None):
            connect_probe(side, side_board, rng0, None, action=action)

        def mixed(w: Worker) -> None:
            while run.running:
                if w.rng.random() < 0.4:
                    if len(board) < cap and w.rng.random() < 0.6:
                        action = w.rng.choice(actions)
                        connect_probe(signal, board, w.rng, None, action=action)
                    else:
                        disconnect_random(run, signal, board, w.rng)
                    w.writes += 1
                else:
                    do_send(run, signal, None, board, path, w.rng)
                    w.sends += 1

        for _ in range(max(2, run.opts.threads)):
            run.spawn("mixed", mixed)


class SenderChurn(Scenario):
    name = "sender-churn"
    title = "short-lived senders with their own receivers, id() reuse"

    def setup(self, run: Run) -> None:
        signal = run.factory()
        board = Board()
        path = make_path(run)
        rng0 = random.Random(run.opts.seed)
        for _ in range(2):
            connect_probe(signal, board, rng0, None)
        senders: deque[weakref.ref[Sender]] = deque(maxlen=1000)
        run.state["senders"] = senders

        def churner(w: Worker) -> None:
            graveyard: deque[Probe] = deque(maxlen=8)
            n = 0
            while run.running:
                n += 1
                sender = Sender(f"{w.name}#{n}")
                own = [
                    connect_probe(signal, board, w.rng, sender, mortal=True)
                    for _ in range(w.rng.randint(1, 3))
                ]
                w.writes += len(own)
                for _ in range(w.rng.randint(1, 2)):
                    do_send(run, signal, sender, board, path, w.rng)
                    w.sends += 1
                if w.rng.random() < 0.3:
                    for probe in own:
                        disconnect_record(run, signal, board, probe.rec)
                        w.writes += 1
                else:
                    # The sender dies with its receivers connected (and alive).
                    for probe in own:
                        board.retire(probe.rec)
                    graveyard.extend(own)
                senders.append(weakref.ref(sender))
                del sender, own
                if w.rng.random() < 0.3:
                    do_send(run, signal, None, board, path, w.rng)
                    w.sends += 1

        for _ in range(max(1, run.opts.threads)):
            run.spawn("churner", churner)

    def finish(self, run: Run) -> None:
        gc.collect()
        refs = run.state["senders"]
        alive = sum(1 for ref in refs if ref() is not None)
        if alive:
            first = next(s for ref in refs if (s := ref()) is not None)
            run.violations.add(
                "sender kept alive",
                f"{alive} dead senders still alive after gc; the first is "
                f"held by {held_by(first)}",
            )


def held_by(obj: object) -> str:
    """What refers to ``obj`` (for a violation's message)."""
    names = []
    for ref in gc.get_referrers(obj):
        name = type(ref).__qualname__
        code = getattr(ref, "f_code", None)
        if code is not None:
            name += f" {code.co_qualname} ({code.co_filename}:{ref.f_lineno})"
        names.append(name)
    return ", ".join(names[:6]) or "nothing visible to gc"

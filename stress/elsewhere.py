"""The scenarios that run receivers elsewhere: fan-out through executors,
asyncio loops, per-connection delivery targets, and waiting disconnects.

Split from :mod:`stress.scenarios` (the base class, the send and write
steps, and the scenarios of the dispatcher's core); the catalogue of every
scenario is :data:`stress.catalog.ALL`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import quiesce
from .perconnection import (
    SEND_WAYS,
    Targets,
    checked_send,
    close_own_loop,
    connect_delivered,
)
from .record import AsyncProbe, Board, Probe, Sender
from .runner import Options, Run, SignalFactory, Worker
from .scenarios import (
    Scenario,
    _shared_rng,
    connect_probe,
    disconnect_record,
    do_asend,
    do_send,
    needs_asend,
    needs_pool,
    pool_path,
    spawn_split,
    split_threads,
)


class ParallelFanout(Scenario):
    name = "parallel-fanout"
    title = "sends through a saturated thread pool, nested sends, writers churning"
    core = False
    memory = False  # the pool's threads come and go: too noisy to judge here

    def skip_reason(self, factory: SignalFactory, opts: Options) -> str:
        return needs_pool(factory)

    def setup(self, run: Run) -> None:
        signal = run.factory()
        board = Board()
        pool = ThreadPoolExecutor(2, thread_name_prefix="stress-fanout")
        run.cleanups.append(lambda: pool.shutdown(wait=True))
        path = pool_path(pool)
        senders = [Sender(f"s{i}") for i in range(3)]
        targets: list[Sender | None] = [None, None, *senders]
        run.state["senders"] = senders

        def nested(probe: Probe, sig: Any, sender: object, ctx: Any) -> None:
            if ctx.depth < 2:
                do_send(run, signal, sender, board, path, depth=ctx.depth + 1)

        def writer(w: Worker) -> None:
            own: list[Probe] = []
            while run.running:
                if len(own) < 5 and (not own or w.rng.random() < 0.55):
                    action = nested if w.rng.random() < 0.15 else None
                    target = w.rng.choice(targets)
                    own.append(
                        connect_probe(signal, board, w.rng, target, action=action)
                    )
                else:
                    probe = own.pop(w.rng.randrange(len(own)))
                    disconnect_record(run, signal, board, probe.rec)
                w.writes += 1
                run.pace(w)

        def sender(w: Worker) -> None:
            while run.running:
                do_send(run, signal, w.rng.choice(targets), board, path, w.rng)
                w.sends += 1

        spawn_split(run, writer, sender, writers_halved=True)


class AsyncLoops(Scenario):
    name = "async-loops"
    title = "asend from several event loops in several threads at once"
    core = False
    memory = False  # each loop grows its own thread pool: too noisy to judge

    def skip_reason(self, factory: SignalFactory, opts: Options) -> str:
        return needs_asend(factory)

    def setup(self, run: Run) -> None:
        signal = run.factory()
        board = Board()
        senders = [Sender(f"s{i}") for i in range(3)]
        targets: list[Sender | None] = [None, None, *senders]
        run.state["senders"] = senders

        def writer(w: Worker) -> None:
            own: list[Probe] = []
            while run.running:
                if len(own) < 6 and (not own or w.rng.random() < 0.55):
                    cls = AsyncProbe if w.rng.random() < 0.5 else Probe
                    target = w.rng.choice(targets)
                    own.append(connect_probe(signal, board, w.rng, target, cls=cls))
                else:
                    probe = own.pop(w.rng.randrange(len(own)))
                    disconnect_record(run, signal, board, probe.rec)
                w.writes += 1
                run.pace(w)

        async def task(w: Worker) -> None:
            while run.running:
                await do_asend(run, signal, w.rng.choice(targets), board, w.rng)
                w.sends += 1

        async def loop_main(w: Worker) -> None:
            await asyncio.gather(*(task(w) for _ in range(3)))

        def loop_thread(w: Worker) -> None:
            asyncio.run(loop_main(w))

        writers, loops = split_threads(run.opts)
        for _ in range(max(1, writers // 2)):
            run.spawn("writer", writer)
        for _ in range(max(2, loops)):
            run.spawn("loop", loop_thread)


def needs_delivery(factory: SignalFactory) -> str:
    """Why ``connect(..., via=, wait=, phase=)`` cannot be stressed, or ''."""
    import concsignals

    if not hasattr(concsignals, "Serial"):
        return "concsignals has no per-connection delivery (Serial, INLINE)"
    try:
        factory().connect(
            lambda **named: None, weak=False, via=concsignals.INLINE, wait=True, phase=0
        )
    except TypeError as err:
        return f"{factory.__qualname__}.connect takes no via=/wait=/phase= ({err})"
    return ""


class PerConnection(Scenario):
    name = "per-connection"
    title = "receivers on every kind of target and phase, under churn"
    core = False
    memory = False  # pools, a loop and Serial workers: too noisy to judge

    def skip_reason(self, factory: SignalFactory, opts: Options) -> str:
        return needs_delivery(factory)

    def setup(self, run: Run) -> None:
        signal = run.factory()
        board = Board()
        targets = Targets(processes=run.opts.executor == "processes")
        run.cleanups.append(targets.close)
        senders = [Sender(f"s{i}") for i in range(3)]
        choices: list[Sender | None] = [None, None, *senders]
        run.state["senders"] = senders

        def writer(w: Worker) -> None:
            own: list[Probe] = []
            while run.running:
                if len(own) < 6 and (not own or w.rng.random() < 0.55):
                    target = w.rng.choice(choices)
                    probe = connect_delivered(signal, board, w.rng, target, targets)
                    own.append(probe)
                else:
                    probe = own.pop(w.rng.randrange(len(own)))
                    disconnect_record(run, signal, board, probe.rec)
                w.writes += 1
                run.pace(w)

        def sender(w: Worker) -> None:
            while run.running:
                how = w.rng.choice(SEND_WAYS)
                target = w.rng.choice(choices)
                checked_send(
                    run.violations, signal, target, board, how, w.rng, targets.fan
                )
                w.sends += 1
            close_own_loop()

        spawn_split(run, writer, sender, writers_halved=True)


class Quiesce(Scenario):
    name = "quiesce"
    title = "after disconnect(wait=True) returns, nothing of the receiver runs"
    core = False
    memory = False  # the per-connection targets: too noisy to judge

    def skip_reason(self, factory: SignalFactory, opts: Options) -> str:
        return needs_delivery(factory) or quiesce.needs_wait(factory)

    def setup(self, run: Run) -> None:
        signal = run.factory()
        board = Board()
        targets = Targets()
        targets.kinds = quiesce.QUIET_KINDS
        run.cleanups.append(targets.close)
        senders = [Sender(f"s{i}") for i in range(3)]
        choices: list[Sender | None] = [None, None, *senders]
        v = run.violations
        by_self = quiesce.unplug(v, signal, "wait")

        def disconnect_self(probe: Any, sig: Any, sender: object, ctx: Any) -> None:
            """Action: disconnect this very receiver, waiting, from its call."""
            if _shared_rng.random() < 0.3:
                own = quiesce.current_call()
                if disconnect_record(run, signal, board, probe.rec, by_self):
                    quiesce.settle(v, probe, probe.rec.disc_ret, own)

        def writer(w: Worker) -> None:
            own: list[Any] = []
            while run.running:
                if len(own) < 5 and (not own or w.rng.random() < 0.55):
                    target = w.rng.choice(choices)
                    probe = connect_delivered(signal, board, w.rng, target, targets)
                    is_async = isinstance(probe, quiesce.AsyncQuietProbe)
                    if not is_async and w.rng.random() < 0.15:
                        probe.action = disconnect_self
                    own.append(probe)
                else:
                    probe = own.pop(w.rng.randrange(len(own)))
                    how = w.rng.choice(("wait", "wait", "timeout", "async"))
                    by_writer = quiesce.unplug(v, signal, how)
                    if disconnect_record(run, signal, board, probe.rec, by_writer):
                        quiesce.settle(v, probe, probe.rec.disc_ret)
                w.writes += 1
                run.pace(w)
            close_own_loop()

        def sender(w: Worker) -> None:
            while run.running:
                how = w.rng.choice(SEND_WAYS)
                target = w.rng.choice(choices)
                checked_send(v, signal, target, board, how, w.rng, targets.fan)
                w.sends += 1
            close_own_loop()

        spawn_split(run, writer, sender)

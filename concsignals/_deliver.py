"""Sends whose connections have options: ``connect(via=, wait=, phase=)``.

A send whose entries have no options (``Entry.opts is None``) never comes
here: ``_run`` checks once and takes the backends as before.  Otherwise the
send is the same :class:`~concsignals._send.Send` (the same gate, outcomes
and assembly); what this module adds is where each call runs and when:

* **Targets.**  A call runs on its connection's target (``via``), else
  where the send runs its calls (its executor; without one: in the sending
  thread for a sync send, as ``asend`` runs them for an async one).  Every
  target is an executor (``_targets.py``), so a call is handed over as on
  any pool: one job per call (``_threads.start``), whose first step on the
  target is the begin gate (``_inline.call``, ``_async.call_async``).  A
  receiver disconnected while its call waits in a Serial's queue or on a
  loop is not called.  Out of process the gate stays at hand-off
  (``_pickled``).  A job runs in a copy of the sender's context, so context
  variables and the monitors' carriers travel with it; out of process, the
  carriers are pickled with the call.
* **Phases.**  The slots are split by phase (:func:`stages`), lowest first,
  each in connection order.  A stage is handed over, then waited for to the
  end (``Send.enter`` makes the send count only the stage's slots as
  unsettled) before the next begins: a barrier even when its calls run in
  parallel on pools.  A send closed in a stage (a failure in ``send``, the
  deadline, cancellation) begins no later stage.
* **Fire and forget** (``wait=False``, :func:`fire`).  The slot passes the
  send's gate in its turn and its outcome is at once a
  ``concurrent.futures.Future``; the call itself is a one-slot robust send
  of its own, without a deadline, handed to the target: the send's later
  failures and its deadline do not touch it, its failure is logged as
  ``send_robust`` logs it and is seen by monitors as that send's, and the
  Future carries it.  A Future whose call was not made (disconnected
  before it began) is cancelled; cancelling the Future before the call
  began withdraws the call.  Such a call is not part of a phase's barrier:
  its phase decides only when it is handed over.
* **No waiting on oneself.**  A call whose target is the sender's own
  thread (a sync send on a loop's thread to that loop, a send from a
  Serial's job to that Serial) runs in the sender's thread: queued, nothing
  would ever run it.  A send from a worker of a pool runs the calls no worker
  took as before (``_threads.worker_of``).  An async receiver on the loop
  whose thread makes a *sync* send cannot run without blocking that loop:
  its slot gets a ``RuntimeError`` saying so.

Some sync sends need no :class:`~concsignals._send.Send` at all: see
``_lean.py``.

Which driver: a sync send none of whose live async receivers needs a loop
of the sender's (:func:`needs_loop`) runs on :func:`run`, in the sending
thread; any other sync send runs :func:`arun` on a private loop
(``_async.send_from_sync``), and ``asend`` runs :func:`arun` on its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from time import monotonic
from typing import Any

from . import _async, _inflight, _inline, _pickled, _threads, executors, monitoring
from ._send import RUNNING, Failed, Responses, Returned, Send, Why
from ._snapshot import Entry
from ._targets import INLINE, LoopTarget, runs_here


def has_options(entries: Sequence[Entry]) -> bool:
    return any(e.opts is not None for e in entries)


def target_of(entry: Entry, executor: Executor | None) -> Executor | None:
    """Where ``entry``'s calls run in a send on ``executor`` (``None``: the
    send's own way, without an executor)."""
    opts = entry.opts
    if opts is None or opts.target is None:
        return executor
    return opts.target


def needs_loop(entries: Sequence[Entry], executor: Executor | None) -> bool:
    """Whether a live async receiver must run on the sender's own loop:
    without a target of its own (or ``INLINE``)."""
    for e in entries:
        if e.is_async and e.get() is not None:
            where = target_of(e, None)
            if where is None or where is INLINE:
                return True
    return False


def stages(send: Send) -> list[Sequence[int]]:
    """The send's slots by phase, lowest first, each in connection order."""
    phases = [0 if e.opts is None else e.opts.phase for e in send.entries]
    distinct = sorted(set(phases))
    if len(distinct) == 1:
        return [range(len(phases))]
    return [[i for i, p in enumerate(phases) if p == phase] for phase in distinct]


# -- handing calls over ---------------------------------------------------------


class Handing:
    """One stage's hand-over: each call to its target, in connection order.

    ``waits``: the sender waits for these calls, so a call whose target is
    the sender's own thread must run here (a fire-and-forget call is queued
    there all the same: nobody waits for it).  ``jobs``: what was handed to
    in-process executors, each with whether this thread is one of that
    executor's workers (``_threads.worker_of``), for the driver to steal.
    """

    __slots__ = ("executor", "jobs", "send", "waits")

    def __init__(self, send: Send, executor: Executor | None, waits: bool) -> None:
        self.send = send
        self.executor = executor
        self.waits = waits
        self.jobs: list[tuple[_threads.Job, bool | None]] = []

    def slots(self, slots: Sequence[int], on_loop: bool) -> Iterator[int]:
        """Hand each call of ``slots`` over, in connection order; yield each
        slot whose call is the driver's own to make, in its turn: no target
        (the send's own way), an async receiver ``INLINE`` or (``on_loop``)
        on the driver's loop, a call whose target is this very thread."""
        send, executor = self.send, self.executor
        blobs = self._pickled(slots)
        for i in slots:
            if send.closed:
                return
            entry = send.entries[i]
            where = target_of(entry, executor)
            if self.fires(entry):
                fire(send, i, where)
            elif where is None:
                yield i
            elif not executors.in_process(where):
                _pickled.hand_off_pickled(send, where, [i], blobs[where])
            elif entry.is_async:
                if where is INLINE or (on_loop and runs_here(where)):
                    yield i
                else:
                    self._async_call(i, where)
            elif self.waits and runs_here(where):
                yield i  # queued, it would wait for this very thread
            else:
                self._started(where, _threads.start(send, where, [i]))

    def fires(self, entry: Entry) -> bool:
        """Whether ``entry``'s call is fire and forget here (not in the
        one-slot send that makes such a call: :func:`fire`)."""
        return self.waits and entry.opts is not None and not entry.opts.wait

    def _started(self, where: Executor, jobs: list[_threads.Job]) -> None:
        mine = _threads.worker_of(where)
        self.jobs += [(job, mine) for job in jobs]

    def _pickled(self, slots: Sequence[int]) -> dict[Executor, dict[int, Any]]:
        """Every out-of-process call of ``slots`` pickled before any call
        begins: ``send`` raises a pickling error first."""
        send = self.send
        by_target: dict[Executor, list[int]] = {}
        for i in slots:
            e = send.entries[i]
            where = target_of(e, self.executor)
            if self.fires(e) or where is None or executors.in_process(where):
                continue
            by_target.setdefault(where, []).append(i)
        return {ex: _pickled.pickle_calls(send, ex, s) for ex, s in by_target.items()}

    def _async_call(self, i: int, where: Executor) -> None:
        """An async receiver on an in-process target: a task on a loop
        target's loop, else a job that runs it to its end in that thread."""
        send = self.send
        if not isinstance(where, LoopTarget):
            self._started(
                where, _threads.start(send, where, [i], _async.call_in_thread)
            )
            return
        if self.waits and where.runs_here():  # a sync send on that loop's thread
            send.refuse(
                i,
                RuntimeError(
                    f"async receiver {send.entries[i].get()!r} runs on the event "
                    f"loop of the thread that made this sync send of "
                    f"{send.signal!r}: the send would block that loop.  Use "
                    f"'await signal.asend(...)' there."
                ),
            )
            return
        ctx = contextvars.copy_context()
        send.hand_over(i, where.submit_task(lambda: _async.call_async(send, i), ctx))


# -- fire and forget --------------------------------------------------------------


def fire(send: Send, i: int, where: Executor | None) -> None:
    """Slot ``i``, ``wait=False``: in its turn through the gate, its outcome
    a Future; the call a one-slot robust send of its own on ``where`` (the
    pool concsignals owns when the send has no executor)."""
    r = send.begin(i)
    if r is None:
        return
    entry = send.entries[i]
    call = Send(send.signal, (entry,), send.sender, send.named, None, True)
    fut: Future[Any] = Future()
    _inflight.track(fut, send.signal)  # held until done: never lost half-way
    fut.add_done_callback(lambda f: _withdraw(f, call))
    # Once the call begins, cancelling the Future fails, as for any running job.
    call.on_begin = lambda: _running(call, fut)
    send.end(i, fut)
    if where is None:
        where = executors.owned_pool()
    watch = monitoring.watch(call, where) if monitoring.installed else None
    call.on_settled = lambda: _resolve(call, fut, watch)
    try:
        for _ in Handing(call, where, False).slots([0], False):  # it runs here
            if entry.is_async:
                run_here(call)
            else:
                _inline.call(call, 0)
    except BaseException:
        call.close(Why.CANCELLED)
        raise


def run_here(call: Send) -> None:
    """An ``INLINE`` async receiver's fire-and-forget call, in this thread:
    a task left on the sender's loop (``asend``); in a sync send, to its
    end before the send returns (no loop stays behind to run it): here, or
    beside the send's private loop (a loop cannot run inside another)."""
    loop = _async.running_loop()
    if loop is None:
        _async.call_in_thread(call, 0)
    elif loop is getattr(_async._local, "loop", None):
        ctx = contextvars.copy_context()  # the helper thread has its own

        async def in_context() -> None:
            coro = _async.call_async(call, 0)
            await asyncio.get_running_loop().create_task(coro, context=ctx)

        _async.run_private(in_context)
    else:
        _async.hold(loop.create_task(_async.call_async(call, 0)))


def _running(call: Send, fut: Future[Any]) -> None:
    if call.state[0] is RUNNING:  # begun, not skipped: read in the gate's thread
        fut.set_running_or_notify_cancel()


def _withdraw(fut: Future[Any], call: Send) -> None:
    """The Future was cancelled: the call, if not begun, never begins."""
    if fut.cancelled():
        call.close(Why.CANCELLED)


def _resolve(call: Send, fut: Future[Any], watch: Any) -> None:
    """The one-slot send of a fire-and-forget call settled: its Future."""
    try:
        responses = call.assemble()  # a failure is logged here, as send_robust
    except BaseException as err:  # a BaseException: the Future carries it
        if watch is not None:
            watch.finish(call, err)
        with contextlib.suppress(Exception):
            fut.set_exception(err)
        return
    if watch is not None:
        watch.finish(call, None)
    out = call.state[0]
    with contextlib.suppress(Exception):  # cancelled meanwhile
        if isinstance(out, Returned):
            fut.set_result(out.value)
        elif isinstance(out, Failed):
            fut.set_exception(out.err)
        elif not responses:  # not made: disconnected before it began
            fut.cancel()
            fut.set_running_or_notify_cancel()  # wait() and as_completed() see it


# -- the sync driver ----------------------------------------------------------------


def run(send: Send, executor: Executor | None) -> None:
    """A sync send, in the sending thread, stage by stage."""
    for slots in stages(send):
        if send.closed:
            return
        run_stage(send, executor, slots)


def run_stage(send: Send, executor: Executor | None, slots: Sequence[int]) -> None:
    done = threading.Lock()
    done.acquire()
    send.enter(slots)
    send.on_settled = done.release
    handing = Handing(send, executor, True)
    try:
        for i in handing.slots(slots, False):
            if send.entries[i].is_async:  # INLINE: to its end, here
                _async.call_in_thread(send, i)
            else:
                _inline.call(send, i)
        _threads.steal(send, [job for job, mine in handing.jobs if mine])
        unknown = any(mine is None for _, mine in handing.jobs)
        jobs = [job for job, mine in handing.jobs if mine is not False]
        _threads.wait(send, done, jobs, _threads.PATIENCE if unknown else None)
    except BaseException:
        send.close(Why.CANCELLED)
        if send.on_settled is not None:
            _threads.acquire_until(done, send.deadline)
        raise
    if send.why is Why.DEADLINE:  # from this thread: Dask's calls too
        send.close(Why.DEADLINE, everything=True)


# -- the async driver ----------------------------------------------------------------


async def arun(
    send: Send, executor: Executor | None, walking: bool = False
) -> Responses:
    """``asend`` (or a sync send on a private loop), stage by stage.

    ``walking``: a sync send without an executor on its private loop: sync
    receivers without a target are called here, in turn.
    """
    for slots in stages(send):
        if send.closed:
            break
        await arun_stage(send, executor, slots, walking)
    return send.assemble()


async def arun_stage(
    send: Send, executor: Executor | None, slots: Sequence[int], walking: bool
) -> None:
    send.enter(slots)
    waiter = _async.Waiter(send)
    handing = Handing(send, executor, True)
    try:
        for i in handing.slots(slots, True):
            entry = send.entries[i]
            if entry.is_async:
                waiter.task(send, i, False)
                await asyncio.sleep(0)  # it begins, in its turn
            elif walking or target_of(entry, executor) is not None:
                _inline.call(send, i)  # INLINE, or its target is this thread
            else:
                _async.offload_job(send, [(i, contextvars.copy_context())])
        waiter.jobs = [job for job, mine in handing.jobs if mine is not False]
        await waiter.wait(send)
    except BaseException:
        send.close(Why.CANCELLED)
        waiter._cancel_tasks()
        waiter.rearm(send)
        left = None if send.deadline is None else send.deadline - monotonic()
        await asyncio.wait({waiter.settled}, timeout=left)
        raise
    finally:
        for task in waiter.tasks:
            if not task.done():
                _async.hold(task)  # given up on (the deadline): held until it ends

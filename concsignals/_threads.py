"""In-process executors (thread pools): one job per call, run as it is.

Shape of a send on a thread pool
--------------------------------
1. :func:`start`: submit one job per entry, in connection order.  Each job
   (:func:`work`) notes its thread as a worker of the pool it was submitted
   to, then runs :func:`~concsignals._inline.call` (the begin gate, the
   call, its outcome) in its own copy of the sender's context, in which
   ``executors.on_pools`` names the pools the call runs on: that mark is how
   a nested send knows it runs on a worker of the pool it sends through.
2. :func:`wait`: wait until every call has settled (see ``_send.py``), until
   the deadline.  Where the calls run depends on who the sender is to the
   pool (:func:`worker_of`), never on how long the pool takes:

   * *a worker of the pool* (a nested send, or a thread on which concsignals
     already ran a job of that pool): it may be the only worker, waiting on
     itself.  It first runs, in its own thread, every job no worker has
     taken (``Future.cancel()`` succeeds only for those), then waits.
   * *no worker of any user's pool* (the main thread, a worker of the pool
     concsignals owns): it only waits; every call runs on the pool, however
     slow the pool is to take it.
   * *unknown* (any other thread: work a user put on the pool directly, on
     a worker concsignals never ran a job on, is one): it waits, and runs
     queued calls itself only once none of its calls began for
     :data:`PATIENCE` seconds.  This is the one case left to time, because
     it cannot be told apart: a user's job on a saturated pool, sending
     through that pool, would wait for ever, and a hang is worse than a
     receiver run on the sender's thread.  Once concsignals ran one job on a
     thread of that pool, the thread is known and no longer waits.
3. Once the send is closed, the jobs not begun are cancelled where still
   queued, and refused by the gate where a worker already took them; the
   sender waits only for calls that began.  At the deadline it waits for
   nothing: a thread cannot be stopped, and its call is reported timed out.
   If the sender itself is interrupted (``KeyboardInterrupt``), it closes
   the send and waits for the calls still running, unless every call has
   already settled (it may have seen them settle just before).

Nothing here reads a private attribute of a pool or a thread: what a thread
is to a pool is learned from concsignals' own jobs (step 1), its marks, and
the owned pool's initializer.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from . import executors
from ._inline import call
from ._send import NOT_BEGUN, Send, Why

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

#: Seconds a sender not known to be a worker of the pool, nor known not to be
#: one, waits without any call of its send beginning before it runs queued
#: calls itself (see the module docstring, step 2).
PATIENCE = 0.05

#: What this thread learned from the jobs concsignals ran on it: ``pools``,
#: a weak set of the executors it ran them for as a worker.  Only the thread
#: itself reads or writes its own: no lock.
learned = threading.local()

Job = tuple[int, "Future[Any]", contextvars.Context]
#: What a job runs: call ``i`` of a send, through the gate; never raises.
Call = Callable[[Send, int], None]


def start(
    send: Send, executor: Executor, slots: range | list[int], job: Call = call
) -> list[Job]:
    """Submit one job per slot, in order (``job``: what runs the call there,
    through the gate); a slot whose submit fails gets the executor's error
    as its outcome.  A bounded :class:`~concsignals.Serial` waits for room
    until the send's deadline."""
    jobs: list[Job] = []
    me = threading.get_ident()
    token = executors.on_pools.set((*executors.on_pools.get(), executor))
    until = getattr(executor, "submit_until", None)
    try:
        for i in slots:
            ctx = contextvars.copy_context()
            try:
                if until is not None:
                    fut = until(
                        send.deadline, ctx.run, work, executor, me, send, i, job
                    )
                else:
                    fut = executor.submit(ctx.run, work, executor, me, send, i, job)
            except Exception as err:  # shut down, broken, full: this slot's outcome
                send.refuse(i, err)
                continue
            send.hand_over(i, fut)
            jobs.append((i, fut, ctx))
    except BaseException:
        send.close(Why.CANCELLED)
        raise
    finally:
        executors.on_pools.reset(token)
    return jobs


def work(pool: Executor, submitter: int, send: Send, i: int, job: Call = call) -> None:
    """The job of call ``i`` on ``pool``: note this thread as one of
    ``pool``'s workers, then make the call.  A job run by the submitting
    thread itself (an executor that runs jobs in the caller) notes nothing."""
    if submitter != threading.get_ident():
        pools = getattr(learned, "pools", None)
        if pools is None:
            pools = learned.pools = weakref.WeakSet()
        if pool not in pools:
            with contextlib.suppress(TypeError):  # no weak reference: unknown
                pools.add(pool)
    job(send, i)


def worker_of(executor: Executor) -> bool | None:
    """Whether this thread is a worker of ``executor`` (``None``: unknown).

    True: concsignals' mark says so (``executors.running_on``), or a job of
    concsignals ran on this thread for ``executor``.  A target of
    concsignals' own (a Serial, an event loop: ``_targets.py``) knows.
    False: the main thread, and the workers of the pool concsignals owns
    (for any other executor): they are no worker of a user's pool.
    """
    if executors.running_on(executor):
        return True
    runs_here = getattr(executor, "runs_here", None)
    if runs_here is not None:  # a target of concsignals' own: it knows
        return bool(runs_here())
    pools = getattr(learned, "pools", None)
    if pools is not None and executor in pools:
        return True
    if threading.current_thread() is threading.main_thread():
        return False
    if executors.on_owned_worker() and not executors.is_owned(executor):
        return False
    return None


def steal(send: Send, jobs: list[Job]) -> None:
    """Run here, in order, every job no worker has taken yet."""
    for i, fut, ctx in jobs:
        if send.closed:
            return
        if fut.cancel():
            ctx.run(call, send, i)


def run(send: Send, executor: Executor) -> None:
    """Run ``send`` on an in-process executor; outcomes land in ``send``."""
    done = threading.Lock()
    done.acquire()
    send.on_settled = done.release
    try:
        jobs = start(send, executor, range(len(send.entries)))
        mine = worker_of(executor)
        if mine:
            steal(send, jobs)
        wait(send, done, jobs, PATIENCE if mine is None else None)
    except BaseException:
        send.close(Why.CANCELLED)
        # A call still runs: it ends first.  If every call has settled,
        # ``done`` may already be taken (by ``wait``, just before this
        # interruption): waiting on it again would wait for ever.
        if send.on_settled is not None:
            acquire_until(done, send.deadline)
        raise


def wait(
    send: Send, done: threading.Lock, jobs: list[Job], patience: float | None
) -> None:
    """Until every call settled, or the deadline (then close the send).

    ``patience``: seconds without any call beginning after which this
    sender runs queued calls itself; ``None``: never.
    """
    if patience is None:
        if not acquire_until(done, send.deadline):
            send.close(Why.DEADLINE)
        return
    began = -1
    while True:
        slice_ = patience
        if send.deadline is not None:
            left = send.deadline - monotonic()
            if left <= 0:
                break
            slice_ = min(left, patience)
        if done.acquire(timeout=slice_):
            return
        if not send.closed:
            now = sum(s is not NOT_BEGUN for s in send.state)
            if now == began:  # no progress: the pool may never take them
                steal(send, jobs)
            began = now
    send.close(Why.DEADLINE)


def acquire_until(done: threading.Lock, deadline: float | None) -> bool:
    if deadline is None:
        return done.acquire()
    return done.acquire(timeout=max(0.0, deadline - monotonic()))

"""In-process executors (thread pools): one job per call, run as it is.

Shape of a send on a thread pool
--------------------------------
1. :func:`start`: submit one job per entry, in connection order.  Each job
   runs :func:`~concsignals._inline.call` (the begin gate, the call, its
   outcome) in its own copy of the sender's context, in which
   ``executors.on_pools`` names the pools the call runs on: that mark is how
   a nested send knows it runs on a worker of the pool it sends through.
2. :func:`wait`: wait until every call has settled (see ``_send.py``), until
   the deadline.  A sender that runs on the pool (a nested send) first runs,
   in its own thread, every job no worker has taken (``Future.cancel()``
   succeeds only for those): it may be the only worker, waiting on itself.
   A sender the marks cannot vouch for (work a user put on the pool
   directly) falls back on the same stealing when no call of its send began
   for :data:`PATIENCE` seconds, so it always makes progress.
3. Once the send is closed, the jobs not begun are cancelled where still
   queued, and refused by the gate where a worker already took them; the
   sender waits only for calls that began.  At the deadline it waits for
   nothing: a thread cannot be stopped, and its call is reported timed out.
"""

from __future__ import annotations

import contextvars
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any

from . import executors
from ._inline import call
from ._send import NOT_BEGUN, Send, Why

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

#: Seconds a sender waits without any call of its send beginning before it
#: runs queued calls itself (the fallback for pools it cannot see into).
PATIENCE = 0.05

Job = tuple[int, "Future[Any]", contextvars.Context]


def start(send: Send, executor: Executor, slots: range | list[int]) -> list[Job]:
    """Submit one job per slot, in order; a slot whose submit fails gets the
    executor's error as its outcome."""
    jobs: list[Job] = []
    base = executors.on_pools.get()
    signal = send.signal
    current: Executor | None = None
    token = None
    try:
        for i in slots:
            ex = signal._executor_for(send.entries[i], executor) or executor
            if ex is not current:
                if token is not None:
                    executors.on_pools.reset(token)
                token = executors.on_pools.set((*base, ex))
                current = ex
            ctx = contextvars.copy_context()
            try:
                fut = ex.submit(ctx.run, call, send, i)
            except Exception as err:  # shut down, broken: this slot's outcome
                refused(send, i, err)
                continue
            send.hand_over(i, fut)
            jobs.append((i, fut, ctx))
    except BaseException:
        send.close(Why.CANCELLED)
        raise
    finally:
        if token is not None:
            executors.on_pools.reset(token)
    return jobs


def refused(send: Send, i: int, err: Exception) -> None:
    """The executor refused call ``i``: that is its outcome, if it may begin."""
    if send.begin(i) is not None:
        send.end(i, err=err)


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
        if executors.running_on(executor):
            steal(send, jobs)
        wait(send, done, jobs)
    except BaseException:
        send.close(Why.CANCELLED)
        acquire_until(done, send.deadline)  # every begun call ends first
        raise


def wait(send: Send, done: threading.Lock, jobs: list[Job]) -> None:
    """Until every call settled, or the deadline (then close the send)."""
    began = -1
    while True:
        slice_ = PATIENCE
        if send.deadline is not None:
            left = send.deadline - monotonic()
            if left <= 0:
                break
            slice_ = min(left, PATIENCE)
        if done.acquire(timeout=slice_):
            return
        if not send.closed:
            now = sum(s is not NOT_BEGUN for s in send.state)
            if now == began:  # no progress: the pool may never take them
                steal(send, jobs)
            began = now
    send.close(Why.DEADLINE)


def acquire_until(done: threading.Lock, deadline: float | None) -> None:
    if deadline is None:
        done.acquire()
    else:
        done.acquire(timeout=max(0.0, deadline - monotonic()))

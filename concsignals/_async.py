"""Asyncio: ``asend``, and a sync ``send`` that has async receivers.

A send here is the same :class:`~concsignals._send.Send` as everywhere: the
same gate, outcomes and assembly.  What this module adds is *where* calls run
and how the loop waits:

* calls begin in connection order, sync and async alike: a starter task
  (:func:`start`) hands them over one after another; an async receiver is a
  task on the running loop that first waits (:meth:`Waiter.turn`, woken by
  ``Send.on_begin``) until every earlier call has begun, then passes the
  begin gate; a sync call after an async one is handed over only once every
  earlier async call has begun;
* a sync receiver must not block the loop.  On an in-process executor it is
  one job there (``_threads.start``); on an out-of-process one it is pickled
  and handed over (``_pickled``); without one (or when this thread already
  works for that executor: a nested send), each run of consecutive sync
  receivers is one job given to :meth:`Signal._offload_sync` (default: the
  loop's default executor).  An offload that is refused (a shut-down default
  executor) or fails puts its error in each of its slots
  (``Send.refuse``).  Connections with options (``via``, ``wait``,
  ``phase``) take :func:`run_directed` (see ``_deliver.py``).

Waiting: the loop awaits one future that the send resolves when every slot
has settled (``Send.on_settled``, from any thread).  When the send closes (a
failure in ``asend``, the awaiting task cancelled), its tasks are cancelled
(``Send.on_close``), the calls it handed over are cancelled where their
executor still can (``Send.hand_over``), the gate refuses whatever has not
begun, and the send waits for every call that began.  At the deadline it
waits for nothing: running threads are abandoned, and running tasks are
cancelled, given one step to end, and abandoned too (held in
:data:`_in_flight` until they end; monitors hear their outcome); each is
reported timed out.  A send whose in-process jobs make no progress for
``_threads.PATIENCE`` (queued behind the very work that waits for them: a
user's job on a saturated pool) runs the jobs no worker took itself: in its
own thread on a private loop, on the loop's default executor otherwise.

A sync ``send`` with async receivers, from a thread with no running loop,
runs through :meth:`Signal._run_coroutine` (default: a private loop).
Without an executor it *walks* the entries in connection order: a sync
receiver is called right there, an async one becomes a task stepped to its
first suspension before the walk goes on.  A sync receiver called by the walk
may itself make such a send: it runs on a fresh private loop in a helper
thread.  From a thread whose own loop is running, such a ``send`` raises
``RuntimeError``: it would block that loop.

Every task is held by its send until it ends (and in :data:`_in_flight` if
the send gives up on it); a task never ends with an exception (its outcome
is in the send), so nothing is logged as "never retrieved".  An offloaded job
that is a task is held in :data:`_in_flight` too.  ``set.add``/``discard``
are atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor
from time import monotonic
from types import CoroutineType
from typing import Any, TypeVar

from . import _inline, _pickled, _threads, executors
from ._carriers import exit_all
from ._send import NOT_BEGUN, Responses, Send, Why, describe

T = TypeVar("T")

#: Every task and future a send started, until it is done.
_in_flight: set[asyncio.Future[Any]] = set()


def hold(fut: asyncio.Future[Any]) -> None:
    """Keep ``fut`` alive until done, then mark its exception as retrieved."""
    _in_flight.add(fut)
    fut.add_done_callback(_release)


def _release(fut: asyncio.Future[Any]) -> None:
    _in_flight.discard(fut)
    if not fut.cancelled():
        fut.exception()


async def call_async(send: Send, i: int, waiter: Waiter | None = None) -> None:
    """A task's body: its turn (``waiter``: once every earlier call began),
    the gate, the call, its outcome.  Never raises."""
    if waiter is not None:
        try:
            await waiter.turn(send, range(i))
        except asyncio.CancelledError:  # never began: the send is closing
            send.close(Why.CANCELLED)
            return
    r = send.begin(i)
    if r is None:
        return
    watch = send.watch
    entered = None if watch is None else watch.enter(i, r)  # monitor: call began
    try:
        awaitable = r(signal=send.signal, sender=send.sender, **send.named)
        if type(awaitable) is not CoroutineType and not inspect.isawaitable(awaitable):
            raise TypeError(
                f"async receiver {r!r} returned {awaitable!r}, which cannot be awaited"
            )
        value = await awaitable
    except BaseException as err:
        if entered is not None:
            exit_all(entered, err)
        send.end(i, err=err)
    else:
        if entered is not None:
            exit_all(entered, None)
        send.end(i, value)


def call_in_thread(send: Send, i: int) -> None:
    """A job's body for an async receiver on a thread (a pool's, a Serial's,
    the sender's for ``INLINE``): its call to its end here, on a loop of its
    own.  Never raises: a loop already running here is the slot's error."""
    coro = call_async(send, i)
    try:
        asyncio.run(coro)
    except Exception as err:
        coro.close()
        send.refuse(i, err)


def run_each(send: Send, work: list[tuple[int, contextvars.Context]]) -> None:
    """A worker's job: the sync receivers of one send, in order, each in its
    own copy of the sender's context."""
    for i, ctx in work:
        if send.closed:
            return
        ctx.run(_inline.call, send, i)


def offload_default(job: Callable[[], T]) -> Awaitable[T]:
    """:meth:`Signal._offload_sync`'s default: the loop's default executor."""
    return asyncio.get_running_loop().run_in_executor(None, job)


class Waiter:
    """The loop's side of one send: its tasks and the future it awaits."""

    __slots__ = (
        "jobs",
        "loop",
        "private",
        "settled",
        "starter",
        "tasks",
        "thread",
        "turns",
    )

    def __init__(self, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.private = self.loop is getattr(_local, "loop", None)
        self.settled: asyncio.Future[None] = self.loop.create_future()
        self.tasks: list[asyncio.Task[None]] = []
        #: Jobs handed to in-process executors (``_threads.start``).
        self.jobs: list[_threads.Job] = []
        #: Futures woken when a slot begins (see :meth:`turn`).
        self.turns: list[asyncio.Future[None]] = []
        #: The task handing the calls over (``start``), if any.
        self.starter: asyncio.Task[None] | None = None
        send.on_settled = self.wake
        send.on_close = self.stop

    def _soon(self, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self.thread:
            fn()  # on the loop, in a step of one of our tasks: no wake-up needed
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: too late
            self.loop.call_soon_threadsafe(fn)

    def wake(self) -> None:  # any thread
        self._soon(self._resolve)

    def _resolve(self) -> None:
        if not self.settled.done():
            self.settled.set_result(None)

    def stop(self) -> None:  # any thread
        self._soon(self._cancel_tasks)

    def rearm(self, send: Send) -> None:
        """After the caller was cancelled: a fresh future to wait on."""
        if self.settled.cancelled():
            self.settled = self.loop.create_future()
            if send.unsettled == 0:
                self._resolve()

    def _cancel_tasks(self) -> None:
        for task in self.tasks:
            task.cancel()
        self._next_turn()  # the closed send began its last slot

    # -- begins in connection order ---------------------------------------------

    def began(self) -> None:  # any thread: ``Send.on_begin``
        self._soon(self._next_turn)

    def _next_turn(self) -> None:
        turns, self.turns = self.turns, []
        for fut in turns:
            if not fut.done():
                fut.set_result(None)

    async def turn(self, send: Send, slots: Sequence[int]) -> None:
        """Until every slot in ``slots`` has left ``NOT_BEGUN`` (begun,
        skipped, or closed).  Each list item is read atomically; a slot that
        begins after the check wakes :meth:`began`, on this loop."""
        state = send.state
        while any(state[j] is NOT_BEGUN for j in slots):
            fut = self.loop.create_future()
            self.turns.append(fut)
            await fut

    def task(self, send: Send, i: int, ordered: bool) -> None:
        # Held by ``tasks``: the awaiting coroutine holds this waiter until
        # every task ended (``run`` hands any it gives up on to ``hold``).
        coro = call_async(send, i, self if ordered else None)
        self.tasks.append(self.loop.create_task(coro))

    # -- waiting ------------------------------------------------------------------

    async def wait(self, send: Send) -> None:
        """Until every slot settled; at the deadline, close and let calls go."""
        began = -1
        while not self.settled.done():
            left = None if send.deadline is None else send.deadline - monotonic()
            if left is not None and left <= 0:
                break
            # Jobs may be queued behind this very thread's work; the starter
            # may still add some.
            may_steal = self.jobs or (self.starter and not self.starter.done())
            patience = _threads.PATIENCE if may_steal and not send.closed else None
            if patience is not None and (left is None or patience < left):
                left = patience
            await asyncio.wait({self.settled}, timeout=left)
            if not self.settled.done() and patience is not None:
                now = sum(s is not NOT_BEGUN for s in send.state)
                if now == began:  # no progress: the pool may never take them
                    self.steal(send)
                began = now
        if not self.settled.done():
            # The deadline: calls not begun never begin, handed-over ones the
            # executor can still cancel are; running threads and tasks are
            # abandoned (cancelled, left to end, held: see ``run``).
            send.close(Why.DEADLINE, everything=True)
            self._cancel_tasks()
            await asyncio.sleep(0)  # a task that ends when cancelled ends now

    def steal(self, send: Send) -> None:
        """Run the in-process jobs no worker took (``_threads.steal``): here,
        on a private loop (its thread waits for this send anyway), else on
        the loop's default executor (the loop must not block)."""
        jobs = self.jobs
        if self.private:
            _threads.steal(send, jobs)
            return
        try:
            hold(
                asyncio.ensure_future(
                    self.loop.run_in_executor(None, _threads.steal, send, jobs)
                )
            )
        except RuntimeError:  # the default executor is shut down
            _threads.steal(send, jobs)


async def start(send: Send, waiter: Waiter, executor: Executor | None) -> None:
    """Hand every call of ``send`` over, in connection order, without waiting
    for them to end (see the module docstring).  A task for every async
    receiver, which first waits until every earlier call began; a sync call
    after an async one is handed over once every earlier async call began.
    Runs as a task beside :meth:`Waiter.wait`."""
    try:
        await hand_over(send, waiter, executor)
    except BaseException:
        send.close(Why.CANCELLED)
        raise


async def hand_over(send: Send, waiter: Waiter, executor: Executor | None) -> None:
    in_order = send.signal._begins_in_order  # else: all together, as Django
    ordered = in_order and sync_first(send)
    if ordered or not all(e.is_async for e in send.entries):
        send.on_begin = waiter.began  # some call waits for others to begin
    where = [None if e.is_async else executor for e in send.entries]
    # Pickled before anything begins: ``send`` raises a pickling error first.
    pickled: dict[Executor, list[int]] = {}
    for i, ex in enumerate(where):
        if ex is not None and not executors.in_process(ex):
            pickled.setdefault(ex, []).append(i)
    blobs = {
        ex: _pickled.pickle_calls(send, ex, slots) for ex, slots in pickled.items()
    }
    offload: list[tuple[int, contextvars.Context]] = []
    tasks: list[int] = []
    for i, entry in enumerate(send.entries):
        if send.closed:
            return
        if entry.is_async:
            if offload and in_order:  # the sync calls before it go first
                offload_job(send, offload)
                offload = []
            waiter.task(send, i, ordered)
            tasks.append(i)
            continue
        if in_order and tasks and not offload:
            await waiter.turn(send, tasks)
        if send.closed:
            return
        ex = where[i]
        if ex is not None and ex in blobs:
            _pickled.hand_off_pickled(send, ex, [i], blobs[ex])
        elif ex is None or executors.running_on(ex):
            offload.append((i, contextvars.copy_context()))
        else:
            waiter.jobs += _threads.start(send, ex, [i])
    if offload:
        offload_job(send, offload)


def sync_first(send: Send) -> bool:
    """Whether a sync call comes before an async one: only then must a task
    wait for earlier calls to begin (tasks begin in the order created)."""
    sync = False
    for entry in send.entries:
        if entry.is_async and sync:
            return True
        sync = sync or not entry.is_async
    return False


def offload_job(send: Send, offload: list[tuple[int, contextvars.Context]]) -> None:
    """Hand ``offload``'s sync calls, as one job, to ``Signal._offload_sync``.
    If it refuses, or the job fails, the calls that did not begin get the
    error as their outcome."""
    try:
        job = asyncio.ensure_future(
            send.signal._offload_sync(lambda: run_each(send, offload))
        )
    except Exception as err:  # e.g. the loop's default executor is shut down
        for i, _ in offload:
            send.refuse(i, err)
        return
    job.add_done_callback(lambda f: job_ended(send, offload, f))
    if isinstance(job, asyncio.Task):
        hold(job)  # the loop holds tasks only weakly
    else:
        # An executor's job: the executor holds it, and the send waits for
        # its calls, not for it.  The loop may close before it hears that
        # the job ended (``send``'s private loop): nothing must wait on it.
        job.add_done_callback(_release)


def job_ended(
    send: Send, offload: list[tuple[int, contextvars.Context]], job: asyncio.Future[Any]
) -> None:
    """A job of sync calls ended: if it failed, its calls not begun failed."""
    err = None if job.cancelled() else job.exception()
    if job.cancelled():
        err = RuntimeError(
            f"the job running {send.signal!r}'s sync receivers was cancelled"
        )
    if isinstance(err, Exception):
        for i, _ in offload:
            send.refuse(i, err)


async def walk(send: Send, waiter: Waiter) -> None:
    """Begin every call in connection order: sync ones here, to their end."""
    for i, entry in enumerate(send.entries):
        if send.closed:
            return
        if entry.is_async:
            waiter.task(send, i, False)
            await asyncio.sleep(0)  # the task begins
        else:
            _inline.call(send, i)


async def run(
    send: Send, executor: Executor | None, walking: bool = False
) -> Responses:
    """Run ``send`` on the running loop; results in connection order."""
    waiter = Waiter(send)
    starter = None
    try:
        if walking:
            await walk(send, waiter)
        else:
            starter = waiter.loop.create_task(start(send, waiter, executor))
            waiter.starter = starter
            waiter.tasks.append(starter)  # cancelled, like the calls, at close
        await waiter.wait(send)
        if starter is not None and starter.done() and not starter.cancelled():
            starter.result()  # what ``start`` raised (it closed the send)
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
                hold(task)  # given up on (the deadline): held until it ends
    return send.assemble()


# -- a sync send with async receivers -------------------------------------------

_local = threading.local()  # .loop: the private loop this thread is running


Runner = Callable[[Send, "Executor | None", bool], Coroutine[Any, Any, Responses]]


def send_from_sync(
    send: Send, executor: Executor | None, runner: Runner | None = None
) -> Responses:
    """A sync send with async receivers: ``runner`` (default :func:`run`)
    via ``signal._run_coroutine``."""
    refuse_in_running_loop(send)
    if executor is not None and executors.running_on(executor):
        executor = None
    walking = executor is None
    go = run if runner is None else runner

    def make() -> Coroutine[Any, Any, Responses]:
        return go(send, executor, walking)

    return send.signal._run_coroutine(make)


def run_private(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """:meth:`Signal._run_coroutine`'s default: a private loop for one send.

    Inside a receiver that a private loop of this thread is running, the new
    loop runs on a helper thread (a loop cannot run inside another).
    """
    if running_loop() is not None:
        out: list[Any] = []

        def helper() -> None:
            try:
                out.append((True, run_private(make)))
            except BaseException as err:  # handed back to the caller
                out.append((False, err))

        thread = threading.Thread(target=helper, name="concsignals-send")
        thread.start()
        thread.join()
        ok, value = out[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
    loop = asyncio.new_event_loop()
    _local.loop = loop
    try:
        return loop.run_until_complete(make())
    finally:
        _local.loop = None
        close(loop)


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def refuse_in_running_loop(send: Send) -> None:
    loop = running_loop()
    if loop is None or loop is getattr(_local, "loop", None):
        return
    name = "send_robust" if send.robust else "send"
    async_receiver = next(
        (r for e in send.entries if e.is_async and (r := e.get()) is not None), None
    )
    if async_receiver is None:  # died since the send chose this path: no
        return  # coroutine will run, nothing can block the loop
    raise RuntimeError(
        f"{send.signal!r}.{name}() was called from a thread whose event loop is "
        f"running, and async receiver {describe(async_receiver)} is "
        f"connected: a sync send would block the loop.  Use "
        f"'await signal.a{name}(...)' instead."
    )


def close(loop: asyncio.AbstractEventLoop) -> None:
    """Close a private loop; end any task still on it first."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()

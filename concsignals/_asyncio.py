"""Async receivers: ``asend``/``asend_robust``, and async receivers from ``send``.

Design
------
A send is a row of *slots*, one per entry of the snapshot it read, kept in
connection order.  Each slot ends with an outcome: a result, an exception, a
timeout, or "skipped" (the receiver was disconnected, or its weak target died,
before its call began).  Results are assembled from the slots, so they are in
connection order whatever order the receivers finish in.

``asend`` starts every slot before it waits for any, walking the entries in
connection order:

* an async receiver becomes a task on the running loop.  Tasks begin in the
  order they are created, so async receivers begin in connection order and
  then run concurrently;
* a sync receiver must not block the loop.  With an executor (the signal's or
  the view's), each sync receiver is one job on it, submitted in order: called
  as it is, in a copy of the sender's context, on an in-process executor;
  pickled at hand-off for any other (see ``executors.py``; every call is
  pickled before any receiver starts).  Without one, all the sync receivers
  of the send run one after another, in connection order, in one job on the
  loop's default executor (a worker thread): as ``send`` would run them, just
  not on the loop's thread.  The same happens when this thread is itself a
  worker of the executor (a nested send): it might wait for a free worker
  forever.  Each sync receiver has a ``concurrent.futures.Future`` of its own,
  so one that has not begun can be cancelled from the loop (``cancel`` fails
  once it runs).

Where the disconnect check is
-----------------------------
``entry.get()`` is called by the code that makes the call, immediately before
it: in the task's first step for an async receiver, and in the worker thread
for a sync one.  A receiver disconnected while its task or job was queued is
therefore skipped, as in an inline send.  (Out of process, the check is at
hand-off, as for ``send``.)

Failures, deadlines, cancellation
---------------------------------
``asend`` waits until the first failure.  It then cancels every slot not yet
finished (tasks are cancelled; sync jobs that have not begun are cancelled; a
sync receiver already running in a thread cannot be stopped and is waited for),
waits for them, and raises the failure of the earliest slot in connection
order; later failures are attached to it as notes.  ``asend_robust`` waits for
every slot and returns each ``Exception`` in its slot.  A ``BaseException``
that is not an ``Exception`` ends either one as a failure ends ``asend``, and is
raised, never put in a slot.

At the deadline (``signal.using(..., timeout=)``) the unfinished slots are
cancelled the same way, except that running threads are not waited for: their
results are dropped.  Each such slot holds a ``TimeoutError`` (robust) or the
send raises ``TimeoutError``.

If the task awaiting ``asend`` is cancelled, the receiver tasks it started are
cancelled and awaited before the ``CancelledError`` propagates; sync jobs that
have not begun are cancelled.  Every task and future is held in ``_in_flight``
until it is done, and its exception is marked as retrieved when it finishes,
so nothing is garbage-collected while running and nothing is logged as "never
retrieved" when a send gives up on it.

Sync ``send`` with async receivers
----------------------------------
From a thread with no running event loop, ``send`` runs the slots on a private
loop made for that one send.  Without an executor (or as a nested send on a
worker of it) it walks the entries in connection order in the caller's
thread: a sync receiver is called inline (the loop is not running while it is,
so it may itself send anything), and an async receiver becomes a task that is
run up to its first suspension before the walk goes on, so calls begin in
connection order.  A deadline is checked before and after each inline call,
as the inline ``send`` does, and bounds the wait for the tasks.  With an
executor, the send is ``asend`` run on the private loop.  From a thread whose
loop is running, ``send`` raises ``RuntimeError``: it would block that loop,
and it cannot await; the caller must use ``asend``.

Threads
-------
Everything here runs on one loop's thread except the sync jobs.  A slot's
``receiver`` is written by the worker before its call and read by the loop
after the slot's future is done: the future's completion orders the two.
``_in_flight`` is shared by every loop in the process; ``set.add`` and
``set.discard`` are atomic under the GIL and internally locked without it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import pickle
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from concurrent.futures import Future as ThreadFuture
from typing import TYPE_CHECKING, Any

from . import _dispatch, executors, monitoring
from ._dispatch import describe, log_robust_failure
from ._snapshot import Entry, Receiver

if TYPE_CHECKING:
    from ._signal import Signal

Responses = list[tuple[Receiver, Any]]

#: The marker asgiref (and ``asyncio.coroutine`` before it) sets on functions
#: that return awaitables; Python 3.12+ ``inspect.markcoroutinefunction`` sets
#: its own, which ``inspect.iscoroutinefunction`` already reads.
_ASYNCIO_MARK = getattr(asyncio.coroutines, "_is_coroutine", None)

#: What a slot holds when its receiver was gone before its call began.
_SKIPPED: Any = object()

#: Every task and future a send started, until it is done (see the docstring).
_in_flight: set[asyncio.Future[Any]] = set()


def is_async_receiver(receiver: object) -> bool:
    """Whether calling ``receiver`` returns an awaitable to be awaited.

    Coroutine functions, bound async methods, ``functools.partial`` of these,
    objects marked with ``inspect.markcoroutinefunction`` (or asgiref's
    ``markcoroutinefunction`` on Python 3.11), and callable objects whose
    ``__call__`` is ``async def``.  Called once, at connect.
    """
    obj = receiver
    while True:
        if inspect.iscoroutinefunction(obj) or _has_asyncio_mark(obj):
            return True
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif inspect.ismethod(obj):
            obj = obj.__func__
        else:
            break
    if inspect.isfunction(obj):
        return False
    call = inspect.getattr_static(type(obj), "__call__", None)
    if not inspect.isfunction(call):
        return False  # a builtin or C slot: sync
    return inspect.iscoroutinefunction(call) or _has_asyncio_mark(call)


def _has_asyncio_mark(obj: object) -> bool:
    return _ASYNCIO_MARK is not None and (
        getattr(obj, "_is_coroutine", None) is _ASYNCIO_MARK
    )


# -- holding tasks and futures -------------------------------------------------


def _hold(fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """Keep ``fut`` alive until done, then mark its exception as retrieved."""
    _in_flight.add(fut)
    fut.add_done_callback(_release)
    return fut


def _release(fut: asyncio.Future[Any]) -> None:
    _in_flight.discard(fut)
    if not fut.cancelled():
        fut.exception()  # the send reports it, or has chosen not to


# -- slots -----------------------------------------------------------------------


class _Slot:
    """One entry's place in a send, and what became of its call.

    ``receiver`` is the object ``entry.get()`` returned, set just before the
    call begins; ``None`` while it has not.  The outcome is in ``future`` (a
    task, or the loop's view of a sync job), or, where the send already knows
    it (a sync receiver called inline, a call that could not be pickled, a job
    that finished right at the deadline), in ``value``/``error``.
    """

    __slots__ = (
        "entry",
        "error",
        "future",
        "job",
        "late",
        "receiver",
        "started",
        "stopped",
        "timed_out",
        "value",
    )

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.receiver: Receiver | None = None
        self.future: asyncio.Future[Any] | None = None
        #: A sync receiver's job, which can be cancelled until it begins.
        self.job: ThreadFuture[Any] | None = None
        self.value: Any = _SKIPPED
        self.error: BaseException | None = None
        #: Cancelled by the send after another receiver failed.
        self.stopped = False
        #: Unfinished at the deadline; ``started``: its call had begun.
        self.timed_out = False
        self.started = False
        #: What an inline call that overran the deadline raised.
        self.late: BaseException | None = None

    def failure(self) -> BaseException | None:
        """The exception the call raised, if it finished by raising one."""
        fut = self.future
        if fut is None:
            return self.error
        if fut.done() and not fut.cancelled():
            return fut.exception()
        return None

    def stop(self) -> None:
        """Cancel the call if it has not begun; a task, even if it has."""
        self.stopped = True
        if self.job is not None:
            self.job.cancel()  # fails if running: then it is waited for
        elif self.future is not None:
            self.future.cancel()

    def time_out(self) -> None:
        """The deadline passed: keep what finished, cancel the rest."""
        job, fut = self.job, self.future
        assert fut is not None
        if job is not None and not job.cancel() and job.done():
            # Finished in its thread; the loop had not heard yet.
            self.future = None
            self.error = job.exception()
            if self.error is None:
                self.value = job.result()
        else:
            self.timed_out = True
            self.started = self.receiver is not None if job is None else job.running()
        fut.cancel()


async def _call_async(
    signal: Signal, slot: _Slot, sender: object, named: dict[str, Any]
) -> Any:
    """A task's body: check, call and await one async receiver."""
    r = slot.entry.get()  # the disconnect check, right before the call
    if r is None:
        return _SKIPPED
    slot.receiver = r
    return await monitoring.ainvoke(
        r, lambda: _await(r, signal, sender, named)
    )  # monitor: call began/ended


async def _await(
    r: Receiver, signal: Signal, sender: object, named: dict[str, Any]
) -> Any:
    awaitable = r(signal=signal, sender=sender, **named)
    if not inspect.isawaitable(awaitable):
        raise TypeError(
            f"async receiver {r!r} returned {awaitable!r}, which cannot be awaited"
        )
    return await awaitable


def _call_sync(
    signal: Signal, slot: _Slot, sender: object, named: dict[str, Any]
) -> Any:
    """Check and call one sync receiver, in the thread that runs it."""
    r = slot.entry.get()  # the disconnect check, right before the call
    if r is None:
        return _SKIPPED
    slot.receiver = r
    return monitoring.invoke(r, signal, sender, named)  # monitor: call began/ended


def _call_on_pool(
    chain: tuple[Executor, ...],
    signal: Signal,
    slot: _Slot,
    sender: object,
    named: dict[str, Any],
) -> Any:
    """``_call_sync`` on an in-process executor's worker, in its own context.

    Records the pools this call runs on (``executors.on_pools``), so a send the
    receiver makes through one of them runs its calls itself, as ``_dispatch``
    does for its own calls: a nested send through a saturated pool finishes.
    """
    executors.on_pools.set(chain)
    return _call_sync(signal, slot, sender, named)


def _run_in_order(
    work: list[tuple[ThreadFuture[Any], contextvars.Context, _Slot]],
    signal: Signal,
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> None:
    """A worker thread's job: the sync receivers of one send, one by one.

    Each result or exception goes to the receiver's own future.  After a
    failure (or any ``BaseException``) the rest are cancelled, as in ``send``.
    """
    for i, (job, ctx, slot) in enumerate(work):
        if not job.set_running_or_notify_cancel():
            continue
        try:
            result = ctx.run(_call_sync, signal, slot, sender, named)
        except BaseException as err:
            job.set_exception(err)
            if not robust or not isinstance(err, Exception):
                for later, _, _ in work[i + 1 :]:
                    later.cancel()
                return
        else:
            job.set_result(result)


# -- starting a send -------------------------------------------------------------


def _start(
    loop: asyncio.AbstractEventLoop,
    slots: list[_Slot],
    signal: Signal,
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    robust: bool,
) -> None:
    """Start every receiver of the send, in connection order, without waiting.

    A sync receiver goes to ``executor``: called as it is on an in-process
    one, pickled for any other (see ``executors.py``).  Without one, or if this
    thread is itself running on it (nested: it may have no free worker), the
    sync receivers share one job on the loop's default executor.
    """
    if executor is not None and executors.running_on(executor):
        executor = None
    pickled = executor is not None and not executors.in_process(executor)
    blobs = (
        _pickle_calls(slots, signal, sender, named, executor, robust) if pickled else {}
    )
    chain = (*executors.on_pools.get(), executor) if executor is not None else ()
    in_order: list[tuple[ThreadFuture[Any], contextvars.Context, _Slot]] = []
    for slot in slots:
        if slot.entry.is_async:
            task = loop.create_task(_call_async(signal, slot, sender, named))
            slot.future = _hold(task)
            continue
        if executor is None:
            slot.job = ThreadFuture()
            in_order.append((slot.job, contextvars.copy_context(), slot))
        elif pickled:
            blob = blobs.get(slot)
            if blob is None:
                continue  # skipped, or its pickling error is in the slot
            nonce = next(executors.nonces)
            submit = functools.partial(
                executor.submit, executors.call_pickled, blob, blobs[None], nonce
            )
            slot.job = monitoring.hand_off(
                slot.receiver, submit
            )  # monitor: call handed off/ended
        else:
            ctx = contextvars.copy_context()
            args = (chain, signal, slot, sender, named)
            slot.job = executor.submit(ctx.run, _call_on_pool, *args)  # type: ignore[arg-type]
        slot.future = _hold(asyncio.wrap_future(slot.job, loop=loop))
    if in_order:
        runner = loop.run_in_executor(
            None, _run_in_order, in_order, signal, sender, named, robust
        )
        # Not held: the executor holds the job, and the send waits for the
        # receivers' own futures.  The loop may close before it hears that
        # the job ended (a private loop of ``send``): it must not wait for it.
        runner.add_done_callback(_release)


def _pickle_calls(
    slots: list[_Slot],
    signal: Signal,
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    robust: bool,
) -> dict[_Slot | None, bytes]:
    """Pickle every sync call for an out-of-process executor, before any starts.

    The disconnect check is here, at hand-off.  Returns each slot's pickled
    receiver, and the pickled arguments under ``None``.  A call that cannot be
    pickled raises (``asend``) or gets its error in its slot (robust).
    """
    assert executor is not None
    blobs: dict[_Slot | None, bytes] = {}
    args: bytes | pickle.PicklingError | None = None
    for slot in slots:
        if slot.entry.is_async:
            continue
        r = slot.receiver = slot.entry.get()
        if r is None:
            continue
        if args is None:
            try:
                args = blobs[None] = executors.dumps_args(signal, sender, named)
            except pickle.PicklingError as err:
                args = err
        try:
            blobs[slot] = _dispatch.dump_receiver(r, executor, args)
        except pickle.PicklingError as err:
            if not robust:
                raise
            slot.error = err
    return blobs


# -- waiting -----------------------------------------------------------------------


def _remaining(loop: asyncio.AbstractEventLoop, deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - loop.time())


async def _settle(
    slots: list[_Slot],
    loop: asyncio.AbstractEventLoop,
    deadline: float | None,
    robust: bool,
) -> None:
    """Wait until every slot has its outcome, stopping early on a failure
    (``asend``) or on a ``BaseException`` that is not an ``Exception`` (both).

    On return every slot is finished, stopped, or timed out, and no task of the
    send is running.  If the caller is cancelled, the tasks are cancelled and
    awaited first.
    """
    waiting = {s.future: s for s in slots if s.future is not None}
    stop = any(
        _stops(s.failure(), robust) or (s.timed_out and not robust) for s in slots
    )
    try:
        pending = set(waiting)
        while pending and not stop:
            done, pending = await asyncio.wait(
                pending,
                timeout=_remaining(loop, deadline),
                return_when=asyncio.FIRST_EXCEPTION,
            )
            if not done:
                break  # the deadline
            stop = any(_stops(waiting[f].failure(), robust) for f in done)
        if pending and stop:
            for fut in pending:
                waiting[fut].stop()
            _, pending = await asyncio.wait(pending, timeout=_remaining(loop, deadline))
        if pending:
            for fut in pending:
                waiting[fut].time_out()
            await _finish_tasks(pending)
    except asyncio.CancelledError:
        for fut in waiting:
            fut.cancel()
        await _finish_tasks(waiting)
        raise


def _stops(failure: BaseException | None, robust: bool) -> bool:
    """Whether a call that raised ``failure`` ends the send early."""
    if failure is None:
        return False
    return not robust or not isinstance(failure, Exception)


async def _finish_tasks(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Wait for the tasks among ``futures`` to end (threads are not waited for)."""
    tasks = [f for f in futures if isinstance(f, asyncio.Task) and not f.done()]
    if tasks:
        await asyncio.wait(tasks)


# -- assembling results -----------------------------------------------------------


def _assemble(
    slots: list[_Slot],
    signal: Signal,
    timeout: float | None,
    robust: bool,
) -> Responses:
    """The results in connection order, or the exception the send raises.

    A ``BaseException`` that is not an ``Exception`` is raised first.  Else
    ``asend`` raises the earliest failure in connection order, preferring a
    receiver's own failure to a timeout, with the others attached as notes;
    ``asend_robust`` logs each failure and returns it in its slot.
    """
    responses: Responses = []
    failures: list[tuple[Receiver, BaseException, bool]] = []
    for slot in slots:
        r, value, err = _outcome(slot, signal, timeout)
        if r is None:
            continue
        responses.append((r, value if err is None else err))
        if err is not None:
            failures.append((r, err, slot.timed_out))
    if not failures:
        return responses
    fatal = [f for f in failures if not isinstance(f[1], Exception)]
    if fatal:
        raise _with_notes(fatal[0][1], failures)
    if not robust:
        own = [f for f in failures if not f[2]]
        raise _with_notes((own or failures)[0][1], failures)
    for r, err, _ in failures:
        log_robust_failure(r, err)
    return responses


def _outcome(
    slot: _Slot, signal: Signal, timeout: float | None
) -> tuple[Receiver | None, Any, BaseException | None]:
    """(receiver, result, exception) of one slot; receiver ``None``: no slot."""
    if slot.timed_out:
        r = slot.receiver if slot.receiver is not None else slot.entry.get()
        if r is None:
            return None, None, None
        timed_out = _dispatch.TimedOut(r, slot.started, _as_exception(slot.late))
        return r, None, _dispatch.timeout_error(signal, timed_out, timeout)
    fut = slot.future
    if fut is None:
        if slot.receiver is None or (slot.value is _SKIPPED and slot.error is None):
            return None, None, None
        return slot.receiver, slot.value, slot.error
    if fut.cancelled():
        if slot.stopped or slot.job is not None:
            return None, None, None  # stopped by the send before it began
        # A task not cancelled by this send: the receiver cancelled itself.
        # That is cancellation machinery the send does not own: it propagates.
        r = slot.receiver if slot.receiver is not None else slot.entry.get()
        return r, None, asyncio.CancelledError()
    raised = fut.exception()
    if raised is not None:
        return slot.receiver, None, raised
    value = fut.result()
    if value is _SKIPPED:
        return None, None, None
    return slot.receiver, value, None


def _as_exception(err: BaseException | None) -> Exception | None:
    return err if isinstance(err, Exception) else None


def _with_notes(
    raised: BaseException, failures: list[tuple[Receiver, BaseException, bool]]
) -> BaseException:
    """``raised``, with a note naming each other failure of the send."""
    for r, err, _ in failures:
        if err is not raised:
            raised.add_note(
                f"concsignals: receiver {r!r} also failed in this send: "
                f"{type(err).__name__}: {err}"
            )
    return raised


# -- the entry points -------------------------------------------------------------


async def asend(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None = None,
    robust: bool = False,
) -> Responses:
    """Run one send on the running loop; results in connection order.

    Safe to run from any number of loops and threads at once: the send's state
    is its own, and the snapshot's entries are only read.
    """
    if monitoring.installed:  # monitor: send began, send ended
        return await monitoring.watch_asend(
            _asend, signal, entries, sender, named, executor, timeout, robust
        )
    return await _asend(signal, entries, sender, named, executor, timeout, robust)


async def _asend(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None,
    robust: bool,
) -> Responses:
    if not entries:
        return []
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    slots = [_Slot(entry) for entry in entries]
    try:
        _start(loop, slots, signal, sender, named, executor, robust)
    except BaseException:
        for slot in slots:
            slot.stop()
        await _finish_tasks(s.future for s in slots if s.future is not None)
        raise
    await _settle(slots, loop, deadline, robust)
    return _assemble(slots, signal, timeout, robust)


def send_from_sync(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None,
    robust: bool,
) -> Responses:
    """A sync send with async receivers connected: run it on a private loop.

    Raises ``RuntimeError`` in a thread whose event loop is running.  Without
    an executor (or when this thread runs on it: a nested send), sync receivers
    are called here, in order; see the module docstring.
    """
    _refuse_in_running_loop(signal, entries, robust)
    if executor is not None and executors.running_on(executor):
        executor = None
    loop = asyncio.new_event_loop()
    try:
        if executor is not None:
            coro = _asend(
                signal, entries, sender, named, executor, timeout, robust
            )  # monitor: run() watches
            return loop.run_until_complete(coro)
        deadline = None if timeout is None else loop.time() + timeout
        slots = _walk(loop, signal, entries, sender, named, deadline, robust)
        loop.run_until_complete(_settle(slots, loop, deadline, robust))
        return _assemble(slots, signal, timeout, robust)
    finally:
        _close(loop)


def _refuse_in_running_loop(
    signal: Signal, entries: Sequence[Entry], robust: bool
) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    name = "send_robust" if robust else "send"
    async_receiver = next(
        (r for e in entries if e.is_async and (r := e.get()) is not None),
        "(an async receiver)",
    )
    raise RuntimeError(
        f"{signal!r}.{name}() was called from a thread whose event loop is "
        f"running, and async receiver {describe(async_receiver)} is "
        f"connected: a sync send would block the loop.  Use "
        f"'await signal.a{name}(...)' instead."
    )


def _walk(
    loop: asyncio.AbstractEventLoop,
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    deadline: float | None,
    robust: bool,
) -> list[_Slot]:
    """Begin every receiver in connection order: sync ones inline, to the end.

    An async receiver's task is run up to its first suspension before the next
    receiver begins.  Without ``robust``, the walk stops at the first failure,
    whether a sync receiver raised or a task already ended with an exception.
    The deadline is checked before and after each sync call, as ``send``
    does inline: a call that overran it is timed out, one not begun by it is
    not made.
    """
    slots: list[_Slot] = []
    failed: list[asyncio.Future[Any]] = []

    def note_failure(task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            failed.append(task)

    for entry in entries:
        slot = _Slot(entry)
        if deadline is not None and loop.time() >= deadline:
            slot.receiver = entry.get()
            slot.timed_out = True
            slots.append(slot)
            if not robust:
                break
        elif entry.is_async:
            task = loop.create_task(_call_async(signal, slot, sender, named))
            slot.future = _hold(task)
            if not robust:
                task.add_done_callback(note_failure)
            slots.append(slot)
            loop.run_until_complete(asyncio.sleep(0))  # the task begins
        else:
            r = slot.receiver = entry.get()  # the disconnect check
            if r is None:
                continue
            slots.append(slot)
            try:
                slot.value = monitoring.invoke(
                    r, signal, sender, named
                )  # monitor: call began/ended
            except Exception as err:
                slot.error = err
            if deadline is not None and loop.time() > deadline:
                slot.timed_out = slot.started = True
                slot.late = slot.error
            if not robust and (slot.error is not None or slot.timed_out):
                break
        if failed:
            break
    return slots


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Close a private loop; end any task still on it first (after an error)."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()

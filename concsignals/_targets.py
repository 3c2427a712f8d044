"""Where one connection's calls run: its options, and the targets that are ours.

``connect(receiver, *, via=None, wait=True, phase=0, on_commit=False)``
stores a :class:`Delivery` on the connection's entry (``Entry.opts``; ``None``
when all four are the defaults, so a send of plain connections never looks
further).  ``on_commit`` names the database whose open transaction a call
waits for (``_commit.py``); the others are this module's.
``via`` becomes a *target*: always a :class:`concurrent.futures.Executor`, so
that every backend hands a call over the one way it already knows
(``submit``), and the begin gate runs where the job runs (``_inline.call``):

* :data:`INLINE` runs a job at once, in the thread that submits it;
* :class:`LoopTarget` runs a job as a callback on an event loop's thread, or
  (:meth:`LoopTarget.submit_task`) as a task there;
* :class:`Serial` runs its jobs one at a time, in the order submitted, on a
  worker thread of its own or as jobs of another executor;
* any other executor (thread pool, process pool, Dask) is used as it is.

Every Future these return has ``concurrent.futures``' contract: ``cancel()``
succeeds only for a job that has not begun, and a cancelled job never runs.
A send cancels what it handed over when it closes (``Send.hand_over``), so a
call that waited in a Serial's queue or on a loop is withdrawn like one
queued on a pool.

Who runs here (:func:`runs_here`): a sender on the loop's own thread, or in a
Serial's running job, must not queue a call it then waits for: nothing else
would ever run it.  Such a call runs in the sender's thread instead (see
``_deliver.py``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import Empty, SimpleQueue
from time import monotonic
from typing import Any

from . import _pickled, executors

#: A queued job of a Serial: ``job(fut, *args)`` sets ``fut`` and raises nothing.
Job = tuple["Future[Any]", Callable[..., None], tuple[Any, ...]]


class Delivery:
    """A connection's options: its target (``None``: the send's choice),
    whether a send waits for its call, its phase, and the database alias
    whose transaction its calls wait for (``None``: none)."""

    __slots__ = ("lean", "on_commit", "phase", "target", "wait")

    def __init__(
        self,
        target: Executor | None,
        wait: bool,
        phase: int,
        on_commit: str | None = None,
    ) -> None:
        self.target = target
        self.wait = wait
        self.phase = phase
        self.on_commit = on_commit
        #: Fire and forget to a target in this process (or the send's):
        #: ``_deliver.fire_only`` may make the call without a Send.
        self.lean = not wait and (target is None or executors.in_process(target))

    def __repr__(self) -> str:
        return (
            f"Delivery(via={self.target!r}, wait={self.wait}, phase={self.phase}, "
            f"on_commit={self.on_commit!r})"
        )


def options(
    receiver: Any, via: object, wait: object, phase: object, on_commit: object = False
) -> Delivery | None:
    """``connect``'s ``via``, ``wait``, ``phase`` and ``on_commit``, checked
    (the error names the object and the rule); ``None`` if all four are the
    defaults.  ``on_commit=True`` is the alias ``"default"``."""
    if not isinstance(wait, bool):
        raise TypeError(f"connect(wait=...) must be True or False, not {wait!r}")
    if isinstance(phase, bool) or not isinstance(phase, int):
        raise TypeError(f"connect(phase=...) must be an int, not {phase!r}")
    if on_commit is True:
        on_commit = "default"  # django.db.DEFAULT_DB_ALIAS
    elif on_commit is False:
        on_commit = None
    elif not isinstance(on_commit, str) or not on_commit:
        raise TypeError(
            f"connect(on_commit=...) must be True, False or a database alias "
            f"(a non-empty str), not {on_commit!r}"
        )
    target = as_target(via)
    if target is None and wait and phase == 0 and on_commit is None:
        return None
    if target is not None and not executors.in_process(target):
        _pickled.dump_receiver(receiver, target, None)  # raises, naming it
    return Delivery(target, wait, phase, on_commit)


def as_target(via: object) -> Executor | None:
    """The executor that runs calls for ``via``: an event loop becomes its
    :class:`LoopTarget`, a Dask ``Client`` its ``get_executor()``."""
    if via is None or isinstance(via, Executor):
        return via
    aio = sys.modules.get("asyncio")
    if aio is not None and isinstance(via, aio.AbstractEventLoop):
        if via.is_closed():
            raise ValueError(f"connect(via=...): event loop {via!r} is closed")
        return loop_target(via)
    get_executor = getattr(via, "get_executor", None)  # a Dask Client
    if callable(get_executor):
        ex = get_executor()
        if isinstance(ex, Executor):
            return ex
    raise TypeError(
        f"connect(via=...) must be None, concsignals.INLINE, an Executor, an "
        f"asyncio event loop or a concsignals.Serial, not {via!r}"
    )


def run_job(fut: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Run one job into its Future, unless it was cancelled first."""
    if not fut.set_running_or_notify_cancel():
        return
    try:
        value = fn(*args)
    except BaseException as err:  # the job's outcome: its Future carries it
        fut.set_exception(err)
    else:
        fut.set_result(value)


class Inline(Executor):
    """``concsignals.INLINE``: a job runs at once, in the submitting thread."""

    concsignals_in_process = True

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        fut: Future[Any] = Future()
        run_job(fut, lambda: fn(*args, **kwargs), ())
        return fut

    def __repr__(self) -> str:
        return "concsignals.INLINE"

    def __reduce__(self) -> str:
        return "INLINE"


#: Run the receiver in the sending thread, whatever executor the send uses.
INLINE = Inline()


class LoopTarget(Executor):
    """An event loop as a target: jobs run on the loop's thread.

    ``submit`` schedules a plain job as a callback; :meth:`submit_task` a
    coroutine as a task.  Either may come from any thread
    (``call_soon_threadsafe``).  A loop that is closed refuses with
    ``RuntimeError``, as a shut-down executor does.
    """

    concsignals_in_process = True

    def __init__(self, loop: Any) -> None:
        self.loop = loop

    def __repr__(self) -> str:
        return f"<LoopTarget {self.loop!r}>"

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        fut: Future[Any] = Future()
        self.loop.call_soon_threadsafe(run_job, fut, lambda: fn(*args, **kwargs), ())
        return fut

    def submit_task(self, make: Callable[[], Any], context: Any) -> Future[Any]:
        """Run the coroutine ``make()`` as a task on the loop, in ``context``.

        Cancelling the Future before the task begins withdraws it; once it
        began, ``cancel()`` cancels the task (which ends with
        ``CancelledError``) and returns False, as for a running job.
        """
        fut = TaskFuture(self.loop)

        def start() -> None:
            if fut.set_running_or_notify_cancel():
                fut.task = self.loop.create_task(make(), context=context)
                fut.task.add_done_callback(fut.task_ended)

        self.loop.call_soon_threadsafe(start)
        return fut

    def runs_here(self) -> bool:
        """Whether this thread is the loop's, inside it."""
        aio = sys.modules.get("asyncio")
        return aio is not None and aio.events._get_running_loop() is self.loop


class TaskFuture(Future[Any]):
    """The Future of a task :meth:`LoopTarget.submit_task` started."""

    def __init__(self, loop: Any) -> None:
        super().__init__()
        self.loop = loop
        self.task: Any = None  # set on the loop's thread when the task begins

    def cancel(self) -> bool:
        if super().cancel():
            return True  # withdrawn: the task never begins
        task = self.task
        if task is not None and not self.done():
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self.loop.call_soon_threadsafe(task.cancel)
        return False

    def task_ended(self, task: Any) -> None:
        if task.cancelled():
            import asyncio  # loaded already: a task ran

            self.set_exception(asyncio.CancelledError())
        elif (err := task.exception()) is not None:
            self.set_exception(err)
        else:
            self.set_result(task.result())


# One LoopTarget per loop (``worker_of`` and hand-over group calls by
# target); the dict is guarded by _loops_lock, held only to read or insert.
_loops: weakref.WeakKeyDictionary[Any, LoopTarget] = weakref.WeakKeyDictionary()
_loops_lock = threading.Lock()


def loop_target(loop: Any) -> LoopTarget:
    with _loops_lock:
        target = _loops.get(loop)
        if target is None:
            target = _loops[loop] = LoopTarget(loop)
    return target


class Serial(Executor):
    """``concsignals.Serial(executor=None, maxsize=0)``: one call at a time.

    Jobs run one after another, in the order they were submitted, on one
    worker thread of its own (started when a job arrives, gone after
    :data:`IDLE` seconds without one) or, given ``executor``, as one job of
    that executor that runs the queue until it is empty.  ``maxsize > 0``
    bounds the queue: :meth:`submit_until` waits for room until a deadline,
    then raises ``TimeoutError``; nothing is ever dropped.

    Locking rules: ``_lock`` guards ``_running`` and ``_shut``, and is
    held while a job enters ``_queue`` (a ``queue.SimpleQueue``, safe by
    itself), so that a worker that finds the queue empty and ends, and a
    submit that finds no worker and starts one, never miss each other.  It
    is held only for that, never while a job runs or a submit waits for
    room.  ``_room`` (``None`` when unbounded) counts free places.  Safe
    from any thread.
    """

    concsignals_in_process = True

    #: Seconds the own worker thread waits for a job before it ends.
    IDLE = 5.0

    def __init__(self, executor: Executor | None = None, maxsize: int = 0) -> None:
        if executor is not None and not hasattr(executor, "submit"):
            raise TypeError(f"Serial(executor=...) needs an executor, not {executor!r}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(
                f"Serial(maxsize=...) must be an int >= 0, not {maxsize!r}"
            )
        self.executor = executor
        self.maxsize = maxsize
        self._running = False  # a worker (thread or job) is draining the queue
        self._shut = False
        self._fresh()
        _serials.add(self)

    def _fresh(self) -> None:
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # a worker ended
        self._queue: SimpleQueue[Job | None] = SimpleQueue()  # None: look up
        self._room = threading.Semaphore(self.maxsize) if self.maxsize else None

    def __repr__(self) -> str:
        how = "" if self.executor is None else f" on {self.executor!r}"
        return f"<concsignals.Serial{how} maxsize={self.maxsize}>"

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        return self.submit_until(None, lambda: fn(*args, **kwargs))

    def submit_until(
        self, deadline: float | None, fn: Callable[..., Any], *args: Any
    ) -> Future[Any]:
        """Queue ``fn(*args)``; with a full bounded queue, wait for room until
        ``deadline`` (a ``time.monotonic()`` value; ``None``: for ever)."""
        fut: Future[Any] = Future()
        self.post(deadline, fut, run_job, fn, args)
        return fut

    def post(
        self,
        deadline: float | None,
        fut: Future[Any],
        job: Callable[..., None],
        *args: Any,
    ) -> None:
        """Queue ``job(fut, *args)``, which sets ``fut`` itself and raises
        nothing (:func:`run_job` for :meth:`submit`); a full bounded queue
        as for :meth:`submit_until`."""
        room = self._room
        if room is not None:
            left = None if deadline is None else max(0.0, deadline - monotonic())
            if self.runs_here():  # room is made by this very thread
                left = 0.0
            if not room.acquire(timeout=left):
                raise TimeoutError(
                    f"{self!r} stayed full ({self.maxsize} calls queued) "
                    "until the send's deadline"
                )
        with self._lock:
            if self._shut:
                if room is not None:
                    room.release()
                raise RuntimeError(f"cannot submit to {self!r} after shutdown")
            self._queue.put((fut, job, args))
            start = not self._running
            self._running = True
        if start:
            self._start()

    def _start(self) -> None:
        try:
            if self.executor is not None:
                self.executor.submit(self._drain, False)
            else:
                worker = threading.Thread(
                    target=self._drain,
                    args=(True,),
                    name="concsignals-serial",
                    daemon=True,
                )
                worker.start()
        except BaseException:
            with self._lock:
                self._running = False
            raise

    def _drain(self, idle: bool) -> None:
        """Run queued jobs in order; ``idle``: wait a while for more."""
        mine = _here.__dict__.setdefault("serials", [])
        mine.append(self)
        queue, room = self._queue, self._room
        try:
            while True:
                try:
                    item = queue.get(timeout=self.IDLE) if idle else queue.get_nowait()
                except Empty:
                    item = None
                if item is None:  # idle, or woken by shutdown: end if empty
                    with self._lock:
                        if queue.empty():
                            self._running = False
                            self._ended.notify_all()
                            return
                    continue
                if room is not None:
                    room.release()
                fut, job, args = item
                job(fut, *args)
        finally:
            mine.pop()

    def runs_here(self) -> bool:
        """Whether this thread is running one of this Serial's jobs."""
        return any(s is self for s in getattr(_here, "serials", ()))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        dropped: list[Job] = []
        with self._lock:
            self._shut = True
            while cancel_futures:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    break
                if item is not None:
                    dropped.append(item)
            self._queue.put(None)  # an idle worker wakes, and ends
        for fut, _, _ in dropped:
            if self._room is not None:
                self._room.release()
            fut.cancel()
        if wait and not self.runs_here():
            with self._lock:
                while self._running:
                    self._ended.wait()

    def _after_fork(self) -> None:
        # Only the forking thread exists in the child: no worker, and a lock
        # may have been held by one that is gone.
        self._fresh()
        self._running = False


#: The Serials this thread is running a job of (innermost last); only the
#: thread itself reads or writes its own.
_here = threading.local()

_serials: weakref.WeakSet[Serial] = weakref.WeakSet()


def reset_after_fork() -> None:
    """In a forked child: every Serial starts again, empty (its worker, and
    the jobs queued for it, stayed in the parent)."""
    for serial in list(_serials):
        serial._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=reset_after_fork)


def runs_here(target: Executor) -> bool:
    """Whether a call queued on ``target`` would wait for this very thread."""
    check = getattr(target, "runs_here", None)
    return bool(check is not None and check())

"""Out-of-process executors (processes, Dask): pickled calls, gated at hand-off.

Shape of a send on an out-of-process executor (see ``executors.py`` for
the worker side)::

    1. pickle   every call's receiver and the send's arguments, before any
                is handed over: send raises a pickling error (naming the
                receiver) before anything runs; send_robust puts it in the slot.
    2. hand off in connection order, each call through the begin gate
                (``Send.begin``: closed? deadline? disconnected?  A receiver
                gone since step 1 is settled there, SKIPPED), then
                ``executor.submit(call_pickled, ...)``, and the future goes
                to ``Send.hand_over``.  An executor that refuses (shut down,
                broken) gives that slot its error.
    3. record   each future's outcome as it completes (``Send.end``); a
                future cancelled before it ran un-begins its slot.
    4. wait     (sync sends only) until every slot settled, or the
                deadline; then the send closes.

The sender cannot reach into a worker process: a call handed over is *begun*
as far as the send is concerned, and one the executor cannot cancel any more
runs to its end there.  Cancelling is the send's (``Send.close``): once it
closes, it cancels what it handed over, whatever backend handed it (sync
``send``, ``asend``, ``submit``).  A failure cancels only the calls handed
over after the failed one (an earlier call, begun, may still fail, and win).
Only ``ProcessPoolExecutor``'s cancel proves a call never ran (:func:`stops`);
other executors' futures (Dask's) are cancelled only at the deadline or on
cancellation, from the waiting thread: never from their own callbacks.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Sequence
from concurrent.futures import (
    FIRST_EXCEPTION,
    Executor,
    Future,
    ProcessPoolExecutor,
)
from concurrent.futures import wait as wait_futures
from time import monotonic
from typing import Any

from . import executors
from ._send import Send, Why

Handed = list[tuple[int, "Future[Any]"]]


def run(send: Send, executor: Executor) -> None:
    """Run ``send`` on an out-of-process executor; outcomes land in ``send``."""
    done = threading.Lock()
    done.acquire()
    send.on_settled = done.release
    handed = hand_off(send, executor, range(len(send.entries)))
    try:
        wait(send, handed, done)
    except BaseException:
        send.close(Why.CANCELLED, everything=True)
        raise
    for i, fut in handed:
        if fut.done():
            record(send, i, fut)  # its callback may not have run yet


def hand_off(send: Send, executor: Executor, slots: Sequence[int]) -> Handed:
    """Pickle every call, then hand them over in order through the gate; the
    send cancels what it handed over when it closes (``Send.hand_over``)."""
    return hand_off_pickled(send, executor, slots, pickle_calls(send, executor, slots))


def hand_off_pickled(
    send: Send, executor: Executor, slots: Sequence[int], blobs: dict[int, Any]
) -> Handed:
    """Hand over ``slots``, pickled by :func:`pickle_calls`, in order."""
    handed: Handed = []
    stoppable = stops(executor)
    for i in slots:
        r = send.begin(i, here=False)  # a receiver gone since pickling: SKIPPED
        if r is None:
            continue
        blob = blobs.get(i)
        if blob is None:  # (not pickled: it was gone, and cannot be back)
            blob = RuntimeError(f"receiver {r!r} was not pickled for {executor!r}")
        if isinstance(blob, Exception):
            send.end(i, err=blob)
            continue
        # monitor: call began (at hand-off); the monitors' carriers go with it
        extra = () if send.watch is None else (send.watch.hand_off(i, r),)
        try:
            fut = executor.submit(
                executors.call_pickled, blob, blobs[-1], next(executors.nonces), *extra
            )
        except Exception as err:  # shut down, broken: this slot's outcome
            send.end(i, err=err)
            continue
        except BaseException:
            send.close(Why.CANCELLED, everything=True)
            raise
        send.hand_over(i, fut, stoppable)
        handed.append((i, fut))
        fut.add_done_callback(Recorder(send, i))
    return handed


def pickle_calls(
    send: Send, executor: Executor, slots: Sequence[int]
) -> dict[int, Any]:
    """Each live slot's pickled receiver (or its pickling error), and the
    pickled arguments under ``-1``.  ``send``: a pickling error closes the
    send, so nothing is handed over."""
    blobs: dict[int, Any] = {}
    args: bytes | Exception | None = None
    for i in slots:
        r = send.entries[i].get()
        if r is None:
            continue
        if args is None:
            try:
                args = blobs[-1] = executors.dumps_args(
                    send.signal, send.sender, send.named
                )
            except pickle.PicklingError as err:
                args = err
        try:
            blobs[i] = dump_receiver(r, executor, args)
        except pickle.PicklingError as err:
            blobs[i] = err
            if send.cancels and send.begin(i) is not None:
                send.end(i, err=err)  # closes the send: nothing is handed over
    return blobs


def dump_receiver(r: Any, executor: Executor, args: bytes | Exception | None) -> bytes:
    """Pickle ``r`` for ``executor``; the error names the receiver and the rule."""
    if isinstance(args, Exception):
        err = pickle.PicklingError(
            f"cannot send to receiver {r!r} through {executor!r}: {args}"
        )
        err.__cause__ = args.__cause__
        raise err
    try:
        return pickle.dumps(r, executors.PROTOCOL)
    except Exception as err:
        raise pickle.PicklingError(
            f"receiver {r!r} cannot be pickled for {executor!r}, which runs "
            f"receivers in other processes: {err}"
        ) from err


class Recorder:
    """A handed-over call's done-callback: :func:`record`.  It holds the send
    only until it ran: an executor may keep a finished future (Dask's client
    keeps its error, whose traceback holds the future), and nothing of the
    send (sender, arguments) must stay alive through it."""

    __slots__ = ("i", "send")

    def __init__(self, send: Send, i: int) -> None:
        self.send: Send | None = send
        self.i = i

    def __call__(self, fut: Future[Any]) -> None:
        send, self.send = self.send, None
        if send is not None:
            record(send, self.i, fut)


def record(send: Send, i: int, fut: Future[Any]) -> None:
    """The outcome of handed-over call ``i``; safe in a future's callback."""
    if fut.cancelled():
        send.unbegin(i)
        return
    err = fut.exception()
    if err is not None:
        send.end(i, err=err)
    else:
        send.end(i, fut.result())


def remaining(send: Send) -> float | None:
    if send.deadline is None:
        return None
    return max(0.0, send.deadline - monotonic())


def failed(fut: Future[Any]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is not None


def stops(executor: Executor) -> bool:
    """Whether a cancelled future of ``executor`` is sure never to have run.

    True for ``ProcessPoolExecutor`` (``cancel()`` fails once a call runs);
    Dask's futures report a cancel even of a task already running, which then
    runs to its end: after a failure, ``send`` waits for such calls instead.
    """
    return isinstance(executor, ProcessPoolExecutor)


def wait(send: Send, handed: Handed, done: threading.Lock) -> None:
    """Wait for the handed-over calls (see the module docstring, step 4)."""
    if send.cancels:
        # A failure the sender sees first (its callback has not run yet) is
        # recorded here: the send closes, and cancels the calls handed over
        # after it.  (Only futures not cancelled: ``wait()`` counts one done
        # once its executor acknowledges the cancel, and Dask's may never.)
        pending = [f for _, f in handed if not f.cancelled()]
        wait_futures(pending, remaining(send), FIRST_EXCEPTION)
        first = next(((i, f) for i, f in handed if failed(f)), None)
        if first is not None:
            record(send, *first)
    if not acquire_until(done, send.deadline):
        # The deadline: every call the executor can still cancel goes (from
        # this thread: Dask's futures must not be cancelled in callbacks).
        send.close(Why.DEADLINE, everything=True)


def acquire_until(done: threading.Lock, deadline: float | None) -> bool:
    if deadline is None:
        return done.acquire()
    return done.acquire(timeout=max(0.0, deadline - monotonic()))

"""Out-of-process executors (processes, Dask): pickled calls, gated at hand-off.

Shape of a send on an out-of-process executor (see ``executors.py`` for
the worker side)::

    1. pickle   every call's receiver and the send's arguments, before any
                is handed over: send raises a pickling error (naming the
                receiver) before anything runs; send_robust puts it in the slot.
    2. hand off in connection order, each call through the begin gate
                (``Send.begin``: closed? deadline? disconnected?), then
                ``executor.submit(call_pickled, ...)``.  An executor that
                refuses (shut down, broken) gives that slot its error.
    3. record   each future's outcome as it completes (``Send.end``); a
                future cancelled before it ran un-begins its slot.
    4. wait     (sync sends only) until every call ended, or the first
                failure (``send``), or the deadline; then cancel what the
                executor has not started.

The sender cannot reach into a worker process: a call handed over is *begun*
as far as the send is concerned, and one the executor cannot cancel any more
runs to its end there.  Cancelling happens in the sender's thread only: some
executors' futures (Dask's) must not be cancelled from their callbacks.
"""

from __future__ import annotations

import pickle
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
    handed = hand_off(send, executor, range(len(send.entries)))
    try:
        wait(send, handed, stops(executor))
    except BaseException:
        send.close(Why.CANCELLED)
        for _, fut in handed:
            fut.cancel()
        raise
    for i, fut in handed:
        if fut.done():
            record(send, i, fut)  # its callback may not have run yet


def hand_off(send: Send, executor: Executor, slots: Sequence[int]) -> Handed:
    """Pickle every call, then hand them over in order through the gate."""
    blobs = pickle_calls(send, executor, slots)
    handed: Handed = []
    for i in slots:
        blob = blobs.get(i)
        if blob is None or (r := send.begin(i)) is None:
            continue
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
            send.close(Why.CANCELLED)
            for _, f in handed:
                f.cancel()
            raise
        handed.append((i, fut))
        fut.add_done_callback(lambda f, i=i: record(send, i, f))  # type: ignore[misc]
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
            if not send.robust and send.begin(i) is not None:
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


def wait(send: Send, handed: Handed, cancel_stops: bool) -> None:
    """Wait for the handed-over calls (see the module docstring, step 4)."""
    futures = [fut for _, fut in handed]
    cancelled: set[Future[Any]] = set()
    if (not send.robust or send.closed) and cancel_stops:
        wait_futures(futures, remaining(send), FIRST_EXCEPTION)
        first = next((k for k, f in enumerate(futures) if failed(f)), None)
        if first is not None or send.closed:
            # Handed-over calls count as begun; cancelling those after the
            # earliest failure spares the executor work (an earlier one may
            # still fail, and its failure must win: it is not cancelled).
            send.close(Why.FAILURE)
            later = futures[(first or 0) + 1 :] if first is not None else futures
            cancelled = {f for f in later if not f.done() and f.cancel()}
    # Never wait() for a future we cancelled: wait() counts it done only once
    # its executor acknowledges the cancel, and Dask's may never do so.
    pending = [f for f in futures if f not in cancelled]
    for i, fut in handed:
        if fut in cancelled:
            send.unbegin(i)
    _, late = wait_futures(pending, remaining(send))
    if late:
        send.close(Why.DEADLINE)
        for i, fut in handed:
            if fut in late and fut.cancel():
                send.unbegin(i)

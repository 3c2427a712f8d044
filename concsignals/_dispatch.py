"""Running one snapshot: the inline loop, parallel fan-out, result assembly.

Everything here reads entries that a send took from one snapshot, and checks
``entry.get()`` immediately before each call: that check is where "a receiver
disconnected before its call begins is not called" is kept (see
``_snapshot.py``).  On an in-process executor the check runs on the worker
thread, right before the call; on an out-of-process one it runs at hand-off
(see ``executors.py``).

Shape of a parallel send
------------------------
1. Submit one call per entry, in connection order.
2. Wait for the calls in connection order, until the deadline if any.  A
   sender that is itself running on the executor (a nested send) first runs,
   in its own thread, every call no free worker has taken yet: so a nested
   send through a saturated pool, even of one worker, finishes.
3. Turn each call into an *outcome* (a result, a failure, skipped, timed out)
   and assemble the outcomes in connection order (:func:`assemble`).

Each call's outcome is one of: ``(receiver, response)``; :class:`Failed`;
:class:`TimedOut`; :data:`SKIPPED` (disconnected before it began: absent from
the results, as inline); :data:`CLOSED` (never begun because the send was
closed by a failure or the deadline).

Locking rules
-------------
``Fanout.lock`` guards ``Fanout.closed`` and ``Fanout.begun`` of one send on an
in-process executor, nothing else.  A call *begins* only under it, while the
send is not closed, recording its receiver in ``begun``; the sender and a
failing call *close* the send under it.  So once :meth:`Fanout.close` returns,
no call of that send begins, and ``begun`` says exactly which ones did.  No
receiver is called and nothing blocks while it is held.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import logging
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_EXCEPTION,
    CancelledError,
    Executor,
    Future,
    InvalidStateError,
)
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING, Any

from . import executors, monitoring
from ._snapshot import Entry, Receiver

if TYPE_CHECKING:
    from ._signal import Signal

logger = logging.getLogger("concsignals")

Responses = list[tuple[Receiver, Any]]


class Default(enum.Enum):
    """``run(executor=OWN)``: use the signal's own executor."""

    OWN = "the signal's executor"


OWN = Default.OWN


def describe(receiver: object) -> str:
    """The receiver's ``__qualname__`` as Django logs it, or its repr."""
    name = getattr(receiver, "__qualname__", None)
    return name if isinstance(name, str) else repr(receiver)


def log_robust_failure(receiver: object, err: BaseException) -> None:
    """Log a receiver's failure exactly as Django's ``send_robust`` does."""
    logger.error(
        "Error calling %s in Signal.send_robust() (%s)",
        describe(receiver),
        err,
        exc_info=err,
    )


def run(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | Default | None = OWN,
    timeout: float | None = None,
    robust: bool = False,
) -> Responses:
    """Run ``entries`` for one send and return the results in connection order.

    ``executor`` is the signal's own unless given; ``None`` means inline.
    """
    if executor is OWN:
        executor = signal._executor
    assert not isinstance(executor, Default)
    if monitoring.installed:  # monitor: send began, send ended
        return monitoring.watch_send(
            _run, signal, entries, sender, named, executor, timeout, robust
        )
    return _run(signal, entries, sender, named, executor, timeout, robust)


def _run(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None,
    robust: bool,
) -> Responses:
    if any(e.is_async for e in entries):
        from . import _asyncio

        return _asyncio.send_from_sync(
            signal, entries, sender, named, executor, timeout, robust
        )
    if executor is None and timeout is None and not monitoring.installed:  # monitor:
        if robust:
            return call_robust(signal, entries, sender, named)
        return call_inline(signal, entries, sender, named)
    return run_parallel(signal, entries, sender, named, executor, timeout, robust)


def call_inline(
    signal: Signal, entries: Sequence[Entry], sender: object, named: dict[str, Any]
) -> Responses:
    """Call each live entry in order in this thread; the first error propagates."""
    return [
        (r, r(signal=signal, sender=sender, **named))
        for e in entries
        if (r := e.get()) is not None
    ]


def call_robust(
    signal: Signal, entries: Sequence[Entry], sender: object, named: dict[str, Any]
) -> Responses:
    """Call each live entry in order in this thread, catching ``Exception``."""
    responses: Responses = []
    for entry in entries:
        r = entry.get()
        if r is None:
            continue
        try:
            response = r(signal=signal, sender=sender, **named)
        except Exception as err:
            log_robust_failure(r, err)
            response = err
        responses.append((r, response))
    return responses


# -- outcomes -----------------------------------------------------------------


class Failed:
    """A call that raised ``err``."""

    __slots__ = ("err", "receiver")

    def __init__(self, receiver: Receiver, err: Exception) -> None:
        self.receiver = receiver
        self.err = err


class TimedOut:
    """A call not finished at the deadline; ``started`` if it had begun."""

    __slots__ = ("late", "receiver", "started")

    def __init__(
        self, receiver: Receiver, started: bool, late: Exception | None = None
    ) -> None:
        self.receiver = receiver
        self.started = started
        self.late = late  # inline only: what a call that overran raised


class Marker(enum.Enum):
    SKIPPED = "disconnected before its call began"
    CLOSED = "not begun: the send was closed"


SKIPPED = Marker.SKIPPED
CLOSED = Marker.CLOSED

Outcome = tuple[Receiver, Any] | Failed | TimedOut | Marker


def assemble(
    signal: Signal, outcomes: Sequence[Outcome], robust: bool, timeout: float | None
) -> Responses:
    """The results of a send, in connection order, or the error ``send`` raises.

    ``send``: the earliest failed or timed-out call decides what is raised; the
    other failures are attached to it as notes.  ``send_robust``: every failure
    is logged and returned in its slot.
    """
    responses: Responses = []
    errors: list[tuple[Receiver, BaseException]] = []
    for out in outcomes:
        if type(out) is tuple:
            responses.append(out)
        elif isinstance(out, Failed):
            errors.append((out.receiver, out.err))
            responses.append((out.receiver, out.err))
        elif isinstance(out, TimedOut):
            late = timeout_error(signal, out, timeout)
            errors.append((out.receiver, late))
            responses.append((out.receiver, late))
    if robust:
        for r, err in errors:
            log_robust_failure(r, err)
        return responses
    if not errors:
        return responses
    first = errors[0][1]
    for r, err in errors[1:]:
        first.add_note(
            f"concsignals: receiver {r!r} also failed in this send: "
            f"{type(err).__name__}: {err}"
        )
    raise first


def timeout_error(signal: Signal, out: TimedOut, timeout: float | None) -> TimeoutError:
    state = "did not finish" if out.started else "was not started"
    err = TimeoutError(
        f"receiver {out.receiver!r} {state} within the {timeout} s timeout "
        f"of this send of {signal!r}"
    )
    err.__cause__ = out.late
    return err


# -- entry point --------------------------------------------------------------


def run_parallel(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None,
    robust: bool,
) -> Responses:
    """One send on ``executor`` (``None``: inline, here with a deadline)."""
    if not entries:
        return []
    deadline = None if timeout is None else time.monotonic() + timeout
    if executor is None:
        outcomes = call_timed(signal, entries, sender, named, deadline, robust)
    elif executors.in_process(executor):
        outcomes = fan_out_here(
            signal, entries, sender, named, executor, deadline, robust
        )
    else:
        outcomes = fan_out_pickled(
            signal, entries, sender, named, executor, deadline, robust
        )
    return assemble(signal, outcomes, robust, timeout)


# -- inline, with a deadline --------------------------------------------------


def call_timed(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    deadline: float | None,
    robust: bool,
) -> list[Outcome]:
    """Inline with a deadline, checked before and after each call.

    A receiver not begun by the deadline is not called (``TimedOut``); one
    that overruns it cannot be interrupted, and its outcome becomes
    ``TimedOut`` too (a late exception is kept as the ``TimeoutError``'s
    cause).  ``send`` stops at the first failure or time-out.
    """
    outcomes: list[Outcome] = []
    for entry in entries:
        r = entry.get()
        if r is None:
            continue
        if deadline is not None and time.monotonic() >= deadline:
            outcomes.append(TimedOut(r, started=False))
        else:
            try:
                out: Outcome = (
                    r,
                    monitoring.invoke(r, signal, sender, named),
                )  # monitor: call began/ended
            except Exception as err:
                out = Failed(r, err)
            if deadline is not None and time.monotonic() > deadline:
                late = out.err if isinstance(out, Failed) else None
                out = TimedOut(r, started=True, late=late)
            outcomes.append(out)
        if not robust and type(outcomes[-1]) is not tuple:
            break
    return outcomes


# -- in-process executors: threads --------------------------------------------


class Fanout:
    """The shared state of one send on an in-process executor.

    Safe from any thread; see "Locking rules" in the module docstring.
    """

    __slots__ = ("begun", "closed", "futures", "lock", "robust")

    def __init__(self, size: int, robust: bool) -> None:
        self.lock = threading.Lock()
        self.closed = False
        self.begun: list[Receiver | None] = [None] * size
        self.robust = robust
        # The submitted calls, appended by the sender; a failing call of a
        # send (not robust) cancels those not yet taken by a worker.
        self.futures: list[Future[Outcome]] = []

    def begin(self, index: int, entry: Entry) -> Receiver | Marker:
        """Begin call ``index``: its live receiver, or why it must not run."""
        with self.lock:
            if self.closed:
                return CLOSED
            r: Receiver | None = entry.get()
            if r is None:
                return SKIPPED
            self.begun[index] = r
            return r

    def close(self) -> list[Receiver | None]:
        """Let no further call begin; return which ones did."""
        with self.lock:
            self.closed = True
            return self.begun

    def fail(self) -> None:
        """A call failed in ``send``: close, and cancel calls still queued."""
        self.close()
        for fut in list(self.futures):
            fut.cancel()


def call_here(
    fan: Fanout,
    index: int,
    entry: Entry,
    signal: Signal,
    sender: object,
    named: dict[str, Any],
) -> Outcome:
    """One call on a worker thread, inside its own copy of the sender's context."""
    r = fan.begin(index, entry)
    if isinstance(r, Marker):
        return r
    try:
        return (
            r,
            monitoring.invoke(r, signal, sender, named),
        )  # monitor: call began/ended
    except Exception as err:
        if not fan.robust:
            fan.fail()
        return Failed(r, err)
    except BaseException:
        fan.fail()
        raise


def fan_out_here(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor,
    deadline: float | None,
    robust: bool,
) -> list[Outcome]:
    """Run the entries on an in-process executor; outcomes in order."""
    fan = Fanout(len(entries), robust)
    nested = executors.running_on(executor)
    calls = start_here(fan, signal, entries, sender, named, executor)
    try:
        stolen: dict[int, Outcome] = {}
        if nested:
            # Run here whatever no worker has taken: there may be no free
            # worker, ever (we may be the only one, waiting on ourselves).
            for i, fut in enumerate(fan.futures):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if fut.cancel():
                    ctx, args = calls[i]
                    stolen[i] = ctx.run(call_here, *args)
        return collect_here(fan, entries, stolen, deadline)
    except BaseException:
        fan.fail()
        raise


Call = tuple[contextvars.Context, tuple[Any, ...]]


def start_here(
    fan: Fanout,
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor,
) -> list[Call]:
    """Submit one call per entry, in order; into ``fan.futures``."""
    calls: list[Call] = []
    chain = (*executors.on_pools.get(), executor)
    # Each call's context is a copy of the sender's with ``chain`` set in it.
    token = executors.on_pools.set(chain)
    try:
        for i, entry in enumerate(entries):
            ctx = contextvars.copy_context()
            args = (fan, i, entry, signal, sender, named)
            fan.futures.append(executor.submit(ctx.run, call_here, *args))  # type: ignore[arg-type]
            calls.append((ctx, args))
    except BaseException:
        fan.fail()
        raise
    finally:
        executors.on_pools.reset(token)
    return calls


def collect_here(
    fan: Fanout,
    entries: Sequence[Entry],
    stolen: dict[int, Outcome],
    deadline: float | None,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for i, fut in enumerate(fan.futures):
        if i in stolen:
            outcomes.append(stolen[i])
            continue
        try:
            outcomes.append(wait(fut, deadline))
        except TimeoutError:
            return outcomes + time_out_here(fan, entries, i, stolen)
    return outcomes


def wait(fut: Future[Any], deadline: float | None) -> Any:
    """``fut.result()`` by the deadline; ``CLOSED`` if it was cancelled."""
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return fut.result(remaining)
    except CancelledError:
        return CLOSED


def time_out_here(
    fan: Fanout, entries: Sequence[Entry], start: int, stolen: dict[int, Outcome]
) -> list[Outcome]:
    """The deadline passed while waiting for call ``start``: close the send."""
    begun = fan.close()
    outcomes: list[Outcome] = []
    for i in range(start, len(entries)):
        fut = fan.futures[i]
        fut.cancel()
        out = stolen.get(i, CLOSED)
        if i not in stolen and fut.done() and not fut.cancelled():
            out = fut.result()
        if out is CLOSED:
            r = begun[i]
            if r is not None:
                out = TimedOut(r, started=True)
            elif (r := entries[i].get()) is not None:
                out = TimedOut(r, started=False)
            else:
                out = SKIPPED
        outcomes.append(out)
    return outcomes


# -- out-of-process executors: pickled calls ----------------------------------


def fan_out_pickled(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor,
    deadline: float | None,
    robust: bool,
) -> list[Outcome]:
    """Run the entries on an executor that runs work elsewhere; outcomes in order.

    Every call is pickled before anything is submitted.  ``send``: a call that
    cannot be pickled raises here, before anything was submitted.
    """
    outcomes, calls, futures = start_pickled(
        signal, entries, sender, named, executor, robust
    )
    try:
        finished, late = wait_pickled(futures, deadline, robust)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    for (slot, r), fut in zip(calls, futures, strict=True):
        outcomes[slot] = pickled_outcome(r, fut, finished, late)
    return [out for out in outcomes if out is not None]


def start_pickled(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor,
    robust: bool,
) -> tuple[list[Outcome | None], list[tuple[int, Receiver]], list[Future[Any]]]:
    """Pickle every call, then submit them in order.

    Returns the outcomes known so far (pickling failures; ``None`` for the
    submitted calls), the (slot, receiver) of each submitted call, and their
    futures.
    """
    outcomes: list[Outcome | None] = []
    calls: list[tuple[int, Receiver, bytes]] = []
    args: bytes | pickle.PicklingError | None = None
    for entry in entries:
        r = entry.get()
        if r is None:
            continue
        if args is None:
            try:
                args = executors.dumps_args(signal, sender, named)
            except pickle.PicklingError as err:
                args = err
        try:
            blob = dump_receiver(r, executor, args)
        except pickle.PicklingError as err:
            if not robust:
                raise
            outcomes.append(Failed(r, err))
            continue
        calls.append((len(outcomes), r, blob))
        outcomes.append(None)
    futures: list[Future[Any]] = []
    try:
        for _, r, blob in calls:
            assert isinstance(args, bytes)
            nonce = next(executors.nonces)
            submit = functools.partial(
                executor.submit, executors.call_pickled, blob, args, nonce
            )
            futures.append(
                monitoring.hand_off(r, submit)
            )  # monitor: call handed off/ended
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return outcomes, [(slot, r) for slot, r, _ in calls], futures


def wait_pickled(
    futures: list[Future[Any]], deadline: float | None, robust: bool
) -> tuple[set[Future[Any]], set[Future[Any]]]:
    """Wait for the calls; return those that finished, and those that did not
    by the deadline.

    ``send``: at the first failure, the calls after the earliest failed one are
    cancelled, then the others are waited for.  At the deadline, the calls not
    finished are cancelled.  Cancelling happens here, in the sender's thread:
    some executors' futures (dask's) must not be cancelled from their callbacks.
    """
    cancelled: set[Future[Any]] = set()
    if not robust:
        done, _ = wait_futures(futures, remaining(deadline), FIRST_EXCEPTION)
        failed = [i for i, f in enumerate(futures) if f in done and failed_call(f)]
        if failed:
            cancelled = {f for f in futures[failed[0] + 1 :] if f.cancel()}
    # Never wait() for a future we cancelled: wait() counts it done only once
    # its executor acknowledges the cancel, and dask's may never do so.
    pending = [f for f in futures if f not in cancelled]
    done, not_done = wait_futures(pending, remaining(deadline))
    for fut in not_done:
        fut.cancel()
    for fut in done:
        err = None if fut.cancelled() else fut.exception()
        if err is not None and not isinstance(err, Exception):
            raise err  # a BaseException that is not an Exception: never caught
    return {f for f in done if not f.cancelled()}, not_done


def failed_call(fut: Future[Any]) -> bool:
    return not fut.cancelled() and fut.exception() is not None


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def pickled_outcome(
    r: Receiver, fut: Future[Any], finished: set[Future[Any]], late: set[Future[Any]]
) -> Outcome:
    """The outcome of one out-of-process call, once :func:`wait_pickled` is done."""
    if fut in late:  # running or queued elsewhere at the deadline: cannot tell
        return TimedOut(r, started=True)
    if fut not in finished:  # cancelled: an earlier call failed in send
        return Marker.CLOSED
    err = fut.exception()
    if err is not None:
        assert isinstance(err, Exception)
        return Failed(r, err)
    return (r, fut.result())


def dump_receiver(
    r: Receiver, executor: Executor, args: bytes | pickle.PicklingError | None
) -> bytes:
    """Pickle ``r`` for ``executor``; the error names the receiver and the rule."""
    if isinstance(args, pickle.PicklingError):
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


# -- submit -------------------------------------------------------------------

# Every Future submit() returned, until it is done: nothing a caller drops is
# lost half-way.  set.add/discard are atomic.
_in_flight: set[Future[Responses]] = set()


def submit(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None = None,
) -> Future[Responses]:
    """Start a robust send and return a Future of its results at once.

    On an executor, with no deadline: the calls are submitted here, and the
    last one to finish resolves the Future; no thread waits.  Otherwise (no
    executor, a deadline, async receivers) the send runs on a thread of
    :func:`executors.owned_pool`.  Called from a thread that is running on the
    pool it would wait for, it runs the send right here instead and returns a
    done Future: waiting for that Future can then never deadlock.

    Cancelling the Future before it is done stops the calls not yet begun.
    """
    pool = executors.owned_pool()
    if executors.running_on(pool) or (
        executor is not None and executors.running_on(executor)
    ):
        done: Future[Responses] = Future()
        done.set_result(run(signal, entries, sender, named, executor, timeout, True))
        return done
    if (
        executor is not None
        and timeout is None
        and not any(e.is_async for e in entries)
        and not monitoring.installed  # monitor: monitored submits go through run()
    ):
        fut = submit_gathered(signal, entries, sender, named, executor)
    else:
        chain = (*executors.on_pools.get(), pool)
        ctx = contextvars.copy_context()
        fut = pool.submit(
            ctx.run,
            coordinate,
            chain,
            signal,
            entries,
            sender,
            named,
            executor,
            timeout,
        )
    _in_flight.add(fut)
    fut.add_done_callback(_in_flight.discard)
    return fut


def coordinate(
    chain: tuple[Executor, ...],
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
    timeout: float | None,
) -> Responses:
    executors.on_pools.set(chain)
    return run(signal, entries, sender, named, executor, timeout, True)


def submit_gathered(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor,
) -> Future[Responses]:
    """A robust send whose last finishing call resolves the returned Future."""
    outer: Future[Responses] = Future()
    finish: Callable[[], list[Outcome]]
    if executors.in_process(executor):
        fan = Fanout(len(entries), robust=True)
        start_here(fan, signal, entries, sender, named, executor)
        futures: list[Future[Any]] = list(fan.futures)

        def finish() -> list[Outcome]:
            return [CLOSED if f.cancelled() else f.result() for f in futures]

        def stop() -> None:
            fan.fail()
    else:
        outcomes, calls, futures = start_pickled(
            signal, entries, sender, named, executor, True
        )

        def finish() -> list[Outcome]:
            finished = {f for f in futures if not f.cancelled()}
            for (slot, r), f in zip(calls, futures, strict=True):
                err = None if f.cancelled() else f.exception()
                if err is not None and not isinstance(err, Exception):
                    raise err
                outcomes[slot] = pickled_outcome(r, f, finished, set())
            return [out for out in outcomes if out is not None]

        def stop() -> None:
            for f in futures:
                f.cancel()

    def resolve() -> None:
        try:
            responses = assemble(signal, finish(), True, None)
        except BaseException as err:  # handed to whoever waits on the Future
            with contextlib.suppress(InvalidStateError):
                outer.set_exception(err)
            return
        with contextlib.suppress(InvalidStateError):  # it was cancelled
            outer.set_result(responses)

    outer.add_done_callback(lambda f: stop() if f.cancelled() else None)
    when_all_done(futures, resolve)
    return outer


def when_all_done(futures: Sequence[Future[Any]], then: Callable[[], None]) -> None:
    """Call ``then()`` once, on the thread that finishes the last of ``futures``."""
    if not futures:
        then()
        return
    # Guards ``left``; held only to count down.
    lock = threading.Lock()
    left = [len(futures)]

    def one_done(_: Future[Any]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            then()

    for fut in futures:
        fut.add_done_callback(one_done)

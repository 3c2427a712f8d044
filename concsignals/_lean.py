"""Sends without a Send: the cheap paths of per-connection delivery.

A :class:`~concsignals._send.Send` is what lets the calls of one send share a
gate: a failure, the deadline or an interruption closes it, and no call not
yet begun begins.  Two kinds of sync send (``send``, ``send_robust``) made
without a deadline or a monitor have nothing to share, and are made here with
one ``concurrent.futures.Future`` per call, at the cost of a ``submit``:

* :func:`fire_only`: every call is fire and forget (``wait=False``) to a
  target in this process, from a sync receiver, in one phase.  Nobody waits
  for a call, so nothing of one call is another's concern.
* :func:`wait_one`: a lone call, waited for, from a sync receiver, on an
  event loop or a :class:`~concsignals.Serial` of its own worker, neither run
  by the sending thread.  Nothing else to close.

Every other send returns ``None`` from these at once and takes ``_deliver``.
The rules are the same on both paths, and so are the tests that prove them
(``tests/test_delivery.py``); ``tests/test_lean.py`` proves what
is this module's own.  The job (:func:`call`) is the whole of a Send's work
for one call: the begin gate where the call begins, the call, its outcome
into the Future; it runs in a copy of the sender's context marked as running
on its target (``executors.on_pools``), as every job concsignals submits.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import CancelledError, Executor, Future
from concurrent.futures import wait as wait_for
from typing import TYPE_CHECKING, Any

from . import _inflight, executors
from ._send import Responses, log_failure
from ._snapshot import Entry
from ._targets import LoopTarget, Serial
from .executors import in_process

if TYPE_CHECKING:
    from ._signal import Signal


def fire_only(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
) -> Responses | None:
    """Each live receiver in connection order, its slot a Future of its
    call; ``None``: not a send of fire-and-forget calls only (see above).

    A call the target refuses (shut down, a loop closed, a full Serial seen
    from its own job) is logged as ``send_robust`` logs it, and its Future
    carries the error.
    """
    phase = None
    for e in entries:
        o = e.opts
        if o is None or not o.lean or e.is_async:
            return None
        if phase is None:
            phase = o.phase
        elif o.phase != phase:
            return None
        if o.target is None and executor is not None and not in_process(executor):
            return None
    responses: Responses = []
    dead = False
    for e in entries:
        r = e.get()
        if r is None:
            dead = True
            continue
        where = e.opts.target or executor or executors.owned_pool()  # type: ignore[union-attr]
        fut: Future[Any] = Future()
        _inflight.track(fut, signal)
        try:
            post(where, fut, (e, signal, sender, named, True))
        except Exception as err:  # refused: the call's outcome
            log_failure(signal, r, err)
            fut.set_running_or_notify_cancel()
            fut.set_exception(err)
        responses.append((r, fut))
    if dead:
        signal._collect_dead()
    return responses


def wait_one(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> Responses | None:
    """The lone call of ``entries``, waited for; ``None``: not such a send.

    Its outcome as any send's: a failure raised (``send``) or logged and in
    its slot (``send_robust``); not made (disconnected before it began):
    no slot.  A BaseException in the sending thread while it waits (an
    interruption) withdraws the call if it has not begun, else waits for
    its end, then propagates.
    """
    if len(entries) != 1:
        return None
    e = entries[0]
    o = e.opts
    if o is None or not o.wait or e.is_async or not apart(o.target):
        return None
    r = e.get()
    if r is None:
        signal._collect_dead()
        return []
    fut: Future[Any] = Future()
    try:
        post(o.target, fut, (e, signal, sender, named, False))  # type: ignore[arg-type]
    except Exception as refused:  # the call's outcome
        fut.set_running_or_notify_cancel()
        fut.set_exception(refused)
    try:
        err = fut.exception()
    except CancelledError:
        return []  # not made
    except BaseException:
        if not fut.cancel():  # begun: it ends first
            wait_for([fut])
        raise
    if err is None:
        return [(r, fut.result())]
    if robust and isinstance(err, Exception):
        log_failure(signal, r, err)
        return [(r, err)]
    raise err


def apart(target: Executor | None) -> bool:
    """Whether ``target`` runs calls in a thread of its own that is not this
    one: an event loop, or a Serial with its own worker, not running here."""
    if type(target) is LoopTarget:
        return not target.runs_here()
    if type(target) is Serial:
        return target.executor is None and not target.runs_here()
    return False


Call = tuple[Entry, "Signal", object, dict[str, Any], bool]


def post(where: Executor, fut: Future[Any], what: Call) -> None:
    """Hand the call ``what`` to ``where``: :func:`call` in a copy of this
    context, marked as running on ``where``."""
    ctx = contextvars.copy_context()
    ctx.run(executors.on_pools.set, (*executors.on_pools.get(), where))
    if type(where) is Serial:
        where.post(None, fut, call_in, ctx, what)
    elif type(where) is LoopTarget:
        where.loop.call_soon_threadsafe(call, fut, what, context=ctx)
    else:
        where.submit(ctx.run, call, fut, what)


def call_in(fut: Future[Any], ctx: contextvars.Context, what: Call) -> None:
    ctx.run(call, fut, what)


def call(fut: Future[Any], what: Call) -> None:
    """A call where it runs: the gate (a receiver disconnected or gone
    since the hand-over is not called, and its Future is cancelled; a
    Future cancelled meanwhile withdraws the call), the call, its outcome
    into ``fut``; a failure logged as ``send_robust`` logs it if ``log``
    (nobody waits for it).  Raises nothing."""
    entry, signal, sender, named, log = what
    mark = _inflight.enter(signal, entry)  # before the gate reads get
    try:
        r = entry.get()
        if r is None:
            fut.cancel()
            fut.set_running_or_notify_cancel()  # wait() and as_completed() see it
            return
        if not fut.set_running_or_notify_cancel():
            return  # cancelled before it began: withdrawn
        try:
            value = r(signal=signal, sender=sender, **named)
        except BaseException as err:  # the call's outcome: its Future carries it
            if log and isinstance(err, Exception):
                log_failure(signal, r, err)
            fut.set_exception(err)
        else:
            fut.set_result(value)
    finally:
        _inflight.leave(mark)

"""Inline: every call in the sender's own thread, in connection order.

Without a deadline, ``send`` and ``send_robust`` use the two plain loops
below (one sequential thread needs no gate: nothing can close the send while
it waits).  With a deadline, or as part of another backend (a nested send's
calls that no worker took, the sync receivers of an ``asend``), each call goes
through :func:`call`, the one wrapper every in-process backend uses: the
begin gate, the call, its outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import monitoring
from ._carriers import exit_all
from ._send import Responses, Send, log_failure

if TYPE_CHECKING:
    from ._monitor_events import SendEvent
    from ._signal import Signal
    from ._snapshot import Entry


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
            log_failure(signal, r, err)
            response = err
        responses.append((r, response))
    return responses


def send_watched(
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> Responses:
    """A monitored inline send without a deadline: :func:`call_inline` or
    :func:`call_robust`, reporting to the monitors as it goes."""
    watch = monitoring.watch_inline(signal, entries, sender, robust)
    if watch is None:  # uninstalled meanwhile
        return (call_robust if robust else call_inline)(signal, entries, sender, named)
    try:
        responses = call_watched(watch, signal, entries, sender, named)
    except BaseException as err:
        watch.finish(None, err)
        raise
    watch.finish(None, None)
    if len(responses) != len(entries):
        signal._collect_dead()
    return responses


def call_watched(
    watch: SendEvent,
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
) -> Responses:
    """:func:`call_inline` or :func:`call_robust` (``watch.robust``), reporting
    each call to the monitors as it goes (``monitoring.watch_inline``)."""
    responses: Responses = []
    for i, entry in enumerate(entries):
        r = entry.get()
        if r is None:
            watch.skip(i)
            continue
        entered = watch.enter(i, r)
        try:
            response = r(signal=signal, sender=sender, **named)
        except BaseException as err:
            if entered is not None:
                exit_all(entered, err)
            watch.returned(i, None, err)
            if not watch.robust or not isinstance(err, Exception):
                raise
            log_failure(signal, r, err)
            response = err
        else:
            if entered is not None:
                exit_all(entered, None)
            watch.returned(i, response, None)
        responses.append((r, response))
    return responses


def call(send: Send, i: int) -> None:
    """Call ``i`` of ``send`` in this thread, through the gate; never raises."""
    r = send.begin(i)
    if r is None:
        return
    watch = send.watch
    entered = None if watch is None else watch.enter(i, r)  # monitor: call began
    try:
        value = r(signal=send.signal, sender=send.sender, **send.named)
    except BaseException as err:
        if entered is not None:
            exit_all(entered, err)
        send.end(i, err=err)
    else:
        if entered is not None:
            exit_all(entered, None)
        send.end(i, value)


def run(send: Send) -> None:
    """Run every call of ``send`` here, one after another.

    Stops once the send is closed: by a failure (``send``), the deadline, or
    a ``BaseException``.
    """
    for i in range(len(send.entries)):
        if send.closed:
            return
        call(send, i)

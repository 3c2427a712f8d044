"""Inline: every call in the sender's own thread, in connection order.

Without a deadline, ``send`` and ``send_robust`` use the two plain loops
below (one sequential thread needs no gate: nothing can close the send while
it waits).  With a deadline, or as part of another backend (a nested send's
calls that no worker took, the sync receivers of an ``asend``), each call goes
through :func:`call`, the one wrapper every in-process backend uses: the
begin gate, the call, its outcome; it is a :class:`Call`, which a caller that
must call the receiver from its own frame (``concsignals.django``) uses
directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import monitoring
from ._carriers import Managed, exit_all
from ._inflight import local as _reading
from ._send import Responses, Send, log_failure
from ._snapshot import Receiver

if TYPE_CHECKING:
    from ._monitor_events import SendEvent
    from ._signal import Signal
    from ._snapshot import Entry


def call_inline(
    signal: Signal, entries: Sequence[Entry], sender: object, named: dict[str, Any]
) -> Responses:
    """Call each live entry in order in this thread; the first error propagates."""
    responses: Responses = []
    mark: list[Any] = [signal, entries, responses, 0]  # see _inflight.py
    stack = _reading.stack
    stack.append(mark)
    try:
        for e in entries:
            r = e.get()
            if r is None:
                mark[3] += 1
                continue
            responses.append((r, r(signal=signal, sender=sender, **named)))
    finally:
        stack.pop()
    return responses


def call_robust(
    signal: Signal, entries: Sequence[Entry], sender: object, named: dict[str, Any]
) -> Responses:
    """Call each live entry in order in this thread, catching ``Exception``."""
    responses: Responses = []
    mark: list[Any] = [signal, entries, responses, 0]  # see _inflight.py
    stack = _reading.stack
    stack.append(mark)
    try:
        for entry in entries:
            r = entry.get()
            if r is None:
                mark[3] += 1
                continue
            try:
                response = r(signal=signal, sender=sender, **named)
            except Exception as err:
                log_failure(signal, r, err)
                response = err
            responses.append((r, response))
    finally:
        stack.pop()
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
    watch = monitoring.watch_inline(signal, entries, sender, named, robust)
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
    mark: list[Any] = [signal, entries, [], 0]  # see _inflight.py
    stack = _reading.stack
    stack.append(mark)
    try:
        return _call_watched(watch, signal, entries, sender, named, mark)
    finally:
        stack.pop()


def _call_watched(
    watch: SendEvent,
    signal: Signal,
    entries: Sequence[Entry],
    sender: object,
    named: dict[str, Any],
    mark: list[Any],
) -> Responses:
    responses: Responses = mark[2]
    for i, entry in enumerate(entries):
        r = entry.get()
        if r is None:
            mark[3] += 1
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


class Call:
    """One call of a send in this thread, through the gate.  The code inside
    the ``with`` calls the receiver, so it is called from that code's own
    frame (``concsignals.django`` keeps Django's frame depth so)::

        with Call(send, i) as call:
            if call.receiver is not None:
                call.value = call.receiver(signal=..., sender=..., **named)

    Entering is the begin gate (``receiver``: ``None`` if the call must not
    begin) and the monitors' ``call_began``; leaving hands what the call
    returned or raised to ``send.end``: recorded there, never propagated.
    """

    __slots__ = ("entered", "i", "receiver", "send", "value")

    def __init__(self, send: Send, i: int) -> None:
        self.send = send
        self.i = i
        self.receiver: Receiver | None = None
        self.value: Any = None
        self.entered: Managed | None = None

    def __enter__(self) -> Call:
        send = self.send
        r = self.receiver = send.begin(self.i)
        watch = send.watch
        if r is not None and watch is not None:  # monitor: call began
            self.entered = watch.enter(self.i, r)
        return self

    def __exit__(self, kind: object, err: BaseException | None, tb: object) -> bool:
        if self.receiver is None:
            return False  # not begun: nothing of it to record
        if self.entered is not None:
            exit_all(self.entered, err)
        if err is None:
            self.send.end(self.i, self.value)
        else:
            self.send.end(self.i, err=err)
        return True


def call(send: Send, i: int) -> None:
    """Call ``i`` of ``send`` in this thread, through the gate; never raises."""
    with Call(send, i) as c:
        if c.receiver is not None:
            c.value = c.receiver(signal=send.signal, sender=send.sender, **send.named)


def run(send: Send) -> None:
    """Run every call of ``send`` here, one after another.

    Stops once the send is closed: by a failure (``send``), the deadline, or
    a ``BaseException``.
    """
    for i in range(len(send.entries)):
        if send.closed:
            return
        call(send, i)

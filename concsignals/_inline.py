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

from ._send import Responses, Send, log_failure

if TYPE_CHECKING:
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


def call(send: Send, i: int) -> None:
    """Call ``i`` of ``send`` in this thread, through the gate; never raises."""
    r = send.begin(i)
    if r is None:
        return
    try:
        value = r(signal=send.signal, sender=send.sender, **send.named)
    except BaseException as err:
        send.end(i, err=err)
    else:
        send.end(i, value)


def run(send: Send, slots: Sequence[int] | None = None) -> None:
    """Run ``slots`` (default: all) of ``send`` here, one after another.

    Stops once the send is closed: by a failure (``send``), the deadline, or
    a ``BaseException``.
    """
    for i in range(len(send.entries)) if slots is None else slots:
        if send.closed:
            return
        call(send, i)

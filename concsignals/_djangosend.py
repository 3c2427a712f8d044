"""The sends of :class:`concsignals.django.Signal`: the engine's, in Django's shape.

A Django-shaped send is a :class:`~concsignals._send.Send` like any other (one
gate, one outcome per slot, one assembly), with three things of Django's:

* **Grouping.**  Django's results list the sync receivers first, then the
  async ones.  :func:`grouped` orders the send's slots so (each group in
  connection order), so ``Send.assemble`` returns Django's order and the
  monitors see the slots in it.
* **Threads.**  ``asend`` is the asyncio backend's (``_run.arun``): one job
  of the sync receivers, in order, through the signal's ``_offload_sync``
  (asgiref's thread-sensitive ``sync_to_async``), and a task per async
  receiver.  On a failure or a cancellation no further call begins, and the
  send returns once every call it began has ended, the job's included.  A
  sync send calls its sync receivers in the sender's thread and then runs the
  async ones together through the signal's ``_run_coroutine`` (asgiref's
  ``async_to_sync``): :func:`then_async`.
* **Frame depth.**  ``send`` and ``send_robust`` call each sync receiver from
  their own frame, through ``_inline.Call`` (the gate, the monitors, the
  outcome), so ``warnings.warn(stacklevel=...)`` in a receiver points where it
  does on Django, with or without monitors.

``_live_receivers``: Django's sends ask ``self._live_receivers(sender)``, and
code such as sentry-sdk's Django integration replaces it on the class to wrap
each receiver.  When it is not concsignals' own (``patched``), it decides what
a send calls, as on Django: the receivers it returned, held for the send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _mute, monitoring
from ._errors import Policy
from ._send import Responses, Send
from ._snapshot import AsyncEntry, Entry, strong

if TYPE_CHECKING:
    from .django import Signal


def grouped(signal: Signal, sender: object, patched: bool) -> Sequence[Entry]:
    """What a send for ``sender`` calls, in Django's order of results: the
    sync receivers, then the async ones.  ``patched``: ask the signal's
    ``_live_receivers``, whose receivers become entries that hold them."""
    if patched:
        sync, asynchronous = signal._live_receivers(sender)
        return [
            *(Entry(strong(r), None, 0, None) for r in sync),
            *(AsyncEntry(strong(r), None, 0, None) for r in asynchronous),
        ]
    entries = signal._snapshot.lookup(sender)
    if _mute.active:  # mute: leave out what this context muted
        entries = _mute.unmuted(signal, entries, sender)
    if not any(e.is_async for e in entries):
        return entries
    return [e for e in entries if not e.is_async] + [e for e in entries if e.is_async]


class Sending:
    """A sync send's :class:`Send`, reported to the monitors, if any, while
    the ``with`` runs (its end: when the ``with`` is left, with what it
    raised)::

        with Sending(signal, sender, named, patched, robust) as send:
            ...  # call the sync receivers
            return then_async(send)
    """

    __slots__ = ("send",)

    def __init__(
        self,
        signal: Signal,
        sender: object,
        named: dict[str, Any],
        patched: bool,
        robust: bool = False,
        policy: Policy | None = None,
    ) -> None:
        entries = grouped(signal, sender, patched)
        self.send = Send(signal, entries, sender, named, None, robust, policy)

    def __enter__(self) -> Send:
        if monitoring.installed:  # monitor: send began
            monitoring.watch(self.send, None)
        return self.send

    def __exit__(self, kind: object, err: BaseException | None, tb: object) -> None:
        watch = self.send.watch
        if watch is not None:  # monitor: send ended
            watch.finish(self.send, err)


def then_async(send: Send) -> Responses:
    """A sync send whose sync receivers were called: run its async ones
    together through the signal's ``_run_coroutine``, if one is alive; then
    the results (or what ``send`` raises).

    With none alive, no loop is needed, nor refused inside a running one:
    Django's ``_live_receivers`` leaves a dead receiver out, so Django's send
    then returns the sync receivers' results too.
    """
    later = [i for i, e in enumerate(send.entries) if e.is_async]
    if later and not send.closed:
        if any(send.entries[i].get() is not None for i in later):
            from . import _async  # asyncio: only when an async receiver runs

            return send.signal._run_coroutine(lambda: _async.run(send, None, True))
        for i in later:
            send.begin(i)  # dead for good: the gate settles it as skipped
    return send.assemble()

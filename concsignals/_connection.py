"""``Connection``: what ``connect()`` returns, a handle on one connection.

Django's ``connect`` returns ``None``, so code written for Django never looks
at it; code written for concsignals can keep it to disconnect exactly this
connection (not one made since under the same receiver and sender), to see
whether it is still connected and how many of its calls are under way, and
to hold its calls back for a while (:meth:`Connection.blocked`).

``blocked()`` swaps the entry's ``get`` for a :class:`~concsignals._snapshot.
Blocked` under the signal's writer lock: every gate reads ``get``
immediately before a call, so no call of the connection begins while it is
held, in any thread, on any target (a call queued meanwhile is skipped by
its gate, as for a receiver disconnected).  Writers read through it, so the
connection stays connected; a disconnect while it is held stores ``DEAD``
over it and wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import _inflight, _registry
from ._snapshot import Blocked, Entry, Receiver

if TYPE_CHECKING:
    from ._signal import Signal


class Connection:
    """One connection of a receiver to a signal (``connect()``'s result).

    Safe from any thread.  It does not keep the receiver alive: a weakly
    connected receiver that dies is disconnected as ever.
    """

    __slots__ = ("_entry", "_key", "_uid", "signal")

    def __init__(self, signal: Signal, entry: Entry, key: Any, uid: object) -> None:
        self.signal = signal
        self._entry = entry
        self._key = key
        self._uid = uid

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<Connection {self._entry.receiver()!r} to {self.signal!r}, {state}>"

    @property
    def receiver(self) -> Receiver | None:
        """The receiver, while connected and alive (blocked or not)."""
        return self._entry.receiver()

    @property
    def connected(self) -> bool:
        """Whether this connection is still there (disconnected, or its
        receiver or sender gone: ``False`` for good)."""
        return self._entry.is_live()

    @property
    def in_flight(self) -> int:
        """How many calls of this connection are under way right now (begun
        and not ended; a snapshot, stale at once)."""
        return _inflight.count(self._entry)

    def disconnect(self, wait: bool = False, timeout: float | None = None) -> bool:
        """Disconnect this connection (see :meth:`Signal.disconnect` for
        ``wait`` and ``timeout``); whether it was connected.

        Unlike ``signal.disconnect``, the handle still knows its connection
        once it is gone, so ``wait=True`` waits even when the connection was
        already disconnected: after a wait that timed out, call it again."""
        found = self._disconnect([])
        if wait:
            what = f"disconnect from {self.signal!r}"
            _inflight.wait(_inflight.waiting_for([self._entry], True), timeout, what)
        return found

    async def adisconnect(self, timeout: float | None = None) -> bool:
        """:meth:`disconnect` with ``wait=True``, without blocking the loop."""
        found = self._disconnect([])
        what = f"disconnect from {self.signal!r}"
        waiting = _inflight.waiting_for([self._entry], False)
        await _inflight.await_(waiting, timeout, what)
        return found

    def _disconnect(self, gone: list[Entry]) -> bool:
        return _registry.disconnect_key(
            self.signal, self._key, self._uid, gone, self._entry
        )

    @contextmanager
    def blocked(self) -> Iterator[Connection]:
        """While inside, no call of this connection begins, in any thread
        (process-wide; for one context only, see ``signal.muted``).  Calls
        already running go on.  Blocks nest and may overlap from several
        threads; the last one out lets calls begin again.  The connection
        stays connected (``signal.receivers`` lists it)."""
        entry, lock = self._entry, self.signal._lock
        with lock:
            get = entry.get
            if type(get) is Blocked:
                get.count += 1
            elif entry.is_live():
                entry.get = Blocked(get)
        try:
            yield self
        finally:
            with lock:
                get = entry.get
                if type(get) is Blocked:  # else disconnected meanwhile: DEAD
                    get.count -= 1
                    if get.count == 0:
                        entry.get = get.original

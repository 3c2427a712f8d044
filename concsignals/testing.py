"""Testing code that uses signals, safely in parallel.

Everything here is scoped to the test that uses it, never to the process:
nothing edits a signal's receivers behind other tests' backs, so tests may
run side by side in threads (pytest-run-parallel, free-threaded Python)
without seeing each other.

* :func:`capture`: record the sends made in this context (or, with
  ``scope="process"``, anywhere) and assert on them;
* :func:`wait_for` / :func:`await_for`: wait until a matching send has ended,
  in any thread;
* :func:`connected`: connect a receiver for the length of a ``with``;
* :class:`mute_signals`: factory_boy's ``mute_signals``, context-scoped.

``capture`` and ``wait_for`` are one monitor (``_capture.py``), installed
while any of them is open; ``mute_signals`` is ``concsignals.muted``
(``_mute.py``).  See docs/testing.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from ._capture import ANY, Capture, Sent, describe, wanted
from ._connection import Connection
from ._mute import Mute
from ._signal import Signal, muted

__all__ = [
    "ANY",
    "Capture",
    "Sent",
    "Waiter",
    "await_for",
    "capture",
    "connected",
    "mute_signals",
    "wait_for",
]

T = TypeVar("T")


def capture(*signals: Signal, sender: object = ANY, scope: str = "context") -> Capture:
    """Record every send of ``signals`` (none given: of every signal) for
    ``sender`` while the ``with`` lasts; ``with capture(...) as sent:``.

    ``scope="context"`` (the default) records the sends made in this
    context: this thread or task, tasks created inside, and the calls
    concsignals runs for them on pools and loops (which copy the context).
    A thread started by hand is not seen, nor another test running beside
    this one.  ``scope="process"`` records every send in the process, from
    any thread (a server thread under test).

    Every send path is seen: ``send``, ``send_robust``, ``asend``,
    ``submit``, views, every executor and ``concsignals.django`` signals,
    also a send with nobody to call (nothing connected, or all muted).
    The recorder is safe from any thread; see :class:`Capture` for its
    ``sent`` records and ``assert_sent``/``assert_sent_once``/``assert_not_sent``.
    """
    return Capture(signals, sender, scope)


class Waiter:
    """What :func:`wait_for` and :func:`await_for` return.

    It watches from the moment it is made, so a send that ends before the
    wait begins is not missed.  ``sent`` is the matching :class:`Sent` once
    found.  Waited for once; the watch ends with the wait (or the ``with``).
    """

    def __init__(
        self,
        signal: Signal,
        timeout: float,
        sender: object,
        check: Callable[[Sent], object] | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not isinstance(signal, Signal):
            raise TypeError(f"wait_for() needs a concsignals signal, not {signal!r}")
        if not timeout >= 0:
            raise ValueError(
                f"wait_for() timeout must be >= 0 seconds, not {timeout!r}"
            )
        self.signal, self.sender, self.check = signal, sender, check
        self.timeout = timeout
        self.sent: Sent | None = None
        self._ended: list[Sent] = []  # appended by senders' threads
        self._checked = 0
        self._news = threading.Event()
        self._anews: asyncio.Event | None = None
        self._loop = loop
        if loop is not None:
            self._anews = asyncio.Event()
        # Every send, to list what was sent meanwhile if none matches.
        self._watch = Capture((), ANY, "process")
        self._watch.listen(self._on_end)
        self._watch.__enter__()

    def __repr__(self) -> str:
        return f"<concsignals Waiter for {wanted(self.signal, self.sender, {})}>"

    def _on_end(self, sent: Sent) -> None:
        self._ended.append(sent)
        self._news.set()
        if self._loop is not None and self._anews is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                self._loop.call_soon_threadsafe(self._anews.set)

    def _found(self) -> Sent | None:
        """A matching send among those ended since the last look (``check``
        runs here, in the waiting thread, no lock held)."""
        while self._checked < len(self._ended):
            sent = self._ended[self._checked]
            self._checked += 1
            if not sent.matches(self.signal, self.sender, {}):
                continue
            if self.check is None or self.check(sent):
                self.sent = sent
                return sent
        return None

    def _timed_out(self) -> TimeoutError:
        what = wanted(self.signal, self.sender, {})
        if self.check is not None:
            what += " that passes check"
        head = f"no send of {what} within {self.timeout} s"
        return TimeoutError(describe(head, self._watch.sent))

    def close(self) -> None:
        """Stop watching (the wait does it; safe to call again)."""
        if self._watch.open:
            self._watch.__exit__(None, None, None)

    def wait(self) -> Sent:
        """Block until a matching send has ended (it may have already);
        return it, or raise ``TimeoutError`` listing every send meanwhile."""
        if self.sent is not None:
            return self.sent
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                self._news.clear()  # before looking: a later end sets it again
                found = self._found()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out()
                self._news.wait(remaining)
        finally:
            self.close()

    async def wait_async(self) -> Sent:
        """:meth:`wait` without blocking the event loop."""
        if self.sent is not None:
            return self.sent
        news = self._anews
        if news is None:
            raise RuntimeError(f"{self!r} was made by wait_for(): use wait()")
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                news.clear()
                found = self._found()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(news.wait(), remaining)
        finally:
            self.close()

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, kind: object, err: object, tb: object) -> None:
        """Wait at the end of the block, unless it raised."""
        if kind is None:
            self.wait()
        self.close()

    async def __aenter__(self) -> Waiter:
        return self

    async def __aexit__(self, kind: object, err: object, tb: object) -> None:
        if kind is None:
            await self.wait_async()
        self.close()

    def __await__(self) -> Generator[Any, None, Sent]:
        return self.wait_async().__await__()


def wait_for(
    signal: Signal,
    *,
    timeout: float,
    sender: object = ANY,
    check: Callable[[Sent], object] | None = None,
) -> Waiter:
    """Watch for a send of ``signal`` (for ``sender``, passing ``check``) in
    any thread, from now on; the :class:`Waiter` blocks for it.

    ``with wait_for(sig, timeout=5) as w: trigger()`` waits at the end of the
    block (like pytest-qt's ``waitSignal``); ``wait_for(...).wait()`` waits
    at once.  A send matches once it has *ended* (its receivers have run:
    ``w.sent.results``).  ``check(sent)`` runs in the waiting thread.  If
    none matches within ``timeout`` seconds, ``TimeoutError`` lists every
    send made meanwhile.
    """
    return Waiter(signal, timeout, sender, check)


def await_for(
    signal: Signal,
    *,
    timeout: float,
    sender: object = ANY,
    check: Callable[[Sent], object] | None = None,
) -> Waiter:
    """:func:`wait_for` for asyncio, called in a running loop:
    ``await await_for(sig, timeout=5)``, or ``async with await_for(...) as
    w: ...`` (waits at the end of the block)."""
    loop = asyncio.get_running_loop()
    return Waiter(signal, timeout, sender, check, loop)


@contextlib.contextmanager
def connected(
    signal: Signal, receiver: Callable[..., Any], **connect_options: Any
) -> Iterator[Connection]:
    """Connect ``receiver`` (with ``signal.connect``'s options) for the
    length of the ``with``; yield the :class:`~concsignals.Connection`.

    On leaving, even on error, the connection is disconnected and the calls
    of it still running (in any thread) are waited for
    (``disconnect(wait=True)``).  A receiver already connected so (same
    receiver or ``dispatch_uid``, same sender) is refused: leaving would
    disconnect a connection this ``with`` did not make.
    """
    before = {id(e) for e in signal._snapshot.entries if e.is_live()}
    conn = signal.connect(receiver, **connect_options)
    if id(conn._entry) in before:
        raise ValueError(
            f"connected(): {receiver!r} is already connected to {signal!r}; "
            f"it would be disconnected at the end of the with"
        )
    try:
        yield conn
    finally:
        conn.disconnect(wait=True)


class mute_signals:  # named as factory_boy's, for a drop-in
    """factory_boy's ``mute_signals``, scoped to a context: every call of
    ``signals`` is silenced in the sends made in this context (see
    ``concsignals.muted``), never in another thread or test.

    The same shapes as factory_boy's: a context manager, a decorator of a
    function (sync or async), of a factory class (its ``_generate``,
    ``_create`` and ``_after_postgeneration``), and of any other class (its
    ``test*`` methods).  Nests, and one object may be used in many threads
    at once.
    """

    def __init__(self, *signals: Signal) -> None:
        self.signals = signals
        self._mute: Mute = muted(*signals)

    def __repr__(self) -> str:
        return f"<concsignals mute_signals of {len(self.signals)} signal(s)>"

    def __enter__(self) -> None:
        self._mute.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._mute.__exit__(*exc)

    def copy(self) -> mute_signals:
        """A new ``mute_signals`` of the same signals (factory_boy has it)."""
        return mute_signals(*self.signals)

    def __call__(self, target: T) -> T:
        if not isinstance(target, type):
            return self._mute(target)  # type: ignore[type-var]
        if _is_factory(target):
            for name in ("_generate", "_create", "_after_postgeneration"):
                method = getattr(target, name).__func__
                setattr(target, name, classmethod(self._mute(method)))
            return target
        for name, value in list(vars(target).items()):
            if name.startswith("test") and callable(value):
                setattr(target, name, self._mute(value))
        return target


def _is_factory(cls: type) -> bool:
    """Whether ``cls`` is a factory_boy factory (only if factory_boy is
    imported: otherwise it cannot be)."""
    base = sys.modules.get("factory.base")
    meta = getattr(base, "FactoryMetaClass", None)
    return meta is not None and isinstance(cls, meta)

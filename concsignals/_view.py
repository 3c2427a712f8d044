"""``signal.using(executor, timeout=..., errors=..., on_error=...)``: a view
that sends with options.

Holds no state but the options; every send reads the signal's snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _errors, _run
from ._errors import Policy
from ._send import Responses, Send

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    from ._signal import Signal


class SignalView:
    """``signal.using(executor, timeout=..., errors=..., on_error=...)``:
    sends with these options.

    Holds no state of its own but the options; connections are the signal's.
    Every method behaves under concurrency as the signal's method of the same
    name.
    """

    __slots__ = ("executor", "policy", "signal", "timeout")

    #: ``using()``'s default executor: the signal's own.
    SAME: Any = object()

    def __init__(
        self,
        signal: Signal,
        executor: Executor | None,
        timeout: float | None,
        policy: Policy | None = None,
    ) -> None:
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0, not {timeout!r}")
        self.signal = signal
        self.executor = executor
        self.timeout = timeout
        #: The error policy (``_errors.py``); ``None``: Django's.
        self.policy = policy

    def __repr__(self) -> str:
        return (
            f"<SignalView of {self.signal!r} executor={self.executor!r} "
            f"timeout={self.timeout!r} {_errors.describe(self.policy)}>"
        )

    def _send(self, sender: Any, named: dict[str, Any], robust: bool) -> Send:
        signal = self.signal
        entries = signal._entries(signal._snapshot, sender, named, self.executor)
        return Send(
            self.signal, entries, sender, named, self.timeout, robust, self.policy
        )

    @staticmethod
    def _nobody(send: Send) -> Responses:
        """A send with nobody to call (``_run.nobody``)."""
        return _run.nobody(send.signal, send.sender, send.named, send.robust)

    def send(self, /, sender: Any, **named: Any) -> Responses:
        """:meth:`Signal.send` on this view's executor, within its timeout."""
        send = self._send(sender, named, False)
        return _run.run(send, self.executor) if send.entries else self._nobody(send)

    def send_robust(self, /, sender: Any, **named: Any) -> Responses:
        """:meth:`Signal.send_robust` on this view's executor, within its timeout."""
        send = self._send(sender, named, True)
        return _run.run(send, self.executor) if send.entries else self._nobody(send)

    async def asend(self, /, sender: Any, **named: Any) -> Responses:
        """:meth:`Signal.asend` with this view's executor and timeout; reads
        the snapshot when awaited."""
        send = self._send(sender, named, False)
        return (
            await _run.arun(send, self.executor) if send.entries else self._nobody(send)
        )

    async def asend_robust(self, /, sender: Any, **named: Any) -> Responses:
        """:meth:`Signal.asend_robust` with this view's executor and timeout;
        reads the snapshot when awaited."""
        send = self._send(sender, named, True)
        return (
            await _run.arun(send, self.executor) if send.entries else self._nobody(send)
        )

    def submit(self, /, sender: Any, **named: Any) -> Future[Responses]:
        """:meth:`Signal.submit` on this view's executor, within its timeout
        (with ``errors="group"``: the Future's exception is the
        ``SendError``)."""
        robust = self.policy is None or not self.policy.group
        return _run.submit(self._send(sender, named, robust), self.executor)

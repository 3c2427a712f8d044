"""What happened, and whether it kept the contract.

The clock
---------
``tick()`` returns the next value of one process-wide counter
(``itertools.count``, whose ``__next__`` is a single C call and so atomic under
the GIL).  If thread A reads ``a = tick()`` and thread B later reads
``b = tick()``, then ``a < b``: ticks order events across threads.  Every
connect and disconnect is bracketed by two ticks (call, return), every send by
two (``s0`` before, ``s1`` after) and every receiver call records one tick when
it begins.

A tick is *stored* after it is taken, so a checker may read ``None`` for an
event that has in fact happened.  Every check is written so that a missing or
late-stored tick can only hide a violation, never invent one: the harness may
miss a race, but a reported violation is always real.

Records and probes
------------------
Each connection uses a fresh :class:`Probe` (the receiver) with its own
:class:`Record` (the ticks).  A probe is connected once and disconnected at most
once, so "connected during the whole send" is a question about one record.
Records hold no strong reference to their probe, so a weak receiver can die.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_counter = itertools.count(1)
#: The next tick of the process-wide clock (see the module docstring).
tick: Callable[[], int] = _counter.__next__

_tokens = itertools.count(1)


class Sender:
    """A sender object: weakly referenceable, its ``id()`` reusable once dead."""

    __slots__ = ("__weakref__", "name")

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Sender {self.name} at {id(self):#x}>"


class Violations:
    """Every broken promise seen in one scenario run.  Safe from any thread."""

    def __init__(self, keep: int = 12) -> None:
        self._lock = threading.Lock()  # guards every field below
        self._keep = keep
        self.count = 0
        self.kinds: dict[str, int] = {}
        self.samples: list[str] = []

    def add(self, kind: str, detail: str) -> None:
        with self._lock:
            self.count += 1
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if len(self.samples) < self._keep:
                self.samples.append(f"{kind}: {detail}")


class Record:
    """The ticks of one connection.  Written by whoever connects/disconnects."""

    __slots__ = (
        "bound",
        "claimed",
        "connect_call",
        "connect_ret",
        "disc_call",
        "disc_ret",
        "disc_thread",
        "dropped",
        "label",
        "probe_ref",
        "raises",
        "target",
        "token",
    )

    def __init__(self, label: str, target: Sender | None, raises: bool) -> None:
        self.token = next(_tokens)
        self.label = label
        #: Weak reference to the sender it is connected for, or None (any sender).
        self.target = None if target is None else weakref.ref(target)
        self.raises = raises
        self.bound = False
        self.claimed = False
        self.connect_call: int | None = None
        self.connect_ret: int | None = None
        self.disc_call: int | None = None
        self.disc_ret: int | None = None
        #: The thread that disconnected it (``threading.get_ident()``).
        self.disc_thread = 0
        #: When its owner let go of a weak probe without disconnecting it.
        self.dropped: int | None = None
        self.probe_ref: weakref.ref[Probe] | None = None

    def __repr__(self) -> str:
        return f"<{self.label} #{self.token}>"

    def for_sender(self, sender: object) -> bool:
        """Whether a send for ``sender`` should reach this connection."""
        if self.target is None:
            return True
        return sender is not None and self.target() is sender

    def receiver(self) -> Callable[..., Any] | None:
        """The object that was connected, if the probe is still alive."""
        probe = None if self.probe_ref is None else self.probe_ref()
        if probe is None:
            return None
        return probe.method if self.bound else probe


_claim_lock = threading.Lock()  # guards Record.claimed: one disconnecter each


def claim(rec: Record) -> bool:
    """Become the only one allowed to disconnect ``rec``; False if taken."""
    with _claim_lock:
        if rec.claimed:
            return False
        rec.claimed = True
        return True


class ProbeError(Exception):
    """Raised on purpose by a probe; carries the probe's token."""

    def __init__(self, token: int) -> None:
        super().__init__(f"probe #{token} raised on purpose")
        self.token = token


class SendContext:
    """Passed to every receiver as ``ctx=``: collects the calls of one send."""

    __slots__ = ("calls", "depth", "last_end", "raise_ok", "s0", "s1", "violations")

    def __init__(self, violations: Violations, raise_ok: bool, depth: int = 0):
        self.violations = violations
        self.raise_ok = raise_ok
        self.depth = depth
        # list.append is atomic: receivers on pool threads may append at once.
        self.calls: list[tuple[Record, int]] = []
        # Per thread, when the last call of this send made there ended.
        self.last_end: dict[int, int] = {}
        self.s0 = 0
        self.s1 = 0

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_no_context, ())


def _no_context() -> None:
    return None


Action = Callable[["Probe", Any, object, SendContext], None]


class Probe:
    """A receiver that records its calls and checks them as they begin.

    Connect either the probe itself (a callable object) or ``probe.method``
    (a bound method, held by ``WeakMethod``).
    """

    __slots__ = ("__weakref__", "action", "cycle", "rec")

    def __init__(self, rec: Record, action: Action | None = None) -> None:
        self.rec = rec
        self.action = action
        self.cycle: list[object] | None = None
        rec.probe_ref = weakref.ref(self)

    def __repr__(self) -> str:
        return f"<Probe {self.rec!r}>"

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        # Sent to a worker process: a stand-in that answers with the token.
        return (RemoteProbe, (self.rec.token,))

    def __call__(
        self, signal: Any = None, sender: Any = None, ctx: Any = None, **named: Any
    ) -> Any:
        return self.hit(signal, sender, ctx)

    def method(
        self, signal: Any = None, sender: Any = None, ctx: Any = None, **named: Any
    ) -> Any:
        return self.hit(signal, sender, ctx)

    def hit(self, signal: Any, sender: object, ctx: SendContext | None) -> Any:
        t = tick()
        rec = self.rec
        if ctx is None:  # called in another process, or by a foreign send
            return rec.token
        ctx.calls.append((rec, t))
        me = threading.get_ident()
        disc = rec.disc_ret
        if disc is not None and disc < t and self._checked_after(disc, me, ctx):
            ctx.violations.add(
                "called after disconnect returned",
                f"{rec!r} disconnected at tick {disc}, called at {t}",
            )
        if not rec.for_sender(sender):
            ctx.violations.add(
                "misrouted",
                f"{rec!r} connected for another sender was called for {sender!r}",
            )
        try:
            if self.action is not None:
                self.action(self, signal, sender, ctx)
            if rec.raises and ctx.raise_ok:
                raise ProbeError(rec.token)
            return rec.token
        finally:
            ctx.last_end[me] = tick()

    def _checked_after(self, disc: int, me: int, ctx: SendContext) -> bool:
        """Whether the dispatcher surely checked liveness after tick ``disc``.

        Between a dispatcher's ``entry.get()`` and the receiver's first line a
        thread switch may let a disconnect return; that call has begun by the
        contract's clock, not ours.  So a disconnect that returned before this
        call's first tick is a violation only if it returned before a moment
        the check surely followed: the send's start, the end of the previous
        call this send made on this thread, or (same thread) at all.
        """
        if self.rec.disc_thread == me:
            return True
        return disc < ctx.s0 or disc < ctx.last_end.get(me, 0)


class RemoteProbe:
    """What a probe becomes in a worker process: it returns its token.

    Calls there cannot be recorded here, so only the result is checked.
    """

    __slots__ = ("token",)

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, **named: Any) -> int:
        return self.token

    method = __call__


class AsyncProbe(Probe):
    """A probe whose ``__call__`` is ``async def``."""

    __slots__ = ()

    async def __call__(
        self, signal: Any = None, sender: Any = None, ctx: Any = None, **named: Any
    ) -> Any:
        return self.hit(signal, sender, ctx)


def probe_of(receiver: object) -> Probe | None:
    """The probe behind a receiver from a result list (object or bound method)."""
    owner = getattr(receiver, "__self__", receiver)
    return owner if isinstance(owner, Probe) else None


class Board:
    """The records a send's checker must know: live ones and recent retirees.

    Writers add and retire under ``_lock``; checkers read ``records``, a tuple
    replaced whole, without it.  Strong references to probes that must stay
    alive until disconnected live in ``_keep`` (mortal probes are not kept).
    """

    def __init__(self, keep_retired: int = 48) -> None:
        self._lock = threading.Lock()  # guards _live, _retired, _keep, records
        self._keep_retired = keep_retired
        self._live: dict[Record, None] = {}
        self._retired: list[Record] = []
        self._keep: dict[Record, Probe] = {}
        self.records: tuple[Record, ...] = ()
        self.live: tuple[Record, ...] = ()

    def add(self, rec: Record, keep: Probe | None = None) -> None:
        with self._lock:
            self._live[rec] = None
            if keep is not None:
                self._keep[rec] = keep
            self._publish_locked()

    def retire(self, rec: Record) -> None:
        with self._lock:
            if rec not in self._live:
                return
            del self._live[rec]
            self._keep.pop(rec, None)
            self._retired.append(rec)
            if len(self._retired) > self._keep_retired:
                del self._retired[0]
            self._publish_locked()

    def _publish_locked(self) -> None:
        self.live = tuple(self._live)
        self.records = (*self.live, *self._retired)

    def __len__(self) -> int:
        return len(self.live)


def check_send(
    ctx: SendContext,
    records: Iterable[Record],
    sender: object,
    results: Sequence[tuple[Any, Any]] | None,
    error: BaseException | None,
    *,
    robust: bool,
) -> None:
    """Check one finished send against the contract; report to ``ctx``.

    ``records`` must be read after the send returned (``ctx.s1``).
    """
    v = ctx.violations
    if error is not None:
        _check_error(ctx, error)
    if results is None:
        results = []
    seen: dict[int, Record] = {}
    latest_connect = 0
    for receiver, response in results:
        probe = probe_of(receiver)
        if probe is None:
            v.add("foreign result", f"{receiver!r} was never connected")
            continue
        rec = probe.rec
        if id(rec) in seen:
            v.add("receiver twice", f"{rec!r} appears twice in one result")
        seen[id(rec)] = rec
        _check_response(v, rec, response, robust)
        # Connection order: rec must not come after one whose connect began
        # after rec's connect had returned.
        if rec.connect_ret is not None and rec.connect_ret < latest_connect:
            v.add("order", f"{rec!r} comes after a receiver connected after it")
        if rec.connect_call is not None and rec.connect_call > latest_connect:
            latest_connect = rec.connect_call
        if not rec.for_sender(sender):
            v.add("misrouted", f"{rec!r} is in the result of a send for {sender!r}")
        if rec.disc_ret is not None and rec.disc_ret < ctx.s0:
            v.add("disconnected but called", f"{rec!r} disconnected before the send")
    called: dict[int, Record] = {}
    for rec, _t in list(ctx.calls):
        if id(rec) in called:
            v.add("called twice", f"{rec!r} called twice in one send")
        called[id(rec)] = rec
    if error is not None:
        return
    for key, rec in called.items():
        if key not in seen:
            v.add("lost result", f"{rec!r} was called but is not in the result")
    for rec in records:
        if id(rec) not in seen and _connected_throughout(rec, sender, ctx):
            v.add(
                "missing",
                f"{rec!r} was connected for the whole send {ctx.s0}..{ctx.s1} "
                f"but not called (connected at {rec.connect_ret}; "
                f"{'bound method' if rec.bound else 'object'}, for "
                f"{'any sender' if rec.target is None else sender!r}; "
                f"{len(results)} others were; alive now: "
                f"{rec.probe_ref is not None and rec.probe_ref() is not None})",
            )


def _connected_throughout(rec: Record, sender: object, ctx: SendContext) -> bool:
    ret = rec.connect_ret
    if ret is None or ret >= ctx.s0:
        return False
    for end in (rec.disc_call, rec.dropped):
        if end is not None and end <= ctx.s1:
            return False
    return rec.for_sender(sender)


def _check_response(v: Violations, rec: Record, response: Any, robust: bool) -> None:
    if isinstance(response, ProbeError):
        if not robust or response.token != rec.token:
            v.add("wrong error", f"{rec!r} got {response!r} in its slot")
    elif isinstance(response, BaseException):
        v.add("foreign exception", f"{rec!r} got {response!r}, which it never raised")
    elif response != rec.token:
        v.add("wrong response", f"{rec!r} got {response!r}, expected {rec.token}")


def _check_error(ctx: SendContext, error: BaseException) -> None:
    v = ctx.violations
    if not isinstance(error, ProbeError):
        notes = getattr(error, "__notes__", None)
        v.add(
            "foreign exception",
            f"send raised {type(error).__name__}: {error!r}, which no receiver "
            f"raised{f' (notes: {notes})' if notes else ''}",
        )
        return
    if not ctx.raise_ok:
        v.add("foreign exception", f"send raised {error!r} but no probe may raise")
        return
    if not any(rec.token == error.token for rec, _t in list(ctx.calls)):
        v.add("foreign exception", f"send raised {error!r} from an uncalled probe")

"""Muting scoped to a context: ``signal.muted()`` and ``concsignals.muted()``.

Design
------
A mute never edits a signal: it is a rule held in this module's context
variable, so it applies to the sends made in the context that entered it (this
thread, this asyncio task) and in the copies of that context made while it
lasts: a task created inside it, and every call concsignals hands to a pool,
a loop or a ``Serial`` (each runs in a copy of the sender's context), so a
send a receiver makes there is muted too.  A thread the user starts does not
copy the context, so it is not muted; nor is a worker process.

Each ``__enter__`` makes a :class:`Held`: the rules, and a ``live`` flag that
``__exit__`` clears.  The variable holds an immutable tuple of them, innermost
last; ``__exit__`` removes its own, so mutes nest, and one ``Mute`` object may
be entered in many threads at once (as a decorator is).  A mute lasts exactly
as long as its ``with``: a copied context that outlives it (a task created
inside) still holds the ``Held``, whose ``live`` is then false.

Where the check is: a send filters the entries it looked up, once, before
anything else sees them (:func:`unmuted`), so a muted connection's call never
begins and its slot is absent, as a disconnected receiver's is, on every
backend and target by construction.  A send already under way when a mute
begins is not affected.

What a rule matches: its signal (identity); its receiver, if any, as
``disconnect`` identifies one (a bound method by its object and function,
``_snapshot.receiver_id``), whatever sender or ``dispatch_uid`` it was
connected with; its sender, if any, as the send's sender (the same object, or
a bound method of the same object and function: ``_snapshot.same_sender``), so
it silences every call of the sends for that sender.

Cost when nothing is muted
--------------------------
``active`` counts the mutes entered in the whole process; ``_lock`` guards its
changes, and nothing else (no user code runs under it).  Every send path reads
it without the lock (one attribute read, atomic: ``_snapshot.py``, 1) and
calls :func:`unmuted` only while it is non-zero: one read and one test when
nothing is muted.  ``Signal.send``'s fast path, while it is non-zero, also
reads ``held``: a context that muted nothing stays on it.  A thread that reads
a stale zero has no live rule to apply anyway: its context holds a mute's
rules only through a copy made after the mute's increment, and the hand-over
of that copy (a pool's queue, a task's creation) orders the increment before
its reads.  A send in a copied context that overlaps the mute's end may see
the mute or not.

A rule holds its signal, receiver and sender strongly (so no identity is
reused while it may match); a copied context that outlives the mute holds
them until it is dropped.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._callables import is_async_receiver
from ._snapshot import receiver_id, same_sender

if TYPE_CHECKING:
    from ._snapshot import Entry

F = TypeVar("F", bound=Callable[..., Any])


class Rule:
    """What one mute silences: a signal's calls, optionally of one receiver
    and for one sender (``None``: any)."""

    __slots__ = ("receiver", "rid", "sender", "signal")

    def __init__(self, signal: object, receiver: object, sender: object) -> None:
        if receiver is not None and not callable(receiver):
            raise TypeError(
                f"receiver {receiver!r} is not callable: muted() silences a "
                f"receiver, or (None) every receiver of {signal!r}"
            )
        self.signal = signal
        # Held strongly while the mute lasts, so its identity is not reused.
        self.receiver = receiver
        self.rid = None if receiver is None else receiver_id(receiver)
        self.sender = sender


class Held:
    """One entered mute: its rules, while ``live``."""

    __slots__ = ("live", "owner", "rules")

    def __init__(self, owner: Mute, rules: tuple[Rule, ...]) -> None:
        self.owner = owner
        self.rules = rules
        # Cleared once, by __exit__; read without a lock by copied contexts.
        self.live = True


#: The mutes entered in this context (and in the context it was copied from
#: while they lasted), innermost last.  A send's fast path reads it only while
#: ``active``: empty, it stays on the fast path.
held: contextvars.ContextVar[tuple[Held, ...]] = contextvars.ContextVar(
    "concsignals_muted", default=()
)

#: Guards ``active``, and nothing else; see "Cost when nothing is muted".
_lock = threading.Lock()
#: How many mutes are entered in the whole process.
active = 0


def _count(step: int) -> None:
    global active
    with _lock:
        active += step


class Mute:
    """``signal.muted(...)`` / ``concsignals.muted(...)``: a context manager,
    and a decorator of sync and async functions.

    Holds only its rules: one object may be entered in any number of threads
    and tasks at once, and nested.
    """

    __slots__ = ("rules",)

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules

    def __repr__(self) -> str:
        return f"<concsignals muted {len(self.rules)} rule(s)>"

    def __enter__(self) -> None:
        _count(+1)
        held.set((*held.get(), Held(self, self.rules)))

    def __exit__(self, *exc: object) -> None:
        entered = held.get()
        for i in range(len(entered) - 1, -1, -1):
            if entered[i].owner is self and entered[i].live:
                entered[i].live = False
                held.set(entered[:i] + entered[i + 1 :])
                _count(-1)
                return
        raise RuntimeError(
            f"{self!r} was left in a context it was not entered in "
            f"(another thread or task)"
        )

    def __call__(self, func: F) -> F:
        """Decorate ``func``: each call runs inside this mute."""
        import inspect  # decorating is rare: import concsignals stays light

        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"muted() cannot decorate the generator function {func!r}: "
                f"the mute would end before its body runs; use a with block"
            )
        if is_async_receiver(func):

            @functools.wraps(func)
            async def muted_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)

            return muted_async  # type: ignore[return-value]

        @functools.wraps(func)
        def muted_sync(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return muted_sync  # type: ignore[return-value]


def unmuted(
    signal: object, entries: tuple[Entry, ...], sender: object
) -> tuple[Entry, ...]:
    """``entries`` without those this context mutes for a send of ``signal``
    for ``sender`` (``entries`` itself if none is muted)."""
    rids: list[object] = []
    for mute in held.get():
        if not mute.live:
            continue
        for rule in mute.rules:
            if rule.signal is not signal:
                continue
            if rule.sender is not None and not same_sender(sender, rule.sender):
                continue
            if rule.rid is None:
                return ()
            rids.append(rule.rid)
    if not rids:
        return entries
    return tuple(
        e for e in entries if (r := e.get()) is None or receiver_id(r) not in rids
    )

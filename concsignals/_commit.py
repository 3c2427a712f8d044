"""Sends that wait for a database commit: ``connect(on_commit=...)`` and
``signal.after_commit(using)``.

A database transaction belongs to one connection of one thread (Django keeps
``django.db.connections`` per thread).  So the only moment a send can know
whether its calls must wait is the moment it is made, in the sending thread:
:func:`in_transaction` asks that thread's connection for ``alias`` whether an
atomic block is open.  If one is, the calls that must wait become one
:class:`Deferred` registered with Django's
``transaction.on_commit(..., using=alias, robust=True)``, so Django's rules
decide its fate: it runs once, when the outermost atomic block commits, in
the committing thread; a rollback of the transaction, or of the savepoint
that was open when it was registered, drops it; ``TestCase.
captureOnCommitCallbacks`` sees it.  With no atomic block open, the calls
run at once, in the send itself, as if they had no such option.

What a deferred send is
-----------------------
A :class:`Deferred` holds what the send captured when it was made: the
entries (the snapshot the send read, mutes of the sending context already
applied), the sender and the named arguments (the same objects, not
copies), the executor the send would have used, and a copy of the sending
context (context variables, monitors' carriers).  At the commit it is one
*robust* ``Send`` of those entries, run by the engine (``_run.run``) in that
context: every receiver's delivery target (``via=`` pools, process pools,
Dask, loops, ``Serial``), ``wait=`` and ``phase=`` apply as in any send;
each failure is logged as ``send_robust`` logs it and seen by monitors, and
never stops the other calls (nobody is left to raise it to).  The begin gate
runs at the commit: a receiver disconnected before then is not called.  The
commit's thread waits for the calls it waits for in any send; the results
are nobody's.  At the commit the send does not look for transactions again:
its calls run then, whatever other database is still in a transaction
(``captureOnCommitCallbacks(execute=True)`` runs callbacks inside the test's
own atomic block, where a second look would defer them for ever).

Splitting a send (:func:`withhold`)
-----------------------------------
A send reaches here only when its snapshot has options (``snap.has_opts``),
so a signal without options pays nothing.  The entries whose ``on_commit``
alias is in a transaction leave the send, grouped by alias (one
``Deferred`` per alias, in connection order); the others run at once, as
the send's, with results as ever (a deferred receiver has no slot in them,
as a muted one).

Django is imported only once ``django.db`` is: if it was never imported, no
transaction can be open, and the answer is "no" at the cost of one dict
lookup.  ``import concsignals`` stays free of Django.

Concurrency: nothing here is shared between threads.  Each thread asks its
own connection, registers with its own transaction, and a ``Deferred`` is
called once, by the thread that commits.  No lock is taken.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _mute, _run, monitoring
from ._send import Send

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from ._signal import Signal
    from ._snapshot import Entry


def in_transaction(alias: str) -> bool:
    """Whether this thread's connection ``alias`` is inside an atomic block.

    ``False`` without asking Django if ``django.db`` was never imported or
    Django's settings are not configured (no connection can be open).  An
    alias not in ``DATABASES`` raises Django's ``ConnectionDoesNotExist``.
    """
    db = sys.modules.get("django.db")
    if db is None:
        return False
    from django.conf import settings  # type: ignore[import-untyped]

    if not settings.configured:
        return False
    return bool(db.connections[alias].in_atomic_block)


class Deferred:
    """A send captured now, made at a commit: a robust send of ``entries``
    on ``executor``, in a copy of the sending context (see the module
    docstring).  Called once, by Django, in the committing thread."""

    __slots__ = ("context", "entries", "executor", "named", "part", "sender", "signal")

    def __init__(
        self,
        signal: Signal,
        entries: Sequence[Entry],
        sender: object,
        named: dict[str, Any],
        executor: Executor | None,
        part: bool = False,
    ) -> None:
        self.signal = signal
        self.entries = entries
        self.sender = sender
        self.named = named
        self.executor = executor
        self.context = contextvars.copy_context()
        #: The calls a send made now left for the commit (``withhold``): that
        #: send was reported to monitors when it was made, so at the commit
        #: monitors see these calls as ``SendEvent.deferred``.  Not a part:
        #: the whole send (``after_commit``), reported once, at the commit.
        self.part = part

    def __repr__(self) -> str:
        n = len(self.entries)
        return f"<deferred send of {self.signal!r}: {n} receivers>"

    def __call__(self) -> None:
        if not self.entries:  # an after_commit() send with nobody to call
            self.context.run(_run.nobody, self.signal, self.sender, self.named, True)
            return
        send = Send(self.signal, self.entries, self.sender, self.named, None, True)
        send.deferred = self.part  # monitors: a send of its own, or not
        self.context.run(_run.run, send, self.executor)

    def register(self, alias: str) -> None:
        """Hand this send to the transaction open on ``alias`` in this thread."""
        from django.db import transaction  # type: ignore[import-untyped]

        transaction.on_commit(self, using=alias, robust=True)


def withhold(
    signal: Signal,
    entries: tuple[Entry, ...],
    sender: object,
    named: dict[str, Any],
    executor: Executor | None,
) -> tuple[Entry, ...]:
    """The entries a send calls now.  Those connected ``on_commit`` to a
    database in a transaction in this thread leave, registered with it as one
    :class:`Deferred` per alias.  Only for a snapshot with options."""
    open_: dict[str, bool] = {}
    waiting: dict[str, list[Entry]] = {}
    for e in entries:
        o = e.opts
        alias = None if o is None else o.on_commit
        if alias is None:
            continue
        if alias not in open_:
            open_[alias] = in_transaction(alias)
        if open_[alias]:
            waiting.setdefault(alias, []).append(e)
    if not waiting:
        return entries
    for alias, group in waiting.items():
        Deferred(signal, group, sender, named, executor, part=True).register(alias)
    return tuple(
        [e for e in entries if e.opts is None or e.opts.on_commit not in waiting]
    )


class AfterCommit:
    """``signal.after_commit(using=None)``: sends that wait for the commit of
    the transaction open on database ``using`` (``None``: ``"default"``) in
    the sending thread.

    ``send`` and ``send_robust`` return ``None``: inside a transaction the
    whole send is captured and registered (see the module docstring), and
    its results are nobody's; with no transaction open it is the signal's
    ``send`` (failures raised) or ``send_robust`` (failures logged), made at
    once, results dropped.  Safe from any thread: each thread's transaction
    is its own.  Holds no state but the signal and the alias.
    """

    __slots__ = ("alias", "signal")

    def __init__(self, signal: Signal, using: str | None) -> None:
        if using is not None and (not isinstance(using, str) or not using):
            raise TypeError(
                f"after_commit(using=...) must be None or a database alias "
                f"(a non-empty str), not {using!r}"
            )
        self.signal = signal
        self.alias = "default" if using is None else using  # DEFAULT_DB_ALIAS

    def __repr__(self) -> str:
        return f"<after_commit(using={self.alias!r}) of {self.signal!r}>"

    def send(self, /, sender: Any, **named: Any) -> None:
        """Send after the commit; at once (failures raised) outside a
        transaction."""
        if not in_transaction(self.alias):
            self.signal.send(sender, **named)
        else:
            self._defer(sender, named)

    def send_robust(self, /, sender: Any, **named: Any) -> None:
        """Send robustly after the commit; at once outside a transaction."""
        if not in_transaction(self.alias):
            self.signal.send_robust(sender, **named)
        else:
            self._defer(sender, named)

    def _defer(self, sender: Any, named: dict[str, Any]) -> None:
        signal = self.signal
        entries = signal._snapshot.lookup(sender)
        if _mute.active:  # mute: leave out what this context muted
            entries = _mute.unmuted(signal, entries, sender)
        # With nobody to call, a send is still made at the commit, for the
        # monitors installed now (a capture records it); otherwise nothing.
        if entries or monitoring.installed:
            Deferred(signal, entries, sender, named, signal._executor).register(
                self.alias
            )

"""After ``fork()``: make every signal and concsignals' own pool work in the child.

Design
------
``os.fork()`` copies the whole memory of the process but only the thread that
called it.  Whatever the other threads were doing at that instant is frozen in
the child, half-done, with nobody left to finish it.  For concsignals that
leaves two things broken, and this module repairs both in the child, from one
``os.register_at_fork(after_in_child=...)`` hook (:func:`_after_fork_in_child`):

1. **Each signal's writer lock.**  A thread of the parent inside ``connect``,
   ``disconnect`` or a prune held ``Signal._lock`` at the fork; in the child
   that lock is held by a thread that does not exist: the first write would
   wait for ever, and dead entries would never be pruned (pruning only tries
   the lock).  Every signal registers itself here when it is made
   (:func:`register`, by weak reference, so a signal's lifetime is
   untouched), and the hook gives each a fresh, unheld ``_lock``.
2. **The owned pool** (:func:`concsignals.executors.reset_owned_after_fork`):
   the child inherits the pool object, its queue and its bookkeeping but none
   of its threads, so work submitted to it would never run.  The child drops
   it unused (shutting it down could wait on a lock a lost thread held) and
   makes a new one on the next ``submit()``; the lock that guards making it is
   made anew too.

Why a fresh lock is enough: the child's snapshots are consistent
----------------------------------------------------------------
A writer builds the new snapshot privately, under the lock, and *publishes* it
with one attribute write, ``signal._snapshot = new`` (``Signal._publish_locked``;
memory-model assumption 1 of ``_snapshot.py``).  Whatever step the lost writer
was at, one of two things holds in the child:

* it had not published: ``_snapshot`` is the old snapshot, whole, and the
  half-built one is reachable from nothing the child runs (its only reference
  was the lost thread's frame).  The write simply did not happen;
* it had published: ``_snapshot`` is the new snapshot, whole.  What may be
  left undone is the clean-up after the publish: ``Entry.retire()`` of the
  entry just removed (it is in no published snapshot any more, and no send is
  running in the child to hold an old one), or of dead entries (they already
  answer ``None``).

Either way the child sees the connections of one moment, exactly as a send
in the parent would have.  No other thread exists in the child, so nothing can
be inside the lock when the hook replaces it: the reset races with nothing.

What the child may inherit and is left as it is, because it is harmless:

* ``Signal._deaths``, the queue of reported deaths, as a lost compaction
  left it: reports it had already counted may still be queued (they are
  counted again: at worst the next compaction comes early), and dead entries
  may linger until then.  Sends skip them (their getter answers ``None``); it
  costs a slot, not a wrong call.
* Sends that were running in other threads (their ``Send`` objects, their
  parked calls): they are gone with their threads; nothing in the child can
  reach them.
* Futures that ``submit()`` returned before the fork and that were not done:
  their work was in the parent's pool, so in the child they never finish.
  Wait for them before forking, or only in the parent.

Limits:

* the hook cannot help a fork made *by the writer itself* while it holds the
  lock (say, from a finalizer the garbage collector runs inside ``connect``):
  that thread's ``with`` would release a lock it no longer holds;
* the fresh lock is a ``threading.RLock``, the kind ``Signal.__init__`` makes
  (a test checks the two agree); signals whose ``__init__`` skipped
  ``Signal.__init__`` are not registered.

Cost: registering is one weak reference and one dict item per ``Signal()``
(measured: about 0.3 µs more per ``Signal()``); the hook does O(signals alive)
work, once per fork, in the child only.

This module imports nothing from concsignals but ``executors`` (a lower
layer); ``_signal`` imports it.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

from . import executors


class _HasWriterLock(Protocol):
    _lock: threading.RLock


#: Every signal alive, so the child can reach each one: a weak reference to
#: each, keyed by the reference's own ``id()`` (stable while the dict holds
#: it), so registering never hashes or compares a signal (no user code, and a
#: subclass may be unhashable).  One item set, and one item popped by the
#: reference's callback when the signal dies: both atomic, safe from any
#: thread and from inside the garbage collector; neither blocks.  Iterated only
#: in the child, where no other thread runs.
_signals: dict[int, weakref.ref[_HasWriterLock]] = {}
_weak = weakref.ref


def _forget(ref: weakref.ref[_HasWriterLock]) -> None:
    _signals.pop(id(ref), None)


def register(signal: _HasWriterLock) -> None:
    """Have ``signal``'s writer lock re-created in a forked child.

    Called by ``Signal.__init__``.  Safe from any thread; never keeps
    ``signal`` alive.
    """
    ref = _weak(signal, _forget)
    _signals[id(ref)] = ref


def _after_fork_in_child() -> None:
    """Runs in a forked child only, before ``fork()`` returns there.

    Only the forking thread exists, so nothing else can use what is reset.
    """
    executors.reset_owned_after_fork()
    for ref in list(_signals.values()):
        signal = ref()
        if signal is not None:
            signal._lock = threading.RLock()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)

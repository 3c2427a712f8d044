"""After ``fork()``: make every signal and concsignals' own pool work in the child.

Design
------
``os.fork()`` copies the whole memory of the process but only the thread that
called it.  Whatever the other threads were doing at that instant is frozen in
the child, half-done, with nobody left to finish it.  For concsignals that
leaves three things to repair, all in the child, from one
``os.register_at_fork(after_in_child=...)`` hook (:func:`_after_fork_in_child`):

1. **Each signal's writer lock.**  A thread of the parent inside a write
   (``connect``, ``disconnect``, Django's ``receivers = [...]``, or
   ``_registry.drop_dead``'s compaction of reported deaths) held
   ``Signal._lock`` at the fork; in the child that lock is held by a thread
   that does not exist: the first write would wait for ever, and deaths would
   never be compacted (``drop_dead`` only tries the lock).  Every signal
   registers itself here when it is made (:func:`register`, by weak
   reference, so a signal's lifetime is untouched), and the hook gives each a
   fresh, unheld ``_lock``: all of them first, since step 2 may run a
   ``__del__`` that writes to any signal.
2. **Each signal's state, made what its snapshot says.**  A write's commit
   (``_registry.connect_locked``/``disconnect_locked``, step 3 of the write
   in ``_registry.py``) is not one store: it appends to the shared
   :class:`~concsignals._snapshot.State`'s lists, stores into its index and
   counts, and publishes the new snapshot last (``signal._snapshot = new``).
   A writer lost between two of those stores leaves the published snapshot
   whole (the old one: what it sees is bounded by ``n_any``/``upto``, below
   which nothing changes) but the state ahead of it, and the child's next
   write builds on the state: it could publish bounds that take in the lost
   entry and leave out its own (``tests/test_fork.py`` saw a child's
   ``connect`` lost that way).  So the hook republishes, per
   signal, exactly the live connections its snapshot sees, keeping their
   entries, in a fresh state (``_replace.as_published_locked``).  A
   compaction (``compacted_locked``, ``replace_locked``) builds a state of its
   own and commits it with one store; lost half-way, it left nothing behind.
3. **The owned pool** (:func:`concsignals.executors.reset_owned_after_fork`):
   the child inherits the pool object, its queue and its bookkeeping but none
   of its threads, so work submitted to it would never run.  The child drops
   it unused (shutting it down could wait on a lock a lost thread held) and
   makes a new one on the next ``submit()``; ``_owned_lock``, which guards
   making it, is made anew too.

When can a fork fall between two stores of a commit?
----------------------------------------------------
Another thread forks only while it runs, so the question is where the
writer can be paused.  The commit is straight-line stores of concsignals' own
objects: no call, no loop, no container allocated, no last reference
dropped (see ``_registry.py``).  With the GIL, a thread gives the GIL up only
at an eval-breaker check (function entry, calls and backward jumps) or in a
blocking C call, and the commit has none: no other thread runs, so none forks, between
its first store and its publish.  The free-threaded builds (3.13t+) stop
every other thread at such a check before forking (``PyOS_BeforeFork``'s
stop-the-world), so the same holds there.  Step 2 then finds nothing to
repair and costs only its walk.

A *Python-level tracer* changes that.  ``sys.settrace`` (coverage's Python
tracer, ``pdb`` and other debuggers) and ``sys.monitoring`` (coverage's
``sysmon`` core, 3.12+) call Python code at each new line of the commit,
where the GIL can change hands, or a debugger stops the writer for as long
as the user likes; coverage's C tracer runs no Python code, but it allocates
while it records, and on 3.11 an allocation can run the collector, and with
it a ``__del__``.  Under any of them another thread may fork between two
lines of a commit.  Step 2 is what
makes such a child correct: it sees the connections of one moment, the lost
write's effect entirely or not at all (a disconnect whose ``entry.get =
DEAD`` store ran is seen as done: a disconnect wins before the call).
``test_a_child_forked_mid_commit_under_a_tracer_can_write`` forks before
each line of both commits, with ``sys.settrace`` holding the writer there.

Why the rest needs no repair
----------------------------
No other thread exists in the child, so nothing can be inside a lock when the
hook replaces it: the reset races with nothing.  What the child may inherit
and is left as it is, because it is harmless:

* ``Signal._deaths``, the queue of reported deaths, as a lost compaction
  left it: reports it had already counted may still be queued (they are
  counted again: at worst the next compaction comes early), and dead entries
  may linger until then.  Sends skip them (their getter answers ``None``).
* Sends that were running in other threads (their ``Send`` objects, their
  parked calls): they are gone with their threads; nothing in the child can
  reach them.
* Futures that ``submit()`` returned before the fork and that were not done:
  their work was in the parent's pool, so in the child they never finish.
  Wait for them before forking, or only in the parent.

Limits:

* the hook cannot help a fork made *by the writer itself* while it holds the
  lock (say, from a finalizer the collector runs inside ``connect``): that
  thread's ``with`` would release a lock it no longer holds;
* on free-threaded 3.13, a child forked while another thread was inside a
  dict operation (the registry's index, ``sys.modules``) can hang on that
  dict's per-object lock, which the fork does not release (seen in gdb; the
  churn test of ``tests/test_fork.py`` is skipped there for that reason);
* the fresh lock is a ``threading.RLock``, the kind ``Signal.__init__`` makes
  (a test checks the two agree); signals whose ``__init__`` skipped
  ``Signal.__init__`` are not registered.

Cost: registering is one weak reference and one dict item per ``Signal()``
(measured: about 0.3 µs more per ``Signal()``).  The hook runs once per fork,
in the child only, and is O(connections held): measured on a loaded 2-core
machine, about 1 ms for 50 signals of 5 receivers, 32 ms more for one signal
of 10,000.

This module imports from concsignals only ``executors`` and ``_replace``
(lower layers); ``_signal`` imports it.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING

from . import _inflight, _replace, executors

if TYPE_CHECKING:
    from ._signal import Signal


#: Every signal alive, so the child can reach each one: a weak reference to
#: each, keyed by the reference's own ``id()`` (stable while the dict holds
#: it), so registering never hashes or compares a signal (no user code, and a
#: subclass may be unhashable).  One item set, and one item popped by the
#: reference's callback when the signal dies: both atomic, safe from any
#: thread and from inside the garbage collector; neither blocks.  Iterated only
#: in the child, where no other thread runs.
_signals: dict[int, weakref.ref[Signal]] = {}
_weak = weakref.ref


def _forget(ref: weakref.ref[Signal]) -> None:
    _signals.pop(id(ref), None)


def register(signal: Signal) -> None:
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
    _inflight.after_fork_in_child()  # the other threads' calls stayed behind
    alive = [s for s in (ref() for ref in list(_signals.values())) if s is not None]
    # Every lock first: a __del__ that a repair runs may write to any signal.
    for signal in alive:
        signal._lock = threading.RLock()
    released: list[object] = []
    for signal in alive:
        with signal._lock:
            _replace.as_published_locked(signal, released)
    released.clear()  # after the locks: may run a receiver's __del__


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""What an executor may be, and the helpers for running receivers elsewhere.

Any :class:`concurrent.futures.Executor` can run a signal's receivers.  What
concsignals does with it depends on one question: does the executor run work
*in this process*, sharing memory with the sender, or *elsewhere*?

In-process executors (``in_process(executor)`` is true)
    :class:`~concurrent.futures.ThreadPoolExecutor` and its subclasses, and any
    executor whose ``concsignals_in_process`` attribute is true (set it on your
    own executor class to opt in).  Receivers are called as they are, with no
    pickling, on the executor's threads.  Each call runs in a copy of the
    sender's :mod:`contextvars` context, and checks ``entry.get()`` on the
    worker thread right before the call, so a receiver disconnected while its
    call waited in the pool's queue is skipped.

Out-of-process executors (everything else)
    :class:`~concurrent.futures.ProcessPoolExecutor`, dask's
    ``Client.get_executor()``, loky, ...  Each receiver and the send's
    arguments are pickled in the sender's process with the standard
    :mod:`pickle` at hand-off, so a receiver or argument that cannot be pickled
    is reported, naming the receiver, before anything is submitted.  The worker
    gets a :class:`SignalRef` as its ``signal`` argument.

    Limit: the disconnect check happens at hand-off.  The sender cannot reach
    into a worker process, so a receiver disconnected after its call was handed
    to the executor but before a worker began it is still called.

Flow of one out-of-process call::

    sender process                                worker process
    --------------                                --------------
    r = entry.get()          (skip if None)
    pickle.dumps(r), pickle.dumps((SignalRef, sender, named))
    executor.submit(call_pickled, r_blob, args_blob, nonce)
                                     ---->        call_pickled: loads, r(...)
    future.result()          <----                return value / exception
    (r, value) with the local r

The ``nonce`` makes every call distinct, so executors that deduplicate equal
calls (dask's ``pure=True`` default) run each call anyway.

Deadlines (``signal.using(executor, timeout=t)``)
    ``t`` seconds for the whole send.  A receiver still running, or not yet
    begun, at the deadline gets a ``TimeoutError`` in its slot
    (``send_robust``) or makes ``send`` raise ``TimeoutError``.  One not begun
    is never begun afterwards (in-process) or is cancelled if the executor
    still can (out-of-process).  A running thread cannot be killed: a receiver
    that overruns the deadline keeps running on its worker, and its result is
    dropped.  Inline (``using(None, timeout=t)``) the deadline is checked before
    and after each call: receivers are not called once it has passed, and a
    call that overran it is reported as timed out (what it raised, if anything,
    is the ``TimeoutError``'s ``__cause__``); ``send`` stops there.

Nested sends
    A receiver running on an in-process executor may send through the same
    executor, even one of a single worker that is busy: a sender that is one of
    the executor's workers (``running_on``: the job wrapper concsignals
    submits marks it; or a thread concsignals ran a job of that executor on)
    submits its calls as usual, then runs in its own thread every call that
    no free worker has taken yet, in connection order, and waits only for
    calls that are already running.  The deadline holds there as inline:
    checked before and after each such call.  A sender known to be no worker
    of it (the main thread, the owned pool's workers) only waits.  A sender
    concsignals knows nothing of (work a user submitted to the pool directly)
    runs queued calls itself once none of them began for
    ``_threads.PATIENCE`` seconds (see ``_threads.py``).  ``submit`` made from
    a marked thread runs the send before it returns.

This module also owns the one executor concsignals creates itself: the thread
pool on which ``submit`` runs sends that have no executor (:func:`owned_pool`).
It is shut down at interpreter exit, and dropped in a forked child, which
makes its own on first use (see ``_fork.py``).  Executors passed in by users
are never shut down by concsignals.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import importlib
import itertools
import sys
import threading
import types
import weakref
from typing import TYPE_CHECKING, Any

from . import _carriers

if TYPE_CHECKING:
    from concurrent.futures import Executor, ThreadPoolExecutor

__all__ = [
    "SignalRef",
    "call_pickled",
    "in_process",
    "owned_pool",
    "reset_owned_after_fork",
    "running_on",
]


def in_process(executor: Executor) -> bool:
    """Whether ``executor`` runs work on threads of this process.

    True for :class:`~concurrent.futures.ThreadPoolExecutor` (and subclasses)
    and for executors with a true ``concsignals_in_process`` attribute; every
    other executor is treated as running work elsewhere, and gets pickled calls.
    """
    # No ThreadPoolExecutor exists before its module is imported; this reads
    # sys.modules instead of importing concurrent.futures with concsignals.
    thread = sys.modules.get("concurrent.futures.thread")
    if thread is not None and isinstance(executor, thread.ThreadPoolExecutor):
        return True
    return bool(getattr(executor, "concsignals_in_process", False))


# -- nested sends -------------------------------------------------------------

#: The in-process executors the current call runs on, innermost last.  Set by
#: the job wrapper concsignals submits (``_threads.start``), inside the call's
#: own copy of the sender's context, so it follows a chain of nested sends
#: across pools: a receiver on pool A that sends through pool B, whose
#: receiver sends through pool A again, sees A in its chain.  No private
#: attribute of any executor is read.
on_pools: contextvars.ContextVar[tuple[Executor, ...]] = contextvars.ContextVar(
    "concsignals_on_pools", default=()
)


def running_on(executor: Executor) -> bool:
    """Whether the current call runs on a worker of ``executor`` for a send
    concsignals made there (directly, or through a chain of nested sends).

    A send made there must not wait for a free worker of ``executor``: there
    may be none, ever.  Work a user put on the pool directly is not marked;
    ``_threads.worker_of`` tells what else is known of the thread.  Safe from
    any thread.
    """
    return any(pool is executor for pool in on_pools.get())


# -- the pool concsignals owns ------------------------------------------------

# Guards creating _owned (once).  Reads of _owned need no lock: one attribute
# read of a reference that goes from None to a pool, and back to None at exit.
# After exit, a pool made afresh refuses work (the interpreter is shutting
# down) and submit() runs the send in the caller's thread instead.  In a forked
# child both are reset (reset_owned_after_fork).
_owned_lock = threading.Lock()
_owned: ThreadPoolExecutor | None = None


def owned_pool() -> ThreadPoolExecutor:
    """The thread pool concsignals runs ``submit`` on when there is no executor.

    Created on first use, shut down at interpreter exit; ``submit`` never
    hands its Future out, so cancelling a ``submit()`` Future never cancels
    work of this pool.  Safe from any thread.
    """
    global _owned
    pool = _owned
    if pool is not None:
        return pool
    with _owned_lock:
        if _owned is None:
            from concurrent.futures import ThreadPoolExecutor

            # As many workers as ThreadPoolExecutor's default.
            _owned = ThreadPoolExecutor(
                thread_name_prefix="concsignals", initializer=_owned_worker_starts
            )
        return _owned


#: ``yes`` is set in each worker thread of the owned pool as it starts: such
#: a thread is a worker of no other pool (see ``_threads.worker_of``).
_owned_thread = threading.local()


def _owned_worker_starts() -> None:
    _owned_thread.yes = True


def on_owned_worker() -> bool:
    """Whether this thread is a worker of the pool concsignals owns."""
    return getattr(_owned_thread, "yes", False)


def is_owned(executor: Executor) -> bool:
    """Whether ``executor`` is the pool concsignals owns."""
    return executor is _owned


def reset_owned_after_fork() -> None:
    """Forget the owned pool in a forked child; the next ``submit`` makes one.

    Called in the child only (see ``_fork.py``), where only the forking thread
    exists.  The inherited pool has none of its threads, and its locks may be
    held by threads that are gone: it is dropped without being touched, and
    ``_owned_lock``, which a lost thread may hold, is made anew.
    """
    global _owned, _owned_lock
    _owned_lock = threading.Lock()
    _owned = None


@atexit.register
def _shutdown_owned() -> None:
    global _owned
    with _owned_lock:
        pool, _owned = _owned, None
    if pool is not None:
        pool.shutdown(wait=True)


# -- the signal a worker process sees -----------------------------------------


class SignalRef:
    """The picklable stand-in a receiver in another process gets as ``signal``.

    A :class:`~concsignals.Signal` holds locks and its receivers, so it does not
    travel.  ``SignalRef`` names it instead:

    * ``str(ref)`` is where the signal lives, e.g. ``"shop.signals.order_paid"``
      (a module-level name, or an attribute of a module-level class), or the
      signal's ``repr`` when no module holds it.  It is found by scanning
      ``sys.modules`` once per signal, at its first out-of-process send (about
      10 ms with a thousand modules loaded), then cached;
    * ``ref.module`` and ``ref.name`` are those two parts (``None`` if unknown);
    * ``ref.resolve()`` imports the module in the worker and returns *that
      process's* copy of the signal (with that process's connections);
    * ``ref == order_paid`` is true in a worker for the worker's own
      ``order_paid``, so ``if signal == order_paid:`` works in both places.
    """

    __slots__ = ("description", "module", "name")

    def __init__(self, module: str | None, name: str | None, description: str) -> None:
        self.module = module
        self.name = name
        self.description = description

    @classmethod
    def of(cls, signal: object) -> SignalRef:
        """The reference for ``signal`` (its location is looked up once)."""
        try:
            ref: SignalRef | None = _refs.get(signal)
        except TypeError:
            ref = None
        if ref is None:
            module, name = _locate(signal)
            ref = cls(module, name, repr(signal))
            with contextlib.suppress(TypeError):  # not weakly referenceable
                _refs[signal] = ref
        return ref

    def resolve(self) -> Any:
        """Import and return the signal this names, in the current process.

        Raises ``LookupError`` if it is not a module-level name.
        """
        if self.module is None or self.name is None:
            raise LookupError(f"{self!r} is not found in any module; cannot resolve")
        target: Any = importlib.import_module(self.module)
        for part in self.name.split("."):
            target = getattr(target, part)
        return target

    def __reduce__(self) -> tuple[Any, ...]:
        return (SignalRef, (self.module, self.name, self.description))

    def __eq__(self, other: object) -> bool:
        """Refs are equal if they name the same place (or, unplaced, the same
        repr); a ref equals the signal it resolves to in this process."""
        if isinstance(other, SignalRef):
            return self._key() == other._key()
        if self.module is None:
            return NotImplemented
        try:
            return self.resolve() is other
        except (LookupError, ImportError, AttributeError):
            return False

    def _key(self) -> tuple[str | None, str | None, str | None]:
        if self.module is None:
            return (None, None, self.description)
        return (self.module, self.name, None)

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        if self.module is None:
            return self.description
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"<SignalRef {self}>"


_refs: weakref.WeakKeyDictionary[object, SignalRef] = weakref.WeakKeyDictionary()


def _locate(signal: object) -> tuple[str | None, str | None]:
    """(module, dotted name) of a module global or class attribute ``is signal``.

    Only identity checks and ``__dict__`` reads of real modules and classes:
    no attribute access that could run user code (lazy objects, proxies).
    """
    modules = list(sys.modules.items())
    # A script's globals last: other processes may not import it by that name.
    modules.sort(key=lambda item: item[0] in ("__main__", "__mp_main__"))
    for modname, module in modules:
        if not issubclass(type(module), types.ModuleType):
            continue
        try:
            names = list(module.__dict__.items())
        except RuntimeError:  # changed size while copied: another thread imports
            continue
        for name, value in names:
            if value is signal:
                return modname, name
        for name, value in names:
            if (
                issubclass(type(value), type)
                and value.__dict__.get("__module__") == modname
            ):
                for attr, inner in list(value.__dict__.items()):
                    if inner is signal:
                        return modname, f"{name}.{attr}"
    return None, None


# -- the worker side ----------------------------------------------------------

#: Distinct per call; see the module docstring.
nonces = itertools.count()


def call_pickled(
    receiver_blob: bytes, args_blob: bytes, nonce: int, carriers: tuple[bytes, ...] = ()
) -> Any:
    """Run one pickled receiver call; this is what a worker process executes.

    ``carriers``: the pickled context managers the monitors sent with the
    call (see ``concsignals.monitoring``), entered around it here; one that
    fails is logged, never raised.
    """
    import pickle  # here, not at the top: ``import concsignals`` stays light

    receiver = pickle.loads(receiver_blob)
    signal, sender, named = pickle.loads(args_blob)
    if carriers:  # monitor: the monitors' carriers, entered in the worker
        entered = _carriers.enter_all(_carriers.unpickle_all(carriers))
        try:
            value = _awaited(receiver(signal=signal, sender=sender, **named))
        except BaseException as err:
            _carriers.exit_all(entered, err)
            raise
        _carriers.exit_all(entered, None)
        return value
    return _awaited(receiver(signal=signal, sender=sender, **named))


def _awaited(value: Any) -> Any:
    """An async receiver's coroutine, run to its end here on a loop of its
    own (a worker process has none); any other value as it is."""
    if type(value).__name__ != "coroutine":
        return value
    import asyncio  # only for async receivers: the worker stays light

    return asyncio.run(value)


def dumps_args(signal: object, sender: object, named: dict[str, Any]) -> bytes:
    """Pickle a send's arguments once for all its calls; errors name the culprit."""
    import pickle

    try:
        return pickle.dumps((SignalRef.of(signal), sender, named), PROTOCOL)
    except Exception as err:
        culprit = _unpicklable_argument(sender, named)
        raise pickle.PicklingError(
            f"{culprit} cannot be pickled for an out-of-process executor: {err}"
        ) from err


def _unpicklable_argument(sender: object, named: dict[str, Any]) -> str:
    import pickle

    for label, value in [("sender", sender)] + [
        (f"keyword argument {k!r}", v) for k, v in named.items()
    ]:
        try:
            pickle.dumps(value, PROTOCOL)
        except Exception:
            return f"{label} {value!r}"
    return "the send's arguments"


#: pickle.HIGHEST_PROTOCOL, named without importing pickle at import time.
PROTOCOL = -1

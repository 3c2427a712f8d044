"""Adopting Django's signals that already exist: ``install()`` after Django.

``concsignals.django.install()`` may run after Django defined its signals:
pytest-django calls ``django.setup()`` before any ``conftest.py`` is
imported, and ``manage.py``/``django-admin`` have loaded Django's signals
before they import the settings module.  Those signals are objects other code
already holds (``from django.db.models.signals import post_save``), so they
are changed in place, keeping their identity and their connections:

1. *Find* (no lock): every instance of Django's ``Signal`` class (``stock``)
   or of a subclass of it, by one pass over the collector's objects (a signal
   may sit in a closure or a class attribute, not only in a module); and the
   classes derived directly from ``stock`` (``ModelSignal``...).
2. *Plan* (no lock: this may run user code, a receiver's ``__getattr__`` or a
   ``dispatch_uid``'s ``__eq__``): for each signal, read a copy of Django's
   ``receivers`` list and build a private concsignals signal (the *shadow*)
   holding the same connections in the same order, each with its weak or
   strong reference, its ``dispatch_uid`` and its sender.  Django keeps a
   sender only as its ``id()``; the object with that ``id()`` is looked up
   among the live objects (classes first, then every object the collector
   tracks, then what those refer to).  A connection whose sender is gone is
   dropped, unless another object took its ``id()`` meanwhile: Django would
   call it for that object, and the adopted connection is for it.
3. *Commit*, holding every adopted signal's own Django lock (so no Django
   ``connect``/``disconnect`` can change a list meanwhile) with the cyclic
   collector paused (so no finalizer runs under them): if any list changed
   since it was read, release and plan again.  Otherwise move the shadow's
   state into each signal's ``__dict__`` (Django's methods do not read those
   names), then publish, each with one store: a subclass of ``stock`` gets
   :class:`concsignals.django.Signal` as its base in place of ``stock`` (all
   its instances at once; ``ModelSignal``'s lazy ``connect`` now reaches
   concsignals' through ``super()``), and each instance of ``stock`` itself
   gets it as its ``__class__``.  Then Django's ``receivers``, ``lock`` and
   ``_dead_receivers`` leave the instance (released after the locks), and
   each ``functools.partial`` of a Django ``Signal`` method bound to an
   adopted signal is pointed at the concsignals method of that name: Django
   keeps one, waiting for its model, for every lazy
   ``post_save.connect(r, sender="app.Model")`` made before the model loaded.
   (A bound method of Django's ``Signal`` held anywhere else keeps calling
   Django's code, which fails on an adopted signal.)

A send racing ``install()`` (``test_a_send_racing_install_calls_each_receiver_once``):
a Django send that took its signal's lock before ``install()`` did calls the
receivers of Django's list; one that waits on that lock meanwhile then reads
the adopted connections (through the Django-shaped ``receivers``); one that
begins after the publishing store is a concsignals send of the same
connections.  Each receiver is called once either way.  A Django ``connect``
or ``disconnect`` made on another thread while ``install()`` runs may be
lost, and a signal created meanwhile missed: call ``install()`` at start-up,
before starting threads.

What cannot be adopted is refused before anything changes, naming the object
and the rule: ``django.dispatch.Signal`` with methods replaced by other code
(sentry-sdk patches ``_live_receivers``: concsignals cannot carry such a patch
over), a subclass whose bases cannot be changed (a metaclass with its own
``mro()``, a layout or method order ``concsignals.django.Signal`` does not
fit), and a signal without Django's state (``receivers``/``lock``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from itertools import compress
from typing import TYPE_CHECKING, Any

from . import _fork, _registry, _replace
from ._snapshot import receiver_getter, receiver_id, sender_getter

if TYPE_CHECKING:
    from ._signal import Signal

#: Django's key for "any sender": ``django.dispatch.dispatcher.NONE_ID``.
NONE_ID = id(None)

#: What Django's ``Signal`` keeps in an instance and concsignals does not.
DJANGO_STATE = ("receivers", "lock", "_dead_receivers")


def wanted(
    signal: Signal, item: tuple[Any, ...], sender: object
) -> _replace.Wanted | None:
    """The connection one of Django's ``((receiver_key, sender_key), ref,
    is_async)`` tuples makes on ``signal``, for ``sender`` (the object whose
    ``id()`` is ``sender_key``, or ``None``); ``None`` if its receiver died.

    The rule Django's tuples follow: ``receiver_key`` is the connection's
    ``dispatch_uid`` unless it is the receiver's own identity.  May run user
    code (``==`` of a uid, ``hasattr`` on the receiver): no lock held.
    """
    (receiver_key, _), ref, is_async = item
    weak = isinstance(ref, weakref.ReferenceType)
    r = ref() if weak else ref
    if r is None:
        return None
    get, hold = receiver_getter(r, weak, signal._notice)
    uid = None if receiver_key == receiver_id(r) else receiver_key
    key = _registry.lookup_key(r, sender, uid)
    sender_get = None if sender is None else sender_getter(sender, signal._notice)
    want = _registry.Request(key, uid, get, hold, bool(is_async))
    return _replace.Wanted(want, sender_get, None)


# -- install() after Django -------------------------------------------------------


class _Plan:
    """One signal to adopt: the Django list read, and the shadow built from it."""

    __slots__ = ("kept", "lock", "seen", "shadow", "signal", "stored")

    def __init__(self, signal: Any, new: type[Signal]) -> None:
        state = vars(signal)
        self.signal = signal
        #: Django's list and lock, as read (the commit checks them).
        self.stored: list[Any] = state["receivers"]
        self.lock: Any = state["lock"]
        self.seen = tuple(self.stored)
        self.shadow = new(use_caching=bool(getattr(signal, "use_caching", False)))
        #: What :meth:`move_in` replaced in the signal's ``__dict__``.
        self.kept: dict[str, Any] = {}

    def fill(self, senders: dict[Any, object]) -> None:
        """Connect on the shadow what Django's list holds, in its order."""
        found = []
        for item in self.seen:
            skey = item[0][1]
            sender = None
            if skey != NONE_ID:
                sender = senders.get(skey)
                if sender is None:
                    continue  # its sender is gone
            w = wanted(self.shadow, item, sender)
            if w is not None:
                found.append(w)
        found = _replace.distinct(found)
        released: list[object] = []
        with self.shadow._lock:
            _replace.replace_locked(self.shadow, found, released)

    def move_in(self) -> None:
        """Put the shadow's state in the signal (under the locks; Django's
        methods read none of it but ``sender_receivers_cache``, kept aside)."""
        state = vars(self.signal)
        self.kept = {k: state[k] for k in vars(self.shadow) if k in state}
        state.update(vars(self.shadow))

    def move_out(self) -> None:
        """Undo :meth:`move_in` (under the locks)."""
        state = vars(self.signal)
        for name in vars(self.shadow):
            state.pop(name, None)
        state.update(self.kept)

    def changed(self) -> bool:
        """Whether Django's list is no longer the one read (under its lock)."""
        now = vars(self.signal).get("receivers")
        if now is not self.stored or len(now) != len(self.seen):
            return True
        return any(a is not b for a, b in zip(now, self.seen, strict=True))


def adopt(stock: type, new: type[Signal]) -> None:
    """Make every existing instance of ``stock`` (Django's ``Signal``) and of
    its subclasses a ``new`` (``concsignals.django.Signal``), in place.

    Raises ``RuntimeError`` naming what cannot be adopted; nothing changes
    then.  Not thread-safe (see the module docstring).
    """
    _refuse_patched(stock)
    while True:  # again if Django's code changed a list meanwhile
        _refuse_unrebasable(stock)
        objects = gc.get_objects()
        derived: list[type] = stock.__subclasses__()
        kinds = {stock, *_classes_below(stock), functools.partial}
        hits = list(compress(objects, map(kinds.__contains__, map(type, objects))))
        found = [o for o in hits if type(o) is not functools.partial]
        partials = _partials_of(stock, hits)
        plans = [_plan(sig, new) for sig in found]
        senders = _senders(plans, objects)
        del objects
        for plan in plans:
            plan.fill(senders)
        del senders
        if _commit(plans, derived, partials, stock, new):
            return


def _plan(signal: Any, new: type[Signal]) -> _Plan:
    state = vars(signal)
    if not isinstance(state.get("receivers"), list) or "lock" not in state:
        raise RuntimeError(
            f"concsignals.django.install() cannot adopt {signal!r}: it has not "
            "Django's receivers list and lock (a signal still being created, or "
            "one whose state other code replaced)"
        )
    for item in state["receivers"]:
        if not _is_django_tuple(item):
            raise RuntimeError(
                f"concsignals.django.install() cannot adopt {signal!r}: its "
                f"receivers hold {item!r}, not Django's "
                "((receiver_key, sender_key), ref, is_async)"
            )
    return _Plan(signal, new)


def _is_django_tuple(item: object) -> bool:
    return (
        type(item) is tuple
        and len(item) == 3
        and type(item[0]) is tuple
        and len(item[0]) == 2
    )


def _commit(
    plans: list[_Plan],
    derived: list[type],
    partials: list[functools.partial[Any]],
    stock: type,
    new: type[Signal],
) -> bool:
    """Publish every plan at once, holding every signal's Django lock;
    ``False`` (nothing changed) if a list changed since it was read."""
    released: list[object] = []
    with _collector_paused(), contextlib.ExitStack() as held:
        for lock in {id(plan.lock): plan.lock for plan in plans}.values():
            held.enter_context(lock)
        if any(plan.changed() for plan in plans):
            return False
        for plan in plans:
            plan.move_in()
        refused = _rebase(derived, stock, new)
        if refused is not None:
            for plan in plans:
                plan.move_out()
            raise refused
        for plan in plans:
            if type(plan.signal) is stock:
                plan.signal.__class__ = new  # publish
        for plan in plans:
            state = vars(plan.signal)
            released += [state.pop(name, None) for name in DJANGO_STATE]
        _rebind(partials, new)
    for plan in plans:
        _fork.register(plan.signal)
    released.clear()  # after the locks: may release a receiver
    return True


def _rebase(derived: list[type], stock: type, new: type[Signal]) -> Exception | None:
    """Give each class in ``derived`` ``new`` as its base in place of
    ``stock`` (under the locks); on a failure, undo it all and return the
    refusal."""
    done: list[tuple[type, tuple[type, ...]]] = []
    for cls in derived:
        bases = cls.__bases__
        try:
            cls.__bases__ = tuple(new if b is stock else b for b in bases)
        except TypeError as err:
            for undo, before in reversed(done):
                undo.__bases__ = before
            return RuntimeError(
                f"concsignals.django.install() cannot adopt {cls.__qualname__}: "
                f"its bases cannot change to concsignals.django.Signal ({err})"
            )
        done.append((cls, bases))
    return None


def _partials_of(stock: type, objects: list[Any]) -> list[functools.partial[Any]]:
    """The ``functools.partial`` objects of a method of ``stock`` bound to an
    instance: Django's lazy ``ModelSignal.connect`` waits in one for a model
    not loaded yet (``apps.lazy_model_operation``)."""
    methods = set(map(id, vars(stock).values()))
    return [
        o
        for o in objects
        if type(o) is functools.partial
        and type(o.func) is types.MethodType
        and id(o.func.__func__) in methods
        and issubclass(type(o.func.__self__), stock)
    ]


def _rebind(partials: list[functools.partial[Any]], new: type[Signal]) -> None:
    """Have each partial call the concsignals method of the same name, on the
    same (now adopted) signal.  Runs no user code."""
    for p in partials:
        old: Any = p.func
        method = getattr(new, old.__name__, None)
        if method is not None:
            bound = types.MethodType(method, old.__self__)
            state = (bound, p.args, p.keywords, vars(p) or None)
            p.__setstate__(state)  # type: ignore[attr-defined]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic collection (so no finalizer) while Django's locks are held."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _senders(plans: list[_Plan], objects: list[Any]) -> dict[Any, object]:
    """The live sender behind each sender key (``id()``, or ``(id(self),
    id(func))`` of a bound method) the plans' connections name."""
    keys = {item[0][1] for plan in plans for item in plan.seen if item[0][1] != NONE_ID}
    if not keys:
        return {}
    ids: set[int] = set()
    for key in keys:
        ids.update(key if type(key) is tuple else (key,))
    # Senders are mostly classes (models): look among them first, then among
    # every object the collector tracks, then one level down from those (a
    # str, an int); each only if some are still not found.
    passes: tuple[Callable[[], list[Any]], ...] = (
        lambda: _classes_below(object),
        lambda: objects,
        lambda: gc.get_referents(*objects),
    )
    by_id: dict[int, object] = {}
    for candidates in passes:
        if ids <= by_id.keys():
            break
        pool = candidates()
        by_id.update(
            {id(o): o for o in compress(pool, map(ids.__contains__, map(id, pool)))}
        )
    senders: dict[Any, object] = {}
    for key in keys:
        if type(key) is tuple and len(key) == 2:
            obj, func = by_id.get(key[0]), by_id.get(key[1])
            if obj is not None and callable(func):
                senders[key] = types.MethodType(func, obj)
        elif key in by_id:
            senders[key] = by_id[key]
    return senders


def _refuse_patched(stock: type) -> None:
    """Refuse if other code replaced or added a method of Django's ``Signal``
    (``functools.wraps`` keeps a wrapper's name: its code's file tells)."""
    if (stock.__module__, stock.__qualname__) != (
        "django.dispatch.dispatcher",
        "Signal",
    ):
        raise RuntimeError(
            "concsignals.django.install() cannot adopt Django's signals: "
            f"django.dispatch.Signal is {stock!r}, not Django's own class.  Call "
            "install() before the code that replaced it."
        )
    home = getattr(sys.modules.get(stock.__module__), "__file__", None)
    for name, value in vars(stock).items():
        func = getattr(value, "__func__", value)  # staticmethod, classmethod
        if not callable(func):
            continue  # __doc__, __dict__...
        code = getattr(func, "__code__", None)
        if code is None or code.co_filename != home:
            raise RuntimeError(
                "concsignals.django.install() cannot adopt Django's signals: "
                f"django.dispatch.Signal.{name} is {func!r} (from "
                f"{getattr(func, '__module__', '?')}), not Django's, and "
                "concsignals cannot carry it over.  Call install() before the "
                "code that set it (e.g. before sentry_sdk.init())."
            )


def _classes_below(cls: type) -> list[type]:
    """Every class derived from ``cls``, at any depth, each once."""
    found: dict[int, type] = {}
    todo = [cls]
    while todo:
        below: type
        for below in type.__subclasses__(todo.pop()):
            if id(below) not in found:
                found[id(below)] = below
                todo.append(below)
    return list(found.values())


def _refuse_unrebasable(stock: type) -> None:
    """Refuse, before anything changes, to rebase the classes below ``stock``
    if a metaclass computes the method order of one (``mro()``: user code
    that changing the bases would run)."""
    for cls in _classes_below(stock):
        meta = type(cls)
        if any("mro" in vars(m) for m in type.mro(meta) if m is not type):
            raise RuntimeError(
                f"concsignals.django.install() cannot adopt {cls.__qualname__}: "
                f"its metaclass {meta.__qualname__} defines mro(), which "
                "changing its bases would run"
            )

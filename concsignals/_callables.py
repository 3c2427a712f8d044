"""What kind of receiver this is: decided once, at connect.

Imports neither asyncio nor inspect: ``import concsignals`` stays light.  A
plain function or a method of one (nearly every receiver) is read from its
code flags; anything else (a ``functools.partial``, a callable object, a
builtin) goes through :mod:`inspect`, imported then.
"""

from __future__ import annotations

import sys
import types
from typing import Any

#: CPython's code flags, as :mod:`inspect` names them (``inspect.CO_*``);
#: tests/test_imports.py checks that they agree.
CO_VARKEYWORDS = 0x08
CO_COROUTINE = 0x80


def plain_function(receiver: object) -> types.FunctionType | None:
    """The function behind a plain function or a method of one, or ``None``
    (also for a decorated function, whose ``__wrapped__`` signature counts)."""
    func = receiver.__func__ if type(receiver) is types.MethodType else receiver
    if type(func) is types.FunctionType and not hasattr(func, "__wrapped__"):
        return func
    return None


def accepts_kwargs(receiver: object) -> bool:
    """Whether ``receiver`` takes ``**kwargs`` (unknown: yes)."""
    func = plain_function(receiver)
    if func is not None:
        return bool(func.__code__.co_flags & CO_VARKEYWORDS)
    import inspect

    try:
        parameters = inspect.signature(receiver).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True  # No signature to read (some builtins): cannot check, accept.
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def is_async_receiver(receiver: object) -> bool:
    """Whether calling ``receiver`` returns an awaitable to be awaited.

    Coroutine functions, bound async methods, ``functools.partial`` of these,
    objects marked with ``inspect.markcoroutinefunction`` (or asgiref's
    ``markcoroutinefunction`` on Python 3.11), and callable objects whose
    ``__call__`` is ``async def``.  Called once, at connect.
    """
    func = plain_function(receiver)
    if func is not None:
        return bool(func.__code__.co_flags & CO_COROUTINE) or _marked(func)
    import functools
    import inspect

    obj = receiver
    while True:
        if inspect.iscoroutinefunction(obj) or _has_asyncio_mark(obj):
            return True
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif inspect.ismethod(obj):
            obj = obj.__func__
        else:
            break
    if inspect.isfunction(obj):
        return False
    call = inspect.getattr_static(type(obj), "__call__", None)
    if not inspect.isfunction(call):
        return False  # a builtin or C slot: sync
    return inspect.iscoroutinefunction(call) or _has_asyncio_mark(call)


def _marked(func: types.FunctionType) -> bool:
    """Marked as a coroutine function by ``inspect.markcoroutinefunction``
    (3.12+: an ``_is_coroutine_marker`` attribute, which inspect checks
    against a private sentinel) or by asyncio's marker.  Only code that
    imported the marker's module can have set it."""
    if hasattr(func, "_is_coroutine_marker"):
        inspect: Any = sys.modules.get("inspect")
        if inspect is not None and inspect.iscoroutinefunction(func):
            return True
    return _has_asyncio_mark(func)


def _has_asyncio_mark(obj: object) -> bool:
    # Only code that imported asyncio can have set asyncio's marker.
    aio = sys.modules.get("asyncio.coroutines")
    mark = getattr(aio, "_is_coroutine", None)
    return mark is not None and getattr(obj, "_is_coroutine", None) is mark

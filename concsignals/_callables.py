"""What kind of receiver this is: decided once, at connect.

Imports no asyncio: ``import concsignals`` stays light.
"""

from __future__ import annotations

import functools
import inspect
import sys


def is_async_receiver(receiver: object) -> bool:
    """Whether calling ``receiver`` returns an awaitable to be awaited.

    Coroutine functions, bound async methods, ``functools.partial`` of these,
    objects marked with ``inspect.markcoroutinefunction`` (or asgiref's
    ``markcoroutinefunction`` on Python 3.11), and callable objects whose
    ``__call__`` is ``async def``.  Called once, at connect.
    """
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


def _has_asyncio_mark(obj: object) -> bool:
    # Only code that imported asyncio can have set asyncio's marker.
    aio = sys.modules.get("asyncio.coroutines")
    mark = getattr(aio, "_is_coroutine", None)
    return mark is not None and getattr(obj, "_is_coroutine", None) is mark

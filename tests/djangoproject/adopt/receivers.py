"""Receivers connected to Django's signals BEFORE ``install()``.

:func:`connect_early` connects one of each kind Django keeps: a weak
function, a weak bound method, a strong closure (``weak=False``), a
``dispatch_uid``, a sender-specific connection (a model class), a lazy
``"adopt.Note"`` sender, an async receiver, and receivers on a signal this
app defines with Django's own ``Signal`` and on an instance of a subclass of
it.  It records each signal object in :data:`EARLY`, so the checks can prove
each is still the very same object after ``install()``.
"""

from __future__ import annotations

from typing import Any

#: Every receiver call, in order: (receiver's tag, signal name).
CALLS: list[tuple[str, str]] = []
#: The signal objects as they were before install(), by name.
EARLY: dict[str, Any] = {}


def on_finished(sender: Any, **kwargs: Any) -> None:
    CALLS.append(("function", "request_finished"))


class Holder:
    def on_finished(self, sender: Any, **kwargs: Any) -> None:
        CALLS.append(("method", "request_finished"))


HOLDER = Holder()


def on_started(sender: Any, **kwargs: Any) -> None:
    CALLS.append(("uid", "request_started"))


def on_note_saved(sender: Any, **kwargs: Any) -> None:
    CALLS.append(("model", "post_save"))


def on_lazy_note_saved(sender: Any, **kwargs: Any) -> None:
    CALLS.append(("lazy", "post_save"))


async def on_finished_async(sender: Any, **kwargs: Any) -> None:
    CALLS.append(("async", "request_finished"))


def on_custom(sender: Any, **kwargs: Any) -> None:
    CALLS.append(("custom", kwargs["signal"].__class__.__name__))


def connect_early() -> None:
    """Connect the early receivers (once: settings and ready() may both ask)."""
    if EARLY:
        return
    from django.core.signals import request_finished, request_started
    from django.db.models.signals import post_save

    from . import custom

    def strong(sender: Any, **kwargs: Any) -> None:  # only the signal holds it
        CALLS.append(("strong", "request_started"))

    request_finished.connect(on_finished)
    request_finished.connect(HOLDER.on_finished)
    request_finished.connect(on_finished_async)
    request_started.connect(strong, weak=False)
    request_started.connect(on_started, dispatch_uid="adopt.on_started")
    post_save.connect(on_lazy_note_saved, sender="adopt.Note")
    custom.plain.connect(on_custom)
    custom.derived.connect(on_custom)
    EARLY.update(
        request_finished=request_finished,
        request_started=request_started,
        post_save=post_save,
        plain=custom.plain,
        derived=custom.derived,
    )


def connect_for_model() -> None:
    """A sender-specific connection: needs the model class, so the app registry."""
    from django.db.models.signals import post_save

    from .models import Note

    post_save.connect(on_note_saved, sender=Note, dispatch_uid="adopt.note")

"""What every place install() may be called from must show afterwards.

:func:`verify` runs after ``django.setup()`` and ``install()``, with the
database tables made, and raises ``AssertionError`` on the first thing that
is not so.  ``tests/test_django_install.py`` runs it from ``manage.py``,
``django-admin``, a pytest-django test and after ``AppConfig.ready()``.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import django.dispatch
from django.contrib.auth.signals import user_logged_in
from django.core import signals as core
from django.db.backends.signals import connection_created
from django.db.models import signals as models
from django.test import Client
from django.test.signals import setting_changed

import concsignals.django

from . import custom, receivers
from .models import Note
from .receivers import CALLS


def verify() -> None:
    builtin = {
        "request_started": core.request_started,
        "request_finished": core.request_finished,
        "post_save": models.post_save,
        "pre_save": models.pre_save,
        "m2m_changed": models.m2m_changed,
        "post_migrate": models.post_migrate,
        "setting_changed": setting_changed,
        "connection_created": connection_created,
        "user_logged_in": user_logged_in,
        "plain": custom.plain,
        "derived": custom.derived,
    }
    for name, signal in builtin.items():
        assert isinstance(signal, concsignals.django.Signal), (name, type(signal))
    for name, signal in receivers.EARLY.items():
        assert builtin[name] is signal, f"{name} is not the object it was"
    assert isinstance(custom.derived, custom.AuditSignal)
    assert issubclass(models.ModelSignal, concsignals.django.Signal)
    # Later signals are born concsignals, through any name that held the class.
    assert django.dispatch.Signal is concsignals.django.Signal
    assert custom.Signal is concsignals.django.Signal
    assert isinstance(custom.AuditSignal(), concsignals.django.Signal)
    check_requests()
    check_models()
    check_muted()
    check_custom()
    check_connections()
    print("adopt: OK")


def check_requests() -> None:
    """A real request: Django's handler sends request_started and
    request_finished; the receivers connected before install() run, in order,
    sync ones first, the strong one still alive, a dead weak one not called."""

    class Temporary:
        def on_finished(self, sender: Any, **kwargs: Any) -> None:
            CALLS.append(("dead", "request_finished"))

    temp = Temporary()
    core.request_finished.connect(temp.on_finished)
    del temp
    gc.collect()
    CALLS.clear()
    response = Client().get("/hello")
    assert response.status_code == 200, response.status_code
    assert CALLS == [
        ("strong", "request_started"),
        ("uid", "request_started"),
        ("function", "request_finished"),
        ("method", "request_finished"),
        ("async", "request_finished"),
    ], CALLS


def check_models() -> None:
    """post_save for a model: the sender-specific and the lazy ("adopt.Note")
    receivers run for Note, and not for another sender."""
    CALLS.clear()
    Note.objects.create(text="x")
    assert sorted(CALLS) == [("lazy", "post_save"), ("model", "post_save")], CALLS
    CALLS.clear()
    models.post_save.send(sender=receivers.Holder, instance=None)
    assert CALLS == [], CALLS


def check_muted() -> None:
    """factory_boy's mute_signals saves and restores an adopted signal's
    receivers (Django's tuples), the sender-specific ones included."""
    import factory.django

    with factory.django.mute_signals(models.post_save):
        CALLS.clear()
        Note.objects.create(text="muted")
        assert CALLS == [], CALLS
    Note.objects.create(text="heard")
    assert sorted(CALLS) == [("lazy", "post_save"), ("model", "post_save")], CALLS


def check_custom() -> None:
    CALLS.clear()
    custom.plain.send(sender=None)
    custom.derived.send(sender=None)
    assert CALLS == [("custom", "Signal"), ("custom", "AuditSignal")], CALLS


def check_connections() -> None:
    """Each connection kept its dispatch_uid, its sender and its reference."""
    started, finished = core.request_started, core.request_finished
    held = {id(r[1]) for r in started.receivers}
    weak = [r[1] for r in finished.receivers if isinstance(r[1], weakref.ref)]
    assert any(ref() is receivers.on_finished for ref in weak), "weak: gone"
    started.connect(receivers.on_finished, dispatch_uid="adopt.on_started")
    assert {id(r[1]) for r in started.receivers} == held, "uid: connected twice"
    assert started.disconnect(dispatch_uid="adopt.on_started")
    assert not started.disconnect(dispatch_uid="adopt.on_started")
    post_save = models.post_save
    assert not post_save.disconnect(sender=receivers.Holder, dispatch_uid="adopt.note")
    assert post_save.disconnect(sender=Note, dispatch_uid="adopt.note")
    assert post_save.disconnect(receivers.on_lazy_note_saved, sender=Note)

"""concsignals.django.install(), each case in a fresh interpreter.

``install()`` changes ``django.dispatch`` for the whole process, and the rest
of the suite compares with stock Django: so every case here runs its script
in a subprocess, which prints ``OK`` when all its assertions held.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("django", reason="needs Django: the dev extra, .[dev]")

SETUP = """
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)
django.setup()
"""


def run(*parts: str) -> str:
    script = "\n".join(textwrap.dedent(p) for p in parts)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_importing_concsignals_imports_no_django() -> None:
    out = run("""
        import sys
        import concsignals, concsignals.django
        assert not [m for m in sys.modules if m.split(".")[0] in ("django", "asgiref")]
        print("OK")
    """)
    assert out.strip() == "OK"


def test_install_makes_every_django_signal_a_concsignals_one() -> None:
    out = run(
        """
        import concsignals.django
        concsignals.django.install()
        concsignals.django.install()  # idempotent
        """,
        SETUP,
        """
        import django.dispatch
        from django.core import signals as core
        from django.db.models import signals as models
        from django.db.backends.signals import connection_created
        from django.contrib.auth.signals import user_logged_in
        from django.test.signals import setting_changed
        from concsignals.django import Signal, receiver
        assert django.dispatch.Signal is Signal
        assert django.dispatch.receiver is receiver
        assert issubclass(models.ModelSignal, Signal)
        for sig in (core.request_started, core.request_finished, models.post_save,
                    models.m2m_changed, connection_created, user_logged_in,
                    setting_changed):
            assert isinstance(sig, Signal), sig
        print("OK")
        """,
    )
    assert out.strip() == "OK"


@pytest.mark.parametrize(
    "first", ["django.core.signals", "django.db.models.signals", "django.test"]
)
def test_install_after_django_defined_signals_is_refused_naming_them(
    first: str,
) -> None:
    out = run(f"""
        import importlib, django.dispatch
        importlib.import_module({first!r})
        stock = django.dispatch.Signal
        import concsignals.django
        try:
            concsignals.django.install()
        except RuntimeError as err:
            print(err)
        assert django.dispatch.Signal is stock  # nothing changed
    """)
    assert "after Django defined signals" in out
    assert "django.core.signals" in out or "django.db.models.signals" in out
    assert "before django.setup()" in out


def test_factory_boy_mute_signals_on_installed_signals() -> None:
    pytest.importorskip("factory", reason="needs factory_boy: the dev extra, .[dev]")
    out = run(
        """
        import concsignals.django
        concsignals.django.install()
        """,
        SETUP,
        """
        import factory.django
        from django.contrib.auth.models import Group
        from django.db.models.signals import post_save, pre_save
        calls = []
        def anyone(sender, **kwargs): calls.append("anyone")
        def for_group(sender, **kwargs): calls.append("group")
        post_save.connect(anyone)
        post_save.connect(for_group, sender=Group)
        pre_save.connect(anyone)
        with factory.django.mute_signals(post_save, pre_save):
            post_save.send(Group)
            pre_save.send(Group)
            assert calls == [], calls
        post_save.send(Group)
        assert calls == ["anyone", "group"], calls
        assert post_save.disconnect(for_group, sender=Group)
        print("OK")
        """,
    )
    assert out.strip() == "OK"


def test_check_framework_names_a_lazy_signal_connect() -> None:
    """``signals.E001``, not the generic ``models.E022``: the check framework
    recognises the installed ``connect``."""
    out = run(
        """
        import concsignals.django
        concsignals.django.install()
        """,
        SETUP,
        """
        from django.core.checks.model_checks import _check_lazy_references
        from django.db.models.signals import post_save
        def on_missing(sender, **kwargs): pass
        post_save.connect(on_missing, sender="auth.Missing")
        print(sorted(e.id for e in _check_lazy_references(django.apps.apps)))
        """,
    )
    assert out.strip() == "['signals.E001']"

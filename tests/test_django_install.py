"""concsignals.django.install(), each case in a fresh interpreter.

``install()`` changes ``django.dispatch`` for the whole process, and the rest
of the suite compares with stock Django: so every case here runs its script
in a subprocess, which prints ``OK`` when all its assertions held.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
def test_install_after_django_defined_signals_adopts_them_in_place(
    first: str,
) -> None:
    """The signals a module made before install() stay the same objects, now
    concsignals, with the receivers connected to them."""
    out = run(f"""
        import importlib, django.dispatch
        from django.conf import settings
        settings.configure()  # Django's own request_finished receivers read it
        from django.dispatch import Signal as Held
        importlib.import_module({first!r})
        from django.core.signals import request_finished
        from django.db.models.signals import post_save, ModelSignal
        calls = []
        def before(sender, **kwargs): calls.append(sender)
        request_finished.connect(before)
        post_save.connect(before, sender=int)
        early = (request_finished, post_save)
        import concsignals.django
        concsignals.django.install()
        from django.core.signals import request_finished
        from django.db.models.signals import post_save
        assert (request_finished, post_save) == early
        assert isinstance(request_finished, concsignals.django.Signal)
        assert isinstance(post_save, concsignals.django.Signal)
        assert isinstance(post_save, ModelSignal)
        assert Held is concsignals.django.Signal  # this module's name, too
        import gc  # the adopted state refers to no other signal (the shadow)
        state = gc.get_referents(*vars(post_save).values())
        assert not [o for o in state if isinstance(o, concsignals.Signal)]
        request_finished.send(sender="r")
        post_save.send(sender=int)
        post_save.send(sender=str)
        assert calls == ["r", int], calls
        print("OK")
    """)
    assert out.strip() == "OK"


def test_install_finds_each_sender_django_kept_only_by_id() -> None:
    """Django keeps a connection's sender as its id(): install() finds the
    object, whatever it is (a class, an instance, a bound method, a str made
    at run time, which the collector does not track), and drops a connection
    whose sender is gone."""
    out = run(
        """
        from django.conf import settings
        settings.configure()
        import gc
        from django.dispatch import Signal
        sig = Signal()
        calls = []
        def r(sender, **kwargs): calls.append(sender)
        class Cls:
            def method(self): pass
        obj = Cls()
        text = "-".join(["a", "sender"])
        senders = [Cls, obj, obj.method, text]
        for s in senders:
            sig.connect(r, sender=s)
        # A dead sender's connection, as Django keeps it: the id() of an
        # object gone, that no live object took (odd: never an address).
        gone = 12345
        sig.receivers.append(((id(r), gone), sig.receivers[0][1], False))
        import concsignals.django
        concsignals.django.install()
        assert len(sig.receivers) == len(senders), sig.receivers
        for s in [*senders, Cls()]:
            sig.send(sender=s)
        assert calls == senders, calls
        print("OK")
        """
    )
    assert out.strip() == "OK"


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


# -- each place a Django user would call install() ----------------------------------
#
# tests/djangoproject/adopt is a small project whose receivers (weak, strong,
# bound method, dispatch_uid, sender-specific, lazy "app.Model", async, on a
# signal of its own and on a subclass of Django's Signal) are connected before
# install() runs; its check.verify() proves, after install(), that Django's
# signals are concsignals, the very same objects, and call those receivers
# on a real request and a real save.  Each place runs in a real process.

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "tests" / "djangoproject" / "adopt" / "manage.py"


SETTINGS = "tests.djangoproject.adopt.settings"


def run_project(
    args: list[str], cwd: Path, place: str, *, settings_env: bool = False
) -> str:
    """Run ``args`` (after the interpreter, or ``django-admin``) in a process
    with install() in ``place``; with ``settings_env``,
    ``DJANGO_SETTINGS_MODULE`` in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(PYTHONPATH=str(ROOT), CONCSIGNALS_INSTALL_IN=place)
    if settings_env:
        env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    if args[0] == "django-admin":
        admin = Path(sys.executable).with_name("django-admin")
        args = [str(admin), *args[1:]] if admin.exists() else [sys.executable,
                "-m", "django", *args[1:]]  # fmt: skip
    else:
        args = [sys.executable, *args]
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=170
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.timeout(180)
def test_install_in_the_settings_module_under_manage_py() -> None:
    """manage.py has loaded Django's signals before it imports the settings;
    a lazy post_save.connect(sender="adopt.Note") made there waits for the
    model with Django's own connect, and reaches the adopted signal."""
    out = run_project([str(MANAGE), "adoptcheck"], ROOT, "settings")
    assert "adopt: OK" in out


@pytest.mark.timeout(180)
def test_install_in_the_settings_module_under_django_admin() -> None:
    """django-admin, DJANGO_SETTINGS_MODULE from the environment."""
    out = run_project(
        ["django-admin", "adoptcheck"], ROOT, "settings", settings_env=True
    )
    assert "adopt: OK" in out


@pytest.mark.timeout(180)
def test_install_in_app_config_ready() -> None:
    out = run_project([str(MANAGE), "adoptcheck"], ROOT, "ready")
    assert "adopt: OK" in out


#: Where pytest-django reads DJANGO_SETTINGS_MODULE from: the file and its
#: text (the environment: an ini file without it).
SETTINGS_FROM = {
    "pytest.ini": ("pytest.ini", f"[pytest]\nDJANGO_SETTINGS_MODULE = {SETTINGS}\n"),
    "setup.cfg": ("setup.cfg", f"[tool:pytest]\nDJANGO_SETTINGS_MODULE = {SETTINGS}\n"),
    "environment": ("pytest.ini", "[pytest]\n"),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("source", sorted(SETTINGS_FROM))
def test_install_in_conftest_under_pytest_django(tmp_path: Path, source: str) -> None:
    """DJANGO_SETTINGS_MODULE from pytest.ini, setup.cfg or the environment:
    pytest-django has run django.setup() (every app's ready() included)
    before conftest.py."""
    pytest.importorskip("pytest_django", reason="needs pytest-django: .[test]")
    name, text = SETTINGS_FROM[source]
    (tmp_path / name).write_text(text)
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent("""
            import django.apps
            assert django.apps.apps.ready  # pytest-django came first

            import concsignals.django
            concsignals.django.install()
        """)
    )
    (tmp_path / "test_adopted.py").write_text(
        textwrap.dedent("""
            import pytest

            @pytest.mark.django_db
            def test_adopted():
                from tests.djangoproject.adopt.check import verify
                verify()
        """)
    )
    out = run_project(
        ["-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", str(tmp_path)],
        tmp_path,
        "conftest",
        settings_env=source == "environment",
    )
    assert "adopt: OK" in out
    assert "1 passed" in out


# -- what install() refuses, and races ----------------------------------------------


def test_install_refuses_a_django_signal_patched_by_other_code() -> None:
    """As sentry-sdk patches it: a functools.wraps wrapper on the class.
    Refused, naming the method and what to do, and nothing changes."""
    out = run(
        """
        import functools
        import django.dispatch
        from django.core.signals import request_finished
        stock = django.dispatch.Signal
        old = stock._live_receivers
        @functools.wraps(old)
        def spans(self, sender):
            return old(self, sender)
        stock._live_receivers = spans
        import concsignals.django
        try:
            concsignals.django.install()
        except RuntimeError as err:
            print(err)
        assert django.dispatch.Signal is stock
        assert type(request_finished) is stock
        assert "_dead_receivers" in vars(request_finished)
        """
    )
    assert "django.dispatch.Signal._live_receivers" in out
    assert "before the code that set it" in out


def test_install_refuses_a_django_signal_class_replaced_by_other_code() -> None:
    out = run(
        """
        from django.dispatch import dispatcher
        class Signal(dispatcher.Signal):
            pass
        dispatcher.Signal = Signal
        import concsignals.django
        try:
            concsignals.django.install()
        except RuntimeError as err:
            print(err)
        assert dispatcher.Signal is Signal
        """
    )
    assert "not Django's own class" in out


def test_install_refuses_a_subclass_whose_metaclass_computes_its_mro() -> None:
    out = run(
        """
        import django.dispatch
        from django.db.models.signals import post_save
        stock = django.dispatch.Signal
        class Meta(type):
            def mro(cls):
                return super().mro()
        class Plain(stock):
            pass
        class Odd(Plain, metaclass=Meta):  # below a class install() rebases
            pass
        odd = Odd()
        import concsignals.django
        try:
            concsignals.django.install()
        except RuntimeError as err:
            print(err)
        assert django.dispatch.Signal is stock
        assert type(post_save).__mro__[1] is stock
        assert type(odd) is Odd and Plain.__bases__ == (stock,)
        """
    )
    assert "cannot adopt Odd" in out
    assert "defines mro()" in out


def test_install_refuses_a_subclass_whose_bases_cannot_change_undoing_all() -> None:
    """Rebased, ``B(concsignals.django.Signal, A)`` would have no method
    order: refused, and the classes rebased before it are restored."""
    out = run(
        """
        import django.dispatch
        from django.db.models.signals import ModelSignal, post_save
        import concsignals.django
        stock = django.dispatch.Signal
        class A(stock):
            pass
        class B(concsignals.django.Signal, A):
            pass
        before = dict(vars(post_save))
        try:
            concsignals.django.install()
        except RuntimeError as err:
            print(err)
        assert django.dispatch.Signal is stock
        assert ModelSignal.__bases__ == (stock,) and A.__bases__ == (stock,)
        assert vars(post_save) == before, vars(post_save)
        assert type(post_save).__mro__[1] is stock
        """
    )
    assert "cannot adopt A: its bases cannot change" in out


@pytest.mark.timeout(60)
def test_install_plans_again_when_django_code_connects_meanwhile() -> None:
    """A dispatch_uid's __eq__ (user code, run while install() plans, with no
    lock held) connects with Django's own connect: install() sees the list
    changed, plans again, and adopts that connection too.  Holding Django's
    lock while planning would deadlock here."""
    out = run(
        """
        from django.conf import settings
        settings.configure()
        from django.core.signals import request_finished
        calls = []
        def late(sender, **kwargs): calls.append("late")
        def with_uid(sender, **kwargs): calls.append("uid")
        class Uid:
            fired = False
            def __eq__(self, other):
                if not Uid.fired:
                    Uid.fired = True
                    request_finished.connect(late)
                return self is other
            def __hash__(self):
                return 1
        request_finished.connect(with_uid, dispatch_uid=Uid())
        import concsignals.django
        concsignals.django.install()
        assert isinstance(request_finished, concsignals.django.Signal)
        assert Uid.fired
        request_finished.send(sender=None)
        assert calls == ["uid", "late"], calls
        print("OK")
        """
    )
    assert out.strip() == "OK"


@pytest.mark.timeout(60)
def test_a_send_racing_install_calls_each_receiver_once() -> None:
    """Sends on another thread while install() adopts the signal: each send
    calls every receiver connected before install() exactly once, whether
    Django's code or concsignals' runs it."""
    out = run(
        """
        import sys, threading
        sys.setswitchinterval(1e-6)
        from django.conf import settings
        settings.configure()
        from django.core.signals import request_finished
        counts = {}
        def make(i):
            def r(sender, **kwargs):
                counts[sender] = counts.get(sender, 0) + 1
            return r
        held = [make(i) for i in range(5)]
        for r in held:
            request_finished.connect(r)
        base = len(request_finished.receivers)
        import concsignals.django
        done = threading.Event()
        kinds = set()
        errors = []
        sent = []
        sending = threading.Event()
        def sender_loop():
            n = after = 0
            while after < 100:  # 100 more sends once install() returned
                after += done.is_set()
                try:
                    request_finished.send(sender=n)
                except Exception as err:
                    errors.append(err)
                sent.append(n)
                kinds.add(type(request_finished).__module__)
                n += 1
                sending.set()
        t = threading.Thread(target=sender_loop)
        t.start()
        sending.wait()
        concsignals.django.install()
        done.set()
        t.join()
        assert not errors, errors[:3]
        assert [counts.get(n) for n in sent] == [5] * len(sent)
        assert kinds == {"django.dispatch.dispatcher", "concsignals.django"}, kinds
        print("OK")
        """
    )
    assert out.strip() == "OK"


def test_no_signal_is_concsignals_before_its_state_is_in() -> None:
    """The publishing store comes last: at every line install() runs, a signal
    that is already a concsignals signal has its concsignals state (a send
    that begins at that moment, taking no Django lock, finds it)."""
    out = run(
        """
        import sys
        from django.conf import settings
        settings.configure()
        from django.core.signals import request_finished
        from django.db.models.signals import post_save
        import concsignals, concsignals.django
        early = [request_finished, post_save]
        bad = []
        def check(frame, event, arg):
            for s in early:
                if isinstance(s, concsignals.Signal) and "_snapshot" not in vars(s):
                    bad.append((s, frame.f_code.co_name, frame.f_lineno))
            return check
        def tracer(frame, event, arg):
            return check if frame.f_code.co_filename.endswith("_adopt.py") else None
        sys.settrace(tracer)
        concsignals.django.install()
        sys.settrace(None)
        assert not bad, bad[:3]
        assert all(isinstance(s, concsignals.django.Signal) for s in early)
        print("OK")
        """
    )
    assert out.strip() == "OK"


@pytest.mark.timeout(60)
def test_an_adopted_signal_works_in_a_forked_child() -> None:
    """Forked while another thread holds its writer lock, an adopted signal
    has a fresh lock in the child, as every concsignals signal has."""
    out = run(
        """
        import os
        from django.conf import settings
        settings.configure()
        from django.dispatch import Signal
        sig = Signal()
        calls = []
        def r(sender, **kwargs): calls.append(sender)
        sig.connect(r)
        import concsignals.django
        concsignals.django.install()
        import threading
        held, done = threading.Event(), threading.Event()
        def holder():
            with sig.lock:
                held.set()
                done.wait()
        t = threading.Thread(target=holder)
        t.start()
        held.wait()
        pid = os.fork()
        if pid == 0:  # the holder thread does not exist here
            free = sig.lock.acquire(timeout=5)  # only if broken: waits 5 s
            sig.send(sender="child")
            os._exit(0 if free and calls == ["child"] else 1)
        done.set()
        t.join()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        print("OK")
        """
    )
    assert out.strip() == "OK"

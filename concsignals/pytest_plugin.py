"""concsignals' pytest plugin (a ``pytest11`` entry point: active wherever
concsignals is installed; inert in a test that uses none of it).

* the ``signals`` fixture: ``concsignals.testing.capture()`` of every signal,
  for the sends the test makes in its context;
* ``@pytest.mark.mute_signals(post_save, ...)``: ``mute_signals`` for the
  test, its fixtures' setup and teardown included;
* ``--concsignals-strict``: a test that leaves a receiver connected that it
  did not find connected fails, naming the receiver and where it was
  connected.

Several threads per test (pytest-run-parallel)
-----------------------------------------------
Fixtures are set up once, in pytest's thread; the test body then runs in
several threads, none of which copies that thread's context, so a capture
or a mute entered there would not see them.  The plugin therefore wraps the
test function of each test that uses the fixture or the mark (before
pytest-run-parallel wraps it: ``pytest_collection_modifyitems`` comes before
its ``pytest_collection_finish``): in each thread that runs the body, the
mark's mute is entered again, and, if the fixture's capture is not open in
that thread's context, the body gets a capture of its own, so each copy of
the test asserts on its own sends only.  In pytest's own thread the wrapper
adds nothing but a nested mute.

Strict mode
-----------
Every signal is known to ``_fork``'s registry.  Before a test's setup, the
plugin notes every live connection; after its teardown, any connection
alive that was not there fails the test (at teardown), unless a fixture of
a wider scope made it (its setup is watched: ``pytest_fixture_setup``).
Where a connection was made is recorded by ``connect`` through
``_registry.on_connect``, set only while strict mode is on: nothing is
recorded, and no send path checks anything, otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from . import _capture, _fork, _registry
from ._snapshot import Entry
from .testing import Capture, capture, mute_signals

STRICT = "--concsignals-strict"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("concsignals")
    group.addoption(
        STRICT,
        action="store_true",
        default=False,
        help="fail a test that leaves a receiver connected that it did not "
        "find connected, naming the receiver and where it was connected",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mute_signals(*signals): silence these concsignals signals in the "
        "sends the test makes (its setup and teardown included), in its "
        "context only",
    )
    if config.getoption("concsignals_strict"):
        strict = Strict()
        config.pluginmanager.register(strict, "concsignals-strict")
        config.add_cleanup(strict.stop)


@pytest.fixture
def signals() -> Iterator[Capture]:
    """Every send of every concsignals signal the test makes (in its
    context: not another test's, nor a thread it starts by hand)."""
    with capture() as sent:
        yield sent


# -- the mark, and the body run in other threads ------------------------------------


def _mutes(item: pytest.Item) -> list[mute_signals]:
    return [mute_signals(*m.args) for m in item.iter_markers("mute_signals")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    stack = contextlib.ExitStack()
    for mute in _mutes(item):
        stack.enter_context(mute)
    item.stash[_entered] = stack
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        stack = item.stash.get(_entered, None)
        if stack is not None:
            stack.close()


_entered = pytest.StashKey[contextlib.ExitStack]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function) or getattr(item, "obj", None) is None:
            continue
        uses = "signals" in getattr(item, "fixturenames", ())
        marks = [m.args for m in item.iter_markers("mute_signals")]
        if uses or marks:
            item.obj = _in_each_thread(item.obj, marks)


def _in_each_thread(fn: Callable[..., Any], marks: list[tuple[Any, ...]]) -> Any:
    """``fn`` run with the mark's mutes entered and, where the fixture's
    capture is not open in this context, a capture of its own."""

    def entered(stack: contextlib.ExitStack, kwargs: dict[str, Any]) -> dict[str, Any]:
        for args in marks:
            stack.enter_context(mute_signals(*args))
        rec = kwargs.get("signals")
        if isinstance(rec, Capture) and rec not in _capture._open.get():
            kwargs = {**kwargs, "signals": stack.enter_context(capture())}
        return kwargs

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with contextlib.ExitStack() as stack:
                return await fn(*args, **entered(stack, kwargs))

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with contextlib.ExitStack() as stack:
            return fn(*args, **entered(stack, kwargs))

    return run


# -- strict mode ----------------------------------------------------------------------


def connections() -> dict[int, tuple[object, Entry]]:
    """Every live connection of every signal alive: ``id(entry)`` to
    ``(signal, entry)``."""
    found: dict[int, tuple[object, Entry]] = {}
    for ref in _fork._signals.copy().values():
        signal = ref()
        if signal is None:
            continue
        for entry in signal._snapshot.entries:
            if entry.is_live():
                found[id(entry)] = (signal, entry)
    return found


def call_site() -> str:
    """Where the code that called ``connect`` is: the first frame outside
    concsignals and ``django.dispatch``."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("concsignals.", "django.dispatch")):
            code = frame.f_code
            return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return "an unknown place"


class Strict:
    """``--concsignals-strict``: see "Strict mode" above."""

    def __init__(self) -> None:
        #: ``id(entry)``: ``(entry, where)``, for the connections made since
        #: strict mode began (the entry is held so its id is not reused).
        self.sites: dict[int, tuple[Entry, str]] = {}
        #: Connections made by fixtures wider than a test, kept by them.
        self.kept: set[int] = set()
        self.before: dict[int, tuple[object, Entry]] = {}
        _registry.on_connect = self.record

    def record(self, entry: Entry) -> None:
        self.sites.setdefault(id(entry), (entry, call_site()))

    def stop(self) -> None:
        _registry.on_connect = None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        self.before = connections()
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any]
    ) -> Generator[None, object, object]:
        if fixturedef.scope == "function":
            return (yield)
        had = connections()
        try:
            return (yield)
        finally:
            self.kept.update(k for k in connections() if k not in had)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        result = yield
        now = connections()
        self.kept &= now.keys()
        left = [now[k] for k in now if k not in self.before and k not in self.kept]
        self.sites = {k: v for k, v in self.sites.items() if k in now}
        if left:
            pytest.fail(self.describe(left), pytrace=False)
        return result

    def describe(self, left: list[tuple[object, Entry]]) -> str:
        lines = [
            f"{STRICT}: the test left {len(left)} receiver(s) connected that "
            f"it did not find connected:"
        ]
        for signal, entry in left:
            site = self.sites.get(id(entry))
            where = site[1] if site is not None else "not by connect()"
            name = _capture.name_of(signal)
            lines.append(f"  {entry.receiver()!r} to {name}, connected at {where}")
        return "\n".join(lines)

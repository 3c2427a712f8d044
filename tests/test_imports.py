"""``import concsignals`` stays light: what it leaves for later, and that
what it leaves for later still works when it is first needed.

The cost itself is measured in ``benchmarks/importtime.py`` (no timed
assertion here); these tests pin the mechanism: the modules an inline send
does not need are not imported by it, and the fast paths that replaced
:mod:`inspect` at connect agree with :mod:`inspect`.
"""

from __future__ import annotations

import functools
import inspect
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from concsignals import _callables

#: Imported on first need, never by ``import concsignals``, connect or an
#: inline send: each costs milliseconds of import (issue 16).
LEFT_FOR_LATER = (
    "asyncio",
    "concurrent.futures",
    "copy",
    "inspect",
    "logging",
    "pickle",
)


def run_fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_connect_and_inline_sends_leave_the_heavy_modules_alone() -> None:
    out = run_fresh(
        """
        import sys
        before = set(sys.modules)
        from concsignals import Signal

        class Shop:
            def on_paid(self, sender, **kwargs):
                return "method"

        def on_paid(sender, **kwargs):
            return "function"

        shop = Shop()
        sig = Signal()
        sig.connect(on_paid)
        sig.connect(shop.on_paid, sender=Shop)
        assert [v for _, v in sig.send(sender=Shop)] == ["function", "method"]
        assert [v for _, v in sig.send_robust(sender=None)] == ["function"]
        sig.disconnect(on_paid)
        print(" ".join(sorted(set(sys.modules) - before)))
        """
    )
    added = set(out.split())
    assert "concsignals._signal" in added  # the probe saw the import
    assert not added & set(LEFT_FOR_LATER)


def test_what_is_left_for_later_loads_when_first_needed() -> None:
    """In a fresh interpreter: a send through a thread pool, ``submit``, a
    failure ``send_robust`` logs, a partial receiver (its signature read by
    inspect) and an async receiver all work."""
    out = run_fresh(
        """
        import functools, logging, sys
        from concsignals import Signal

        def on_paid(sender, **kwargs):
            return "sync"

        def fail(sender, **kwargs):
            raise ValueError("failed")

        def tagged(tag, sender, **kwargs):
            return tag

        def strict(tag, sender):
            return tag

        async def later(sender, **kwargs):
            return "async"

        sig = Signal()
        sig.connect(on_paid)
        print(sig.submit(sender=None).result(timeout=30)[0][1])
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(2) as pool:
            print(sig.using(pool).send(sender=None)[0][1])
        sig.connect(fail)
        logging.disable(logging.CRITICAL)
        print(type(sig.send_robust(sender=None)[1][1]).__name__)
        sig.disconnect(fail)
        partial = functools.partial(tagged, "partial")
        sig.connect(partial)
        try:
            sig.connect(functools.partial(strict, "strict"))
        except ValueError as err:
            print("refused:", err)
        sig.connect(later)
        print(" ".join(v for _, v in sig.send(sender=None)))
        """
    )
    assert out.splitlines() == [
        "sync",
        "sync",
        "ValueError",
        "refused: Signal receivers must accept keyword arguments (**kwargs).",
        "sync partial async",
    ]


def test_the_code_flags_are_inspects() -> None:
    assert _callables.CO_VARKEYWORDS == inspect.CO_VARKEYWORDS
    assert _callables.CO_COROUTINE == inspect.CO_COROUTINE


def plain(sender: Any, **kwargs: Any) -> None: ...


def no_kwargs(sender: Any) -> None: ...


async def coroutine(sender: Any, **kwargs: Any) -> None: ...


def wrapped_coroutine() -> Any:
    @functools.wraps(coroutine)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return coroutine(*args, **kwargs)

    return wrapper


def marked() -> Any:
    def receiver(sender: Any, **kwargs: Any) -> Any:
        return coroutine(sender, **kwargs)

    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is None:
        pytest.skip("inspect.markcoroutinefunction is new in Python 3.12")
    return mark(receiver)


class Receivers:
    def method(self, sender: Any, **kwargs: Any) -> None: ...

    async def amethod(self, sender: Any, **kwargs: Any) -> None: ...

    def strict(self, sender: Any) -> None: ...


@pytest.mark.parametrize(
    "make",
    [
        lambda: plain,
        lambda: no_kwargs,
        lambda: coroutine,
        wrapped_coroutine,
        marked,
        lambda: Receivers().method,
        lambda: Receivers().amethod,
        lambda: Receivers().strict,
    ],
    ids=[
        "function",
        "no-kwargs",
        "coroutine",
        "wrapped",
        "marked",
        "method",
        "async-method",
        "method-no-kwargs",
    ],
)
def test_the_fast_paths_agree_with_inspect(make: Any) -> None:
    """Plain functions and methods are read from their code flags, without
    inspect: the answers are inspect's."""
    receiver = make()
    takes_kwargs = any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        for p in inspect.signature(receiver).parameters.values()
    )
    assert _callables.accepts_kwargs(receiver) is takes_kwargs
    assert _callables.is_async_receiver(receiver) is inspect.iscoroutinefunction(
        receiver
    )

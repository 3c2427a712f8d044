"""Processes: after ``fork()``, every signal and concsignals' own pool work in
the child, with the connections made before the fork (contract point 9).

Each test forks for real.  A child runs a body, reports through a pipe and
leaves with ``os._exit``; the parent waits for the report with a deadline, so
a child that hangs (the hazards tested here) fails the test instead of hanging
it.  The preload-and-fork server is in ``test_gunicorn.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import os
import pickle
import select
import signal as signals
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from concsignals import Signal, executors

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Forking a process that runs threads is the very case under test.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded"),
]

#: How long a child may take to report (it needs milliseconds).
CHILD_DEADLINE = 20.0


def answer(**kwargs: Any) -> int:
    return 42


def process_id(**kwargs: Any) -> int:
    return os.getpid()


def churner(**kwargs: Any) -> str:
    return "churner"


def results(responses: list[tuple[Any, Any]]) -> list[Any]:
    return [response for _, response in responses]


def in_child(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child; return what it returned, or fail.

    Fails the test if the child raised (with the child's error) or did not
    report within ``CHILD_DEADLINE`` (the child is killed).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read)
            try:
                report = ("returned", body())
            except BaseException as err:
                report = ("raised", repr(err))
            os.write(write, pickle.dumps(report))
        finally:
            os._exit(0)
    os.close(write)
    try:
        data = _read_until_eof(read, CHILD_DEADLINE)
    finally:
        os.close(read)
        if data is None:
            os.kill(pid, signals.SIGKILL)
        os.waitpid(pid, 0)
    if data is None:
        pytest.fail(f"the forked child did not report within {CHILD_DEADLINE}s")
    outcome, value = pickle.loads(data)
    if outcome == "raised":
        pytest.fail(f"the forked child raised {value}")
    return value


def _read_until_eof(fd: int, deadline: float) -> bytes | None:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], deadline)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# -- the owned pool -----------------------------------------------------------


def test_submit_works_in_a_child_forked_after_submit_was_used() -> None:
    sig = Signal()
    sig.connect(answer)
    sig.connect(process_id)
    parent = os.getpid()
    assert results(sig.submit(sender=None).result(timeout=10)) == [42, parent]

    def grandchild() -> list[Any]:
        return results(sig.submit(sender=None).result(timeout=5))

    def child() -> list[list[Any]]:
        me = os.getpid()
        submitted = results(sig.submit(sender=None).result(timeout=5))
        # The child's own pool is used, then the child forks in turn.
        return [[me], submitted, in_child(grandchild)]

    (me,), submitted, in_grandchild = in_child(child)
    assert me != parent
    assert submitted == [42, me]
    assert in_grandchild[0] == 42 and in_grandchild[1] not in (me, parent)


def test_a_childs_sends_see_the_connections_made_before_the_fork() -> None:
    sig = Signal()
    sig.connect(answer)
    sig.connect(process_id, sender=Signal)  # a sender route
    sig.submit(sender=None).result(timeout=10)

    def child() -> list[list[Any]]:
        me = os.getpid()
        return [
            [me],
            results(sig.send(sender=None)),
            results(sig.send(sender=Signal)),
            results(sig.send_robust(sender=Signal)),
            results(sig.submit(sender=Signal).result(timeout=5)),
            [r.__name__ for r in sig.receivers],
        ]

    (me,), plain, routed, robust, submitted, names = in_child(child)
    assert plain == [42]
    assert routed == robust == submitted == [42, me]
    assert names == ["answer", "process_id"]


async def async_answer(**kwargs: Any) -> str:
    return "async"


def test_async_receivers_run_in_a_forked_child() -> None:
    sig = Signal()
    sig.connect(answer)
    sig.connect(async_answer)
    assert results(sig.submit(sender=None).result(timeout=10)) == [42, "async"]

    def child() -> list[list[Any]]:
        return [
            results(sig.send(sender=None)),
            results(asyncio.run(sig.asend(sender=None))),
            results(sig.submit(sender=None).result(timeout=5)),
        ]

    assert in_child(child) == [[42, "async"]] * 3


# -- the writer lock ----------------------------------------------------------


def child_writes(sig: Signal) -> Callable[[], list[Any]]:
    """A child body: connect, send, disconnect on ``sig``; the send's results."""

    def body() -> list[Any]:
        def late(**kwargs: Any) -> str:
            return "late"

        sig.connect(late)
        sent = results(sig.send(sender=None))
        assert sig.disconnect(late)
        assert sig.disconnect(churner) in (True, False)
        return sent

    return body


class Unhashable(Signal):
    """A subclass that compares by value, so it has no hash: still repaired."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unhashable)


@pytest.mark.parametrize("kind", [Signal, Unhashable])
def test_a_child_forked_while_a_writer_holds_the_lock_can_write(
    kind: type[Signal],
) -> None:
    sig = kind()
    sig.connect(answer)
    lock_kind = type(sig._lock)
    holding, release = threading.Event(), threading.Event()

    def writer_inside_a_write() -> None:
        with sig._lock:  # where connect/disconnect build and publish
            holding.set()
            release.wait(CHILD_DEADLINE)

    def child() -> list[Any]:
        assert type(sig._lock) is lock_kind, "the fresh lock is of another kind"
        return child_writes(sig)()

    writer = threading.Thread(target=writer_inside_a_write)
    writer.start()
    try:
        assert holding.wait(10)
        assert in_child(child) == [42, "late"]
    finally:
        release.set()
        writer.join(10)
    assert results(sig.send(sender=None)) == [42]


@pytest.fixture
def churning(switch_often: None) -> Iterator[Signal]:
    """A signal with ``answer`` connected, and two threads that connect and
    disconnect ``churner`` on it in a loop until the test ends."""
    sig = Signal()
    sig.connect(answer)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            sig.connect(churner)
            sig.disconnect(churner)

    threads = [threading.Thread(target=churn) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        yield sig
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


@pytest.mark.skipif(
    not getattr(sys, "_is_gil_enabled", lambda: True)(),
    reason="free-threaded CPython 3.13 forks without releasing the per-object "
    "locks other threads hold: a child forked while a writer thread was inside "
    "a dict operation (sys.modules.get, the registry's index) hangs on that "
    "dict; seen in gdb in 2 of 3 runs here.  The GIL builds run this test",
)
def test_children_forked_while_threads_connect_and_disconnect_can_write(
    churning: Signal,
) -> None:
    # Each child sees the connections of the instant it was forked: answer,
    # with or without churner, never anything torn.
    for _ in range(30):
        sent = in_child(child_writes(churning))
        assert sent in ([42, "late"], [42, "churner", "late"]), sent


# -- multiprocessing ----------------------------------------------------------


def use_the_signal(sig: Signal, conn: Any) -> None:
    """A ``multiprocessing`` target: every way of sending, reported on ``conn``."""
    try:
        conn.send(
            [
                [os.getpid()],
                results(sig.send(sender=None)),
                results(sig.send_robust(sender=None)),
                results(sig.submit(sender=None).result(timeout=5)),
            ]
        )
    except BaseException as err:
        conn.send(repr(err))
        raise


def test_a_multiprocessing_fork_child_uses_a_signal_connected_in_the_parent() -> None:
    sig = Signal()
    sig.connect(answer)
    sig.connect(process_id)
    sig.submit(sender=None).result(timeout=10)
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=use_the_signal, args=(sig, theirs))
    child.start()
    try:
        assert ours.poll(CHILD_DEADLINE), "the child did not report"
        report = ours.recv()
    finally:
        child.join(CHILD_DEADLINE)
        if child.is_alive():
            child.kill()
            child.join()
    assert isinstance(report, list), report
    (pid,), sent, robust, submitted = report
    assert pid == child.pid
    assert sent == robust == submitted == [42, pid]
    assert child.exitcode == 0


def test_a_child_forked_while_the_owned_pool_is_being_made_can_submit() -> None:
    sig = Signal()
    sig.connect(answer)
    sig.submit(sender=None).result(timeout=10)
    holding, release = threading.Event(), threading.Event()

    def making_the_pool() -> None:
        with executors._owned_lock:  # where owned_pool() makes the pool
            holding.set()
            release.wait(CHILD_DEADLINE)

    maker = threading.Thread(target=making_the_pool)
    maker.start()
    try:
        assert holding.wait(10)
        submitted = in_child(lambda: sig.submit(sender=None).result(timeout=5))
    finally:
        release.set()
        maker.join(10)
    assert results(submitted) == [42]


# -- a fork between two stores of a commit (only under a Python-level tracer) --


#: A write, the function whose commit it runs, and what is connected first.
WRITES: dict[str, tuple[str, Callable[[Signal], Any], list[Any]]] = {
    "connect": ("connect_locked", lambda sig: sig.connect(churner), [answer]),
    "disconnect": (
        "disconnect_locked",
        lambda sig: sig.disconnect(churner),
        [answer, churner],
    ),
}


def _traced(code: Any, local: Callable[..., Any]) -> Callable[..., Any]:
    """A ``sys.settrace`` function tracing only frames of ``code``."""

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    return tracer


def _commit_lines(write: str) -> list[int]:
    """The lines of ``write``'s commit, in the order it runs them (found by
    tracing one write on a signal of its own)."""
    from concsignals import _registry

    name, do, first = WRITES[write]
    code = getattr(_registry, name).__code__
    ran: list[int] = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno not in ran:
            ran.append(frame.f_lineno)
        return local

    sig = Signal()
    for r in first:
        sig.connect(r)
    before = sys.gettrace()  # coverage's, say: given back after
    sys.settrace(_traced(code, local))
    try:
        do(sig)
    finally:
        sys.settrace(before)
    src = [line.strip() for line in inspect.getsource(code).splitlines()]
    begin = code.co_firstlineno + next(
        i for i, t in enumerate(src) if t.startswith("# -- commit")
    )
    end = code.co_firstlineno + next(
        i for i, t in enumerate(src) if t.startswith("# -- committed")
    )
    return [n for n in ran if begin < n < end]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("write", "at"),
    [(w, at) for w in WRITES for at in range(len(_commit_lines(w)))],
)
def test_a_child_forked_mid_commit_under_a_tracer_can_write(
    write: str, at: int
) -> None:
    """A tracer (coverage, a debugger: ``sys.settrace``) runs Python code
    between two lines of a commit, so another thread may fork there, before
    any line of the commit (``at``): the child's sends and writes still see
    the connections of one moment, the lost write's entirely or not at all."""
    from concsignals import _registry

    name, do, first = WRITES[write]
    sig = Signal()
    for r in first:
        sig.connect(r)
    code = getattr(_registry, name).__code__
    line = _commit_lines(write)[at]
    paused, forked = threading.Event(), threading.Event()

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == line:
            paused.set()
            forked.wait(CHILD_DEADLINE)
        return local

    def writer() -> None:
        before = sys.gettrace()
        sys.settrace(_traced(code, local))
        try:
            do(sig)
        finally:
            sys.settrace(before)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert paused.wait(10), f"line {line} not reached"
        sent = in_child(child_writes(sig))
    finally:
        forked.set()
        thread.join(10)
    assert sent in ([42, "late"], [42, "churner", "late"]), sent

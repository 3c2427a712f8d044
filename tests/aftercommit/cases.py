"""Sends that wait for the commit, on real SQLite databases, by Django's test
machinery (run by ``tests/test_after_commit.py`` in a pytest of their own).

``TransactionTestCase`` really commits and rolls back; ``TestCase`` wraps
each test in a transaction and runs commit callbacks only through
``captureOnCommitCallbacks``.  Receivers record what they saw when called:
whether an atomic block was still open on their database in their thread,
and which thread they ran in.
"""

from __future__ import annotations

import contextvars
import importlib.util
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction
from django.db.models.signals import post_save
from django.test import TestCase, TransactionTestCase
from django.utils.connection import ConnectionDoesNotExist

import concsignals
import concsignals.django
import concsignals.monitoring
from tests.cluster import dask_client

from .models import Note
from .receivers import count_notes

BOTH = {"default", "other"}

#: Set around a send: a deferred send runs in a copy of the sending context.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class Recorder:
    """A receiver that records each call: (text, thread, in a transaction)."""

    def __init__(self, alias: str = "default", fails: bool = False) -> None:
        self.alias = alias
        self.fails = fails
        self.calls: list[tuple[Any, int, bool]] = []

    def __call__(self, sender: Any, **named: Any) -> str:
        instance = named.get("instance")
        text = instance.text if instance is not None else named.get("text")
        in_atomic = connections[self.alias].in_atomic_block
        self.calls.append((text, threading.get_ident(), in_atomic))
        if self.fails:
            raise ValueError(f"receiver failed on {text!r}")
        return "ok"

    @property
    def texts(self) -> list[Any]:
        return [c[0] for c in self.calls]


@contextmanager
def connected(
    signal: concsignals.Signal, receiver: Any, **options: Any
) -> Iterator[Any]:
    conn = signal.connect(receiver, weak=False, **options)
    try:
        yield receiver
    finally:
        conn.disconnect()


def note(text: str, using: str = "default") -> Note:
    return Note.objects.using(using).create(text=text)


class Boom(Exception):
    pass


class OnCommitConnections(TransactionTestCase):
    """``connect(..., on_commit=...)`` on Django's ``post_save``."""

    databases = BOTH

    def test_commit_delivers_once_after_the_commit(self) -> None:
        with connected(post_save, Recorder(), sender=Note, on_commit=True) as rec:
            with transaction.atomic():
                note("a")
                self.assertEqual(rec.calls, [])  # not yet: still in the transaction
            self.assertEqual(rec.texts, ["a"])
            self.assertFalse(rec.calls[0][2])  # called once the block was left
            self.assertEqual(rec.calls[0][1], threading.get_ident())
            with transaction.atomic():  # a later commit delivers nothing again
                pass
            self.assertEqual(rec.texts, ["a"])

    def test_rollback_drops(self) -> None:
        with connected(post_save, Recorder(), sender=Note, on_commit=True) as rec:
            with self.assertRaises(Boom), transaction.atomic():
                note("gone")
                raise Boom
            with transaction.atomic():
                pass
            self.assertEqual(rec.calls, [])
            self.assertEqual(Note.objects.count(), 0)

    def test_a_savepoint_rollback_drops_only_what_it_registered(self) -> None:
        with connected(post_save, Recorder(), sender=Note, on_commit=True) as rec:
            with transaction.atomic():
                note("before")
                with self.assertRaises(Boom), transaction.atomic():
                    note("inside")
                    raise Boom
                note("after")
            self.assertEqual(rec.texts, ["before", "after"])

    def test_nested_blocks_deliver_at_the_outermost_commit(self) -> None:
        with connected(post_save, Recorder(), sender=Note, on_commit=True) as rec:
            with transaction.atomic():
                with transaction.atomic():
                    note("nested")
                self.assertEqual(rec.calls, [])  # the savepoint was released only
            self.assertEqual(rec.texts, ["nested"])

    def test_other_receivers_run_at_once(self) -> None:
        now, later = Recorder(), Recorder()
        with (
            connected(post_save, now, sender=Note),
            connected(post_save, later, sender=Note, on_commit=True),
        ):
            with transaction.atomic():
                made = Note(text="x")
                responses = post_save.send(sender=Note, instance=made, created=True)
                self.assertEqual(responses, [(now, "ok")])  # no slot for later
                self.assertEqual(now.texts, ["x"])
                self.assertTrue(now.calls[0][2])
                self.assertEqual(later.calls, [])
            self.assertEqual(later.texts, ["x"])

    def test_outside_a_transaction_it_is_an_ordinary_receiver(self) -> None:
        with connected(post_save, Recorder(), sender=Note, on_commit=True) as rec:
            responses = post_save.send(sender=Note, instance=Note(text="x"))
            self.assertEqual(responses, [(rec, "ok")])
            self.assertEqual(rec.texts, ["x"])

    def test_each_alias_waits_for_its_own_database(self) -> None:
        on_other = Recorder("other")
        with connected(post_save, on_other, sender=Note, on_commit="other") as rec:
            with transaction.atomic(using="default"):
                note("default only", "default")
                self.assertEqual(rec.texts, ["default only"])  # other: none open
            with transaction.atomic(using="other"):
                with transaction.atomic(using="default"):
                    note("waits", "other")
                self.assertEqual(rec.texts, ["default only"])  # default's commit
            self.assertEqual(rec.texts, ["default only", "waits"])
            self.assertFalse(rec.calls[1][2])

    def test_an_unknown_alias_is_refused_at_the_send_naming_it(self) -> None:
        signal = concsignals.Signal()
        with connected(signal, Recorder(), on_commit="nowhere") as rec:
            with self.assertRaisesRegex(ConnectionDoesNotExist, "nowhere"):
                signal.send(sender=None, text="x")
            self.assertEqual(rec.calls, [])

    def test_arguments_are_captured_at_each_send(self) -> None:
        signal = concsignals.Signal()
        with connected(signal, Recorder(), on_commit=True) as rec:
            with transaction.atomic():
                signal.send(sender=None, text="first")
                signal.send(sender=None, text="second")
            self.assertEqual(rec.texts, ["first", "second"])

    def test_every_sync_send_path_defers(self) -> None:
        signal = concsignals.Signal()
        with (
            connected(signal, Recorder(), on_commit=True) as rec,
            ThreadPoolExecutor(2) as pool,
        ):
            with transaction.atomic():
                self.assertEqual(signal.send(sender=None, text="send"), [])
                signal.send_robust(sender=None, text="send_robust")
                self.assertEqual(signal.submit(sender=None, text="submit").result(), [])
                signal.using(None).send(sender=None, text="using(None)")
                signal.using(pool).send_robust(sender=None, text="using(pool)")
                self.assertEqual(rec.calls, [])
            self.assertEqual(
                rec.texts,
                ["send", "send_robust", "submit", "using(None)", "using(pool)"],
            )

    def test_a_receiver_disconnected_before_the_commit_is_not_called(self) -> None:
        rec = Recorder()
        conn = post_save.connect(rec, sender=Note, weak=False, on_commit=True)
        with transaction.atomic():
            note("x")
            conn.disconnect()
        self.assertEqual(rec.calls, [])

    def test_a_failing_deferred_receiver_does_not_stop_the_others(self) -> None:
        first, failing, last = Recorder(), Recorder(fails=True), Recorder()
        with (
            connected(post_save, first, sender=Note, on_commit=True),
            connected(post_save, failing, sender=Note, on_commit=True),
            connected(post_save, last, sender=Note, on_commit=True),
            self.assertLogs("django.dispatch", logging.ERROR) as logs,
        ):
            with transaction.atomic():
                note("x")
            self.assertEqual(
                (first.texts, failing.texts, last.texts), (["x"], ["x"], ["x"])
            )
        self.assertIn("receiver failed on 'x'", "\n".join(logs.output))

    def test_monitors_see_the_deferred_send_at_the_commit(self) -> None:
        events: list[tuple[str, Any]] = []

        class Watcher:
            def send_began(self, send: Any) -> None:
                if send.signal is signal:  # not Django's own signals
                    events.append(("began", send.signal, send.deferred))

            def call_ended(self, call: Any) -> None:
                events.append((call.outcome, call.receiver))

        signal, failing = concsignals.Signal(), Recorder(fails=True)
        watcher = Watcher()
        with connected(signal, failing, on_commit=True):
            concsignals.monitoring.install(watcher)
            try:
                with (
                    self.assertLogs("concsignals", logging.ERROR),
                    transaction.atomic(),
                ):
                    signal.send(sender=None, text="x")
                    # The send is seen as made, with nobody to call now.
                    self.assertEqual(events, [("began", signal, False)])
            finally:
                concsignals.monitoring.uninstall(watcher)
        deferred = [("began", signal, True), ("exception", failing)]
        self.assertEqual(events, [("began", signal, False), *deferred])

    def test_a_capture_records_the_send_once_not_again_at_the_commit(self) -> None:
        from concsignals.testing import capture

        signal, rec = concsignals.Signal(), Recorder()
        with connected(signal, rec, on_commit=True), capture(signal) as sent:
            with transaction.atomic():
                signal.send(sender=None, text="x")
                self.assertEqual(rec.texts, [])
            self.assertEqual(rec.texts, ["x"])
        record = sent.assert_sent_once(signal, text="x")
        self.assertEqual(record.results, ())  # its one call waited for the commit

    def test_a_capture_records_an_after_commit_send_at_the_commit(self) -> None:
        from concsignals.testing import capture

        signal, rec = concsignals.Signal(), Recorder()
        with connected(signal, rec), capture(signal) as sent:
            with transaction.atomic():
                signal.after_commit().send(sender=None, text="x")
                sent.assert_not_sent(signal)
            record = sent.assert_sent_once(signal, text="x")
        self.assertEqual(record.results, ((rec, "ok"),))

    def test_an_after_commit_send_with_nobody_to_call_is_recorded_at_the_commit(
        self,
    ) -> None:
        from concsignals.testing import capture

        signal = concsignals.Signal()
        with capture(signal) as sent:
            with transaction.atomic():
                signal.after_commit().send(sender=None, text="kept")
                sent.assert_not_sent(signal)
            sent.assert_sent_once(signal, text="kept")
            with self.assertRaises(Boom), transaction.atomic():
                signal.after_commit().send_robust(sender=None, text="dropped")
                raise Boom
        sent.assert_not_sent(signal, text="dropped")
        record = sent.assert_sent_once(signal)
        self.assertEqual(record.results, ())

    def test_a_send_in_thread_a_waits_for_as_commit_never_bs(self) -> None:
        rec = Recorder()
        a_sent, b_done = threading.Event(), threading.Event()
        seen: dict[str, Any] = {}

        def thread_a() -> None:
            try:
                with transaction.atomic():
                    signal.send(sender=None, text="A")
                    a_sent.set()
                    assert b_done.wait(30)
                    seen["after B committed"] = list(rec.texts)
                seen["after A committed"] = list(rec.texts)
                seen["a"] = threading.get_ident()
            finally:
                a_sent.set()
                connections.close_all()

        def thread_b() -> None:
            try:
                assert a_sent.wait(30)
                with transaction.atomic():
                    signal.send(sender=None, text="B")
                seen["b"] = threading.get_ident()
            finally:
                b_done.set()
                connections.close_all()

        signal = concsignals.Signal()
        with connected(signal, rec, on_commit=True):
            threads = [threading.Thread(target=t) for t in (thread_a, thread_b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        self.assertEqual(seen["after B committed"], ["B"])
        self.assertEqual(seen["after A committed"], ["B", "A"])
        threads_of = {text: ident for text, ident, _ in rec.calls}
        self.assertEqual(threads_of, {"A": seen["a"], "B": seen["b"]})


class Targets(TransactionTestCase):
    """Deferred calls go through each receiver's target; what they read of
    the database proves they ran after the commit."""

    databases = BOTH
    processes: ProcessPoolExecutor

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        ctx = multiprocessing.get_context("forkserver")
        cls.processes = ProcessPoolExecutor(1, mp_context=ctx)
        cls.processes.submit(int).result()  # started now, outside the test

    @classmethod
    def tearDownClass(cls) -> None:
        cls.processes.shutdown()
        super().tearDownClass()

    def check_after_commit(self, via: Any, elsewhere: str, name: str) -> None:
        db = connections["default"].settings_dict["NAME"]
        out = os.path.join(os.path.dirname(db), f"{name}.out")
        signal = concsignals.Signal()
        with connected(signal, count_notes, via=via, on_commit=True):
            with transaction.atomic():
                note("x")
                signal.send(sender=None, db=db, out=out)
                self.assertFalse(os.path.exists(out))
            with open(out) as f:
                n, pid, thread = map(int, f.read().split())
        self.assertEqual(n, 1)  # it saw the committed row
        if elsewhere == "process":
            self.assertNotEqual(pid, os.getpid())
        else:
            self.assertNotEqual(thread, threading.get_ident())

    def test_a_receiver_on_a_thread_pool_receives_after_the_commit(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            self.check_after_commit(pool, "thread", "threads")

    def test_a_receiver_on_a_process_pool_receives_after_the_commit(self) -> None:
        self.check_after_commit(self.processes, "process", "processes")

    def test_a_receiver_on_a_dask_cluster_receives_after_the_commit(self) -> None:
        if importlib.util.find_spec("distributed") is None:
            self.skipTest("dask.distributed is not installed (extra concsignals[dask])")
        with dask_client(1) as client:  # one worker process on loopback
            self.check_after_commit(client.get_executor(), "process", "dask")

    def test_a_fire_and_forget_receiver_is_handed_over_at_the_commit(self) -> None:
        with ThreadPoolExecutor(1) as pool:
            db = connections["default"].settings_dict["NAME"]
            out = os.path.join(os.path.dirname(db), "fired.out")
            signal = concsignals.Signal()
            with connected(signal, count_notes, via=pool, wait=False, on_commit=True):
                with transaction.atomic():
                    note("x")
                    signal.send(sender=None, db=db, out=out)
                    signal.drain(timeout=30)  # had it been handed over: ended
                    self.assertFalse(os.path.exists(out))
                signal.drain(timeout=30)
            with open(out) as f:
                self.assertEqual(f.read().split()[0], "1")


class AfterCommitView(TransactionTestCase):
    """``signal.after_commit(using)``: the whole send waits."""

    databases = BOTH

    def test_the_whole_send_waits_for_the_commit(self) -> None:
        signal = concsignals.django.Signal()
        one, two = Recorder(), Recorder()
        with connected(signal, one), connected(signal, two):
            with transaction.atomic():
                self.assertIsNone(signal.after_commit().send(sender=None, text="x"))
                self.assertEqual((one.calls, two.calls), ([], []))
            self.assertEqual((one.texts, two.texts), (["x"], ["x"]))
            self.assertFalse(one.calls[0][2])

    def test_a_rollback_drops_the_whole_send(self) -> None:
        signal = concsignals.Signal()
        with connected(signal, Recorder()) as rec:
            with self.assertRaises(Boom), transaction.atomic():
                signal.after_commit().send_robust(sender=None, text="x")
                raise Boom
            self.assertEqual(rec.calls, [])

    def test_using_names_the_database(self) -> None:
        signal = concsignals.Signal()
        with connected(signal, Recorder("other")) as rec:
            with transaction.atomic(using="other"):
                with transaction.atomic(using="default"):
                    signal.after_commit(using="other").send(sender=None, text="x")
                self.assertEqual(rec.calls, [])
            self.assertEqual(rec.texts, ["x"])

    def test_outside_a_transaction_send_runs_at_once_and_raises(self) -> None:
        signal = concsignals.Signal()
        with connected(signal, Recorder(fails=True)) as rec:
            with self.assertRaises(ValueError):
                signal.after_commit().send(sender=None, text="now")
            with self.assertLogs("concsignals", logging.ERROR):
                self.assertIsNone(
                    signal.after_commit().send_robust(sender=None, text="again")
                )
            self.assertEqual(rec.texts, ["now", "again"])

    def test_a_deferred_send_is_robust(self) -> None:
        signal = concsignals.Signal()
        failing, last = Recorder(fails=True), Recorder()
        with (
            connected(signal, failing),
            connected(signal, last),
            self.assertLogs("concsignals", logging.ERROR),
        ):
            with transaction.atomic():
                signal.after_commit().send(sender=None, text="x")
            self.assertEqual(last.texts, ["x"])

    def test_a_mute_of_the_sending_context_holds_at_the_commit(self) -> None:
        signal = concsignals.Signal()
        muted, heard = Recorder(), Recorder()
        with connected(signal, muted), connected(signal, heard):
            with transaction.atomic(), signal.muted(muted):
                signal.after_commit().send(sender=None, text="x")
            self.assertEqual((muted.calls, heard.texts), ([], ["x"]))

    def test_the_sending_context_travels_to_the_commit(self) -> None:
        signal = concsignals.Signal()
        seen: list[str] = []

        def reads(sender: Any, **named: Any) -> None:
            seen.append(request_id.get("none"))

        with connected(signal, reads, on_commit=True):
            with transaction.atomic():
                token = request_id.set("request 7")
                signal.send(sender=None)
                request_id.reset(token)
            self.assertEqual(seen, ["request 7"])


class CapturedCallbacks(TestCase):
    """``TestCase.captureOnCommitCallbacks``: the deferred send is one of them."""

    databases = BOTH

    def test_capture_on_commit_callbacks_executes_the_send(self) -> None:
        with connected(post_save, Recorder(), sender=Note, on_commit=True) as rec:
            with self.captureOnCommitCallbacks(execute=True) as callbacks:
                note("x")
                self.assertEqual(rec.calls, [])
            self.assertEqual(len(callbacks), 1)
            self.assertEqual(rec.texts, ["x"])

    def test_without_execute_nothing_is_called(self) -> None:
        with connected(post_save, Recorder(), sender=Note, on_commit=True) as rec:
            with self.captureOnCommitCallbacks() as callbacks:
                note("x")
            self.assertEqual(len(callbacks), 1)
            self.assertEqual(rec.calls, [])
            callbacks[0]()
            self.assertEqual(rec.texts, ["x"])

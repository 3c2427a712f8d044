"""Model-based test: random connect/disconnect/send/drop/gc sequences against a
plain reference model of Django's semantics plus concsignals' lifetime rules.

The model
---------
A connection is (key, receiver token, sender token or None, weak).  The key is
``(uid or receiver token, sender token or None)``; connecting an existing key
changes nothing.  A receiver object is alive while the test holds it or a
strong connection holds it; when it dies, its weak connections vanish.  A
weakly-referenceable sender is alive only while the test holds it (the signal
never keeps it alive); when it dies, its connections vanish.  A send for a
sender calls, in connection order, every connection for that sender or for
any sender.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from concsignals import Signal
from tests.test_registry import assert_bookkeeping

N_RECEIVERS = 4
N_SENDERS = 3
UIDS = st.one_of(st.none(), st.sampled_from(["u1", "u2"]))
CONSTANT_SENDERS = ("constant-sender", None)


class Fail(Exception):
    pass


class Target:
    """A receiver object; connected either itself (callable) or by its method."""

    def __init__(self, token: tuple[int, int], fails: bool) -> None:
        self.token = token
        self.fails = fails

    def __call__(self, sender: object, **kwargs: Any) -> tuple[int, int]:
        if self.fails:
            raise Fail(self.token)
        return self.token

    def method(self, sender: object, **kwargs: Any) -> tuple[int, int]:
        return self(sender, **kwargs)


class Sender:
    def __init__(self, token: tuple[int, int]) -> None:
        self.token = token


@dataclass
class Conn:
    key: tuple[Any, Any]
    receiver: tuple[int, int]
    sender: Any  # a sender token, a constant sender, or None (any)
    weak: bool


class SignalMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        # A captured log record keeps its traceback, whose frames keep the
        # receivers alive: the model's lifetimes would not hold.
        logging.getLogger("concsignals").disabled = True
        self.sig = Signal()
        self.generation = 0
        self.targets: list[Target | None] = []
        self.by_method = [i % 2 == 0 for i in range(N_RECEIVERS)]
        self.known: dict[tuple[int, int], bool] = {}  # token -> fails
        for i in range(N_RECEIVERS):
            self.targets.append(self.new_target(i))
        self.senders: list[Sender | None] = [
            Sender(self.token(i)) for i in range(N_SENDERS)
        ]
        self.conns: list[Conn] = []

    # -- helpers -------------------------------------------------------------

    def token(self, slot: int) -> tuple[int, int]:
        self.generation += 1
        return (slot, self.generation)

    def new_target(self, slot: int) -> Target:
        fails = slot == N_RECEIVERS - 1
        target = Target(self.token(slot), fails)
        self.known[target.token] = fails
        return target

    def receiver_of(self, slot: int) -> Any:
        target = self.targets[slot]
        assert target is not None
        return target.method if self.by_method[slot] else target

    def sender_value(self, choice: int) -> Any:
        if choice < N_SENDERS:
            return self.senders[choice]
        return CONSTANT_SENDERS[choice - N_SENDERS]

    def sender_token(self, value: Any) -> Any:
        return value.token if isinstance(value, Sender) else value

    def settle_model(self) -> None:
        """Drop the connections of receivers and senders that are now dead.

        Collects first: results the rules got back hold exceptions whose
        tracebacks keep frames, receivers and senders alive in cycles.
        """
        gc.collect()
        held = {t.token for t in self.targets if t is not None}
        live_senders = {s.token for s in self.senders if s is not None}
        self.conns = [
            c
            for c in self.conns
            if not isinstance(c.sender, tuple) or c.sender in live_senders
        ]
        strong = {c.receiver for c in self.conns if not c.weak}
        alive = held | strong
        self.conns = [c for c in self.conns if c.receiver in alive]

    def expected(self, sender: Any) -> list[tuple[int, int]]:
        token = self.sender_token(sender)
        return [
            c.receiver
            for c in self.conns
            if c.sender is None or (token is not None and c.sender == token)
        ]

    # -- rules ---------------------------------------------------------------

    @precondition(lambda self: any(t is not None for t in self.targets))
    @rule(
        slot=st.integers(0, N_RECEIVERS - 1),
        sender=st.integers(0, N_SENDERS + 1),
        weak=st.booleans(),
        uid=UIDS,
    )
    def connect(self, slot: int, sender: int, weak: bool, uid: str | None) -> None:
        target = self.targets[slot]
        value = self.sender_value(sender)
        if target is None or (sender < N_SENDERS and value is None):
            return
        self.sig.connect(
            self.receiver_of(slot), sender=value, weak=weak, dispatch_uid=uid
        )
        token = self.sender_token(value)
        key = (("uid", uid) if uid is not None else target.token, token)
        if not any(c.key == key for c in self.conns):
            self.conns.append(Conn(key, target.token, token, weak))

    @rule(
        slot=st.integers(0, N_RECEIVERS - 1),
        sender=st.integers(0, N_SENDERS + 1),
        uid=UIDS,
    )
    def disconnect(self, slot: int, sender: int, uid: str | None) -> None:
        target = self.targets[slot]
        value = self.sender_value(sender)
        if (target is None and uid is None) or (sender < N_SENDERS and value is None):
            return
        receiver = None if target is None else self.receiver_of(slot)
        got = self.sig.disconnect(receiver, sender=value, dispatch_uid=uid)
        token = self.sender_token(value)
        key = (("uid", uid) if uid is not None else target.token, token)  # type: ignore[union-attr]
        before = len(self.conns)
        self.conns = [c for c in self.conns if c.key != key]
        assert got == (len(self.conns) != before)
        del receiver
        self.settle_model()

    @rule(sender=st.integers(0, N_SENDERS + 1))
    def send(self, sender: int) -> None:
        value = self.sender_value(sender)
        expected = self.expected(value)
        failing = [t for t in expected if self.known[t]]
        if failing:
            with pytest.raises(Fail) as info:
                self.sig.send(sender=value)
            assert info.value.args[0] == failing[0]
            del info
            return
        result = self.sig.send(sender=value)
        assert [resp for _, resp in result] == expected
        assert [getattr(r, "__self__", r).token for r, _ in result] == expected

    @rule(sender=st.integers(0, N_SENDERS + 1))
    def send_robust(self, sender: int) -> None:
        value = self.sender_value(sender)
        result = self.sig.send_robust(sender=value)
        got = [resp.args[0] if isinstance(resp, Fail) else resp for _, resp in result]
        assert got == self.expected(value)

    @rule(slot=st.integers(0, N_RECEIVERS - 1))
    def drop_receiver(self, slot: int) -> None:
        self.targets[slot] = None
        self.settle_model()

    @rule(slot=st.integers(0, N_RECEIVERS - 1))
    def new_receiver(self, slot: int) -> None:
        self.targets[slot] = self.new_target(slot)  # the old one may die
        self.settle_model()

    @rule(slot=st.integers(0, N_SENDERS - 1))
    def drop_sender(self, slot: int) -> None:
        self.senders[slot] = None
        self.settle_model()

    @rule(slot=st.integers(0, N_SENDERS - 1))
    def new_sender(self, slot: int) -> None:
        # Often reuses the id() of a sender just dropped.
        self.senders[slot] = Sender(self.token(slot))
        self.settle_model()

    @rule()
    def collect(self) -> None:
        gc.collect()

    def teardown(self) -> None:
        logging.getLogger("concsignals").disabled = False

    # -- invariants ----------------------------------------------------------

    @invariant()
    def receivers_and_listeners_match(self) -> None:
        if not hasattr(self, "sig"):
            return
        live = [getattr(r, "__self__", r).token for r in self.sig.receivers]
        assert live == [c.receiver for c in self.conns]
        assert self.sig.has_listeners() == bool(self.expected(None))
        for s in self.senders:
            if s is not None:
                assert self.sig.has_listeners(s) == bool(self.expected(s))

    @invariant()
    def bookkeeping_matches_a_recount(self) -> None:
        if hasattr(self, "sig"):
            assert_bookkeeping(self.sig)


SignalMachine.TestCase.settings = settings(
    # 50 examples of 40 steps: about 30 s on an idle core, and within the
    # timeout beside two CPU-bound processes (100 took over 300 s there).
    max_examples=int(os.environ.get("SM_EXAMPLES", 50)),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSignalMachine = pytest.mark.timeout(300)(SignalMachine.TestCase)

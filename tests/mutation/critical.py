"""The critical mutants: one per promise of the contract (docs/guarantees.md).

Each replaces one exact piece of source by a version that breaks one promise
and names the tests that must then fail.  CI runs them all
(``python -m tests.mutation``); a mutant that survives fails CI, and so does
one whose anchor no longer matches the code exactly once.
"""

from __future__ import annotations

from tests.mutation.runner import Mutant

MUTANTS: list[Mutant] = [
    Mutant(
        name="disconnect-check",
        promise="2. a receiver disconnected before its call begins is not called",
        file="concsignals/_registry.py",
        old="        entry.get = DEAD\n        entry.hold = None\n        if bucket:\n",
        new="        entry.hold = None\n        if bucket:\n",
        tests=("tests/test_signal.py", "tests/test_threads.py"),
    ),
    Mutant(
        name="uid-bucket-recheck",
        promise="1. a write is never lost: one whose dispatch_uid bucket changed "
        "while it compared uids (outside the lock) compares again",
        file="concsignals/_registry.py",
        old="    return st.index.get(key, ()) is resolved[0], resolved[1]\n",
        new="    return True, resolved[1]\n",
        tests=("tests/test_signal.py", "-k", "bucket_changed"),
    ),
    Mutant(
        name="begin-gate",
        promise="8. once a send is closed, no call of it begins",
        file="concsignals/_send.py",
        old="            if self.state[i] is not NOT_BEGUN:\n",
        new="            if self.state[i] is not NOT_BEGUN and self.state[i] is not CLOSED:\n",
        tests=("tests/test_gate.py",),
    ),
    Mutant(
        name="deadline-at-the-gate",
        promise="8. no call begins after the send's deadline",
        file="concsignals/_send.py",
        old="            if self.deadline is not None and monotonic() >= self.deadline:\n",
        new="            if False:\n",
        tests=("tests/test_gate.py", "tests/test_behaviour.py"),
    ),
    Mutant(
        name="deadline-overrun",
        promise="4. a call that overruns the deadline times the send out",
        file="concsignals/_send.py",
        old="        late = self.deadline is not None and monotonic() > self.deadline\n",
        new="        late = False\n",
        tests=("tests/test_behaviour.py",),
    ),
    Mutant(
        name="earliest-failure",
        promise="4. send raises the failure of the earliest slot in connection order",
        file="concsignals/_send.py",
        old="            raise _with_notes(failures[0][1], failures)\n",
        new="            raise _with_notes(failures[-1][1], failures)\n",
        tests=("tests/test_behaviour.py",),
    ),
    Mutant(
        name="own-exception-per-slot",
        promise="4. each slot gets its own exception instance",
        file="concsignals/_send.py",
        old="        if id(err) in seen:  # one executor failure shared by several slots\n",
        new="        if False:\n",
        tests=("tests/test_executors.py",),
    ),
    Mutant(
        name="executor-failure-in-slot",
        promise="4. send_robust never raises an executor's failure: it lands in the slot",
        file="concsignals/_threads.py",
        old="            except Exception as err:  # shut down, broken, full: this slot's outcome\n",
        new="            except ZeroDivisionError as err:\n",
        tests=("tests/test_behaviour.py",),
    ),
    Mutant(
        name="connection-order",
        promise="3. a sender's own receivers and the any-sender ones run in connection order",
        file="concsignals/_snapshot.py",
        old="        while i < n and anyone[i].seq < seq:\n",
        new="        while i < n and anyone[i].seq > seq:\n",
        tests=("tests/test_signal.py",),
    ),
    Mutant(
        name="sender-identity",
        promise="6. receivers for a sender never reach an object reusing its id()",
        file="concsignals/_snapshot.py",
        old="    if got is sender:\n        return got is not None\n",
        new="    if True:\n        return True\n",
        tests=("tests/test_signal.py", "tests/test_lifetimes.py"),
    ),
    Mutant(
        name="publish-check",
        promise="1/5. a write made by a finalizer in the middle of a write is not lost",
        file="concsignals/_registry.py",
        old=(
            "            has_opts=live_opts > 0,\n"
            "        )\n"
            "        if signal._snapshot is not base:\n"
            "            continue\n"
            "        # -- commit: stores only (see the module docstring) --------------------\n"
            "        st.index[key] = value\n"
        ),
        new=(
            "            has_opts=live_opts > 0,\n        )\n"
            "        # -- commit: stores only (see the module docstring) --------------------\n"
            "        st.index[key] = value\n"
        ),
        tests=("tests/test_signal.py",),
    ),
    Mutant(
        name="finalizers-outside-the-lock",
        promise="5. a strong receiver is dropped after the writer lock is released",
        file="concsignals/_registry.py",
        old="            found = disconnect_locked(signal, key, resolved, released, gone, only)\n",
        new=(
            "            found = disconnect_locked(signal, key, resolved, released, gone, only)\n"
            "            released.clear()\n"
        ),
        tests=("tests/test_signal.py", "tests/test_lifetimes.py"),
    ),
    Mutant(
        name="cancel-closes-submit",
        promise="8. cancelling a submit() Future stops the calls not yet begun",
        file="concsignals/_run.py",
        old="        if send is not None and outer.cancelled():\n",
        new="        if False:\n",
        tests=("tests/test_gate.py", "tests/test_executors.py"),
    ),
    Mutant(
        name="every-slot-ends",
        promise="8. every slot ends: a receiver gone before its call was handed "
        "over is settled by the gate (asend and submit() on processes returned)",
        file="concsignals/_pickled.py",
        old="        r = send.begin(i, here=False)  # a receiver gone since pickling: SKIPPED\n",
        new="        r = send.begin(i, here=False) if i in blobs else None\n",
        tests=(
            "tests/test_behaviour.py",
            "tests/test_executors.py",
            "-k",
            "died_after or gone_since",
        ),
    ),
    Mutant(
        name="handed-over-cancelled-on-close",
        promise="8. once a send closes, the calls it handed over are cancelled "
        "where the executor still can (every backend: send, asend, submit())",
        file="concsignals/_send.py",
        old="            self.handed.append((i, fut, stops))\n",
        new="            pass\n",
        # The gate's tests first: with -x they end the run at once, where the
        # asyncio ones leave a send waiting for ever (the mutant's hang) that
        # holds the interpreter's exit until the runner's limit.
        tests=(
            "tests/test_gate.py",
            "tests/test_asyncio.py",
            "tests/test_executors.py",
            "-k",
            "handed_over or async_receivers_cancels",
        ),
    ),
    Mutant(
        name="nested-send-detection",
        promise="5. a nested send through a saturated pool finishes",
        file="concsignals/executors.py",
        old="    return any(pool is executor for pool in on_pools.get())\n",
        new="    return False\n",
        # Narrowed: without detection, the busy-pool tests deadlock for good
        # (a send returns only when its begun calls end), costing the limit.
        tests=(
            "tests/test_executors.py",
            "-k",
            "fresh_one_worker_pool_is_detected or running_on_answers",
        ),
    ),
    Mutant(
        name="known-worker-runs-its-calls",
        promise="5. a send from a user's job on its own saturated pool finishes",
        file="concsignals/_threads.py",
        old="    if pools is not None and executor in pools:\n",
        new="    if False:\n",
        tests=("tests/test_threads.py", "-k", "saturated_pool"),
    ),
    Mutant(
        name="interrupt-after-settled",
        promise="8. an interrupted send returns once its begun calls ended",
        file="concsignals/_threads.py",
        old="        if send.on_settled is not None:\n",
        new="        if True:\n",
        tests=("tests/test_threads.py", "-k", "interrupt"),
    ),
    Mutant(
        name="owned-pool-nested-submit",
        promise="5. a submit() waited on inside the owned pool finishes",
        file="concsignals/_run.py",
        old="        ctx.run(executors.on_pools.set, (*executors.on_pools.get(), pool))\n",
        new="",
        tests=("tests/test_executors.py", "-k", "owned_pool_does_not_deadlock"),
    ),
    Mutant(
        name="fork-reinitialises-locks",
        promise="9. after fork() every signal can be written to in the child",
        file="concsignals/_fork.py",
        old="        signal._lock = threading.RLock()\n",
        new="        pass\n",
        tests=("tests/test_fork.py", "-k", "writer_holds_the_lock"),
    ),
    Mutant(
        name="fork-republishes-state",
        promise="9. a child forked between two stores of a commit (under a "
        "tracer) sees the connections of one moment, and writes",
        file="concsignals/_fork.py",
        old="            _replace.as_published_locked(signal, released)\n",
        new="            pass\n",
        tests=("tests/test_fork.py", "-k", "mid_commit"),
    ),
    Mutant(
        name="fork-drops-owned-pool",
        promise="9. after fork() submit() works in the child",
        file="concsignals/executors.py",
        old="    _owned_lock = threading.Lock()\n    _owned = None\n",
        new="    _owned_lock = threading.Lock()\n",
        tests=("tests/test_fork.py", "-k", "submit"),
    ),
    Mutant(
        name="gate-at-pickup",
        promise="10. the begin gate runs where the call begins: a receiver "
        "disconnected while its call waits on its target is not called",
        file="concsignals/_deliver.py",
        old="                self._started(where, _threads.start(send, where, [i]))\n",
        # The job holds the receiver read at hand-off, as psygnal's queue does.
        new=(
            "                got = send.entries[i].get()\n"
            "                self._started(where, _threads.start(send, where, [i], "
            "lambda s, j: got(signal=s.signal, sender=s.sender) "
            "if s.begin(j) is None else s.end(j, got(signal=s.signal, "
            "sender=s.sender))))\n"
        ),
        tests=("tests/test_delivery.py", "-k", "disconnected_while_its_call_waits"),
    ),
    Mutant(
        name="fire-gate-at-pickup",
        promise="10. a fire-and-forget call without a Send (_lean.fire_only) passes "
        "the begin gate where it begins: disconnected while queued, it is "
        "not called and its Future is cancelled",
        file="concsignals/_lean.py",
        old="            post(where, fut, (e, signal, sender, named, True))\n",
        # The job holds the receiver read at hand-off.
        new=(
            "            post(where, fut, (type('Held', (), {'get': "
            "staticmethod(lambda r=r: r)})(), signal, sender, named, True))\n"
        ),
        tests=("tests/test_delivery.py", "-k", "disconnected_before_it_began"),
    ),
    Mutant(
        name="phase-barrier",
        promise="10. every call of a lower phase ends before a higher phase begins",
        file="concsignals/_deliver.py",
        old="    if len(distinct) == 1:\n",
        new="    if True:\n",
        tests=("tests/test_delivery.py", "-k", "phase"),
    ),
    Mutant(
        name="self-target-runs-here",
        promise="10. a call whose target is the sender's own thread runs there "
        "(no deadlock by construction)",
        file="concsignals/_targets.py",
        old="        return aio is not None and aio.events._get_running_loop() is self.loop\n",
        new="        return False\n",
        tests=("tests/test_delivery.py", "-k", "loops_thread_to_that_loop_runs"),
    ),
    Mutant(
        name="mute-scoped-to-context",
        promise="11. a mute applies to the sends of the context that entered it "
        "only, never to another thread's or task's",
        file="concsignals/_mute.py",
        old=(
            "held: contextvars.ContextVar[tuple[Held, ...]] = contextvars.ContextVar(\n"
            '    "concsignals_muted", default=()\n'
            ")\n"
        ),
        # The mutes of the whole process in one global, as every other
        # library's mute is.
        new=(
            "class _Everywhere:\n"
            "    value: tuple[Held, ...] = ()\n"
            "    def get(self): return self.value\n"
            "    def set(self, value): self.value = value\n"
            "held = _Everywhere()\n"
        ),
        tests=("tests/test_muted.py", "-k", "another_alone or two_tasks"),
    ),
    Mutant(
        name="disconnect-waits",
        promise="13. disconnect(wait=True) returns once every call of the "
        "connection that began before has ended",
        file="concsignals/_signal.py",
        old="        if wait and gone:\n",
        new="        if False:\n",
        tests=("tests/test_quiesce.py", "-k", "returns_once_the_running_call"),
    ),
    Mutant(
        name="inline-send-marks-its-call",
        promise="13. the inline fast path marks its send before any gate, so "
        "disconnect(wait=True) sees its calls",
        file="concsignals/_signal.py",
        old="        stack.append(mark)\n",
        new="",
        tests=("tests/test_quiesce.py", "-k", "returns_once_the_running_call"),
    ),
    Mutant(
        name="self-disconnect-does-not-wait",
        promise="13. a receiver may disconnect itself with wait=True: the call "
        "this thread or task makes is not waited for",
        file="concsignals/_inflight.py",
        old="                continue  # up this thread's stack, or this very task\n",
        new="                pass\n",
        tests=("tests/test_quiesce.py", "-k", "itself"),
    ),
    Mutant(
        name="drain-waits-for-fire-and-forget",
        promise="13. drain waits for fire-and-forget calls, queued ones included",
        file="concsignals/_inflight.py",
        old="    futures[fut] = signal\n",
        new="    pass\n",
        tests=("tests/test_quiesce.py", "-k", "drain"),
    ),
    Mutant(
        name="inline-send-counts-skips",
        promise="13. an inline send counts the receivers its gate skipped, so a "
        "waiter knows which call it is at",
        file="concsignals/_signal.py",
        old="                    mark[3] += 1\n",
        new="",
        tests=("tests/test_quiesce.py", "-k", "dead"),
    ),
    Mutant(
        name="blocked-holds-calls",
        promise="13. while Connection.blocked() is held no call of the "
        "connection begins, in any thread",
        file="concsignals/_snapshot.py",
        old="    def __call__(self) -> None:\n        return None\n",
        new="    def __call__(self) -> None:\n        return self.original()\n",
        tests=("tests/test_connection.py", "-k", "blocked"),
    ),
    Mutant(
        name="blocked-stays-connected",
        promise="13. a blocked connection stays connected through other writes",
        file="concsignals/_snapshot.py",
        old="        if type(get) is Blocked:\n            get = get.original\n",
        new="",
        tests=("tests/test_connection.py", "-k", "blocked"),
    ),
    Mutant(
        name="group-member-order",
        promise="4. errors='group': the SendError's members are the failed "
        "slots in connection order",
        file="concsignals/_send.py",
        old="            raise group(self.signal, failures, responses)  "
        "# type: ignore[arg-type]\n",
        new="            raise group(self.signal, failures[::-1], responses)  "
        "# type: ignore[arg-type]\n",
        tests=("tests/test_errors.py",),
    ),
    Mutant(
        name="group-cancel-stops",
        promise="4. on_error='cancel': a failure stops the calls not yet begun",
        file="concsignals/_send.py",
        old="        self.cancels = not robust and (policy is None or policy.cancels)\n",
        new="        self.cancels = not robust and policy is None\n",
        tests=("tests/test_errors.py", "-k", "cancel"),
    ),
    Mutant(
        name="on-commit-withheld",
        promise="transactions: a call from a send inside a transaction waits "
        "for its commit, and a rollback drops it",
        file="concsignals/_commit.py",
        old="    if not waiting:\n        return entries\n",
        new="    if True:\n        return entries\n",
        tests=("tests/test_after_commit.py",),
    ),
    Mutant(
        name="deferred-send-robust",
        promise="transactions: one failing deferred call never stops the others",
        file="concsignals/_commit.py",
        old="        send = Send(self.signal, self.entries, self.sender, self.named, "
        "None, True)\n",
        new="        send = Send(self.signal, self.entries, self.sender, self.named, "
        "None, False)\n",
        tests=("tests/test_after_commit.py",),
    ),
    Mutant(
        name="capture-scoped-to-context",
        promise="testing: a capture records the sends of the context that entered "
        "it only, never another thread's or test's",
        file="concsignals/_capture.py",
        old='        _use(+1, self if self.scope == "process" else None)\n',
        # Every capture seen from every thread, as a receiver connected for a
        # test would be.
        new="        _use(+1, self)\n",
        tests=("tests/test_testing.py", "-k", "two_threads or context_scope"),
    ),
    Mutant(
        name="nobody-to-call-reported",
        promise="testing: a send with nobody to call (nothing connected, all "
        "muted) is reported to monitors, so a capture records it",
        file="concsignals/_run.py",
        old="    return _inline.send_watched(signal, (), sender, named, robust)\n",
        new="    return []\n",
        tests=("tests/test_testing.py", "-k", "nobody"),
    ),
    Mutant(
        name="wait-for-watches-from-creation",
        promise="testing: wait_for does not miss a send that ended after it "
        "began and before the wait",
        file="concsignals/testing.py",
        old="        deadline = time.monotonic() + self.timeout\n        try:\n"
        "            while True:\n                self._news.clear()",
        new="        deadline = time.monotonic() + self.timeout\n"
        "        self._checked = len(self._ended)\n        try:\n"
        "            while True:\n                self._news.clear()",
        tests=("tests/test_testing.py", "-k", "wait_for"),
    ),
]

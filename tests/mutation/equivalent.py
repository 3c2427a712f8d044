"""Surviving mutants of the full run that cannot change behaviour, and why.

Keys are mutmut's mutant names (``mutmut show NAME`` prints the change);
``python -m tests.mutation.full`` counts these apart from real survivors and
names any entry that is no longer a survivor of the run (the list drifted).

Two kinds are listed.  *Equivalent*: no program can tell the mutant from the
code.  *Performance only*: a fast path skipped or a cache not kept; every
send, write and outcome is the same, only slower (the benchmarks measure
those paths, the tests do not time them).
"""

from __future__ import annotations

_PROTOCOL = (
    "pickle's default protocol instead of HIGHEST_PROTOCOL: protocols 4 and "
    "5 pickle the same objects (5 adds out-of-band buffers, unused here)"
)
_THREAD_NAME = "the helper thread's name: read by nothing"
_INSTANT = (
    "< for <= (or > for >=) against the deadline: they differ only at the "
    "exact float instant of the deadline"
)
_NONE_FOR_FALSE = "None for False as a flag's first value: only ever tested for truth"
_NOT_INSTALLED = (
    "performance only: monitoring.watch() is called when no monitor is "
    "installed, and returns None then, as the check it skips would"
)

_LAZY_ANYONE = (
    "performance only: the any-sender tuple a snapshot was given (or knew "
    "to be empty) is built again on its first lookup; the same entries"
)
_FAST_CHECK = (
    "performance only: a plain function's code flags are not read, and "
    "inspect answers the same question from its signature"
)
_COMPACTION = (
    "memory only: when garbage is compacted away (the threshold moved by "
    "one, or by a third of the registry); every snapshot shows the same "
    "connections before and after a compaction"
)
_STALE = (
    "memory only: the garbage count after a dead sender's route is replaced "
    "(its id() reused) is off by that route's entries, so compaction comes "
    "sooner or later; no connection, send or result changes"
)
_ANYONE = (
    "performance only: the new snapshot shares the old any-sender tuple, or "
    "rebuilds it when it could share it; a disconnected entry left in a "
    "shared tuple is skipped by its DEAD getter, as in any older snapshot"
)

EQUIVALENT: dict[str, str] = {
    # _callables.py
    "concsignals._callables.x_accepts_kwargs__mutmut_1": _FAST_CHECK,
    "concsignals._callables.x_is_async_receiver__mutmut_2": _FAST_CHECK,
    "concsignals._callables.x_plain_function__mutmut_2": _FAST_CHECK,
    "concsignals._callables.x_is_async_receiver__mutmut_18": (
        "a plain function that is not async also reaches the __call__ check, "
        "which finds the function type's slot wrapper and answers no, as "
        "the skipped check would"
    ),
    # executors.py
    "concsignals.executors.x__unpicklable_argument__mutmut_5": _PROTOCOL,
    "concsignals.executors.x__unpicklable_argument__mutmut_7": _PROTOCOL,
    "concsignals.executors.x_dumps_args__mutmut_2": _PROTOCOL,
    "concsignals.executors.x_dumps_args__mutmut_4": _PROTOCOL,
    "concsignals.executors.x_owned_pool__mutmut_1": (
        "performance only: skips the lock-free read; the locked path returns "
        "the same pool"
    ),
    "concsignals.executors.x_in_process__mutmut_11": (
        "None for False as getattr's default: bool() of either is False"
    ),
    "concsignals.executors.xǁSignalRefǁ__hash____mutmut_1": (
        "performance only: every ref hashes alike; equal refs still hash "
        "equal, so sets and dicts stay correct"
    ),
    # _pickled.py
    "concsignals._pickled.x_dump_receiver__mutmut_5": _PROTOCOL,
    "concsignals._pickled.x_dump_receiver__mutmut_7": _PROTOCOL,
    "concsignals._pickled.x_wait__mutmut_24": (
        "with no failure among the futures, the send is closed only because "
        "the deadline passed at the gate: the futures[1:] it then cancels "
        "leave the first to the deadline's cancel a moment later, with the "
        "same outcome (timed out, not started)"
    ),
    # _registry.py
    "concsignals._registry.x_connect_locked__mutmut_83": _STALE,
    "concsignals._registry.x_connect_locked__mutmut_84": _STALE,
    "concsignals._registry.x_connect_locked__mutmut_135": (
        "connection numbers step by 2: they are only compared, never counted"
    ),
    "concsignals._registry.x_connect_locked__mutmut_146": (
        "performance only: reports the uid bucket changed after connecting; "
        "the caller resolves again and the next try finds the connection "
        "made and returns"
    ),
    "concsignals._registry.x_compacted_locked__mutmut_9": _COMPACTION,
    "concsignals._registry.x_compacted_locked__mutmut_10": _COMPACTION,
    "concsignals._registry.x_compacted_locked__mutmut_12": _COMPACTION,
    "concsignals._registry.x_compacted_locked__mutmut_13": _COMPACTION,
    "concsignals._registry.x_disconnect_locked__mutmut_41": (
        "route_live is read only when there is a route: its value without "
        "one is never used"
    ),
    "concsignals._registry.x_disconnect_locked__mutmut_67": _ANYONE,
    "concsignals._registry.x_disconnect_locked__mutmut_73": _ANYONE,
    "concsignals._registry.x_disconnect_locked__mutmut_78": _ANYONE,
    "concsignals._registry.x_disconnect_locked__mutmut_79": _ANYONE,
    "concsignals._registry.x_disconnect_locked__mutmut_80": _ANYONE,
    "concsignals._registry.x_disconnect_locked__mutmut_85": (
        "a disconnected entry's hold set to '' instead of None: either holds "
        "nothing (the receiver is kept by the write's list until after the "
        "lock)"
    ),
    "concsignals._registry.x_settled__mutmut_1": (
        "performance only: a sender with one receiver gets a Route of one "
        "instead of its entry; both give the same lookups and disconnects"
    ),
    "concsignals._registry.x_settled__mutmut_4": (
        "the sender getter of the route's second entry instead of its first: "
        "every entry of a route has the same sender"
    ),
    # _run.py
    "concsignals._run.x_arun__mutmut_3": _NOT_INSTALLED,
    "concsignals._run.x_submit__mutmut_9": (
        "closes the send when its Future is done, not only when cancelled: "
        "a Future is done once the send settled (every slot has its "
        "outcome), so closing changes no slot, and the results are taken"
    ),
    "concsignals._run.x_start_gathered__mutmut_3": _NOT_INSTALLED,
    # _send.py
    "concsignals._send.xǁSendǁexpired__mutmut_3": _INSTANT,
    "concsignals._send.xǁSendǁbegin__mutmut_6": _INSTANT,
    "concsignals._send.xǁSendǁend__mutmut_4": _INSTANT,
    "concsignals._send.xǁSendǁbegin__mutmut_1": _NONE_FOR_FALSE,
    "concsignals._send.xǁSendǁend__mutmut_13": _NONE_FOR_FALSE,
    "concsignals._send.xǁSendǁ_close_locked__mutmut_2": (
        "closing a closed send again (its reason kept) re-runs only what "
        "cannot act twice: cancelling futures already cancelled, on_close "
        "(a call cancelled again is not running, so not un-begun again; "
        "asend's waiter cancels its tasks again, as its caller does anyway), "
        "and the settled callback, which is taken once"
    ),
    # _signal.py
    "concsignals._signal.xǁSignalǁ_collect_dead__mutmut_2": (
        "performance only: also refreshes when no new death was reported; a "
        "refreshed snapshot shows the same connections"
    ),
    "concsignals._signal.xǁSignalǁsend__mutmut_2": (
        "performance only: send never takes its fast path; _send_general "
        "does the same (benchmark case 1 measures the difference)"
    ),
    # _snapshot.py
    "concsignals._snapshot.x_merge__mutmut_9": (
        "<= for < between connection numbers of different entries, which are "
        "never equal"
    ),
    "concsignals._snapshot.xǁSnapshotǁanyone__mutmut_1": (
        "performance only: the any-sender tuple is rebuilt on every lookup "
        "instead of once per snapshot; the same entries each time"
    ),
    "concsignals._snapshot.xǁSnapshotǁlookup__mutmut_1": (
        "performance only: the shortcut to the any-sender entries is taken "
        "less often; the route lookup it falls to finds no route then (none "
        "is filed under None, and none is left when no sender's own "
        "receiver is connected) and returns the same entries"
    ),
    "concsignals._snapshot.xǁStateǁ__init____mutmut_5": (
        "connection numbers start at 1: they are only compared, never counted"
    ),
    "concsignals._snapshot.xǁSnapshotǁ__init____mutmut_8": _LAZY_ANYONE,
    "concsignals._snapshot.xǁSnapshotǁ__init____mutmut_9": _LAZY_ANYONE,
    "concsignals._snapshot.xǁSnapshotǁ__init____mutmut_12": (
        "performance only: no snapshot offers send's fast path; _send_general "
        "does the same"
    ),
    "concsignals._snapshot.x_empty__mutmut_12": (
        "a new signal's first snapshot never reads its upto bound: with no "
        "sender routes it answers every lookup from its (empty) any-sender "
        "entries"
    ),
    "concsignals._snapshot.x_empty__mutmut_14": (
        "performance only: a new signal's snapshot claims sender routes it "
        "has not; lookups find none and return the same (empty) entries"
    ),
    # _threads.py
    "concsignals._threads.x_start__mutmut_17": (
        "performance only: marks the context for every job instead of when "
        "the executor changes; the mark is the same"
    ),
    "concsignals._threads.x_wait__mutmut_1": (
        "the first progress count to compare with: the count of begun calls "
        "is never None, -1 or -2, so the first slice never steals either way"
    ),
    "concsignals._threads.x_wait__mutmut_3": "as _1: -2 for -1",
    "concsignals._threads.x_wait__mutmut_9": _INSTANT,
    "concsignals._threads.x_wait__mutmut_21": (
        "counts the calls not begun instead of those begun: n minus the "
        "other, so 'no change since the last slice' is the same test"
    ),
    # _async.py
    "concsignals._async.x_run_private__mutmut_10": _THREAD_NAME,
    "concsignals._async.x_run_private__mutmut_12": _THREAD_NAME,
    "concsignals._async.x_run_private__mutmut_13": _THREAD_NAME,
    "concsignals._async.x_run_private__mutmut_14": _THREAD_NAME,
    "concsignals._async.x_run_private__mutmut_21": (
        "'' for None once the private loop ended: only compared by identity "
        "with a running loop, which neither is"
    ),
}

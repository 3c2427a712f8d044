"""Surviving mutants of the full run that cannot change behaviour, and why.

Keys are mutmut's mutant names (``mutmut show NAME`` prints the change);
``python -m tests.mutation.full`` counts these apart from real survivors and
names any entry that is no longer a survivor of the run (the list drifted).
"""

from __future__ import annotations

_POOL_SIZE = (
    "the size of the pool concsignals owns for submit(): no promise depends "
    "on it (ThreadPoolExecutor's default is the same formula)"
)
_SEQ = (
    "connection numbers are only compared, never counted: a different start "
    "below 0, a gap, or < for <= between numbers that are never equal"
)
_THREAD_NAME = "the helper thread's name: read by nothing"

EQUIVALENT: dict[str, str] = {
    # executors.py
    "concsignals.executors.x__unpicklable_argument__mutmut_5": (
        "pickle's default protocol for HIGHEST_PROTOCOL, only to find which "
        "argument fails: protocols 4 and 5 pickle the same objects"
    ),
    "concsignals.executors.x__unpicklable_argument__mutmut_7": (
        "as _5: the default protocol"
    ),
    "concsignals.executors.x_owned_pool__mutmut_1": (
        "skips the lock-free fast read: the locked path returns the same pool"
    ),
    "concsignals.executors.x_owned_pool__mutmut_4": _POOL_SIZE,
    "concsignals.executors.x_owned_pool__mutmut_9": _POOL_SIZE,
    "concsignals.executors.x_owned_pool__mutmut_11": _POOL_SIZE,
    "concsignals.executors.x_owned_pool__mutmut_12": _POOL_SIZE,
    "concsignals.executors.x_owned_pool__mutmut_13": _POOL_SIZE,
    "concsignals.executors.x_owned_pool__mutmut_15": _POOL_SIZE,
    "concsignals.executors.x_owned_pool__mutmut_17": _POOL_SIZE,
    # _registry.py
    "concsignals._registry.x_replace_locked__mutmut_11": _SEQ,
    "concsignals._registry.x_replace_locked__mutmut_16": _SEQ,
    "concsignals._registry.x_replace_locked__mutmut_38": _SEQ,
    "concsignals._registry.x_replace_locked__mutmut_78": (
        "a retired entry's hold set to '' instead of None: either holds "
        "nothing (the receiver is kept by the write's list until after the lock)"
    ),
    # _send.py
    "concsignals._send.xǁSendǁexpired__mutmut_3": (
        "> for >= against the deadline: the two differ only at the exact "
        "float instant of the deadline"
    ),
    # _threads.py
    "concsignals._threads.x_wait__mutmut_1": (
        "the first progress count to compare with: the count of begun calls "
        "is never None, -1 or -2, so the first slice never steals either way"
    ),
    "concsignals._threads.x_wait__mutmut_3": "as _1: -2 for -1",
    "concsignals._threads.x_wait__mutmut_9": (
        "< for <= against the time left: they differ only at the exact float "
        "instant of the deadline"
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

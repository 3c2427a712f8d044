"""Surviving mutants of the full run that cannot change behaviour, and why.

Keys are mutmut's mutant names (``mutmut show NAME`` prints the change);
``python -m tests.mutation.full`` counts these apart from real survivors and
names any entry that is no longer a survivor of the run (the list drifted).
"""

from __future__ import annotations

EQUIVALENT: dict[str, str] = {}

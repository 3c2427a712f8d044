"""A race-condition hunter for concsignals.

``python -m stress`` runs named scenarios (``stress.catalog``: the core ones in
``stress.scenarios``, those that run receivers elsewhere in
``stress.elsewhere``) that hammer a
dispatcher from many threads under a tiny switch interval, checks every send
against the concurrency contract (``stress.record``), watches for deadlocks
and memory growth (``stress.runner``, ``stress.memory``), and proves it can
fail by catching deliberately broken dispatchers (``stress.broken``).

Needs nothing but the standard library and concsignals.
"""

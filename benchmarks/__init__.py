"""concsignals benchmarks: ``python -m benchmarks`` (``--help`` for options).

Every case measures concsignals side by side with django.dispatch, blinker,
psygnal and pydispatcher, and against a floor, in one run; ``--write``
publishes a run as ``docs/benchmarks.md`` and its plots.  The cases import the
peers, so they need the ``bench`` extra; ``python -m benchmarks`` says so if
it is missing.
"""

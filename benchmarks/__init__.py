"""concsignals benchmarks: ``python -m benchmarks`` (``--help`` for options).

Every case measures concsignals side by side with django.dispatch, blinker,
psygnal and pydispatcher, and against a floor, in one run; the full run
publishes ``docs/benchmarks.md`` and its plots.
"""

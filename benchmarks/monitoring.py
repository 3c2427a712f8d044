"""Case: the cost of observability (issue 15): off, a monitor on, OpenTelemetry on.

Each round times the same inline ``send`` three ways, interleaved: with
nothing installed (``off``, the fast path), with one no-op monitor installed
(``monitor``: the monitored inline loop, with a
:class:`~concsignals.monitoring.SendEvent` and a ``CallEvent`` per receiver),
and with ``ConcsignalsInstrumentor`` on an
SDK ``TracerProvider`` whose spans go to a processor that drops them
(``otel``: a span per send and per call, and the metrics).  Each timer
installs what it needs before its loop and removes it after, so ``off`` is
measured with nothing installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from .cases import Case, register, timing_samples
from .harness import Settings, Timer, cpu_clock
from .peers import Sender, make_receiver
from .report import CaseResult, Table, fmt_time

COUNTS = (1, 10)
NAMES = ("off", "monitor", "otel")


class NoOpMonitor:
    """Implements every hook and does nothing."""

    def send_began(self, send: Any) -> None:
        pass

    def call_began(self, call: Any) -> None:
        pass

    def call_ended(self, call: Any) -> None:
        pass

    def send_ended(self, send: Any) -> None:
        pass


def timed(send: Callable[..., Any], sender: object, on: Callable[[], Any]) -> Timer:
    """Time ``send(sender, payload=1)`` with ``on()`` installed (it returns the
    undo)."""

    def timer(loops: int) -> float:
        off = on()
        try:
            it = itertools.repeat(None, loops)
            t0 = cpu_clock()
            for _ in it:
                send(sender, payload=1)
            return cpu_clock() - t0
        finally:
            off()

    return timer


def otel_on() -> Callable[[], Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    from concsignals.otel import ConcsignalsInstrumentor

    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())  # records, then drops
    inst = ConcsignalsInstrumentor()
    inst.instrument(tracer_provider=provider, meter_provider=MeterProvider())
    return inst.uninstrument


def monitor_on() -> Callable[[], Any]:
    from concsignals import monitoring

    m = NoOpMonitor()
    monitoring.install(m)
    return lambda: monitoring.uninstall(m)


def groups(settings: Settings, keep: list[object]) -> dict[str, dict[str, Timer]]:
    import concsignals

    found = {}
    for n in COUNTS:
        sig = concsignals.Signal()
        receivers = [make_receiver() for _ in range(n)]
        sender = Sender()
        keep += [sig, receivers, sender]
        for r in receivers:
            sig.connect(r)
        found[f"{n}"] = {
            "off": timed(sig.send, sender, lambda: lambda: None),
            "monitor": timed(sig.send, sender, monitor_on),
            "otel": timed(sig.send, sender, otel_on),
        }
    return found


def run(settings: Settings) -> CaseResult:
    samples = timing_samples(CASE, settings)
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method="`signal.send(sender, payload=1)` inline, *n* receivers that return "
        "`1`; off / one no-op monitor installed / `ConcsignalsInstrumentor` on "
        "an SDK tracer provider (spans recorded, not exported) and meter "
        "provider. Times are per send; ratios are paired per round.",
    )
    rows = []
    for n in COUNTS:
        s = samples[f"{n}"]
        for name in NAMES:
            rows.append(
                [
                    str(n),
                    name,
                    fmt_time(s.median(name)),
                    f"±{s.spread(name) / 2:.1%}",
                    f"{s.ratio(name, 'off'):.2f}x",
                ]
            )
    result.tables.append(
        Table(
            "time per send",
            ["receivers", "observability", "median", "spread", "time ÷ off"],
            rows,
        )
    )
    return result


CASE = register(
    Case("monitoring", "10. Observability: off, monitor, OpenTelemetry", run, groups)
)

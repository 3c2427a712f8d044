"""OpenTelemetry for concsignals: spans for sends and receiver calls, metrics.

``ConcsignalsInstrumentor().instrument(tracer_provider=..., meter_provider=...)``
installs one monitor (see :mod:`concsignals.monitoring`); ``uninstrument()``
removes it, and with it every cost.  Needs the extra ``concsignals[otel]``.

What it records
---------------
* a span per send, ``send <module.name>`` (the signal's module-level name as
  :class:`~concsignals.SignalRef` finds it), a child of whatever span is
  current where the send is made;
* a child span per receiver call, named after the receiver's qualified name,
  on every backend: it is current while the receiver runs (inline, on
  threads, in asyncio tasks), and for a call run in another process its
  trace context travels with the pickled call, so a worker that has
  OpenTelemetry configured adds a span of its own to the same trace;
* attributes ``concsignals.signal``, ``concsignals.receiver``,
  ``concsignals.sender_type``, ``concsignals.executor`` and
  ``concsignals.outcome``; a failing call's span has ERROR status and the
  exception recorded; a timed-out one has ERROR status "timed out";
* metrics: ``concsignals.receiver.duration`` (histogram, seconds) and the
  counters ``concsignals.receiver.calls``, ``.failures`` and ``.timeouts``,
  each with the attributes ``concsignals.signal`` and ``concsignals.receiver``.

``instrument(receiver_span_threshold=0.05)`` makes receiver spans only for
calls that last 50 ms or more (made when the call ends, with its real start
time); the metrics still count every call.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.trace import Span, StatusCode

from . import __version__, monitoring
from ._otel_worker import TraceCarrier
from .executors import SignalRef

__all__ = ["ConcsignalsInstrumentor"]

_SCOPE = "concsignals"


def _qualname(receiver: object) -> str:
    """A span's name: the receiver's ``__qualname__`` (as Django logs it)."""
    name = getattr(receiver, "__qualname__", None)
    return name if isinstance(name, str) else type(receiver).__qualname__


def _name(receiver: object) -> str:
    """The ``concsignals.receiver`` attribute: ``module.qualname``."""
    name = getattr(receiver, "__qualname__", None)
    if not isinstance(name, str):
        name = type(receiver).__qualname__
    module = getattr(receiver, "__module__", None)
    return f"{module}.{name}" if isinstance(module, str) else name


def _executor(executor: object) -> str:
    return "inline" if executor is None else type(executor).__qualname__


class _SpanMonitor:
    """The monitor ``ConcsignalsInstrumentor`` installs."""

    def __init__(
        self, tracer: trace.Tracer, meter: metrics.Meter, threshold: float | None
    ) -> None:
        self.tracer = tracer
        self.threshold = threshold
        self.duration = meter.create_histogram(
            "concsignals.receiver.duration", unit="s", description="receiver calls"
        )
        self.calls = meter.create_counter("concsignals.receiver.calls")
        self.failures = meter.create_counter("concsignals.receiver.failures")
        self.timeouts = meter.create_counter("concsignals.receiver.timeouts")

    def send_began(self, send: monitoring.SendEvent) -> None:
        signal = str(SignalRef.of(send.signal))
        attributes: dict[str, str | int] = {
            "concsignals.signal": signal,
            "concsignals.sender_type": type(send.sender).__qualname__,
            "concsignals.executor": _executor(send.executor),
            "concsignals.receivers": len(send.receivers),
        }
        span = self.tracer.start_span(
            f"send {signal}", start_time=send.began, attributes=attributes
        )
        send.notes[self] = (span, trace.set_span_in_context(span), signal)

    def call_began(self, call: monitoring.CallEvent) -> AbstractContextManager[Any]:
        if self.threshold is not None:
            return trace.use_span(
                self._send_span(call),
                record_exception=False,
                set_status_on_exception=False,
            )
        span = self._start(call)
        call.notes[self] = span
        return trace.use_span(
            span, record_exception=False, set_status_on_exception=False
        )

    def carrier(self, call: monitoring.CallEvent) -> TraceCarrier:
        span = call.notes.get(self) or self._send_span(call)
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        signal = call.send.notes[self][2]
        return TraceCarrier(headers, signal, _qualname(call.receiver))

    def call_ended(self, call: monitoring.CallEvent) -> None:
        signal = call.send.notes[self][2]
        labels = {
            "concsignals.signal": signal,
            "concsignals.receiver": _name(call.receiver),
        }
        if call.began is not None:
            self.calls.add(1, labels)
        if call.outcome == monitoring.EXCEPTION:
            self.failures.add(1, labels)
        elif call.outcome == monitoring.TIMED_OUT:
            self.timeouts.add(1, labels)
        if call.duration is not None:
            self.duration.record(call.duration, labels)
        span: Span | None = call.notes.get(self)
        if span is None and call.began is not None and self._slow(call):
            span = self._start(call)
        if span is not None:
            self._close(span, call)

    def send_ended(self, send: monitoring.SendEvent) -> None:
        span: Span = send.notes[self][0]
        if send.error is not None:
            span.record_exception(send.error)
            span.set_status(StatusCode.ERROR, type(send.error).__name__)
        span.end(end_time=send.ended)

    def _send_span(self, call: monitoring.CallEvent) -> Span:
        span: Span = call.send.notes[self][0]
        return span

    def _slow(self, call: monitoring.CallEvent) -> bool:
        if self.threshold is None:
            return False
        duration = call.duration
        if duration is None:  # still running at the send's end
            duration = (time.time_ns() - (call.began or 0)) / 1e9
        return duration >= self.threshold

    def _start(self, call: monitoring.CallEvent) -> Span:
        send = call.send
        return self.tracer.start_span(
            _qualname(call.receiver),
            context=send.notes[self][1],
            start_time=call.began,
            attributes={
                "concsignals.signal": send.notes[self][2],
                "concsignals.receiver": _name(call.receiver),
                "concsignals.sender_type": type(send.sender).__qualname__,
                "concsignals.executor": _executor(send.executor),
                "concsignals.thread": call.thread or "",
                "concsignals.process": call.process or 0,
            },
        )

    def _close(self, span: Span, call: monitoring.CallEvent) -> None:
        span.set_attribute("concsignals.outcome", call.outcome or "")
        if call.outcome == monitoring.EXCEPTION and call.error is not None:
            span.record_exception(call.error)
            err = call.error
            span.set_status(StatusCode.ERROR, f"{type(err).__name__}: {err}")
        elif call.outcome == monitoring.TIMED_OUT:
            span.set_status(StatusCode.ERROR, "timed out")
        span.end(end_time=call.ended)


class ConcsignalsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Trace and measure every send and receiver call (see the module docs).

    ``instrument(tracer_provider=None, meter_provider=None,
    receiver_span_threshold=None)``: the providers default to the global
    ones; ``receiver_span_threshold`` (seconds) makes receiver spans only for
    calls at least that slow.  ``uninstrument()`` removes the monitor: sends
    are exactly as fast as before.  Safe from any thread; a send under way
    when either is called finishes as it began.
    """

    _monitor: _SpanMonitor | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(
            _SCOPE, __version__, tracer_provider=kwargs.get("tracer_provider")
        )
        meter = metrics.get_meter(
            _SCOPE, __version__, meter_provider=kwargs.get("meter_provider")
        )
        threshold = kwargs.get("receiver_span_threshold")
        self._monitor = _SpanMonitor(tracer, meter, threshold)
        monitoring.install(self._monitor)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._monitor is not None:
            monitoring.uninstall(self._monitor)
            self._monitor = None

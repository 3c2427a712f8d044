"""The worker side of ``concsignals.otel``: a trace context that travels.

:class:`TraceCarrier` is what ``ConcsignalsInstrumentor`` hands to a call run
in another process (processes, Dask): the W3C trace headers of the call's
span in the sender, and the names to give the worker's span.  The worker
enters it around the call (``executors.call_pickled``): if OpenTelemetry is
installed and configured there, a span for the call joins the sender's trace
and is current while the receiver runs, so the receiver's own spans join it
too.  Without OpenTelemetry in the worker it does nothing.

This module imports OpenTelemetry only when a carrier is entered, so a
carrier can always be unpickled.
"""

from __future__ import annotations

import os
from typing import Any


class TraceCarrier:
    """Picklable; entered once, in the worker, around one call."""

    __slots__ = ("_span", "_token", "headers", "receiver", "signal")

    def __init__(self, headers: dict[str, str], signal: str, receiver: str) -> None:
        self.headers = headers
        self.signal = signal
        self.receiver = receiver
        self._span: Any = None
        self._token: Any = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (TraceCarrier, (self.headers, self.signal, self.receiver))

    def __enter__(self) -> TraceCarrier:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:
            return self
        parent = propagate.extract(self.headers)
        self._span = trace.get_tracer("concsignals").start_span(
            self.receiver,
            context=parent,
            attributes={
                "concsignals.signal": self.signal,
                "concsignals.receiver": self.receiver,
                "concsignals.process": os.getpid(),
            },
        )
        self._token = context.attach(trace.set_span_in_context(self._span, parent))
        return self

    def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        from opentelemetry import context, trace

        context.detach(self._token)
        if isinstance(err, BaseException):
            span.record_exception(err)
            span.set_status(trace.StatusCode.ERROR, f"{type(err).__name__}: {err}")
        span.end()

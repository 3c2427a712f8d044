"""``concsignals.otel.ConcsignalsInstrumentor`` with the real OpenTelemetry SDK
(issue 15): spans on every backend, a worker process joining the trace,
errors, time-outs, metrics, slow-only receiver spans, uninstrument."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from concsignals import Signal, monitoring
from concsignals.otel import ConcsignalsInstrumentor
from tests.backends import Backend
from tests.receivers import Fail, Reply, Shop, WaitForFile, echo

#: Module-level, so its spans are named ``send tests.test_otel.order_paid``.
order_paid = Signal()


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def points(self) -> dict[str, dict[str, Any]]:
        """{metric name: {receiver attribute: value or count}}."""
        found: dict[str, dict[str, Any]] = {}
        data = self.metrics.get_metrics_data()
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:  # type: ignore[union-attr]
                        key = str(p.attributes["concsignals.receiver"])  # type: ignore[index]
                        value = getattr(p, "value", None)
                        found.setdefault(m.name, {})[key] = (
                            value if value is not None else p.count  # type: ignore[union-attr]
                        )
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    inst = ConcsignalsInstrumentor()
    inst.instrument(tracer_provider=o.tracer_provider, meter_provider=o.meter_provider)
    try:
        yield o
    finally:
        inst.uninstrument()
    assert monitoring.monitors() == () and not monitoring.installed


@pytest.fixture
def signal() -> Iterator[Signal]:
    try:
        yield order_paid
    finally:
        for r in order_paid.receivers:
            order_paid.disconnect(r)


@pytest.fixture
def executor(backend: Backend, request: pytest.FixtureRequest) -> Any:
    return backend.make(request, 4)


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_send_and_receiver_spans_on_every_backend(
    backend: Backend, executor: Any, otel: Otel, signal: Signal
) -> None:
    ok, bad = Reply("ok"), Fail("bad")
    signal.connect(ok, weak=False)
    signal.connect(bad, weak=False)
    with otel.tracer.start_as_current_span("request") as request:
        backend.send_robust(signal, executor, None, Shop, {})
    (send,) = otel.named("send tests.test_otel.order_paid")
    (ok_span,) = otel.named("Reply")
    (bad_span,) = otel.named("Fail")
    trace_id = request.get_span_context().trace_id
    if backend.name == "nested":  # request > send (the relay's) > inner > send
        (relay,) = otel.named("relay.<locals>.inner")
        assert parent_of(send) == relay.context.span_id
        (outer,) = [s for s in otel.finished() if s.context.span_id == parent_of(relay)]
        assert parent_of(outer) == request.get_span_context().span_id
    else:
        assert parent_of(send) == request.get_span_context().span_id
    for span in (send, ok_span, bad_span):
        assert span.context.trace_id == trace_id
    assert parent_of(ok_span) == parent_of(bad_span) == send.context.span_id
    attrs = dict(ok_span.attributes or {})
    assert attrs["concsignals.signal"] == "tests.test_otel.order_paid"
    assert attrs["concsignals.receiver"] == "tests.receivers.Reply"
    assert attrs["concsignals.sender_type"] == "type"
    expected = "inline" if executor is None else type(executor).__qualname__
    assert attrs["concsignals.executor"] == expected
    assert attrs["concsignals.outcome"] == "result"
    assert ok_span.status.status_code is StatusCode.UNSET
    assert bad_span.status.status_code is StatusCode.ERROR
    assert dict(bad_span.attributes or {})["concsignals.outcome"] == "exception"
    (event,) = bad_span.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "ValueError"
    assert send.start_time <= ok_span.start_time <= ok_span.end_time <= send.end_time  # type: ignore[operator]


def test_spans_the_receiver_makes_are_children_of_its_span(
    backend: Backend, executor: Any, otel: Otel, signal: Signal
) -> None:
    if not backend.shares_memory:
        pytest.skip("the receiver runs in another process")

    def work(**kw: Any) -> None:
        with otel.tracer.start_as_current_span("inner"):
            pass

    signal.connect(work)
    backend.send(signal, executor, None, Shop, {})
    (call,) = otel.named(work.__qualname__)
    (inner,) = otel.named("inner")
    assert parent_of(inner) == call.context.span_id


@pytest.mark.timeout(30)
def test_a_timed_out_call_says_so(
    backend: Backend, executor: Any, otel: Otel, signal: Signal, tmp_path: Path
) -> None:
    slow = WaitForFile("slow", str(tmp_path / "go"), max_wait=0.6)
    signal.connect(slow, weak=False)
    backend.send_robust(signal, executor, 0.1, Shop, {})
    (tmp_path / "go").touch()
    (span,) = otel.named("WaitForFile")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "timed out"
    assert dict(span.attributes or {})["concsignals.outcome"] == "timed out"
    timeouts = otel.points()["concsignals.receiver.timeouts"]
    assert timeouts == {"tests.receivers.WaitForFile": 1}


def test_metrics_count_calls_failures_and_durations(otel: Otel, signal: Signal) -> None:
    ok, bad = Reply("ok"), Fail("bad")
    signal.connect(ok, weak=False)
    signal.connect(bad, weak=False)
    for _ in range(3):
        signal.send_robust(Shop)
    points = otel.points()
    assert points["concsignals.receiver.calls"] == {
        "tests.receivers.Reply": 3,
        "tests.receivers.Fail": 3,
    }
    assert points["concsignals.receiver.failures"] == {"tests.receivers.Fail": 3}
    assert points["concsignals.receiver.duration"] == {
        "tests.receivers.Reply": 3,
        "tests.receivers.Fail": 3,
    }


def test_receiver_spans_only_for_slow_calls(signal: Signal) -> None:
    o = Otel()
    inst = ConcsignalsInstrumentor()
    inst.instrument(
        tracer_provider=o.tracer_provider,
        meter_provider=o.meter_provider,
        receiver_span_threshold=0.05,
    )
    try:
        fast, slow = Reply("fast"), Reply("slow", delay=0.08)
        signal.connect(fast, weak=False)
        signal.connect(slow, weak=False)
        signal.send(Shop)
    finally:
        inst.uninstrument()
    (send,) = o.named("send tests.test_otel.order_paid")
    (span,) = o.named("Reply")
    assert parent_of(span) == send.context.span_id
    assert span.end_time - span.start_time >= 0.05e9  # type: ignore[operator]
    assert o.points()["concsignals.receiver.calls"] == {"tests.receivers.Reply": 2}


def test_uninstrument_removes_every_cost(signal: Signal) -> None:
    o = Otel()
    inst = ConcsignalsInstrumentor()
    inst.instrument(tracer_provider=o.tracer_provider)
    assert monitoring.installed
    inst.uninstrument()
    assert monitoring.monitors() == () and not monitoring.installed
    signal.connect(echo)
    signal.send(Shop)
    assert o.finished() == []


# -- a worker process that has OpenTelemetry configured ---------------------------


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file as one JSON line (worker side)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as f:
            for s in spans:
                f.write(
                    json.dumps(
                        {
                            "name": s.name,
                            "trace_id": s.context.trace_id,
                            "span_id": s.context.span_id,
                            "parent": parent_of(s),
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


def configure_worker_tracing(path: str) -> None:
    """A process pool's initializer: OpenTelemetry exporting to ``path``."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    trace.set_tracer_provider(provider)


@pytest.mark.timeout(60)
def test_a_worker_process_joins_the_senders_trace(
    otel: Otel, signal: Signal, tmp_path: Path
) -> None:
    path = str(tmp_path / "worker-spans.jsonl")
    ctx = multiprocessing.get_context("forkserver")
    signal.connect(echo)
    with (
        ProcessPoolExecutor(
            1, mp_context=ctx, initializer=configure_worker_tracing, initargs=(path,)
        ) as pool,
        otel.tracer.start_as_current_span("request") as request,
    ):
        result = signal.using(pool).send(Shop, n=1)
    assert result[0][1][2] == {"n": 1}
    (caller_side,) = otel.named("echo")
    worker = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert [w["name"] for w in worker] == ["echo"]
    assert worker[0]["trace_id"] == request.get_span_context().trace_id
    assert worker[0]["parent"] == caller_side.context.span_id

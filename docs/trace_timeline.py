"""Record a real trace of one request and draw its timeline (docs/observability.md).

Run from the repository root: ``python docs/trace_timeline.py``.  Writes
``docs/_static/observability_trace.png``.  Needs ``concsignals[otel]``,
``opentelemetry-sdk`` and matplotlib.
"""

from __future__ import annotations

import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from concsignals import Signal
from concsignals.otel import ConcsignalsInstrumentor

# A module "shop.signals", so the send span is named "send shop.signals.order_paid".
shop_signals = types.ModuleType("shop.signals")
sys.modules["shop.signals"] = shop_signals
order_paid = shop_signals.order_paid = Signal()

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("shop")


def send_receipt(sender, order, **kwargs):
    time.sleep(0.030)


def update_stock(sender, order, **kwargs):
    with tracer.start_as_current_span("UPDATE stock"):  # the receiver's own span
        time.sleep(0.045)


def notify_warehouse(sender, order, **kwargs):
    time.sleep(0.012)
    if not order:
        return
    raise ConnectionError("warehouse API unreachable")


def award_points(sender, order, **kwargs):
    time.sleep(0.020)


for r in (send_receipt, update_stock, notify_warehouse, award_points):
    order_paid.connect(r)

ConcsignalsInstrumentor().instrument(tracer_provider=provider)
pool = ThreadPoolExecutor(2, thread_name_prefix="signals")
# Warm up: the first send of a signal looks up its module-level name (a scan
# of sys.modules), and the pool starts its threads.
order_paid.using(pool).send_robust(sender="shop", order=0)
exporter.clear()
with tracer.start_as_current_span("POST /orders/42/pay"):
    time.sleep(0.005)
    order_paid.using(pool).send_robust(sender="shop", order=42)
    time.sleep(0.005)
ConcsignalsInstrumentor().uninstrument()
pool.shutdown()

spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)
by_id = {s.context.span_id: s for s in spans}


def depth(span):
    d = 0
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        d += 1
    return d


t0 = spans[0].start_time
fig, ax = plt.subplots(figsize=(9, 3.4), dpi=110)
for row, span in enumerate(spans):
    start = (span.start_time - t0) / 1e6
    length = (span.end_time - span.start_time) / 1e6
    failed = span.status.status_code is StatusCode.ERROR
    thread = (span.attributes or {}).get("concsignals.thread", "")
    color = (
        "#d62728"
        if failed
        else ["#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd"][min(depth(span), 3)]
    )
    ax.barh(row, length, left=start, color=color, height=0.6)
    label = "  " * depth(span) + span.name
    ax.text(-1, row, label, ha="right", va="center", fontsize=8)
    note = f"{length:.1f} ms" + (f"  [{thread}]" if thread else "")
    if failed:
        note += "  ERROR"
    ax.text(start + length + 0.5, row, note, va="center", fontsize=7)
ax.set_yticks([])
ax.invert_yaxis()
ax.set_xlabel("ms since the request began")
ax.set_title("One request: send span, receiver spans on two pool threads", fontsize=10)
end = max((s.end_time - t0) / 1e6 for s in spans)
ax.set_xlim(0, end * 1.35)
fig.subplots_adjust(left=0.36, right=0.98, bottom=0.15, top=0.9)
out = Path(__file__).parent / "_static" / "observability_trace.png"
fig.savefig(out)
print(f"wrote {out}")
for s in spans:
    print(
        f"{depth(s)} {s.name:32} {(s.start_time - t0) / 1e6:6.1f} ms  "
        f"{(s.end_time - s.start_time) / 1e6:6.1f} ms  {s.status.status_code.name}"
    )

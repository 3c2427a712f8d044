"""sentry-sdk's Django integration on concsignals' Django signals.

sentry-sdk wraps each sync receiver Django's ``Signal._live_receivers``
returns in a span, by replacing that method on the class.  With
``concsignals.django.install()`` the class is concsignals', so every kind of
send must ask ``_live_receivers`` too.  Each case runs in a fresh interpreter
(``install()`` and sentry-sdk's patches are for the whole process), once on
stock Django and once installed, and the spans recorded must be the same.
Events go to a transport that keeps them in memory: nothing leaves the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("django", reason="needs Django: the test extra, .[test]")
pytest.importorskip("sentry_sdk", reason="needs sentry-sdk: the test extra, .[test]")

SCRIPT = """
import asyncio, json, sys
if sys.argv[1] == "installed":
    import concsignals.django
    concsignals.django.install()
import django
from django.conf import settings
settings.configure()
django.setup()

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.transport import Transport

envelopes = []


class Memory(Transport):
    def capture_envelope(self, envelope):
        envelopes.append(envelope)


sentry_sdk.init(
    dsn="https://key@sentry.invalid/1",
    transport=Memory,
    traces_sample_rate=1.0,
    integrations=[DjangoIntegration()],
)
from django.dispatch import Signal


def on_saved(sender, **kwargs):
    return "sync"


async def on_saved_async(sender, **kwargs):
    return "async"


signal = Signal()
signal.connect(on_saved)
signal.connect(on_saved_async)
results = []
with sentry_sdk.start_transaction(name="signals"):
    for method in ("send", "send_robust", "asend", "asend_robust"):
        out = getattr(signal, method)(None)
        if method.startswith("a"):
            out = asyncio.run(out)
        results.append([(r.__qualname__, v) for r, v in out])
sentry_sdk.flush()
spans = [
    (span["op"], span["description"])
    for envelope in envelopes
    for item in envelope.items
    if item.type == "transaction"
    for span in item.payload.json["spans"]
]
print(json.dumps({"type": type(signal).__module__, "spans": spans, "results": results}))
"""


def run(how: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), how],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.timeout(120)
def test_sentry_sdk_spans_every_sync_receiver_as_on_django() -> None:
    stock, installed = run("stock"), run("installed")
    assert stock["type"] == "django.dispatch.dispatcher"
    assert installed["type"] == "concsignals.django"
    span = ["event.django", "__main__.on_saved"]
    assert stock["spans"] == [span] * 4
    assert installed["spans"] == stock["spans"]
    assert installed["results"] == stock["results"]

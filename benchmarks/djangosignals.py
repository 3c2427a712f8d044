"""Case: Django's own signals on concsignals (``concsignals.django``) vs stock.

Both variants run Django's own code paths in one process, so that each round
samples both under the same load (see ``harness.py``): the stock signal
objects Django defined, and :class:`concsignals.django.Signal` objects with
the same receivers, swapped into the module globals Django's code reads
(``django.db.models.base.pre_save``/``post_save``, ``django.core.signals``)
just before each sample.  That is what ``install()`` gives a project, without
installing it for the whole benchmark process.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from typing import Any

from .cases import Case, register, timing_samples
from .harness import Samples, Settings, Timer, cpu_clock, median_interval
from .report import CaseResult, Table, Target, fmt_ratio, fmt_time

RECEIVERS = 5
ROWS = ("django", "concsignals")
GROUPS = {
    "save": "`obj.save()` (an UPDATE on in-memory sqlite), 5 `post_save` receivers",
    "post_save": "`post_save.send(sender=Item, instance=obj, ...)` alone, 5 "
    "receivers for `Item` (what `save()` pays for its signals)",
    "request_started": "`request_started.send(sender=WSGIHandler, environ=...)` "
    "with Django's own receivers",
    "request": "a whole WSGI request through `WSGIHandler` to a view returning "
    "an empty response (request_started and request_finished with Django's "
    "own receivers)",
}


def django_ready() -> None:
    """Configure Django for this process (in-memory sqlite), once."""
    import django
    from django.conf import settings

    db = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    if not settings.configured:
        settings.configure(DATABASES=db, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"])
    else:  # another case configured it bare: nothing has used the database yet
        settings.DATABASES = db
        settings.ROOT_URLCONF = __name__
        settings.ALLOWED_HOSTS = ["*"]
    django.setup()


def empty_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse()


def _urls() -> list[Any]:
    from django.urls import path

    return [path("", empty_view)]


def __getattr__(name: str) -> Any:  # ROOT_URLCONF: built on first use
    if name == "urlpatterns":
        return _urls()
    raise AttributeError(name)


def receiver(sender: object, **kwargs: Any) -> None:
    return None


def ours_like(stock: Any) -> Any:
    """A concsignals.django.Signal with ``stock``'s receivers, same order."""
    from concsignals.django import Signal

    ours = Signal(use_caching=stock.use_caching)
    ours.receivers = [t for t in stock.receivers if t[0][1] == id(None)]
    return ours


class Swap:
    """Swaps module globals between the stock signals and ours."""

    def __init__(self, names: list[tuple[Any, str]]) -> None:
        self.stock = [(m, n, getattr(m, n)) for m, n in names]
        self.ours = [(m, n, ours_like(s)) for m, n, s in self.stock]

    def use(self, which: str) -> None:
        for module, name, sig in self.stock if which == "django" else self.ours:
            setattr(module, name, sig)

    def connect(self, name: str, *args: Any, **kwargs: Any) -> None:
        for _, n, sig in (*self.stock, *self.ours):
            if n == name:
                sig.connect(*args, **kwargs)


def timer(swap: Swap, which: str, body: Callable[[], Any]) -> Timer:
    def run(loops: int) -> float:
        swap.use(which)
        it = itertools.repeat(None, loops)
        t0 = cpu_clock()
        for _ in it:
            body()
        elapsed = cpu_clock() - t0
        swap.use("django")
        return elapsed

    return run


def groups(settings: Settings, keep: list[object]) -> dict[str, dict[str, Timer]]:
    django_ready()
    from django.core import signals
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection
    from django.db import models as m
    from django.db.models import base
    from django.test import RequestFactory

    class Item(m.Model):
        n = m.IntegerField()

        class Meta:
            app_label = "concsignals_bench"

    with connection.schema_editor() as editor:
        editor.create_model(Item)
    obj = Item.objects.create(n=1)
    models = Swap([(base, "pre_save"), (base, "post_save")])
    receivers = [lambda sender, **kw: None for _ in range(RECEIVERS)]
    for r in receivers:
        models.connect("post_save", r, sender=Item)
    requests = Swap([(signals, "request_started"), (signals, "request_finished")])
    environ = RequestFactory().get("/").environ
    handler = WSGIHandler()
    keep += [models, requests, receivers, obj, handler]

    def request() -> None:
        handler(dict(environ), lambda status, headers: None).close()

    def saved() -> None:
        base.post_save.send(
            sender=Item,
            instance=obj,
            created=False,
            update_fields=None,
            raw=False,
            using="default",
        )

    def started() -> None:
        signals.request_started.send(sender=WSGIHandler, environ=environ)

    return {
        "save": {w: timer(models, w, obj.save) for w in ROWS},
        "post_save": {w: timer(models, w, saved) for w in ROWS},
        "request_started": {w: timer(requests, w, started) for w in ROWS},
        "request": {w: timer(requests, w, request) for w in ROWS},
    }


def run(settings: Settings) -> CaseResult:
    samples = timing_samples(CASE, settings)
    result = CaseResult(
        name=CASE.name,
        title=CASE.title,
        method="Django's own code paths with its stock signals and with "
        "`concsignals.django.Signal` objects holding the same receivers, "
        "swapped into the globals Django reads before each sample. Times are "
        "per call, this thread's CPU time.",
    )
    rows = []
    for label, text in GROUPS.items():
        s = samples[label]
        for name in ROWS:
            rows.append(
                [
                    text if name == "django" else "",
                    name,
                    fmt_time(s.median(name)),
                    fmt_ratio(s.ratio(name, "django")),
                ]
            )
    result.tables.append(
        Table("Django's signals", ["what", "signals", "median", "time ÷ django"], rows)
    )
    result.targets = targets(samples)
    return result


def targets(samples: dict[str, Samples]) -> list[Target]:
    """ "No slower" is judged within the measurement's resolution: met unless
    the 95% interval of the median per-round ratio lies wholly above 1.  A
    whole ``save()`` is a database round trip of which the signals are a few
    percent, and rounds scatter by several percent either way; the
    ``post_save`` row times the signal alone."""
    found = []
    for label in GROUPS:
        ratios = samples[label].ratios("concsignals", "django")
        r = statistics.median(ratios)
        low, high = median_interval(ratios)
        found.append(
            Target(
                f"{label}: not slower than stock Django beyond noise "
                "(95% interval of the ratio reaches 1)",
                f"{r:.3f}x (95% interval {low:.3f}-{high:.3f}x)",
                low <= 1.0,
            )
        )
    return found


CASE = register(
    Case(
        name="djangosignals",
        title="11. Django's own signals on concsignals",
        run=run,
        groups=groups,
    )
)

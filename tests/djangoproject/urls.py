"""Views of the end-to-end project.

``/hit`` saves a :class:`Hit` (a post_save); ``/connect/<gen>`` and
``/disconnect/<gen>`` change the receivers from whichever server thread takes
them, while other threads serve ``/hit``.  Times are ``time.monotonic_ns()``.
These three are not atomic requests.  ``/ship/<key>`` is (``ATOMIC_REQUESTS``):
it saves a :class:`Shipped`, whose receiver waits for the commit
(``churn/shipping.py``), and with ``?fail=1`` raises after saving.
"""

import json
import time

from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path

from .churn import receivers, shipping  # noqa: F401 (shipping: its receiver)
from .churn.models import Hit, Shipped


def as_json(value: object) -> HttpResponse:
    return HttpResponse(json.dumps(value), content_type="application/json")


@transaction.non_atomic_requests
def hit(request: HttpRequest) -> HttpResponse:
    before = time.monotonic_ns()
    made = Hit.objects.create(made=before)
    return as_json({"pk": made.pk, "before_save": before})


@transaction.non_atomic_requests
def connect(request: HttpRequest, gen: int) -> HttpResponse:
    return as_json({"connected": receivers.connect(gen)})


@transaction.non_atomic_requests
def disconnect(request: HttpRequest, gen: int) -> HttpResponse:
    begun, done = receivers.disconnect(gen)
    return as_json({"begun": begun, "done": done})


def ship(request: HttpRequest, key: str) -> HttpResponse:
    Shipped.objects.create(key=key)
    if request.GET.get("fail"):
        raise Http404("the view failed after saving: the request rolls back")
    return as_json({"saved": key})


urlpatterns = [
    path("hit", hit),
    path("connect/<int:gen>", connect),
    path("disconnect/<int:gen>", disconnect),
    path("ship/<str:key>", ship),
]

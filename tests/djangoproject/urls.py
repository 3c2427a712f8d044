"""Views of the end-to-end project.

``/hit`` saves a :class:`Hit` (a post_save); ``/connect/<gen>`` and
``/disconnect/<gen>`` change the receivers from whichever server thread takes
them, while other threads serve ``/hit``.  Times are ``time.monotonic_ns()``.
"""

import json
import time

from django.http import HttpRequest, HttpResponse
from django.urls import path

from .churn import receivers
from .churn.models import Hit


def as_json(value: object) -> HttpResponse:
    return HttpResponse(json.dumps(value), content_type="application/json")


def hit(request: HttpRequest) -> HttpResponse:
    before = time.monotonic_ns()
    made = Hit.objects.create(made=before)
    return as_json({"pk": made.pk, "before_save": before})


def connect(request: HttpRequest, gen: int) -> HttpResponse:
    return as_json({"connected": receivers.connect(gen)})


def disconnect(request: HttpRequest, gen: int) -> HttpResponse:
    begun, done = receivers.disconnect(gen)
    return as_json({"begun": begun, "done": done})


urlpatterns = [
    path("hit", hit),
    path("connect/<int:gen>", connect),
    path("disconnect/<int:gen>", disconnect),
]

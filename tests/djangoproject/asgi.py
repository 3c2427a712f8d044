"""ASGI entry point: concsignals installed before Django defines its signals."""

import os

import concsignals.django

concsignals.django.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()

"""WSGI entry point: concsignals installed before Django defines its signals."""

import os

import concsignals.django

concsignals.django.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

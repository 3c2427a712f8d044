"""Settings of the adoption project: where install() is called is chosen by
``CONCSIGNALS_INSTALL_IN`` (``settings``: here, after connecting receivers;
``ready``: in the app's ready(); anything else: not here, e.g. conftest.py)."""

import os

SECRET_KEY = "concsignals-test-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "tests.djangoproject.adopt.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tests.djangoproject.adopt",
]
MIDDLEWARE: list[str] = []
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
USE_TZ = True

if os.environ.get("CONCSIGNALS_INSTALL_IN") == "settings":
    from tests.djangoproject.adopt import receivers

    receivers.connect_early()

    import concsignals.django

    concsignals.django.install()

"""Settings of the end-to-end project: one app, a sqlite file database,
atomic requests (``/ship``; the churn's views opt out)."""

import os

SECRET_KEY = "concsignals-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "tests.djangoproject.urls"
INSTALLED_APPS = ["tests.djangoproject.churn"]
MIDDLEWARE: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["CONCSIGNALS_TEST_DB"],
        "OPTIONS": {"timeout": 30},
        "ATOMIC_REQUESTS": True,  # /ship; the churn's views opt out
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "ERROR"}},
}

"""Settings of the after-commit cases: two SQLite file databases.

``CONCSIGNALS_AFTERCOMMIT_DIR`` (a temporary directory of the outer test)
holds the test databases, so other threads and other processes read what
was committed, and only that.
"""

import os

import concsignals.django

concsignals.django.install()  # Django's signals on concsignals, from the start

_DIR = os.environ["CONCSIGNALS_AFTERCOMMIT_DIR"]

SECRET_KEY = "concsignals-test-only"
INSTALLED_APPS = ["tests.aftercommit"]
DATABASES = {
    alias: {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(_DIR, f"{alias}.sqlite3"),
        "TEST": {"NAME": os.path.join(_DIR, f"test_{alias}.sqlite3")},
        "OPTIONS": {"timeout": 30},
    }
    for alias in ("default", "other")
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

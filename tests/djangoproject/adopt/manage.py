#!/usr/bin/env python
"""Django's own manage.py, unchanged but for the settings module: install()
is not called here (run with the repository as cwd)."""

import os
import sys

if __name__ == "__main__":
    settings = "tests.djangoproject.adopt.settings"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)

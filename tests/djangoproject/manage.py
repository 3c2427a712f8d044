"""manage.py of the end-to-end project (run with the repository as cwd)."""

import os
import sys

import concsignals.django

concsignals.django.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)

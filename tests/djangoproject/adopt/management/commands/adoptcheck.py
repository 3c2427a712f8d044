"""``adoptcheck``: make the tables, then run the adoption checks."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Check that Django's signals were adopted by concsignals."

    def handle(self, *args: Any, **options: Any) -> None:
        from tests.djangoproject.adopt.check import verify

        call_command("migrate", run_syncdb=True, verbosity=0)
        verify()

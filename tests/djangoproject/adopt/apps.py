"""The app's ready(): connects the early receivers, and maybe installs.

``CONCSIGNALS_INSTALL_IN=ready`` makes ``ready()`` call ``install()`` after
connecting them: the ``AppConfig.ready()`` place.
"""

import os

from django.apps import AppConfig


class AdoptConfig(AppConfig):
    name = "tests.djangoproject.adopt"
    label = "adopt"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from . import receivers

        receivers.connect_early()
        receivers.connect_for_model()
        if os.environ.get("CONCSIGNALS_INSTALL_IN") == "ready":
            import concsignals.django

            concsignals.django.install()

"""A receiver that waits for the request's commit (``on_commit=True``).

It reads the saved row on a SQLite connection of its own, which sees only
committed data, and writes a :class:`Notice` of what it saw.
"""

import sqlite3
from contextlib import closing
from typing import Any

from django.db import connection
from django.db.models.signals import post_save

from .models import Notice, Shipped


def notify(sender: Any, instance: Shipped, **kwargs: Any) -> None:
    with closing(sqlite3.connect(connection.settings_dict["NAME"], timeout=30)) as db:
        query = "SELECT COUNT(*) FROM churn_shipped WHERE key = ?"
        (seen,) = db.execute(query, (instance.key,)).fetchone()
    in_atomic = connection.in_atomic_block
    Notice.objects.create(key=instance.key, in_atomic=in_atomic, committed=seen)


post_save.connect(notify, sender=Shipped, on_commit=True)

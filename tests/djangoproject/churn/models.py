from django.db import models


class Hit(models.Model):
    """Saved by each /hit request: its post_save is one of the signals watched."""

    made = models.BigIntegerField()


class Call(models.Model):
    """One receiver call, written by the receiver itself through the ORM."""

    gen = models.IntegerField()
    signal = models.CharField(max_length=20)
    key = models.CharField(max_length=40)
    t = models.BigIntegerField()


class Shipped(models.Model):
    """Saved by ``/ship/<key>``, inside the request's transaction
    (``ATOMIC_REQUESTS``)."""

    key = models.CharField(max_length=40)


class Notice(models.Model):
    """Written by the ``on_commit=True`` receiver of Shipped's post_save."""

    key = models.CharField(max_length=40)
    in_atomic = models.BooleanField()  # an atomic block open when it ran
    committed = models.IntegerField()  # its Shipped rows another connection saw

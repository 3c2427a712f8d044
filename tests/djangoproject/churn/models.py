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

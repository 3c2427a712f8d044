"""One model: saving a :class:`Note` sends ``post_save``."""

from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=50)

    class Meta:
        app_label = "aftercommit"

"""Signals this app defines with Django's own classes, imported before install()."""

from django.dispatch import Signal


class AuditSignal(Signal):
    """A subclass of Django's Signal, as third-party apps define them."""

    def send(self, sender, **named):  # type: ignore[no-untyped-def]
        return super().send(sender, audited=True, **named)


plain = Signal()
derived = AuditSignal()

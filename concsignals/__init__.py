"""concsignals: Django's signal dispatcher, rebuilt for concurrency."""

from ._signal import Signal, SignalView, receiver

__all__ = ["Signal", "SignalView", "receiver"]
__version__ = "0.1.0"

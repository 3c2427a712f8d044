"""concsignals: Django's signal dispatcher, rebuilt for concurrency."""

from ._signal import Signal, receiver
from ._view import SignalView
from .executors import SignalRef

__all__ = ["Signal", "SignalRef", "SignalView", "receiver"]
__version__ = "0.1.0"

"""concsignals: Django's signal dispatcher, rebuilt for concurrency."""

from ._connection import Connection
from ._errors import Failure, SendError
from ._inflight import adrain, drain
from ._signal import Signal, muted, receiver
from ._view import SignalView
from .executors import SignalRef

__all__ = [
    "INLINE",
    "Connection",
    "Failure",
    "SendError",
    "Serial",
    "Signal",
    "SignalRef",
    "SignalView",
    "adrain",
    "drain",
    "muted",
    "receiver",
]


def __getattr__(name: str) -> object:
    # ``INLINE`` and ``Serial`` need concurrent.futures: loaded on first use,
    # so ``import concsignals`` stays light.
    if name in ("INLINE", "Serial"):
        from . import _targets

        return getattr(_targets, name)
    raise AttributeError(f"module 'concsignals' has no attribute {name!r}")


__version__ = "0.1.0"

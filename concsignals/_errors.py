"""What a send does when receivers fail: the error policy, and ``SendError``.

Two questions, asked on ``Signal(...)`` or ``signal.using(...)``, never of
``send`` (its keywords are the receivers'):

* ``errors``: what the sender sees.  ``"first"`` (Django's): the failure of
  the earliest slot in connection order, the others attached as notes.
  ``"group"``: a :class:`SendError` holding every failure, in connection
  order.
* ``on_error``: whether a failure stops the calls not yet begun.
  ``"cancel"`` (the default with ``errors="first"``, as Django's ``send`` and
  ``asyncio.TaskGroup``) or ``"continue"`` (the default with
  ``errors="group"``: every receiver runs, as in ``send_robust`` and
  ``asyncio.gather(return_exceptions=True)``).

The default policy is ``None`` everywhere, so the plain send's fast path
reads nothing new.  ``send_robust`` ignores the policy: it logs and returns.
A ``BaseException`` that is not an ``Exception`` is never grouped: it
propagates on its own, once every begun call has ended (``_send.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from typing import Self

ERRORS = ("first", "group")
ON_ERROR = ("cancel", "continue")


class Policy(NamedTuple):
    """A policy other than the default: ``group`` (raise a :class:`SendError`)
    and ``cancels`` (a failure closes the send)."""

    group: bool
    cancels: bool


def policy(errors: str | None, on_error: str | None) -> Policy | None:
    """The policy ``errors``/``on_error`` ask for (``None`` for either: its
    default; ``on_error``'s depends on ``errors``); ``None``: the default
    policy.  Refuses anything else with ``ValueError`` naming the value and
    the rule."""
    if errors is not None and errors not in ERRORS:
        raise ValueError(f"errors must be 'first' or 'group', not {errors!r}")
    if on_error is not None and on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'cancel' or 'continue', not {on_error!r}")
    group = errors == "group"
    cancels = not group if on_error is None else on_error == "cancel"
    if not group and cancels:
        return None  # Django's: the fast path's
    return Policy(group, cancels)


def describe(p: Policy | None) -> str:
    """``errors=... on_error=...`` as a repr shows it."""
    if p is None:
        return "errors='first' on_error='cancel'"
    errors = "group" if p.group else "first"
    return f"errors={errors!r} on_error={'cancel' if p.cancels else 'continue'!r}"


class Failure(NamedTuple):
    """One failed call of a send: its receiver and what it raised (or the
    ``TimeoutError`` of a call the deadline overtook)."""

    receiver: Any
    error: Exception


class SendError(ExceptionGroup[Exception]):
    """Every failure of one send (``errors="group"``), in connection order.

    An ``ExceptionGroup``: ``except* ValueError:`` picks the members it
    names.  Each member has a note naming its receiver.

    * ``failures``: ``[Failure(receiver, error)]``, one per failed call, in
      connection order (``exceptions`` holds the same errors);
    * ``results``: ``[(receiver, response_or_exception)]`` for every call
      the send made, in connection order, as ``send_robust`` returns them.

    Splitting the group (``except*``, ``split``, ``subgroup``) keeps the
    ``failures`` of the members kept and all of ``results``.
    """

    failures: list[Failure]
    results: list[tuple[Any, Any]]

    def __new__(cls, message: str, exceptions: Sequence[Exception], *rest: Any) -> Self:
        return super().__new__(cls, message, exceptions)

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        failures: Sequence[Failure] | None = None,
        results: Sequence[tuple[Any, Any]] = (),
    ) -> None:
        super().__init__(message, exceptions)
        if failures is None:
            failures = [Failure(None, e) for e in exceptions]
        self.failures = list(failures)
        self.results = list(results)

    def derive(self, excs: Sequence[Exception]) -> SendError:  # type: ignore[override]
        kept = [f for f in self.failures if any(f.error is e for e in excs)]
        return SendError(self.message, excs, kept, self.results)

    def __reduce__(self) -> Any:
        return (
            type(self),
            (self.message, list(self.exceptions), self.failures, self.results),
            self.__dict__,
        )


def group(
    signal: object,
    failures: Sequence[tuple[Any, Exception]],
    results: Sequence[tuple[Any, Any]],
) -> SendError:
    """The ``SendError`` of one send: each member noted with its receiver."""
    from ._send import describe as name_of

    noted: list[Failure] = []
    for r, err in failures:
        note = f"concsignals: raised by receiver {name_of(r)} in a send of {signal!r}"
        if note not in getattr(err, "__notes__", ()):
            err.add_note(note)
        noted.append(Failure(r, err))
    n, made = len(failures), len(results)
    message = (
        f"{n} of the {made} receiver call{'s' if made != 1 else ''} of a send of "
        f"{signal!r} failed"
    )
    return SendError(message, [f.error for f in noted], noted, results)

"""The public surface, pinned: a change here is a change of the contract."""

from __future__ import annotations

import inspect

import pytest

import concsignals


def test_all_is_pinned():
    assert sorted(concsignals.__all__) == [
        "Connection",
        "Failure",
        "INLINE",
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
    for name in concsignals.__all__:
        assert getattr(concsignals, name).__module__.startswith("concsignals.")


def test_django_signatures():
    sig = inspect.signature
    S = concsignals.Signal
    params = sig(S).parameters
    assert list(params) == ["use_caching", "executor", "errors", "on_error"]
    assert params["use_caching"].default is False
    for name in ("executor", "errors", "on_error"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is None
    connect = sig(S.connect).parameters
    assert list(connect) == [
        "self",
        "receiver",
        "sender",
        "weak",
        "dispatch_uid",
        "via",
        "wait",
        "phase",
        "on_commit",
    ]
    for name, default in (
        ("via", None),
        ("wait", True),
        ("phase", 0),
        ("on_commit", False),
    ):
        assert connect[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert connect[name].default == default
    disconnect = sig(S.disconnect).parameters
    assert list(disconnect) == [
        "self",
        "receiver",
        "sender",
        "dispatch_uid",
        "wait",
        "timeout",
    ]
    for name, default in (("wait", False), ("timeout", None)):
        assert disconnect[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert disconnect[name].default is default
    assert list(sig(S.has_listeners).parameters) == ["self", "sender"]
    for name in ("send", "send_robust", "asend", "asend_robust", "submit"):
        params = sig(getattr(S, name)).parameters
        assert list(params) == ["self", "sender", "named"], name
        assert params["self"].kind is inspect.Parameter.POSITIONAL_ONLY, name
        assert params["named"].kind is inspect.Parameter.VAR_KEYWORD, name
    assert list(sig(concsignals.receiver).parameters) == ["signal", "connect_kwargs"]


def test_the_package_is_typed():
    from importlib.resources import files

    assert files("concsignals").joinpath("py.typed").is_file()


def test_muted_signatures():
    params = inspect.signature(concsignals.Signal.muted).parameters
    assert list(params) == ["self", "receiver", "sender"]
    assert params["receiver"].default is None
    assert params["sender"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["sender"].default is None
    params = inspect.signature(concsignals.muted).parameters
    assert list(params) == ["signals"]
    assert params["signals"].kind is inspect.Parameter.VAR_POSITIONAL


def test_using_signature():
    params = inspect.signature(concsignals.Signal.using).parameters
    assert list(params) == ["self", "executor", "timeout", "errors", "on_error"]
    assert params["executor"].default is concsignals.SignalView.SAME
    for name in ("timeout", "errors", "on_error"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is None
    assert issubclass(concsignals.SendError, ExceptionGroup)


def test_after_commit_signature():
    from concsignals._commit import AfterCommit

    params = inspect.signature(concsignals.Signal.after_commit).parameters
    assert list(params) == ["self", "using"]
    assert params["using"].default is None
    for name in ("send", "send_robust"):
        params = inspect.signature(getattr(AfterCommit, name)).parameters
        assert list(params) == ["self", "sender", "named"], name
        assert params["self"].kind is inspect.Parameter.POSITIONAL_ONLY, name
    # Django's connect takes the same options as concsignals'
    pytest.importorskip("django")
    from concsignals.django import Signal as DjangoSignal

    assert inspect.signature(DjangoSignal.connect) == inspect.signature(
        concsignals.Signal.connect
    )

"""EAGERCTL_DEBUGGABLE: 0 turns every @debuggable off (undecorated objects), read at decoration time."""

from __future__ import annotations

import re
from typing import Any

import pytest
import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl
from eagerctl import EagerctlError

probe, seen = make_probe()


def check() -> str:
    return mode_of(probe, seen)


@tf.function
def compiled(x: Any) -> Any:
    return x + 1


@pytest.mark.parametrize("value", ["0", "false", "OFF", " no "])
def test_off_returns_the_undecorated_object(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", value)
    assert eagerctl.debuggable(check) is check
    assert eagerctl.debuggable(compiled) is compiled
    assert eagerctl.debuggable(log_calls=True)(check) is check
    assert check() == "graph"


@pytest.mark.parametrize("value", ["1", "true", "On", "yes", ""])
def test_on_or_empty_decorates(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", value)
    assert eagerctl.debuggable(check)() == "eager"


def test_unset_decorates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EAGERCTL_DEBUGGABLE", raising=False)
    decorated = eagerctl.debuggable(compiled)
    assert decorated is not compiled
    assert int(decorated(tf.constant(1))) == 2
    assert decorated.experimental_get_tracing_count() == 0


def test_explicit_enabled_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", "0")
    assert eagerctl.debuggable(enabled=True)(check)() == "eager"
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", "1")
    assert eagerctl.debuggable(enabled=False)(check) is check


def test_read_once_when_decorating_not_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", "1")
    decorated = eagerctl.debuggable(check)
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", "0")
    assert decorated() == "eager"


def test_an_unknown_value_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", "maybe")
    with pytest.raises(EagerctlError, match=re.escape(
        "EAGERCTL_DEBUGGABLE='maybe' is not understood: set it to 0 (every @debuggable behaves like the "
        "undecorated function) or 1 (on, the default), or unset it"
    )):
        eagerctl.debuggable(check)
    assert eagerctl.debuggable(enabled=True)(check)() == "eager"  # explicit: the variable is not read

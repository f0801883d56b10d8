"""`eagerctl status` reads EAGERCTL_DEBUGGABLE as `@debuggable` does: one parser (issue 21).

Before, status called only the exact value "0" off (not "false", "off", "no",
which turn the decorator off), and showed "maybe", which the decorator refuses,
as if it were fine.
"""

from __future__ import annotations

import pytest
import tensorflow as tf

import eagerctl
from eagerctl import EagerctlError
from eagerctl._cli import main


def _status_line(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["status"]) == 0
    return capsys.readouterr().out.splitlines()[-1]


def _step(x: tf.Tensor) -> tf.Tensor:
    return x + 1


@pytest.mark.parametrize("value", ["0", "false", "False", " off ", "no"])
def test_every_word_that_turns_debuggable_off_is_shown_as_off(
        value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", value)
    step = tf.function(_step)
    assert eagerctl.debuggable(step) is step  # the decorator reads it as off ...
    assert _status_line(capsys) == f"EAGERCTL_DEBUGGABLE={value!r}  (@debuggable is off)"  # and status too


@pytest.mark.parametrize("value", ["1", "true", "on", ""])
def test_a_word_that_leaves_it_on_is_shown_plainly(
        value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", value)
    step = tf.function(_step)
    assert eagerctl.debuggable(step) is not step
    assert _status_line(capsys) == f"EAGERCTL_DEBUGGABLE={value!r}"


def test_a_value_the_decorator_refuses_is_not_shown_as_fine(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", "maybe")
    advice = ("set it to 0 (every @debuggable behaves like the undecorated function) or 1 (on, the default), "
              "or unset it")
    with pytest.raises(EagerctlError) as raised:
        eagerctl.debuggable(tf.function(_step))
    assert str(raised.value) == f"EAGERCTL_DEBUGGABLE='maybe' is not understood: {advice}"
    assert _status_line(capsys) == (f"EAGERCTL_DEBUGGABLE='maybe'  (not understood: @debuggable raises "
                                    f"EagerctlError; {advice})")

"""In IPython, a check_numerics failure points at the user's code, as in pytest and `eagerctl run` (issue 21).

IPython hides a frame only for a local `__tracebackhide__`, and never the last
one, so without the extension's handler the traceback of a `check_numerics`
failure ends in eagerctl's own frames (`_debuggable.py`). With `%load_ext
eagerctl` the extension shows eagerctl's deliberate errors without them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

import eagerctl
from eagerctl import _tracebacks

CELL = """
import tensorflow as tf
import eagerctl

@eagerctl.debuggable(check_numerics=True)
@tf.function
def relative_error(y, t):
    return tf.abs(y - t) / t

def evaluate(t):
    return relative_error(tf.constant([1.0]), t)

evaluate(tf.constant([0.0]))
"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PACKAGE_FILE = re.compile(r"eagerctl[/\\]_\w+(?:[/\\]\w+)*\.py")


@pytest.fixture
def shell() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    try:
        yield ip
    finally:
        eagerctl.unload_ipython_extension(ip)
        eagerctl.reset()
        InteractiveShell.clear_instance()


def _traceback_of(shell: Any, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    result = shell.run_cell(CELL)
    assert isinstance(result.error_in_exec, FloatingPointError)
    captured = capsys.readouterr()
    return ANSI.sub("", captured.out + captured.err)


def test_check_numerics_failure_ends_in_the_users_code(shell: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    without = _traceback_of(shell, capsys)
    assert PACKAGE_FILE.search(without), without  # IPython alone shows eagerctl's frames

    eagerctl.load_ipython_extension(shell)
    shown = _traceback_of(shell, capsys)
    assert not PACKAGE_FILE.search(shown), shown
    assert "evaluate(tf.constant([0.0]))" in shown  # the cell's line, then the user's function
    assert "return relative_error(tf.constant([1.0]), t)" in shown
    assert shown.rstrip().splitlines()[-1].startswith(
        "FloatingPointError: @debuggable relative_error (check_numerics=True): outputs holds non-finite")

    eagerctl.unload_ipython_extension(shell)
    assert shell.custom_exceptions == ()
    assert PACKAGE_FILE.search(_traceback_of(shell, capsys))


def test_a_handler_of_the_users_own_is_left_alone(shell: Any) -> None:
    def mine(self: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> None:
        return None

    shell.set_custom_exc((ValueError,), mine)
    eagerctl.load_ipython_extension(shell)
    assert shell.custom_exceptions == (ValueError,)
    eagerctl.unload_ipython_extension(shell)
    assert shell.custom_exceptions == (ValueError,)
    assert _tracebacks.install_in_ipython(shell) is False

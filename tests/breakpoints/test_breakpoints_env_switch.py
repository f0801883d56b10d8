"""EAGERCTL_BREAKPOINTS is read with the same parser as EAGERCTL_DEBUGGABLE (eagerctl/_env.py).

`false`/`off`/`no` turn breakpoint islands off as `0` does; a word neither switch
knows (`maybe`) is not silently taken as on: importing eagerctl warns, naming the
value and the fix, and breakpoint islands stay on (an import must not fail).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROGRAM = "import warnings; warnings.simplefilter('always'); import eagerctl; print(eagerctl.breakpoints())"


def _run(value: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EAGERCTL_BREAKPOINTS=value)
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


@pytest.mark.parametrize(("value", "on"), [("0", False), ("false", False), (" Off ", False), ("no", False),
                                           ("1", True), ("yes", True), ("", True)])
def test_the_words_the_debuggable_switch_knows(value: str, on: bool) -> None:
    result = _run(value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(on)]
    assert "EagerctlWarning" not in result.stderr


def test_a_word_it_does_not_know_warns_and_stays_on() -> None:
    result = _run("maybe")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]
    message = ("EagerctlWarning: EAGERCTL_BREAKPOINTS='maybe' is not understood, so breakpoint islands stay "
               "on: set it to 0 (compiled graphs ignore breakpoints) or 1 (on, the default), or unset it")
    assert message in result.stderr

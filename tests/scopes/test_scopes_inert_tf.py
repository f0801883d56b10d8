"""Inert unless asked: with eagerctl imported and no eagerctl scope in force, TF is TF.

Small programs of the kind a TF user writes while debugging with TF's own
`tf.config.run_functions_eagerly(True)`: a `MirroredStrategy` gather over two
devices, per-example gradients with `tf.vectorized_map` (the DP-SGD pattern),
and a `vectorized_map` body that reads and writes the flag. Plain TF raises in
the gathers, and TF's own flip of its flag shows in the body. Each variant runs
in a fresh process (two logical CPUs must be set before TF starts its
devices), and every variant must give exactly what plain TF gives, errors
included:

- `plain`: no eagerctl anywhere;
- `imported`: `import eagerctl` first; nothing of TF may even be patched;
- `tf_first`: `import tensorflow`, then `import eagerctl`;
- `used`: eagerctl's hook installed (a scope entered and exited, as in a
  program that used eagerctl earlier), no scope in force now.

Under eagerctl's own scopes its fixes still apply (tests/distribute/test_distribute.py,
tests/scopes/test_state_tf_machinery.py and `test_the_fixes_apply_under_eagerctls_scopes` here).

The programs are in tests/scopes/inert_tf_programs.py, which those processes
run; tests/plugin/test_plugin_inert.py runs them in a pytest session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inert_tf_programs.py")
TIMEOUT = 300  # seconds; a variant takes about 15 on two busy cores
VARIANTS = ("plain", "imported", "tf_first", "used")


def run_variant(variant: str, *, pythonpath: str | None = None) -> dict[str, Any]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([sys.executable, SCRIPT, variant], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, f"variant {variant} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, Any]]:
    return {variant: run_variant(variant) for variant in VARIANTS}


def test_plain_tf_fails_the_gathers_and_flips_its_flag_in_the_body(
        outcomes: dict[str, dict[str, Any]]) -> None:
    # What TF itself does, which eagerctl must leave alone.
    plain = outcomes["plain"]["programs"]
    assert plain["gather"] == "RuntimeError: all_gather is not supported in eager mode."
    assert plain["all_gather"] == "RuntimeError: all_gather is not supported in eager mode."
    assert plain["flag_in_body"] == [False, True, False]  # pfor turned it off; the body's writes count
    assert plain["flag_after_raise"] is False  # TF does not restore its flag when the body raises


@pytest.mark.parametrize("variant", ["imported", "tf_first", "used"])
def test_with_eagerctl_and_no_scope_tf_behaves_exactly_like_tf(
        outcomes: dict[str, dict[str, Any]], variant: str) -> None:
    assert outcomes[variant]["programs"] == outcomes["plain"]["programs"]


def test_import_eagerctl_patches_nothing_in_tf(outcomes: dict[str, dict[str, Any]]) -> None:
    assert outcomes["plain"]["patched"] == []
    assert outcomes["imported"]["patched"] == []
    assert outcomes["imported"]["hook_installed"] is False
    # Once used, the hook stays installed, inert: the programs above show it.
    assert outcomes["used"]["hook_installed"] is True
    assert "Function._run_functions_eagerly" in outcomes["used"]["patched"]


def test_the_fixes_apply_under_eagerctls_scopes(outcomes: dict[str, dict[str, Any]]) -> None:
    scoped = outcomes["used"]["scoped"]
    expected_gather = [0.0, 1.0]
    for kind in ("local", "process"):
        assert scoped[kind]["gather"] == expected_gather, kind
        assert scoped[kind]["all_gather"] == [expected_gather, expected_gather], kind
        # eagerctl keeps pfor's loop compiled with a frame of its own: the body is
        # traced, and the scope stays in force (the process flag stays as the scope set it).
        assert scoped[kind]["body_traced"] is True, kind
        assert scoped[kind]["per_example"] == outcomes["plain"]["programs"]["per_example"], kind
    assert scoped["local"]["flag_in_body"] == [False]
    assert scoped["process"]["flag_in_body"] == [True]

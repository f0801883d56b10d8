"""The plugin is loaded in every pytest session of an environment with eagerctl: inert unless asked.

A session that uses no eagerctl option, marker or fixture, and whose tests
never import eagerctl (a project of its own, or TensorFlow's own tests), runs
TensorFlow untouched: not one of TF's objects is patched, and the programs of
tests/scopes/inert_tf_programs.py (gathers and `tf.vectorized_map` under
TF's own `run_functions_eagerly(True)`) give exactly what plain TF gives,
errors included. The guard still reports a test that leaves TF's flag set,
reading it only. Inner sessions run in a fresh process (`runpytest_subprocess`):
this process has used eagerctl long before.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

PROGRAMS = Path(__file__).resolve().parent.parent / "scopes" / "inert_tf_programs.py"


def _entry_point_registered() -> bool:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    return any(ep.value == "eagerctl._pytest_plugin" for ep in entry_points)


# Where eagerctl is not installed (the TF 2.13 environment), load the plugin by name.
PLUGIN = [] if _entry_point_registered() else ["-p", "eagerctl._pytest_plugin"]

INNER = f"""
import json
import sys

sys.path.insert(0, {str(PROGRAMS.parent)!r})
import inert_tf_programs as programs  # it never imports eagerctl


def _eagerctl_state():
    # Read from sys.modules: this test never imports eagerctl itself.
    plugin = sys.modules.get("eagerctl._pytest_plugin")
    hook = sys.modules.get("eagerctl._hook")
    return {{"plugin_loaded": plugin is not None, "hook_installed": getattr(hook, "installed", None)}}


def test_programs_under_tfs_own_flag():
    s = programs.setup()
    record = {{"programs": programs.programs(s), "patched": programs.patched(), **_eagerctl_state()}}
    print("RECORD " + json.dumps(record))


def test_leaves_the_flag_set():
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)


def test_after_it():
    import tensorflow as tf

    assert tf.config.functions_run_eagerly() is True  # the guard warns and changes nothing
    tf.config.run_functions_eagerly(False)
    print("RECORD " + json.dumps({{"patched_at_the_end": programs.patched(), **_eagerctl_state()}}))
"""


def _records(stdout: str) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for line in stdout.splitlines():  # `-s`: a record may follow the progress dots on its line
        if "RECORD " in line:
            record.update(json.loads(line.split("RECORD ", 1)[1]))
    return record


def test_a_session_that_uses_no_eagerctl_feature_runs_tf_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_project=INNER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *PLUGIN, "-s", "-q", timeout=600)
    # The guard's one warning; Keras 2 (TF 2.13) may add deprecation warnings of its own.
    outcomes = result.parseoutcomes()
    counts = (outcomes.get("passed"), outcomes.get("failed", 0), outcomes.get("errors", 0))
    assert counts == (3, 0, 0), outcomes
    assert outcomes.get("warnings", 0) >= 1
    assert result.stdout.str().count("set tf.config.run_functions_eagerly(True)") == 1
    record = _records(result.stdout.str())
    assert record["plugin_loaded"] is True
    assert record["hook_installed"] is False
    assert record["patched"] == [] and record["patched_at_the_end"] == []
    # The guard saw the leak by reading TF's flag, and said so.
    result.stdout.fnmatch_lines(["*test_leaves_the_flag_set set tf.config.run_functions_eagerly(True)*"])

    assert record["programs"] == _plain_tf()["programs"]


def _plain_tf() -> dict[str, Any]:
    """The same programs with no eagerctl at all."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(PROGRAMS), "plain"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result

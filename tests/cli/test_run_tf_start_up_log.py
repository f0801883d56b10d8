"""`eagerctl run` leaves out TensorFlow's C++ start-up lines, as `demo` and `status` do (issue 21).

TensorFlow's C++ start-up logging (`I0000 ... cpu_feature_guard.cc:...] This
TensorFlow binary is optimized ...`, oneDNN's note) is INFO: `eagerctl run` sets
TF_CPP_MIN_LOG_LEVEL=1 for the program unless it is set already, so warnings
and errors still show, and a level the user chose wins.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROGRAM = """\
import os

import tensorflow as tf


@tf.function
def step(x):
    return x * 2.0


print("level", os.environ.get("TF_CPP_MIN_LOG_LEVEL"), "result", float(step(tf.constant(3.0))))
"""
TF_CPP_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\]", re.M)


def _run(tmp_path: Path, level: str | None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(PROGRAM)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    return subprocess.run([sys.executable, "-m", "eagerctl", "run", "--eager", str(script)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_start_up_info_lines_are_left_out(tmp_path: Path) -> None:
    proc = _run(tmp_path, None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "level 1 result 6.0\n"
    assert not TF_CPP_LINE.search(proc.stderr), proc.stderr
    assert "All log messages before absl::InitializeLog" not in proc.stderr


def test_a_level_the_user_set_wins(tmp_path: Path) -> None:
    proc = _run(tmp_path, "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "level 0 result 6.0\n"

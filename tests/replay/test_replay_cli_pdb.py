"""`eagerctl run --replay` and `replay(post_mortem=True)`, each in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROGRAM = '''\
import tensorflow as tf

w = tf.Variable(2.0)


def risky(x):
    shifted = x - w
    return tf.math.log(shifted)  # THE LINE


@tf.function
def step(x):
    w.assign_add(0.5)
    return risky(x)


for i, value in enumerate([10.0, 10.0, 1.0, 10.0]):
    print("step", i + 1, float(step(tf.constant(value))), flush=True)
'''


def env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def run(*argv: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], input=stdin, capture_output=True, text=True, env=env(),
                          cwd=cwd, timeout=600, check=False)


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(marker))


def test_eagerctl_run_replay(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(PROGRAM)
    plain = run(str(script), cwd=tmp_path)
    assert plain.returncode == 0 and "step 3 nan" in plain.stdout  # TF alone: a NaN, and on it goes

    replayed = run("-m", "eagerctl", "run", "--replay", "train.py", cwd=tmp_path)
    assert replayed.returncode == 1, replayed.stderr
    assert replayed.stdout.splitlines() == plain.stdout.splitlines()[:2]  # the same steps, then the report
    line = line_of(PROGRAM, "# THE LINE")
    assert "eagerctl.ReplayError: tf.function 'step' at step 3" in replayed.stderr
    assert f"train.py:{line} in risky: op Log produced NaN (float32 ())" in replayed.stderr
    assert "input 0: finite, value -2.5 (float32 ())" in replayed.stderr

    usage = run("-m", "eagerctl", "run", "--help")
    assert "--replay" in usage.stdout


def test_post_mortem_opens_pdb_at_the_line_with_the_values(tmp_path: Path) -> None:
    script = tmp_path / "train_pm.py"
    script.write_text("import eagerctl\n" + PROGRAM.replace(
        "for i, value", "with eagerctl.replay(post_mortem=True):\n  for i, value").replace(
        '    print("step"', '      print("step"'))
    session = run(str(script), cwd=tmp_path, stdin="p float(shifted)\np float(w)\ncontinue\n")
    line = line_of(PROGRAM, "# THE LINE") + 1
    out = session.stdout
    assert "eagerctl replay: tf.function 'step', call 3: the compiled call returned non-finite values" in out
    assert f"> {script}({line})risky()" in out  # pdb stops at the user's line, not in TF
    assert "-> return tf.math.log(shifted)  # THE LINE" in out
    # The real values of that step: w was 3.0 before it, and its assign made it 3.5.
    assert "(Pdb) -2.5" in out
    assert "(Pdb) 3.5" in out
    assert session.returncode == 1 and "eagerctl.ReplayError" in session.stderr

"""`eagerctl run prog.py`, no options: a `breakpoint()` in a tf.function body stops on every call.

pdb shows values there. The program does not import eagerctl: `eagerctl run` is the use that puts the
hook in (with the breakpoint patches it carries) when the program imports
TensorFlow. pdb's commands are typed on stdin, as a person would; the result
is compared with the same program run by plain python, `breakpoint()` off.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bp_programs import ENV, after_breakpoint_call

PROGRAM = '''\
"""A small regression trained by a compiled step, with a breakpoint() left in the step's body."""
import json

import tensorflow as tf

w = tf.Variable([1.0, 2.0], name="w")
opt = tf.keras.optimizers.SGD(0.05)


@tf.function
def train_step(x, target):
    with tf.GradientTape() as tape:
        y = w * x
        loss = tf.reduce_mean((y - target) ** 2)
    breakpoint()
    grad = tape.gradient(loss, w)  # STOP HERE
    opt.apply_gradients([(grad, w)])
    return loss


losses = [float(train_step(tf.constant(float(i)), tf.constant([1.0, 1.0]))) for i in range(1, 4)]
print("RESULT " + json.dumps({"losses": losses, "w": w.numpy().tolist(),
                              "traces": train_step.experimental_get_tracing_count()}))
'''


def _write(tmp_path: Path) -> tuple[Path, int]:
    program = tmp_path / "train_bp.py"
    program.write_text(PROGRAM)
    line = next(i for i, text in enumerate(PROGRAM.splitlines(), 1) if text.endswith("# STOP HERE"))
    return program, after_breakpoint_call(line)


def _run(args: list[str], cwd: Path, commands: list[str] | None = None, **env: str) -> str:
    proc = subprocess.run([sys.executable, *args], input="\n".join(commands or []) + "\n", text=True,
                          capture_output=True, env={**ENV, **env}, cwd=str(cwd), timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _result(output: str) -> dict[str, Any]:
    found = re.findall(r"^(?:\(Pdb\) )*RESULT (.*)$", output, re.MULTILINE)
    assert found, output[-4000:]
    return dict(json.loads(found[-1]))


def _stops(output: str) -> list[tuple[str, int, str]]:
    """(file, line, function) of every place pdb stopped."""
    return [(m.group(1), int(m.group(2)), m.group(3))
            for m in re.finditer(r"^(?:\(Pdb\) )*> (\S+)\((\d+)\)(\w+)\(\)$", output, re.MULTILINE)]


def _values(output: str) -> list[list[float]]:
    return [json.loads(m) for m in re.findall(r"^\(Pdb\) (\[[-\d., ]+\])$", output, re.MULTILINE)]


def test_eagerctl_run_stops_at_breakpoint_in_a_tf_function_body_on_every_call(tmp_path: Path) -> None:
    program, line = _write(tmp_path)
    commands = ["p [round(v, 4) for v in y.numpy().tolist()]", "c"] * 3
    output = _run(["-m", "eagerctl", "run", program.name], tmp_path, commands)
    # Every call stops in the user's own file and function, not in AutoGraph's generated one.
    assert _stops(output) == [(str(program), line, "train_step")] * 3
    plain = _result(_run([program.name], tmp_path, PYTHONBREAKPOINT="0"))
    # y = w * x, concrete on each call: x = 1 with the first weights [1, 2]; then x = 2 with the
    # weights one SGD step trained (gradient of mean((w - 1)^2) is w - 1: [0, 1], so w = [1, 1.95])
    values = _values(output)
    assert len(values) == 3 and values[:2] == [[1.0, 2.0], [2.0, 3.9]]
    result = _result(output)
    assert result["losses"] == plain["losses"] and result["w"] == plain["w"]  # the same training
    assert result["traces"] == plain["traces"]  # the step stays compiled: no trace more than plain TF's


def test_eagerctl_run_with_breakpoints_switched_off_leaves_tf_as_it_is(tmp_path: Path) -> None:
    program, _ = _write(tmp_path)
    output = _run(["-m", "eagerctl", "run", program.name], tmp_path, ["p tf.executing_eagerly()", "c"] * 3,
                  EAGERCTL_BREAKPOINTS="0")
    # TensorFlow's own behaviour: a stop per trace (not per call), in AutoGraph's generated code,
    # while a symbolic graph is built (Keras 2's optimizer makes TF trace the step twice, Keras 3's once).
    stops = _stops(output)
    assert 1 <= len(stops) == _result(output)["traces"] < 3
    assert all("__autograph_generated_file" in where for where, _, _ in stops)
    assert re.findall(r"^\(Pdb\) (True|False)$", output, re.MULTILINE) == ["False"] * len(stops)

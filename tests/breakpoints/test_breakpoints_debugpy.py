"""IDE breakpoints (debugpy, driven over DAP as VS Code does) stop inside compiled TF code, with values.

Each program runs under `python -m debugpy --listen ... --wait-for-client`; the
test attaches, sets line breakpoints, and on every `stopped` event asks the top
frame and evaluates an expression there, then continues. Every case asserts how
many times it stopped, the user's file and line in the top frame, a concrete
value, and that the program's result equals the same program without a
debugger. The suite runs these under whichever TF the test process has (CI runs
it on TF 2.21 with Keras 3 and on TF 2.13 with Keras 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from bp_programs import PROGRAMS, marked_lines, plain_result, result_of
from dap_client import DebugSession, run_program

_run = run_program


def test_function_body_helper_below_and_condition() -> None:
    """A tf.function body; a plain function two calls below one; a conditional breakpoint in a loop."""
    program = PROGRAMS / "bp_functions.py"
    line = marked_lines(program)
    value = "json.dumps(y.numpy().tolist()) if hasattr(y, 'numpy') else 'SYMBOLIC'"
    stops, output = _run(
        program,
        [{"line": line["step"]}, {"line": line["inner"]},
         {"line": line["ramp"], "condition": "float(i) == 2.0"}],
        {line["step"]: value, line["inner"]: value, line["ramp"]: value},
    )
    got = [(name, where, json.loads(v.strip("'\""))) for name, where, v in stops]
    inner_1 = np.round(np.sqrt(np.array([1.0, 2.0, 3.0]) + 1.0), 5).tolist()
    inner_2 = np.round(np.sqrt(np.array([2.0, 4.0, 6.0]) + 1.0), 5).tolist()
    assert [(name, where) for name, where, _ in got] == [
        ("bp_functions.py", line["step"]), ("bp_functions.py", line["inner"]),
        ("bp_functions.py", line["step"]), ("bp_functions.py", line["inner"]),
        ("bp_functions.py", line["ramp"]),  # one of its four calls has i == 2
    ]
    assert got[0][2] == [3.0, 5.0, 7.0]  # y = x * 2 + 1 for x = [1, 2, 3]
    assert got[2][2] == [5.0, 9.0, 13.0]
    assert np.round(got[1][2], 5).tolist() == inner_1
    assert np.round(got[3][2], 5).tolist() == inner_2
    assert got[4][2] == [1.0, 3.0]  # y = x * 2 for x = [0.5, 1.5]
    result = result_of(output)
    plain = plain_result("bp_functions.py")
    assert result["results"] == plain["results"]
    assert result["islands"] == ["inner", "ramp", "step"] and plain["islands"] == []
    # The outer functions stay compiled: each traced once, as without the debugger.
    assert result["traces"] == plain["traces"] == {"step": 1, "outer": 1}


def test_layer_call_loss_under_fit_and_map_function() -> None:
    """A Keras layer's call and a loss function under fit, and a tf.data map function."""
    program = PROGRAMS / "bp_keras.py"
    line = marked_lines(program)
    value = "json.dumps(y.numpy().round(4).tolist()) if hasattr(y, 'numpy') else 'SYMBOLIC'"
    stops, output = _run(program, [{"line": line[name]} for name in ("layer", "loss", "map")],
                         {line[name]: value for name in ("layer", "loss", "map")})
    by_line: dict[int, list[Any]] = {}
    for name, where, v in stops:
        assert name == "bp_keras.py"
        by_line.setdefault(where, []).append(json.loads(v.strip("'\"")))
    features = np.linspace(-1.0, 1.0, 24, dtype="float32").reshape(8, 3)
    # Every element through the map function, once, with its value (order: tf.data's).
    assert sorted(by_line[line["map"]]) == sorted(np.round(features * 2.0, 4).tolist())
    # Two batches of four: the layer and the loss stop once per training step, with the batch.
    assert len(by_line[line["layer"]]) == 2 and len(by_line[line["loss"]]) == 2
    first_batch = features[:4] * 2.0 - 1.0
    assert np.allclose(by_line[line["layer"]][0], first_batch, atol=1e-4)  # y = x * w, w = 1 at step 1
    assert np.array(by_line[line["loss"]][0]).shape == (4, 1)
    result = result_of(output)
    plain = plain_result("bp_keras.py")
    assert result["loss"] == plain["loss"]
    assert result["weights"] == plain["weights"]
    assert result["islands"] == ["Scale.call", "augment", "halved_mse"] and plain["islands"] == []


def test_breakpoint_set_late_then_removed(tmp_path: Path) -> None:
    """Set after the program ran compiled a while; removed at the second stop: compiled again.

    The tf.data pipeline built before the breakpoint cannot stop and says so once;
    one built after it stops.
    """
    program = PROGRAMS / "bp_late.py"
    line = marked_lines(program)
    go = tmp_path / "go"
    value = "float(tf.reduce_sum(y))"

    def drive(session: DebugSession, thread: int | None, stops: list[tuple[str, int, str]]) -> None:
        if thread is None:  # started: wait until it has run compiled, then set the breakpoints
            session.wait_output("READY")
            session.set_breakpoints(program, [{"line": line["shift"]}, {"line": line["double"]}])
            go.write_text("go")
        elif sum(where == line["shift"] for _, where, _ in stops) == 2:
            session.set_breakpoints(program, [{"line": line["double"]}])  # remove the one in shift

    stops, output = _run(program, [], {line["shift"]: value, line["double"]: value}, args=(str(go),),
                         on_stop=drive)
    assert [(where, float(v)) for _, where, v in stops] == [
        (line["shift"], 6.0), (line["shift"], 7.0),  # y = x + 1 for the calls with x = 5 and 6
        (line["double"], 0.0), (line["double"], 2.0), (line["double"], 4.0),  # the pipeline built late
    ]
    assert output.count("EagerctlWarning") == 1, output[-3000:]
    assert "double (" in output and "Build the dataset again" in output
    go.write_text("go")
    result = result_of(output)
    plain = plain_result("bp_late.py", str(go))
    assert result["results"] == plain["results"]
    # Traced three times: compiled, with the island once the breakpoint came, compiled once it went.
    assert plain["traces"] == {"step": 1} and result["traces"] == {"step": 3}
    assert result["islands_after_removal"] == []
    assert result["islands"] == ["double"]


TRAIN = """\
import json

import tensorflow as tf


def inner(x):
    y = x + 1.0
    return y * 2.0


@tf.function
def step(x):
    return inner(x) - 1.0


print("RESULT " + json.dumps({"results": [float(step(tf.constant(float(i)))) for i in range(3)]}))
"""


def test_launch_json_module_form_runs_a_program_that_does_not_import_eagerctl(tmp_path: Path) -> None:
    """VS Code's `"module": "eagerctl", "args": ["run", "train.py"]`: the program is unchanged."""
    program = tmp_path / "train.py"
    program.write_text(TRAIN)
    stops, output = _run(program, [{"line": 8}], {8: "float(y)"}, module_run=("-m", "eagerctl", "run"))
    assert stops == [("train.py", 8, "1.0"), ("train.py", 8, "2.0"), ("train.py", 8, "3.0")]
    assert result_of(output)["results"] == [1.0, 3.0, 5.0]  # (x + 1) * 2 - 1, as without a debugger

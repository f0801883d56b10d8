"""Breakpoints in functions a trace reaches through no door of their own stop too, with values.

A metric under `fit` (a plain function given to `compile(metrics=...)`, a `Metric`
subclass's `update_state`), code under `tf.function(autograph=False)` (its body,
and a plain function it calls), and a plain function a Keras 3 layer's `call`
calls. debugpy is driven over DAP as VS Code does,
pdb with commands on stdin. Each case asserts the number of stops, the user's
file and line in the top frame, a concrete value there, and the program's result
against the same program without a debugger.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from bp_programs import ENV, PROGRAMS, marked_lines, plain_result, result_of
from dap_client import DebugSession, run_program

VALUE = "json.dumps([round(float(v), 4) for v in tf.reshape(y, [-1])]) if hasattr(y, 'numpy') else 'SYMBOLIC'"
FEATURES = np.linspace(-1.0, 1.0, 24, dtype="float32").reshape(8, 3)
TARGETS = FEATURES @ np.array([[0.5], [-1.0], [2.0]], dtype="float32") + 0.3


def _values(stops: list[tuple[str, int, str]], program: str) -> list[tuple[int, list[float]]]:
    assert all(name == program for name, _, _ in stops), stops
    return [(where, json.loads(value.strip("'\""))) for _, where, value in stops]


def _run_logged(program: Path,
                breakpoints: list[dict[str, Any]]) -> tuple[list[tuple[int, str]], str, list[str]]:
    """Under debugpy: (line, VALUE there) per stop, the program's output, and the logpoints' lines."""
    session = DebugSession(program)
    stops: list[tuple[int, str]] = []
    try:
        session.start({program: breakpoints})
        while (event := session.next_stop()) is not None:
            thread = event["body"]["threadId"]
            frame = session.top_frame(thread)
            assert Path(frame["source"]["path"]).name == program.name
            stops.append((frame["line"], session.evaluate(VALUE, frame["id"])))
            session.resume(thread)
        output = session.finish()
        messages = [*session.events, *session._pending]
        while not session.messages.empty():
            messages.append(session.messages.get_nowait())
    finally:
        session.close()
    logged = [m["body"]["output"].strip() for m in messages
              if m.get("event") == "output" and "LOGGED" in m.get("body", {}).get("output", "")]
    return stops, output, logged


def test_metric_update_state_and_metric_function_under_fit() -> None:
    """A breakpoint in update_state, a logpoint in the metric function (with Keras 2 they are two islands
    the graph may run at once, on two threads: two stops at once would be one `stopped` event here)."""
    program = PROGRAMS / "bp_metrics.py"
    line = marked_lines(program)
    log = "LOGGED {tf.reshape(y, [-1]).numpy().tolist()}"
    stops, output, logged = _run_logged(program, [{"line": line["update"]},
                                                  {"line": line["fn"], "logMessage": log}])
    # Two training steps (8 samples, batches of 4): update_state stops at each, with y_pred ** 2.
    assert [where for where, _ in stops] == [line["update"]] * 2
    first_pred = FEATURES[:4].sum(axis=1)  # the kernel starts at ones, the bias at zero
    assert np.allclose(json.loads(stops[0][1].strip("'\"")), np.square(first_pred), atol=1e-3)
    assert stops[1][1] != stops[0][1]  # the second batch, with new weights
    result = result_of(output)
    if result["eager_steps"] == 2 or len(logged) == 2:
        # Keras 3: one island (the step), one thread: the metric function logs at each step, with
        # |y_true - y_pred|.
        assert len(logged) == 2, logged
        first = json.loads(logged[0].removeprefix("LOGGED "))
        assert np.allclose(first, np.abs(TARGETS[:4, 0] - first_pred), atol=1e-3)
    else:
        # Keras 2: two islands the graph may run at once, on two threads; debugpy suspends every
        # thread at a stop, and a logpoint another thread reaches meanwhile is passed over (as in any
        # threaded program; docs/breakpoints.md, Limits).
        assert len(logged) == 1, logged
    plain = plain_result("bp_metrics.py")
    assert result["history"] == plain["history"]
    assert result["weights"] == plain["weights"]
    assert result["islands"] == ["SumOfSquares.update_state", "mean_gap"] and plain["islands"] == []
    # Keras 3 calls update_state through no door: its train step became the island (both steps ran
    # eagerly); Keras 2 converts update_state with AutoGraph: an island of its own, the step compiled.
    assert result["eager_steps"] in (0, 2) and plain["eager_steps"] == 0


def test_metric_function_alone_keeps_the_train_step_compiled() -> None:
    program = PROGRAMS / "bp_metrics.py"
    line = marked_lines(program)
    stops, output = run_program(program, [{"line": line["fn"]}], {line["fn"]: VALUE})
    got = _values(stops, "bp_metrics.py")
    assert [where for where, _ in got] == [line["fn"]] * 2  # both training steps
    first_pred = FEATURES[:4].sum(axis=1)
    assert np.allclose(got[0][1], np.abs(TARGETS[:4, 0] - first_pred), atol=1e-3)
    result = result_of(output)
    plain = plain_result("bp_metrics.py")
    assert result["history"] == plain["history"] and result["weights"] == plain["weights"]
    assert result["islands"] == ["mean_gap"]
    assert result["eager_steps"] == plain["eager_steps"] == 0  # only the metric function ran eagerly


def test_autograph_false_body_and_plain_function_below() -> None:
    program = PROGRAMS / "bp_no_autograph.py"
    line = marked_lines(program)
    stops, output = run_program(program, [{"line": line["body"]}, {"line": line["inner"]}],
                                {line["body"]: VALUE, line["inner"]: VALUE})
    got = _values(stops, "bp_no_autograph.py")
    assert [where for where, _ in got] == [line["body"], line["inner"]] * 2
    assert got[0][1] == [3.0, 5.0, 7.0] and got[2][1] == [5.0, 9.0, 13.0]  # y = x * 2 + 1
    assert np.allclose(got[1][1], np.sqrt(np.array([1.0, 2.0, 3.0]) + 1.0), atol=1e-4)  # y = sqrt(x + 1)
    assert np.allclose(got[3][1], np.sqrt(np.array([2.0, 4.0, 6.0]) + 1.0), atol=1e-4)
    result = result_of(output)
    plain = plain_result("bp_no_autograph.py")
    assert result["results"] == plain["results"]  # the variable counted each call once: 2.0
    assert result["islands"] == ["inner", "scaled"] and plain["islands"] == []
    # `scaled` traced once, as plainly; `outer` once more: its first trace stopped where it reached `inner`.
    assert plain["traces"] == {"scaled": 1, "outer": 1} and result["traces"] == {"scaled": 1, "outer": 2}


def _pdb(program: str, commands: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "pdb", program], input="\n".join(commands) + "\n", text=True,
                          capture_output=True, env=ENV, cwd=str(PROGRAMS), timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _stops(output: str, program: str) -> list[tuple[int, str]]:
    where = re.compile(rf"^(?:\(Pdb\) )*> .*{re.escape(program)}\((\d+)\)(\w+)\(\)$", re.MULTILINE)
    return [(int(m.group(1)), m.group(2)) for m in where.finditer(output)]


def test_pdb_break_in_a_plain_function_under_autograph_false_and_in_a_metric() -> None:
    line = marked_lines(PROGRAMS / "bp_no_autograph.py")["inner"]
    show = "p [round(v, 4) for v in y.numpy().tolist()]"
    output = _pdb("bp_no_autograph.py", [f"b bp_no_autograph.py:{line}", "c", show, "c", show, "c", "q"])
    assert _stops(output, "bp_no_autograph.py") == [(line, "inner")] * 2
    assert "[1.4142, 1.7321, 2.0]" in output and "[1.7321, 2.2361, 2.6458]" in output
    assert result_of(output)["results"] == plain_result("bp_no_autograph.py")["results"]

    line = marked_lines(PROGRAMS / "bp_metrics.py")["fn"]
    show = "p [round(v, 3) for v in tf.reshape(y, [-1]).numpy().tolist()]"
    output = _pdb("bp_metrics.py", [f"b bp_metrics.py:{line}", "c", show, "c", show, "c", "q"])
    assert _stops(output, "bp_metrics.py") == [(line, "mean_gap")] * 2
    first = [round(float(v), 3) for v in np.abs(TARGETS[:4, 0] - FEATURES[:4].sum(axis=1))]
    assert f"(Pdb) {first}" in output
    result, plain = result_of(output), plain_result("bp_metrics.py")
    assert result["history"] == plain["history"] and result["weights"] == plain["weights"]


def test_hit_count_and_logpoint_in_an_autograph_false_function() -> None:
    """A hit count (stop at the second call only) and a logpoint (print, never stop), as in plain Python."""
    program = PROGRAMS / "bp_no_autograph.py"
    line = marked_lines(program)
    stops, output, logged = _run_logged(program, [
        {"line": line["inner"], "hitCondition": "2"},
        {"line": line["body"], "logMessage": "LOGGED y={y.numpy().tolist()}"}])
    assert [where for where, _ in stops] == [line["inner"]]  # the second call of inner, only
    second = np.sqrt(np.array([2.0, 4.0, 6.0]) + 1.0)
    assert np.allclose(json.loads(stops[0][1].strip("'\"")), second, atol=1e-4)
    assert logged == ["LOGGED y=[3.0, 5.0, 7.0]", "LOGGED y=[5.0, 9.0, 13.0]"]  # each call, with values
    assert result_of(output)["results"] == plain_result("bp_no_autograph.py")["results"]


def test_pdb_break_in_a_plain_function_a_layer_calls_under_fit() -> None:
    """Stops at every training step with the batch, never while Keras builds the model symbolically."""
    line = marked_lines(PROGRAMS / "bp_layer_helper.py")["helper"]
    show = "p [round(v, 3) for v in tf.reshape(y, [-1]).numpy().tolist()]"
    output = _pdb("bp_layer_helper.py", [f"b bp_layer_helper.py:{line}", "c", show, "c", show, "c", "q"])
    assert _stops(output, "bp_layer_helper.py") == [(line, "shifted")] * 2
    assert "Tensor(" not in output  # no symbolic tensor shown, at any stop
    first = [round(float(v), 3) for v in (FEATURES[:4] * 2.0).reshape(-1)]
    assert f"(Pdb) {first}" in output
    result, plain = result_of(output), plain_result("bp_layer_helper.py")
    assert result["loss"] == plain["loss"] and result["weights"] == plain["weights"]

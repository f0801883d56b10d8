"""`eagerctl run --bisect MODULE:QUALNAME`: the first call is bisected, the program runs unchanged."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from eagerctl._cli import main

PROGRAM = textwrap.dedent('''
    import tensorflow as tf

    calls = 0

    def scale(x):
        global calls
        calls += 1
        return x * float(calls)

    def body(x):
        return scale(tf.nn.relu(x)) + 1.0

    @tf.function
    def step(x):
        return tf.reduce_sum(body(x))

    x = tf.constant([1.0, 2.0])
    for i in range(3):
        print("step", i, float(step(x)))
    print("calls", calls)
''')


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_run_bisect_reports_the_first_call_and_the_program_output_is_unchanged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    plain = run(["run", str(script)], capsys)
    bisected = run(["run", "--bisect", "__main__:step", str(script)], capsys)
    assert plain[0] == bisected[0] == 0
    assert bisected[1] == plain[1] == "step 0 5.0\nstep 1 5.0\nstep 2 5.0\ncalls 1\n"
    err = bisected[2]
    assert "eagerctl run: --bisect __main__:step: its first call, bisected:\n" in err
    assert "bisect(step): graph and eager DIFFER because of scale\n  culprit 1: scale (function)  at " in err
    assert "global calls went from 1 to 2 while traced" in err  # the program's own trace made it 1


def test_run_bisect_of_a_module_function_and_a_bad_target(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "steps.py").write_text(PROGRAM.split("x = tf.constant")[0])
    script = tmp_path / "main.py"
    script.write_text("import tensorflow as tf\nimport steps\n"
                      "print(float(steps.step(tf.constant([1.0, 2.0]))))\n")
    status, out, err = run(["run", "--bisect", "steps:step", str(script)], capsys)
    assert (status, out) == (0, "5.0\n")
    assert "--bisect steps:step: its first call, bisected:" in err and "because of scale" in err
    status, out, err = run(["run", "--bisect", "steps:nothing", str(script)], capsys)
    assert status == 2
    assert "eagerctl run: error: --bisect steps:nothing: steps has no attribute 'nothing'" in err
    status, out, err = run(["run", "--bisect", "steps", str(script)], capsys)
    assert status == 2 and "--bisect 'steps': expected MODULE:QUALNAME" in err


def test_run_bisect_of_a_function_first_called_while_tracing_warns_and_the_program_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    status, out, err = run(["run", "--bisect", "__main__:scale", str(script)], capsys)
    assert (status, out) == (0, "step 0 5.0\nstep 1 5.0\nstep 2 5.0\ncalls 1\n")
    assert ("eagerctl run: warning: --bisect __main__:scale: its first call came while TensorFlow traced "
            "'step', where it cannot be run and bisected") in err
    assert "bisected:" not in err

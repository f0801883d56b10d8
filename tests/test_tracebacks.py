"""A check_numerics error (or any error from a `@debuggable` body) points at the user's code:
pytest hides eagerctl's frames (`__tracebackhide__`), and `eagerctl run` drops them
from the traceback it prints.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from eagerctl._cli import main

pytest_plugins = ["pytester"]

PROGRAM = textwrap.dedent("""\
    import tensorflow as tf

    import eagerctl


    @eagerctl.debuggable(check_numerics=True)
    @tf.function
    def forward(x):
        return {"logits": tf.math.log(x)}


    def train():
        return forward(tf.constant([1.0, -2.0]))


    train()
""")

BODY_ERROR = textwrap.dedent("""\
    import tensorflow as tf

    import eagerctl


    def check(x):
        raise ValueError("bad batch")


    @eagerctl.debuggable
    @tf.function
    def step(x):
        return check(x)


    step(tf.constant(1.0))
""")


def _frames(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.strip().startswith('File "')]


def test_eagerctl_run_shows_only_the_users_frames_for_check_numerics(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "train.py"
    script.write_text(PROGRAM)
    assert main(["run", str(script)]) == 1
    err = capsys.readouterr().err
    assert _frames(err) == [
        f'File "{script}", line 16, in <module>',
        f'File "{script}", line 13, in train',
    ], err
    assert err.rstrip().endswith(
        "FloatingPointError: @debuggable forward (check_numerics=True): outputs['logits'] holds non-finite "
        "values: 1 NaN and 0 Inf among 2 value(s) (float32[2]); set post_mortem=True or put a breakpoint in "
        "the body to find where they appear")
    assert "eagerctl" + "/" not in err.replace(str(tmp_path), "")


def test_eagerctl_run_keeps_the_users_frames_on_both_sides_of_the_proxy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "step.py"
    script.write_text(BODY_ERROR)
    assert main(["run", str(script)]) == 1
    err = capsys.readouterr().err
    assert _frames(err) == [
        f'File "{script}", line 16, in <module>',
        f'File "{script}", line 13, in step',
        f'File "{script}", line 7, in check',
    ], err
    assert err.rstrip().endswith("ValueError: bad batch")


def test_pytest_hides_eagerctl_frames(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nan=PROGRAM.replace("\ntrain()\n", "\n") + textwrap.dedent("""\


        def test_train():
            train()
    """))
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=long")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "_debuggable.py" not in out
    assert "    return forward(tf.constant([1.0, -2.0]))" in out
    assert "E       FloatingPointError: @debuggable forward (check_numerics=True): outputs['logits']" in out

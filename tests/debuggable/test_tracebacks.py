"""A check_numerics error (or any error from a `@debuggable` body) points at the user's code:
pytest hides eagerctl's frames (`__tracebackhide__` in the modules' globals), and
`eagerctl run` drops them from the traceback it prints. Misuse of a scope, and an
error in a function decorated with a scope, point at the user's lines too.
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


SCOPES = textwrap.dedent("""\
    import tensorflow as tf

    import eagerctl


    @eagerctl.eager_scope()
    def step(x):
        raise ValueError("bad batch")


    def test_body_error():
        step(tf.constant(1.0))


    def test_reentering_an_active_scope():
        scope = eagerctl.eager_scope()
        with scope:
            with scope:
                pass
""")


def test_pytest_hides_scope_frames_for_body_errors_and_misuse(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_scopes_tb=SCOPES)
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=long")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "_scope.py" not in out
    assert '>       raise ValueError("bad batch")' in out
    assert ">           with scope:" in out
    assert "EagerctlError: eager_scope(True) is already active (entered at " in out


def test_an_eagerctl_bug_keeps_its_frames(pytester: pytest.Pytester) -> None:
    """Only deliberate errors and errors raised in user code hide eagerctl's frames."""
    from eagerctl._errors import hide_from_pytest

    class Info:
        def __init__(self, exc: BaseException) -> None:
            self.value, self.tb = exc, exc.__traceback__

    def raised(exc: BaseException) -> BaseException:
        try:
            raise exc
        except BaseException as caught:  # noqa: BLE001
            return caught

    assert hide_from_pytest(Info(raised(ValueError("user code"))))  # raised in this file, not eagerctl
    from eagerctl import EagerctlError

    assert hide_from_pytest(Info(raised(EagerctlError("deliberate"))))
    import eagerctl._scope as scope_module

    try:
        scope_module.eager_scope(enabled=1)  # type: ignore[arg-type]
    except TypeError as exc:  # raised inside eagerctl, and not an EagerctlError: frames kept
        assert not hide_from_pytest(Info(exc))
    else:
        pytest.fail("eager_scope(enabled=1) did not raise")

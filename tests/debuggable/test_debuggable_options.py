"""@debuggable's options: enabled, the debug aids, and the errors for wrong options and targets."""

from __future__ import annotations

import collections
import functools
import io
import logging
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl

# -- enabled ------------------------------------------------------------------


def test_enabled_false_returns_the_undecorated_object_itself() -> None:
    @tf.function
    def compiled(x: Any) -> Any:
        return x

    def plain() -> None: ...

    method = classmethod(lambda cls: cls)
    for target in (compiled, plain, method):
        assert eagerctl.debuggable(enabled=False)(target) is target
        assert eagerctl.debuggable(target, enabled=False) is target


def test_enabled_false_still_rejects_what_it_cannot_decorate() -> None:
    with pytest.raises(TypeError, match=re.escape("debuggable cannot decorate 42:")):
        eagerctl.debuggable(enabled=False)(42)


def test_enabled_true_decorates() -> None:
    probe, seen = make_probe()

    @eagerctl.debuggable(enabled=True)
    def check() -> str:
        return mode_of(probe, seen)

    assert check() == "eager"


# -- wrong option types ---------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("recursive", "yes", "recursive must be a bool (True or False), not str"),
    ("enabled", 0, "enabled must be a bool (True or False) or None, not int"),
    ("post_mortem", None, "post_mortem must be a bool (True or False), not NoneType"),
    ("check_numerics", 1, "check_numerics must be a bool (True or False), not int"),
    ("log_calls", "DEBUG", "log_calls must be a bool (True or False), not str"),
])
def test_option_of_the_wrong_type_is_a_type_error(name: str, value: object, expected: str) -> None:
    with pytest.raises(TypeError) as info:
        eagerctl.debuggable(**{name: value})  # type: ignore[call-overload]
    assert str(info.value) == f"debuggable({name}={value!r}): {expected}"


# -- unsupported targets ----------------------------------------------------------

SUPPORTED = ("it decorates tf.functions, functions, coroutine functions, and instance, class and static "
             "methods (including tf.function methods of Keras models and layers and a layer's call)")


class Layerish:
    def __call__(self, x: int) -> int:
        return x


def gen() -> Any:
    yield 1


async def agen() -> Any:
    yield 1


def test_a_class_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError) as info:
        eagerctl.debuggable(Layerish)
    assert str(info.value) == (
        f"debuggable cannot decorate {Layerish!r}: {SUPPORTED}; decorate the method that misbehaves "
        "instead (for a Keras layer or model: call, train_step or a tf.function method)"
    )


def test_a_callable_object_is_refused_with_the_fix() -> None:
    obj = Layerish()
    with pytest.raises(TypeError) as info:
        eagerctl.debuggable(obj)
    assert str(info.value) == (
        f"debuggable cannot decorate {obj!r}: {SUPPORTED}; decorate the method instead, e.g. "
        "Layerish.call or Layerish.__call__ in the class body"
    )


@pytest.mark.parametrize("target", [len, functools.partial(max, 1), 42, "loss"])
def test_builtins_partials_and_values_are_refused(target: object) -> None:
    with pytest.raises(TypeError) as info:
        eagerctl.debuggable(target)  # type: ignore[call-overload]
    hint = ("decorate the function it wraps and take the partial of that instead: "
            "functools.partial(eagerctl.debuggable(f), ...)"
            if isinstance(target, functools.partial) else "pass the function itself")
    assert str(info.value) == f"debuggable cannot decorate {target!r}: {SUPPORTED}; {hint}"


@pytest.mark.parametrize("target", [gen, agen])
def test_generator_functions_are_refused_pointing_at_eager_scope(target: Any) -> None:
    with pytest.raises(TypeError) as info:
        eagerctl.debuggable(target)
    assert str(info.value) == (
        f"debuggable cannot decorate {target!r}: it is a generator function; {SUPPORTED}. For a generator "
        "use @eagerctl.eager_scope(), which is active only while the generator body runs"
    )


def test_a_tf_function_restored_from_a_saved_model_is_refused(tmp_path: Path) -> None:
    module = tf.Module()
    module.double = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(tmp_path))
    restored = tf.saved_model.load(str(tmp_path)).double
    with pytest.raises(TypeError) as info:
        eagerctl.debuggable(restored)
    assert str(info.value) == (
        f"debuggable cannot decorate {restored!r}: a tf.function restored from a SavedModel has no Python "
        "body to run eagerly; decorate the original Python function (or its class's method) before "
        "saving instead"
    )


# -- post_mortem ----------------------------------------------------------------------


def test_post_mortem_opens_pdb_in_the_body_then_reraises(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    @eagerctl.debuggable(post_mortem=True)
    @tf.function
    def divide(x: Any) -> Any:
        scaled = x * 10
        raise ZeroDivisionError(f"cannot divide {int(scaled)}")

    # pdb reads its commands from a terminal: print a local and the mode, then continue.
    monkeypatch.setattr(sys, "stdin", ScriptedTerminal("p int(scaled)\np tf.executing_eagerly()\nc\n"))
    with pytest.raises(ZeroDivisionError, match=r"^cannot divide 30$"):
        divide(tf.constant(3))
    out, err = capsys.readouterr()
    assert ")divide()\n-> raise ZeroDivisionError" in out  # stopped in the body's frame
    assert "(Pdb) 30\n(Pdb) True\n(Pdb) " in out
    assert err.endswith("eagerctl: ZeroDivisionError in @debuggable "
                        "test_post_mortem_opens_pdb_in_the_body_then_reraises.<locals>.divide; entering pdb "
                        "post-mortem (type 'c' or 'q' to let the exception propagate)\n")
    assert eagerctl.status().scopes == ()


class ScriptedTerminal(io.StringIO):
    """A terminal someone types the given lines into."""

    def isatty(self) -> bool:
        return True


def raises_value_error() -> Any:
    @eagerctl.debuggable(post_mortem=True)
    @tf.function
    def check_labels(labels: Any) -> Any:
        if int(tf.reduce_min(labels)) < 0:
            raise ValueError("labels must be 0 or more")
        return labels

    return check_labels


def test_post_mortem_under_pytest_capture_skips_pdb_and_reraises_the_original(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from _pytest.capture import DontReadFromInput

    monkeypatch.setattr(sys, "stdin", DontReadFromInput())  # what pytest's capture puts there
    check_labels = raises_value_error()
    with pytest.warns(eagerctl.EagerctlWarning) as record, pytest.raises(ValueError) as info:
        check_labels(tf.constant([1, -1]))
    assert str(info.value) == "labels must be 0 or more"
    assert info.value.__context__ is None  # the body's own exception, not one raised by pdb
    assert [str(w.message) for w in record] == [
        "@debuggable raises_value_error.<locals>.check_labels (post_mortem=True): ValueError raised in the "
        "body, but there is no interactive terminal (stdin is not a TTY, e.g. under pytest's output capture "
        "or a pipe), so the pdb post-mortem was skipped and the exception propagates unchanged; run it from "
        "a terminal (pytest -s) to debug it"
    ]
    assert record[0].filename == __file__  # points at the call in this test, not at eagerctl
    assert capsys.readouterr().out == ""  # no pdb prompt
    assert eagerctl.status().scopes == ()


def test_post_mortem_on_a_pipe_skips_pdb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("c\n"))  # readable, but nobody types into it
    check_labels = raises_value_error()
    with pytest.warns(eagerctl.EagerctlWarning, match="no interactive terminal"), \
            pytest.raises(ValueError, match=r"^labels must be 0 or more$"):
        check_labels(tf.constant([-3]))
    assert sys.stdin.read() == "c\n"  # pdb never read it


def test_post_mortem_is_not_entered_without_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # pdb would fail reading it

    @eagerctl.debuggable(post_mortem=True)
    def fine(x: int) -> int:
        return x + 1

    assert fine(1) == 2


# -- check_numerics -----------------------------------------------------------------

Out = collections.namedtuple("Out", ["loss", "grads"])


def test_check_numerics_names_the_path_of_the_bad_output() -> None:
    @eagerctl.debuggable(check_numerics=True)
    @tf.function
    def forward(x: Any) -> Any:
        logits = tf.math.log(x)  # log(-1) is NaN, log(0) is -Inf
        return tf.constant(1.0), {"ids": tf.constant([1, 2]), "logits": logits}

    forward(tf.constant([1.0, 2.0]))  # finite: no error
    with pytest.raises(FloatingPointError) as info:
        forward(tf.constant([-1.0, 0.0, 1.0]))
    assert str(info.value) == (
        "@debuggable test_check_numerics_names_the_path_of_the_bad_output.<locals>.forward "
        "(check_numerics=True): outputs[1]['logits'] holds non-finite values: 1 NaN and 1 Inf among 3 "
        "value(s) (float32[3]); set post_mortem=True or put a breakpoint in the body to find where "
        "they appear"
    )
    assert forward.experimental_get_tracing_count() == 0


@pytest.mark.parametrize(("result", "path", "desc"), [
    (tf.constant(np.inf), "outputs", "float32[]"),
    (Out(tf.constant(1.0), [tf.constant([0.0, np.nan])]), "outputs.grads[0]", "float32[2]"),
    ([np.array([np.nan]), 3], "outputs[0]", "float64[1]"),
    (tf.Variable([np.inf], dtype=tf.float64), "outputs", "float64[1]"),
])
def test_check_numerics_paths(result: Any, path: str, desc: str) -> None:
    @eagerctl.debuggable(check_numerics=True)
    def produce() -> Any:
        return result

    with pytest.raises(FloatingPointError, match=re.escape(f"(check_numerics=True): {path} holds ")) as info:
        produce()
    assert f"({desc})" in str(info.value)


def test_check_numerics_ignores_integers_strings_and_python_values() -> None:
    @eagerctl.debuggable(check_numerics=True)
    def produce() -> Any:
        return tf.constant([1, 2]), tf.constant(["a"]), float("nan"), None

    produce()  # a Python float is not a tensor: not checked


# -- log_calls --------------------------------------------------------------------------


def test_log_calls_logs_shapes_dtypes_and_time_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    @eagerctl.debuggable(log_calls=True)
    @tf.function
    def step(x: Any, y: Any, *, scale: int) -> Any:
        return tf.reduce_sum(x) * scale + y

    with caplog.at_level(logging.DEBUG, logger="eagerctl"):
        step(tf.ones([2, 3]), tf.constant(1, dtype=tf.float32), scale=3)
        step(np.zeros((4,), np.float64), [tf.ones([1])], scale=1)
    records = [r for r in caplog.records if r.name == "eagerctl"]
    assert [r.levelno for r in records] == [logging.DEBUG] * 2
    label = "test_log_calls_logs_shapes_dtypes_and_time_at_debug.<locals>.step"
    assert re.fullmatch(re.escape(f"debuggable {label}(float32[2, 3], float32[], scale=3) ran eagerly, "
                                  "returned after ") + r"\d+\.\d{3} ms", records[0].getMessage())
    assert re.fullmatch(re.escape(f"debuggable {label}(float64[4], [float32[1]], scale=1) ran eagerly, "
                                  "returned after ") + r"\d+\.\d{3} ms", records[1].getMessage())


def test_log_calls_logs_a_raising_call(caplog: pytest.LogCaptureFixture) -> None:
    @eagerctl.debuggable(log_calls=True)
    def bad(x: int) -> None:
        raise ValueError("no")

    with caplog.at_level(logging.DEBUG, logger="eagerctl"), pytest.raises(ValueError, match=r"^no$"):
        bad(1)
    (record,) = [r for r in caplog.records if r.name == "eagerctl"]
    assert re.fullmatch(r"debuggable test_log_calls_logs_a_raising_call\.<locals>\.bad\(1\) ran eagerly, "
                        r"raised ValueError after \d+\.\d{3} ms", record.getMessage())


def test_log_calls_is_silent_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    @eagerctl.debuggable(log_calls=True)
    def quiet() -> None: ...

    with caplog.at_level(logging.INFO, logger="eagerctl"):
        quiet()
    assert [r for r in caplog.records if r.name == "eagerctl"] == []


def test_the_aids_keep_the_eager_override() -> None:
    probe, seen = make_probe()

    @eagerctl.debuggable(check_numerics=True, log_calls=True, post_mortem=True)
    def check() -> str:
        return mode_of(probe, seen)

    @eagerctl.debuggable(check_numerics=True, recursive=False)
    def check_nonrecursive() -> str:
        return mode_of(probe, seen)

    assert (check(), check_nonrecursive()) == ("eager", "graph")

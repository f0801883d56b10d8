"""@debuggable on a tf.function: its Python body runs eagerly, nothing is traced."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pytest
import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl
from eagerctl import EagerctlWarning


def test_body_runs_eagerly_on_every_call_and_is_never_traced() -> None:
    runs: list[bool] = []

    @eagerctl.debuggable
    @tf.function
    def double(x: Any) -> Any:
        runs.append(tf.executing_eagerly())
        return x * 2

    assert [int(double(tf.constant(i))) for i in range(3)] == [0, 2, 4]
    assert runs == [True, True, True]
    assert double.experimental_get_tracing_count() == 0
    assert double(tf.constant([1.5, 2.5])).numpy().tolist() == [3.0, 5.0]  # a new shape: no retrace
    assert double.experimental_get_tracing_count() == 0
    assert tf.config.functions_run_eagerly() is False


def test_numpy_and_python_control_flow_work_in_the_body() -> None:
    @eagerctl.debuggable
    @tf.function
    def clipped_sum(x: Any) -> Any:
        total = float(tf.reduce_sum(x).numpy())  # fails in a graph: no .numpy() there
        if total > 10:  # a Python branch on a value
            return tf.constant(10.0)
        return tf.constant(total)

    assert float(clipped_sum(tf.constant([1.0, 2.0]))) == 3.0
    assert float(clipped_sum(tf.constant([8.0, 9.0]))) == 10.0


def test_recursive_true_makes_nested_tf_functions_eager() -> None:
    probe, seen = make_probe()
    modes: list[str] = []

    @eagerctl.debuggable
    @tf.function
    def outer(x: Any) -> Any:
        modes.append(mode_of(probe, seen))
        return x + 1

    outer(tf.constant(1))
    assert modes == ["eager"]
    assert mode_of(probe, seen) == "graph"  # outside the call, compiled again
    assert probe.experimental_get_tracing_count() == 1


def test_recursive_false_leaves_nested_tf_functions_in_their_mode() -> None:
    probe, seen = make_probe()
    modes: list[str] = []

    @eagerctl.debuggable(recursive=False)
    @tf.function
    def outer(x: Any) -> Any:
        modes.append(mode_of(probe, seen))
        return tf.executing_eagerly()

    assert outer(tf.constant(1)) is True  # the body itself is eager
    with eagerctl.eager_scope():
        assert outer(tf.constant(1)) is True
    assert modes == ["graph", "eager"]  # nested: whatever it would have been
    assert outer.experimental_get_tracing_count() == 0


def test_wins_over_an_enclosing_graph_scope_and_the_global_flag_stays() -> None:
    probe, seen = make_probe()
    modes: list[str] = []

    @eagerctl.debuggable
    @tf.function
    def outer(x: Any) -> Any:
        modes.append(mode_of(probe, seen))
        return x

    with eagerctl.graph_scope():
        outer(tf.constant(1))
        modes.append(mode_of(probe, seen))
    assert modes == ["eager", "graph"]
    assert tf.config.functions_run_eagerly() is False


def test_nested_graph_scope_inside_the_body_wins() -> None:
    probe, seen = make_probe()
    modes: list[str] = []

    @eagerctl.debuggable
    @tf.function
    def outer(x: Any) -> Any:
        with eagerctl.graph_scope():
            modes.append(mode_of(probe, seen))
        modes.append(mode_of(probe, seen))
        return x

    outer(tf.constant(1))
    assert modes == ["graph", "eager"]


def test_status_shows_the_call_while_the_body_runs() -> None:
    seen: list[Any] = []

    @eagerctl.debuggable
    @tf.function
    def step(x: Any) -> Any:
        seen.append(eagerctl.status())
        return x

    call_line = sys._getframe().f_lineno + 1
    step(tf.constant(1))
    (status,) = seen
    assert status.override is True and status.is_eager is True
    (info,) = status.scopes
    label = "test_status_shows_the_call_while_the_body_runs.<locals>.step"
    assert (info.scope, info.kind, info.enabled) == (f"@debuggable {label}", "local", True)
    assert info.where == f"{__file__}:{call_line}"
    assert eagerctl.status().scopes == ()


def test_exception_in_the_body_propagates_and_leaves_no_override() -> None:
    @eagerctl.debuggable
    @tf.function
    def bad(x: Any) -> Any:
        raise ValueError(f"bad input {int(x)}")

    with pytest.raises(ValueError, match=r"^bad input 3$"):
        bad(tf.constant(3))
    assert eagerctl.status().override is None
    assert eagerctl.is_eager() is False


def test_variables_and_gradients_update_as_compiled() -> None:
    v_eager, v_graph = tf.Variable(1.0), tf.Variable(1.0)

    def make(v: tf.Variable) -> Any:
        def step(x: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = (v * x - 3.0) ** 2
            v.assign_sub(0.1 * tape.gradient(loss, v))
            return loss

        return step

    compiled = tf.function(make(v_graph))
    debug = eagerctl.debuggable(tf.function(make(v_eager)))
    for _ in range(3):
        assert float(debug(tf.constant(2.0))) == pytest.approx(float(compiled(tf.constant(2.0))))
    assert float(v_eager) == pytest.approx(float(v_graph))
    assert debug.experimental_get_tracing_count() == 0


def test_keyword_arguments_and_input_signature() -> None:
    @eagerctl.debuggable
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def scale(x: Any) -> Any:
        return x * 3.0

    assert scale(x=tf.constant([1.0])).numpy().tolist() == [3.0]
    assert scale.input_signature == (tf.TensorSpec([None], tf.float32),)
    assert scale.experimental_get_tracing_count() == 0


def test_the_tf_function_api_passes_through() -> None:
    @tf.function
    def square(x: Any) -> Any:
        return x * x

    proxy = eagerctl.debuggable(square)
    assert isinstance(proxy, tf.types.experimental.GenericFunction)
    assert isinstance(proxy, type(square))
    assert proxy.python_function is square.python_function
    assert proxy.__wrapped__ is square
    concrete = proxy.get_concrete_function(tf.TensorSpec([], tf.float32))  # traces, as TF does
    assert float(concrete(tf.constant(3.0))) == 9.0
    assert proxy.experimental_get_tracing_count() == square.experimental_get_tracing_count() == 1
    assert float(proxy(tf.constant(4.0))) == 16.0
    assert proxy.experimental_get_tracing_count() == 1


def test_the_undecorated_tf_function_is_untouched() -> None:
    @tf.function
    def square(x: Any) -> Any:
        return x * x

    proxy = eagerctl.debuggable(square)
    proxy(tf.constant(2.0))
    assert square.experimental_get_tracing_count() == 0
    square(tf.constant(2.0))  # still the compiled function
    assert square.experimental_get_tracing_count() == 1


def test_tf_function_above_debuggable_traces_it_and_warns_with_the_remedy() -> None:
    runs: list[bool] = []

    @tf.function
    @eagerctl.debuggable(island=False)
    def inc(x: Any) -> Any:
        runs.append(tf.executing_eagerly())
        return x + 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert int(inc(tf.constant(1))) == 2
        assert int(inc(tf.constant(2))) == 3
    assert runs == [False]  # traced once, as a plain tf.function
    assert [str(w.message) for w in caught if w.category is EagerctlWarning] == [
        "@debuggable test_tf_function_above_debuggable_traces_it_and_warns_with_the_remedy.<locals>.inc "
        "was called while TensorFlow traces the tf.function 'inc': it cannot run eagerly inside that graph, "
        "so its body becomes part of the graph (print, pdb and .numpy() do not work there, and the debug "
        "aids are off). @debuggable sits below @tf.function on "
        "test_tf_function_above_debuggable_traces_it_and_warns_with_the_remedy.<locals>.inc: put "
        "@eagerctl.debuggable above @tf.function so that calls run the Python body eagerly"
    ]
    with eagerctl.eager_scope():  # in that order it is eager wherever the tf.function is
        inc(tf.constant(3))
    assert runs == [False, True]

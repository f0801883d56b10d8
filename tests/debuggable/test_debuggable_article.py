"""The source article's three examples, and what really happens in TF 2 (README: "The article, done right").

The article claims `tf.config.run_functions_eagerly` makes plain ops eager (example 1), that a
tf.function's values depend on it (example 2), and that it switches its (undecorated) `train_step`
between graph and eager (example 3). In TF 2 plain ops are always eager, the flag only concerns
tf.functions, and it changes where the Python body runs, not the values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl

keras = tf.keras


# -- example 1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [False, True])
def test_example1_plain_ops_are_eager_whatever_the_flag(flag: bool) -> None:
    with eagerctl.eager_scope(flag, process=True):  # sets TF's global flag, restored on exit
        assert tf.config.functions_run_eagerly() is flag
        c = tf.constant(2) + tf.constant(3)
        assert tf.executing_eagerly() is True
        assert c.numpy() == 5  # a value, not a symbolic tensor, both times
        assert "numpy=5" in repr(c)


# -- example 2 -------------------------------------------------------------------------------------


def make_square_and_gradient(runs: list[bool]) -> Any:
    record = runs.append

    @tf.function
    def square_and_gradient(x: Any) -> Any:
        record(tf.executing_eagerly())
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = x * x
        dy_dx = tape.gradient(y, x)
        return y, dy_dx

    return square_and_gradient


def test_example2_debuggable_runs_the_body_eagerly_and_never_traces() -> None:
    runs: list[bool] = []
    square_and_gradient = eagerctl.debuggable(make_square_and_gradient(runs))
    for _ in range(3):
        y, dy_dx = square_and_gradient(tf.constant(3.0))
        assert (float(y), float(dy_dx)) == (9.0, 6.0)
    assert runs == [True, True, True]  # the Python body, on every call
    assert square_and_gradient.experimental_get_tracing_count() == 0
    assert tf.config.functions_run_eagerly() is False  # nothing global was switched


def test_example2_compiled_gives_the_same_values_its_body_runs_only_while_tracing() -> None:
    runs: list[bool] = []
    square_and_gradient = make_square_and_gradient(runs)
    for _ in range(3):
        y, dy_dx = square_and_gradient(tf.constant(3.0))
        assert (float(y), float(dy_dx)) == (9.0, 6.0)
    assert runs == [False]  # once, building the graph; the graph ran the other calls
    assert square_and_gradient.experimental_get_tracing_count() == 1


def test_example2_the_undecorated_function_is_plain_python_always_eager() -> None:
    def square_and_gradient_no_tf_function(x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = x * x
        return y, tape.gradient(y, x), tf.executing_eagerly()

    for flag in (False, True):
        with eagerctl.eager_scope(flag, process=True):
            y, dy_dx, eager = square_and_gradient_no_tf_function(tf.constant(3.0))
        assert (float(y), float(dy_dx), eager) == (9.0, 6.0, True)


# -- example 3 -------------------------------------------------------------------------------------


class SimpleModel(keras.Model):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x: Any) -> Any:
        return self.dense(x)


MODES: list[bool] = []  # one entry per run of train_step's Python body: was it eager?
record_mode = MODES.append


def train_step(model: Any, optimizer: Any, loss_fn: Any, x: Any, y: Any) -> Any:
    """The article's train_step, verbatim but for recording whether its body runs eagerly."""
    record_mode(tf.executing_eagerly())
    with tf.GradientTape() as tape:
        predictions = model(x)
        loss = loss_fn(y, predictions)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    return loss


X = tf.constant([[1.0], [2.0], [3.0]], dtype=tf.float32)
Y = tf.constant([[2.0], [4.0], [6.0]], dtype=tf.float32)
STEPS = 4


def start(weights: list[np.ndarray] | None) -> tuple[Any, Any, Any]:
    model = SimpleModel()
    model(X)  # build
    if weights is not None:
        model.set_weights(weights)
    return model, keras.optimizers.Adam(), keras.losses.MeanSquaredError()


def modes_of(run: Any) -> list[bool]:
    del MODES[:]
    run()
    return list(MODES)


def test_example3_the_flag_changes_nothing_for_a_train_step_that_is_not_a_tf_function() -> None:
    model, optimizer, loss_fn = start(None)

    def both_modes() -> None:
        for flag in (True, False):  # the article's "eager mode" then "graph mode"
            with eagerctl.eager_scope(flag, process=True):
                train_step(model, optimizer, loss_fn, X, Y)

    assert modes_of(both_modes) == [True, True]  # both ran eagerly: plain Python calling eager ops


def test_example3_eager_losses_equal_the_compiled_ones_from_the_same_weights() -> None:
    model, _, _ = start(None)
    weights = model.get_weights()

    compiled_step = tf.function(train_step)
    compiled = start(weights)
    graph_losses: list[float] = []
    compiled_modes = modes_of(lambda: graph_losses.extend(
        float(compiled_step(*compiled, X, Y)) for _ in range(STEPS)))

    scoped = start(weights)
    scope_losses: list[float] = []

    def in_scope() -> None:
        with eagerctl.eager_scope():  # the same tf.function, run eagerly in this block only
            scope_losses.extend(float(compiled_step(*scoped, X, Y)) for _ in range(STEPS))

    scope_modes = modes_of(in_scope)

    debug_step = eagerctl.debuggable(tf.function(train_step))
    debugged = start(weights)
    debug_losses: list[float] = []
    debug_modes = modes_of(lambda: debug_losses.extend(
        float(debug_step(*debugged, X, Y)) for _ in range(STEPS)))

    assert scope_losses == pytest.approx(graph_losses, rel=1e-5)
    assert debug_losses == pytest.approx(graph_losses, rel=1e-5)
    assert graph_losses[-1] < graph_losses[0]  # it does train
    assert all(not m for m in compiled_modes) and len(compiled_modes) <= 2  # traced, then the graph ran
    assert scope_modes == debug_modes == [True] * STEPS  # the Python body ran on every step
    assert debug_step.experimental_get_tracing_count() == 0
    for a, b in zip(debugged[0].get_weights(), compiled[0].get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)

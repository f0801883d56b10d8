"""A `@debuggable` passed as an argument to a `tf.function` traces as an island.

The article's pattern: `train_step(model, opt, loss_fn, x, y)` compiled once
and called with the plain loss and with the `@debuggable` one. TF keys its
traces on the arguments' trace types; the `wrapt` proxy used to get the type of
the function it wraps (equal, same hash), so whichever was passed first decided
the graph for both. Real TensorFlow; every check is a tracing count, whether
the body ran eagerly, values, or weights.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import eagerctl  # noqa: E402


def make_step() -> tuple[Any, Any]:
    """A compiled train step taking the loss function as an argument, and its weight."""
    w = tf.Variable([[0.5], [-1.0]])

    @tf.function
    def train_step(loss_fn: Any, x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.matmul(x, w))
        w.assign_sub(0.1 * tape.gradient(loss, w))
        return loss

    return train_step, w


def batches() -> list[tuple[Any, Any]]:
    rng = np.random.default_rng(7)
    return [(tf.constant(rng.normal(size=(4, 2)), tf.float32),
             tf.constant(rng.normal(size=(4, 1)), tf.float32)) for _ in range(3)]


def test_debuggable_after_the_plain_function_traces_its_own_island() -> None:
    eager_runs: list[bool] = []

    def mse(y: Any, p: Any) -> Any:
        eager_runs.append(tf.executing_eagerly())
        return tf.reduce_mean(tf.square(y - p))

    debug_mse = eagerctl.debuggable(mse)
    step, w = make_step()
    reference, w_ref = make_step()  # the same program without eagerctl in it
    losses, ref_losses = [], []
    for x, y in batches():
        losses.append(float(step(mse, x, y)))
        ref_losses.append(float(reference(mse, x, y)))
    assert step.experimental_get_tracing_count() == 1
    eager_runs.clear()
    for x, y in batches():
        losses.append(float(step(debug_mse, x, y)))
        ref_losses.append(float(reference(mse, x, y)))
    # A second trace (scratch trace of the island: False), then the body eagerly on every step.
    assert step.experimental_get_tracing_count() == 2
    assert eager_runs == [False, True, True, True]
    # And the plain function still gets its compiled graph: no new trace, the body does not run.
    eager_runs.clear()
    step(mse, *batches()[0])
    reference(mse, *batches()[0])
    assert eager_runs == []
    assert step.experimental_get_tracing_count() == 2
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    np.testing.assert_allclose(w.numpy(), w_ref.numpy(), rtol=1e-6)


def test_plain_function_after_the_debuggable_is_compiled_not_an_island() -> None:
    eager_runs: list[bool] = []

    def mae(y: Any, p: Any) -> Any:
        eager_runs.append(tf.executing_eagerly())
        return tf.reduce_mean(tf.abs(y - p))

    debug_mae = eagerctl.debuggable(mae)
    step, _ = make_step()
    x, y = batches()[0]
    step(debug_mae, x, y)
    step(debug_mae, x, y)
    assert eager_runs == [False, True, True]
    eager_runs.clear()
    step(mae, x, y)
    step(mae, x, y)
    assert eager_runs == [False]  # traced once, into the graph; never run eagerly
    assert step.experimental_get_tracing_count() == 2


def test_debuggable_tf_function_as_argument() -> None:
    eager_runs: list[bool] = []

    @tf.function
    def huber(y: Any, p: Any) -> Any:
        eager_runs.append(tf.executing_eagerly())
        return tf.reduce_mean(tf.keras.losses.Huber()(y, p))

    debug_huber = eagerctl.debuggable(huber)
    step, _ = make_step()
    x, y = batches()[0]
    step(huber, x, y)
    step(huber, x, y)
    eager_runs.clear()
    step(debug_huber, x, y)
    step(debug_huber, x, y)
    assert eager_runs == [False, True, True]
    assert step.experimental_get_tracing_count() == 2
    assert huber.experimental_get_tracing_count() == 1  # the island runs its python_function


class Scaler(tf.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = tf.Variable(factor)
        self.eager_runs: list[bool] = []

    @eagerctl.debuggable
    def apply(self, x: Any) -> Any:
        self.eager_runs.append(tf.executing_eagerly())
        return x * self.factor


def test_bound_debuggable_method_as_argument_one_trace_per_object() -> None:
    @tf.function
    def run(fn: Any, x: Any) -> Any:
        return fn(x) + 1.0

    a, b = Scaler(2.0), Scaler(3.0)
    x = tf.constant([1.0, 2.0])
    # Every `a.apply` is a fresh bound proxy: the same type, one trace for `a`.
    assert run(a.apply, x).numpy().tolist() == [3.0, 5.0]
    assert run(a.apply, x).numpy().tolist() == [3.0, 5.0]
    assert run(b.apply, x).numpy().tolist() == [4.0, 7.0]
    assert run.experimental_get_tracing_count() == 2
    assert a.eager_runs == [False, True, True]
    assert b.eager_runs == [False, True]


def test_the_trace_type_does_not_keep_the_object_alive() -> None:
    from tensorflow.core.function.trace_type import trace_type_builder

    scaler = Scaler(2.0)
    bound_type = trace_type_builder.from_value(scaler.apply)
    assert bound_type == trace_type_builder.from_value(scaler.apply)
    gone = weakref.ref(scaler)
    del scaler
    gc.collect()
    assert gone() is None
    # Like TF's own Weakref type: a collected object matches nothing, itself included.
    assert not bound_type.__eq__(bound_type)


def test_trace_type_of_the_proxy_differs_from_the_wrapped_function() -> None:
    from tensorflow.core.function.trace_type import trace_type_builder

    def fn(x: Any) -> Any:
        return x

    proxy = eagerctl.debuggable(fn)
    plain_type = trace_type_builder.from_value(fn)
    proxy_type = trace_type_builder.from_value(proxy)
    assert proxy_type != plain_type and plain_type != proxy_type
    assert proxy_type == trace_type_builder.from_value(proxy)
    assert hash(proxy_type) == hash(trace_type_builder.from_value(proxy))
    assert repr(proxy_type) == (
        "DebuggableType[test_trace_type_of_the_proxy_differs_from_the_wrapped_function.<locals>.fn]")


def test_keras_train_step_with_model_optimizer_and_loss_as_arguments() -> None:
    """The article's `train_step(model, opt, loss_fn, x, y)`, compiled, with a Keras model."""
    eager_runs: list[bool] = []

    def loss_fn(y: Any, p: Any) -> Any:
        eager_runs.append(tf.executing_eagerly())
        return tf.reduce_mean(tf.square(y - p))

    def build() -> tuple[Any, Any]:
        tf.keras.utils.set_random_seed(3)
        model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(3, activation="tanh"),
                                     tf.keras.layers.Dense(1)])
        opt = tf.keras.optimizers.SGD(0.05)
        opt.build(model.trainable_variables)  # its variables exist before the step is traced twice
        return model, opt

    @tf.function
    def train_step(model: Any, opt: Any, fn: Any, x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables, strict=True))
        return loss

    model, opt = build()
    ref_model, ref_opt = build()
    debug_loss = eagerctl.debuggable(loss_fn)
    for x, y in batches():
        train_step(ref_model, ref_opt, loss_fn, x, y)  # the plain one first: a compiled graph
    eager_runs.clear()
    for x, y in batches():
        train_step(model, opt, debug_loss, x, y)
    assert eager_runs == [False, True, True, True]
    for got, want in zip(model.get_weights(), ref_model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduce_retracing", [False, True])
def test_debuggable_inside_a_structure_of_arguments(reduce_retracing: bool) -> None:
    eager_runs: list[bool] = []

    def l1(y: Any, p: Any) -> Any:
        eager_runs.append(tf.executing_eagerly())
        return tf.reduce_mean(tf.abs(y - p))

    @tf.function(reduce_retracing=reduce_retracing)
    def total(losses: dict[str, Any], y: Any, p: Any) -> Any:
        return tf.add_n([fn(y, p) for fn in losses.values()])

    y, p = tf.constant([1.0, 2.0]), tf.constant([0.0, 0.0])
    assert float(total({"l1": l1}, y, p)) == 1.5
    assert float(total({"l1": eagerctl.debuggable(l1)}, y, p)) == 1.5
    assert eager_runs == [False, False, True]
    assert total.experimental_get_tracing_count() == 2

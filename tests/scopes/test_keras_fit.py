"""Keras caches its compiled train function; a local scope still makes its layers run eagerly.

Runs on Keras 3 (TF 2.16+) and on Keras 2 (`tf.keras` in TF 2.13-2.15).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

import eagerctl

keras = tf.keras


class Recorder(keras.layers.Layer):  # type: ignore[misc]
    """A Dense-like layer that records, per call of its body, whether it ran eagerly."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eager_calls: list[bool] = []

    def build(self, input_shape: Any) -> None:
        self.w = self.add_weight(name="w", shape=(int(input_shape[-1]), 1), initializer="ones")

    def call(self, x: Any) -> Any:
        self.eager_calls.append(bool(tf.executing_eagerly()))
        return tf.matmul(x, self.w)


def make_model() -> tuple[Any, Recorder]:
    layer = Recorder()
    model = keras.Sequential([keras.Input(shape=(3,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model, layer


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")


def test_fit_after_fit_runs_layers_eagerly_inside_a_local_scope() -> None:
    x, y = data()
    model, layer = make_model()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert True not in layer.eager_calls  # compiled: the body ran only while tracing
    train_function = model.train_function

    # Keras's own switch after the first fit: the cached train function is reused as it is.
    model.run_eagerly = True
    layer.eager_calls.clear()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    keras_switch_worked = True in layer.eager_calls
    model.run_eagerly = False
    assert model.train_function is train_function

    layer.eager_calls.clear()
    weights_before = layer.w.numpy().copy()
    with eagerctl.eager_scope():
        model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert layer.eager_calls == [True] * 4  # every batch of both epochs ran the body eagerly
    assert not np.allclose(weights_before, layer.w.numpy())  # and it trained

    layer.eager_calls.clear()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert True not in layer.eager_calls  # compiled again after the scope
    assert tf.config.functions_run_eagerly() is False
    assert keras_switch_worked is False  # Keras's own switch does nothing after the first fit


def test_eager_and_compiled_fit_train_the_same() -> None:
    x, y = data()
    compiled, _ = make_model()
    eager, _ = make_model()
    eager.set_weights(compiled.get_weights())
    compiled.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False)
    with eagerctl.eager_scope():
        eager.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False)
    for a, b in zip(compiled.get_weights(), eager.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_graph_scope_keeps_fit_compiled_under_the_global_flag() -> None:
    x, y = data()
    model, layer = make_model()
    # Keras 2 decides at its first fit, from the global flag, whether to build a tf.function
    # at all; a graph scope can only keep compiled what Keras compiled. Fit once first.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    tf.config.run_functions_eagerly(True)
    try:
        with eagerctl.graph_scope():
            model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        assert True not in layer.eager_calls
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        assert True in layer.eager_calls  # outside the scope the global flag rules again
    finally:
        tf.config.run_functions_eagerly(False)

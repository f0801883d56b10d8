"""@debuggable in Keras models and layers (Keras 3 on TF 2.21, Keras 2 as tf.keras on TF 2.13)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from helpers import make_probe, mode_of

import eagerctl
from eagerctl import EagerctlWarning

keras = tf.keras
probe, seen = make_probe()


def scale_layer(calls: list[Any], **options: Any) -> type:
    """A fresh layer class whose `call` is decorated (each class warns once by itself)."""
    record = calls.append  # called, not `.append`ed, so AutoGraph leaves the list alone

    class Scale(keras.layers.Layer):  # type: ignore[misc]
        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(name="w", shape=(), initializer="ones")

        @eagerctl.debuggable(**options)
        def call(self, x: Any, training: Any = None) -> Any:
            record((tf.executing_eagerly(), training))
            if tf.executing_eagerly():
                record(mode_of(probe, seen))
            return x * self.w

    return Scale


class Net(keras.Model):  # type: ignore[misc]
    def __init__(self, scale: keras.layers.Layer) -> None:
        super().__init__()
        self.dense = keras.layers.Dense(1, kernel_initializer="ones")
        self.scale = scale
        self.body_modes: list[bool] = []

    def call(self, x: Any, training: Any = None) -> Any:
        return self.scale(self.dense(x), training=training)

    def _step(self, x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((self(x, training=True) - y) ** 2)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        return loss

    @eagerctl.debuggable
    @tf.function
    def debug_step(self, x: Any, y: Any) -> Any:
        self.body_modes.append(tf.executing_eagerly())
        float(tf.reduce_sum(x).numpy())  # .numpy() works: this runs eagerly
        return self._step(x, y)

    @tf.function
    def compiled_step(self, x: Any, y: Any) -> Any:
        return self._step(x, y)


X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
Y = np.array([[1.0], [2.0], [3.0]], np.float32)


def make_net(scale: keras.layers.Layer) -> Net:
    net = Net(scale)
    net.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    net(X[:1])  # build
    return net


def test_layer_call_runs_eagerly_and_makes_nested_tf_functions_eager() -> None:
    calls: list[Any] = []
    layer = scale_layer(calls)()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerctlWarning)  # building (shape inference) must not warn
        out = layer(tf.constant([[2.0]]), training=True)
        layer(tf.constant([[3.0]]))
    assert out.numpy().tolist() == [[2.0]]
    assert calls[-4:] == [(True, True), "eager", (True, None), "eager"]
    assert mode_of(probe, seen) == "graph"


def test_functional_model_construction_does_not_warn() -> None:
    calls: list[Any] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerctlWarning)
        inputs = keras.Input((2,))
        model = keras.Model(inputs, scale_layer(calls, island=False)()(inputs))
        assert model(X).numpy().tolist() == X.tolist()


def test_tf_function_method_of_a_model_runs_eagerly_and_matches_the_compiled_one() -> None:
    debug, compiled = make_net(keras.layers.Rescaling(1.0)), make_net(keras.layers.Rescaling(1.0))
    compiled.set_weights(debug.get_weights())
    debug_losses = [float(debug.debug_step(X, Y)) for _ in range(3)]
    compiled_losses = [float(compiled.compiled_step(X, Y)) for _ in range(3)]
    assert debug_losses == pytest.approx(compiled_losses, rel=1e-5)
    assert debug_losses[2] < debug_losses[0]
    assert debug.body_modes == [True, True, True]
    assert debug.debug_step.experimental_get_tracing_count() == 0
    assert compiled.compiled_step.experimental_get_tracing_count() >= 1  # 2 when the optimizer builds in it
    for a, b in zip(debug.get_weights(), compiled.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_decorated_layer_inside_a_compiled_model_method_is_traced_with_a_warning() -> None:
    calls: list[Any] = []
    net = make_net(scale_layer(calls, island=False)())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = float(net.compiled_step(X, Y))
        float(net.compiled_step(X, Y))
    assert [str(w.message) for w in caught if w.category is EagerctlWarning] == [
        "@debuggable scale_layer.<locals>.Scale.call was called while TensorFlow traces the tf.function "
        "'compiled_step': it cannot run eagerly inside that graph, so its body becomes part of the graph "
        "(print, pdb and .numpy() do not work there, and the debug aids are off). To debug it eagerly, run "
        "'compiled_step' eagerly too: decorate it with @eagerctl.debuggable (above @tf.function), or call "
        "it inside `with eagerctl.eager_scope():`"
    ]
    assert (False, True) in calls
    assert first > 0


def test_layer_call_inside_fit_warns_once_and_trains_like_the_undecorated_layer() -> None:
    calls: list[Any] = []
    debug = make_net(scale_layer(calls, island=False)())
    plain = make_net(scale_layer([], enabled=False)())
    plain.set_weights(debug.get_weights())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = debug.fit(X, Y, epochs=3, batch_size=3, verbose=0, shuffle=False).history["loss"]
        debug.fit(X, Y, epochs=1, batch_size=3, verbose=0, shuffle=False)  # a new train function
    want = plain.fit(X, Y, epochs=3, batch_size=3, verbose=0, shuffle=False).history["loss"]
    mine = [str(w.message) for w in caught if w.category is EagerctlWarning]
    assert len(mine) == 1, mine
    label = "scale_layer.<locals>.Scale.call"
    assert mine[0].startswith(f"@debuggable {label} was called while TensorFlow traces the tf.function '")
    assert mine[0].endswith("or call it inside `with eagerctl.eager_scope():`")
    assert (False, True) in calls  # traced into Keras's train function with training=True
    assert got == pytest.approx(want, rel=1e-5)

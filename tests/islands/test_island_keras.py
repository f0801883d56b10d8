"""Eager islands in Keras programs see what their traced body would have seen.

A `@debuggable` layer `call` inside `fit` (or a compiled step) runs on a TF
executor thread. Keras keeps the training flag, autocast (mixed precision) and
its call context per thread: the island carries them over, and `add_loss` /
Keras 2 `add_metric` reach the graph. Each test runs the same program with
the undecorated body (compiled) from the same seed and compares.

Tolerances: float32 weights and losses, |got - want| < 1e-4 (|want| + 1e-3)
after a few steps (eager and graph kernels may round differently; a bias
before BatchNormalization has a gradient near 0, so values near 0 compare
absolutely); float16 (mixed precision) < 2e-3 (|want| + 1e-3). Keras 2
`Dropout` draws its mask from stateful random ops, which differ eagerly and
in a graph: there the tests check that it drops (the fraction of zeros)
instead of equal weights.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl

keras = tf.keras
KERAS3 = hasattr(keras, "ops")


def max_rel_err(got: list[Any], want: list[Any]) -> float:
    """Largest |got - want| / (|want| + 1e-3) over all values (near-zero values compare absolutely)."""
    assert len(got) == len(want)
    errs = [np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64))
            / (np.abs(np.asarray(w, np.float64)) + 1e-3) for g, w in zip(got, want, strict=True)]
    return max(float(np.max(e)) for e in errs)


def undecorated(layer: Any, cls: type) -> None:
    """Make `layer` run the body of `cls.call` without `@debuggable` (the compiled reference)."""
    layer.call = cls.call.__wrapped__.__get__(layer)


class Block(keras.layers.Layer):  # type: ignore[misc]
    """Dense, BatchNormalization, Dropout; `call` takes no `training`: sublayers get it from Keras."""

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(4)
        self.norm = keras.layers.BatchNormalization()
        self.drop = keras.layers.Dropout(rate, seed=3)
        self.zeros: list[float] = []  # fraction of dropped units, per eager run

    @eagerctl.debuggable
    def call(self, x: Any) -> Any:
        h = self.drop(self.norm(self.dense(x)))
        if tf.executing_eagerly():
            self.zeros.append(float(np.mean(h.numpy() == 0.0)))
        return h


def fit_block(island: bool, rate: float) -> tuple[Block, Any, list[float]]:
    keras.utils.set_random_seed(7)
    block = Block(rate)
    if not island:
        undecorated(block, Block)
    model = keras.Sequential([keras.Input(shape=(3,)), block, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", jit_compile=False)
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    history = model.fit(x, x.sum(axis=1, keepdims=True), batch_size=8, epochs=2, verbose=0, shuffle=False)
    return block, model, history.history["loss"]


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_fit_trains_batchnorm_and_dropout_like_the_compiled_layer(rate: float) -> None:
    block, model, losses = fit_block(True, rate)
    assert len(block.zeros) == 8  # 4 batches x 2 epochs, each run eagerly
    ref_block, ref_model, ref_losses = fit_block(False, rate)
    assert ref_block.zeros == []
    # Training mode reached BatchNormalization: its moving statistics moved.
    assert not np.allclose(block.norm.moving_mean.numpy(), 0.0)
    if rate and not KERAS3:
        # Keras 2 draws dropout masks from stateful random ops: different numbers eagerly.
        assert all(0.3 < z < 0.7 for z in block.zeros), block.zeros
    else:
        if rate:
            assert all(z > 0.2 for z in block.zeros), block.zeros
        assert max_rel_err([losses, *model.weights], [ref_losses, *ref_model.weights]) < 1e-4
    # Inference: the same island, training False: nothing dropped, moving statistics used.
    block.zeros.clear()
    x = np.linspace(-1.0, 1.0, 12, dtype="float32").reshape(4, 3)
    got = model.predict(x, verbose=0)
    assert block.zeros == [0.0]
    if rate == 0.0 or KERAS3:
        assert max_rel_err([got], [ref_model.predict(x, verbose=0)]) < 1e-4


def test_compiled_step_calling_the_model_with_training_true() -> None:
    def run(island: bool) -> tuple[list[Any], list[float]]:
        _, model, _ = fit_block(island, 0.0)  # built and trained a little
        opt = keras.optimizers.SGD(0.05)

        @tf.function
        def step(x: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True)))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        x = tf.constant(np.random.default_rng(1).normal(size=(8, 3)).astype("float32"))
        losses = [float(step(x)) for _ in range(3)]
        return [*model.weights], losses

    got, got_losses = run(True)
    want, want_losses = run(False)
    assert max_rel_err([got_losses, *got], [want_losses, *want]) < 1e-4


class Scaled(keras.layers.Layer):  # type: ignore[misc]
    """Reads its own float32 weight in `call`: under mixed_float16, autocast makes that read float16."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)
        self.dtypes: list[tuple[str, str]] = []

    def build(self, input_shape: Any) -> None:
        self.scale = self.add_weight(name="scale", shape=(int(input_shape[-1]), 3), initializer="ones")

    @eagerctl.debuggable
    def call(self, x: Any) -> Any:
        y = self.dense(tf.matmul(x, self.scale))
        if tf.executing_eagerly():
            self.dtypes.append((x.dtype.name, y.dtype.name))
        return y


def fit_mixed(island: bool) -> tuple[Scaled, Any, list[float]]:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(3)
        layer = Scaled()
        if not island:
            undecorated(layer, Scaled)
        model = keras.Sequential([keras.Input(shape=(3,)), layer,
                                  keras.layers.Dense(1, dtype="float32")])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", jit_compile=False)
        x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
        history = model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0, shuffle=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return layer, model, history.history["loss"]


def test_mixed_float16_policy_and_autocast_reach_the_island() -> None:
    layer, model, losses = fit_mixed(True)
    # The variables are float32; autocast gives the island float16 reads, as in the graph.
    assert layer.dtypes == [("float16", "float16")] * 4
    assert layer.dense.kernel.dtype == layer.scale.dtype == "float32"
    _, ref_model, ref_losses = fit_mixed(False)
    assert max_rel_err([losses, *model.weights], [ref_losses, *ref_model.weights]) < 2e-3


def test_name_scope_is_the_traced_one() -> None:
    seen: list[str] = []

    @eagerctl.debuggable
    def body(x: Any) -> Any:
        seen.append(tf.compat.v1.get_default_graph().get_name_scope() if not tf.executing_eagerly()
                    else tf.get_current_name_scope())
        return x + 1.0

    @tf.function
    def f(x: Any) -> Any:
        with tf.name_scope("outer"), tf.name_scope("inner"):
            return body(x)

    f(tf.constant(1.0))
    f(tf.constant(2.0))
    assert seen == ["outer/inner", "outer/inner", "outer/inner"]


class Penalized(keras.layers.Layer):  # type: ignore[misc]
    """Adds a loss itself and through a sublayer's activity regularizer, in an island."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3, activity_regularizer=keras.regularizers.L2(0.01))

    @eagerctl.debuggable
    def call(self, x: Any) -> Any:
        h = self.dense(x)
        self.add_loss(0.1 * tf.reduce_mean(tf.abs(h)))
        return tf.tanh(h)


def penalized_model(island: bool) -> Any:
    keras.utils.set_random_seed(5)
    layer = Penalized()
    if not island:
        undecorated(layer, Penalized)
    return keras.Sequential([keras.Input(shape=(4,)), layer, keras.layers.Dense(1)])


def data() -> tuple[Any, Any]:
    x = np.random.default_rng(2).normal(size=(24, 4)).astype("float32")
    return x, x[:, :1] - x[:, 1:2]


def test_add_loss_in_fit_reaches_the_reported_loss_and_the_gradients() -> None:
    def run(island: bool) -> tuple[Any, list[float]]:
        model = penalized_model(island)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
        x, y = data()
        return model, model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False).history["loss"]

    model, losses = run(True)
    ref_model, ref_losses = run(False)
    assert max_rel_err([losses, *model.weights], [ref_losses, *ref_model.weights]) < 1e-4


def test_add_loss_in_a_custom_loop_matches_model_losses_of_the_compiled_step() -> None:
    def run(island: bool) -> tuple[list[Any], list[float], list[float]]:
        model = penalized_model(island)
        opt = keras.optimizers.SGD(0.1)
        x, y = data()

        @tf.function
        def step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                extra = tf.add_n(model.losses)
                loss = tf.reduce_mean(tf.square(pred - y)) + extra
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss, extra

        out = [step(tf.constant(x[i:i + 8]), tf.constant(y[i:i + 8])) for i in (0, 8, 16)]
        return [*model.weights], [float(a) for a, _ in out], [float(b) for _, b in out]

    got, losses, extras = run(True)
    want, ref_losses, ref_extras = run(False)
    assert min(extras) > 0.0
    assert max_rel_err([losses, extras, *got], [ref_losses, ref_extras, *want]) < 1e-4


class Flaky(keras.layers.Layer):  # type: ignore[misc]
    @eagerctl.debuggable
    def call(self, x: Any) -> Any:
        if tf.executing_eagerly() and float(tf.reduce_sum(x)) > 0:
            self.add_loss(tf.reduce_sum(x))
        return x


def test_add_loss_on_some_runs_only_is_an_error_naming_the_layer() -> None:
    layer = Flaky(name="flaky")
    f = tf.function(layer.__call__)
    with pytest.raises(tf.errors.UnknownError, match=re.escape(
            "eager island 'Flaky.call' added 1 loss(es) to layer 'flaky' with add_loss in this run, "
            "but 0 in the trace that built the graph: the graph has a place for each loss the trace "
            "added. Call add_loss the same number of times on every call (add a zero loss on the "
            "other path)")):
        f(tf.ones((2, 2)))


@pytest.mark.skipif(KERAS3, reason="add_metric exists only in Keras 2")
def test_keras2_add_metric_in_an_island_reports_like_the_compiled_layer() -> None:
    class Watched(keras.layers.Layer):  # type: ignore[misc]
        @eagerctl.debuggable
        def call(self, x: Any) -> Any:
            self.add_metric(tf.reduce_mean(tf.abs(x)), name="mean_abs")
            return x * 2.0

    def run(island: bool) -> tuple[dict[str, list[float]], list[Any]]:
        keras.utils.set_random_seed(4)
        layer = Watched()
        if not island:
            undecorated(layer, Watched)
        model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(3), layer,
                                  keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
        history = model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0, shuffle=False)
        return history.history, [*model.weights]

    got, weights = run(True)
    want, ref_weights = run(False)
    assert sorted(got) == sorted(want) == ["loss", "mean_abs"]
    assert max_rel_err([got["loss"], got["mean_abs"], *weights],
                       [want["loss"], want["mean_abs"], *ref_weights]) < 1e-4


@pytest.mark.skipif(KERAS3, reason="Keras 3 layers take training as a Python bool")
def test_keras2_training_given_as_a_tensor_reaches_each_run() -> None:
    keras.utils.set_random_seed(1)
    block = Block(0.5)
    model = keras.Sequential([keras.Input(shape=(3,)), block])

    @tf.function
    def run(x: Any, training: Any) -> Any:
        return model(x, training=training)

    x = tf.ones((64, 3))
    run(x, tf.constant(True))
    run(x, tf.constant(False))
    assert block.zeros[0] > 0.3  # training: dropped
    assert block.zeros[1] == 0.0  # inference: nothing dropped
    assert run.experimental_get_tracing_count() == 1

"""replay() under Keras `fit`: one batch turns the loss NaN at step 50; the replay names the layer's line.

Runs on Keras 3 (TF 2.16+) and on Keras 2 (`tf.keras` in TF 2.13-2.15).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl

keras = tf.keras
BATCH = 32
STEPS = 60
BAD_STEP = 50


class LogFeatures(keras.layers.Layer):  # type: ignore[misc]
    """log-features: fine for positive inputs, NaN for the one negative value in batch 50."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eager_calls = 0

    def call(self, x: Any) -> Any:
        self.eager_calls += int(tf.executing_eagerly())
        return tf.math.log(x + 0.5)  # LOG LINE


LOG_LINE = next(i for i, line in enumerate(open(__file__), 1) if line.rstrip().endswith("# LOG LINE"))


def make_model() -> tuple[Any, LogFeatures]:
    keras.utils.set_random_seed(7)
    layer = LogFeatures()
    model = keras.Sequential([keras.Input(shape=(4,)), layer, keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model, layer


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 2.0, (BATCH * STEPS, 4)).astype("float32")
    x[(BAD_STEP - 1) * BATCH + 5, 2] = -3.0  # one sample of batch 50
    y = x.sum(axis=1, keepdims=True)
    return x, y


class StopOnNaN(keras.callbacks.Callback):  # type: ignore[misc]
    """The plain run without eagerctl: stop at the first NaN loss, and record the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.bad_batch: int | None = None

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.bad_batch is None and not np.isfinite(float(logs["loss"])):
            self.bad_batch = batch
            self.model.stop_training = True


def test_fit_replay_names_the_layer_line_and_step_and_leaves_the_failed_runs_weights() -> None:
    x, y = data()
    plain, _ = make_model()
    stop = StopOnNaN()
    plain.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[stop])
    assert stop.bad_batch == BAD_STEP - 1  # the plain run: NaN at step 50, no idea where

    model, layer = make_model()
    with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay():
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    error = info.value
    assert error.step == BAD_STEP
    assert error.filename == __file__
    assert error.lineno == LOG_LINE
    assert error.op_type == "Log"
    assert error.nonfinite_inputs == []  # the log's input was finite (a negative number)
    assert error.site is not None and error.site.function == "LogFeatures.call"
    message = str(error)
    where = f"test_replay_keras_fit.py:{LOG_LINE} in LogFeatures.call"
    assert f"{where}: op Log produced NaN in 1 of 128 values" in message
    assert "return tf.math.log(x + 0.5)" in message
    assert f"at step {BAD_STEP} " in message
    assert layer.eager_calls == 1  # one eager replay of that one step (the rest compiled)

    # Afterwards: what the plain failed run left (the NaN step applied), and no extra step.
    assert int(model.optimizer.iterations.numpy()) == int(plain.optimizer.iterations.numpy()) == BAD_STEP
    for mine, theirs in zip(model.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_evaluate_and_predict_are_replayed_too() -> None:
    x, y = data()
    model, layer = make_model()
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, epochs=1, verbose=0)
    with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay():
        model.evaluate(x, y, batch_size=BATCH, verbose=0)
    assert (info.value.lineno, info.value.step) == (LOG_LINE, BAD_STEP)
    with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay():
        model.predict(x, batch_size=BATCH, verbose=0)
    assert info.value.lineno == LOG_LINE
    assert layer.eager_calls == 2

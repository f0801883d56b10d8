"""A hyperparameter sweep that copies and pickles its config, which holds a `@debuggable` loss.

The shape that exposed it: a training config dict (loss function, learning
rate), deep-copied for each run of a sweep and pickled next to each run's
results, as sweep scripts do. With the loss decorated to debug it, every copy
must still be the debuggable loss (same options) and train exactly as the
undecorated one does.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from program_checks import assert_close, keras

import eagerctl

RAN_EAGERLY: list[bool] = []


@eagerctl.debuggable(check_numerics=True)
def weighted_mse(y: Any, y_pred: Any) -> Any:
    RAN_EAGERLY.append(tf.executing_eagerly())
    weights = tf.linspace(0.5, 1.5, tf.shape(y)[0])[:, None]
    return tf.reduce_mean(weights * tf.square(y - y_pred))


def train(config: dict[str, Any]) -> tuple[list[float], list[Any]]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(config["lr"])
    x = tf.constant(np.linspace(-1, 1, 24, dtype="float32").reshape(8, 3))
    y = tf.reduce_sum(x, axis=1, keepdims=True)

    @tf.function
    def train_step() -> Any:
        with tf.GradientTape() as tape:
            loss = config["loss"](y, model(x))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
        return loss

    return [float(train_step()) for _ in range(3)], model.get_weights()


def test_sweep_configs_copied_and_pickled_keep_the_debuggable_loss(tmp_path: Path) -> None:
    base = {"loss": weighted_mse, "lr": 0.1}
    reference_losses, reference_weights = train({"loss": weighted_mse.__wrapped__, "lr": 0.2})
    for run, lr in enumerate([0.05, 0.2]):
        config = copy.deepcopy(base)
        config["lr"] = lr
        assert config["loss"] is not weighted_mse  # a copy of the proxy, of the same function
        assert config["loss"].__wrapped__ is weighted_mse.__wrapped__
        saved = tmp_path / f"run{run}.pkl"
        saved.write_bytes(pickle.dumps(config))
        for candidate in (config, pickle.loads(saved.read_bytes()), copy.copy(config)):
            loss = candidate["loss"]
            assert loss._self_debuggable.option_values() == {
                "recursive": True, "post_mortem": False, "check_numerics": True, "log_calls": False,
                "island": True}
            RAN_EAGERLY.clear()
            losses, weights = train(candidate)
            # Called from the compiled train_step: an eager island, its body eager on every step.
            assert RAN_EAGERLY.count(True) == 3 and RAN_EAGERLY[-3:] == [True] * 3, RAN_EAGERLY
            if lr == 0.2:
                assert_close(losses, reference_losses, "losses")
                assert_close(weights, reference_weights, "weights")
    assert pickle.loads(pickle.dumps(weighted_mse)) is weighted_mse  # a module-level function: by reference

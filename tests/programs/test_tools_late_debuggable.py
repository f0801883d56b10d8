"""`@debuggable` applied in the middle of a custom training loop, after `train_step` was traced.

The shape that exposed it, in the style of the "Writing a training loop from
scratch" guide: the loop runs an epoch with a compiled `train_step` that calls
the module's `tf.function` loss; the user, puzzled by the losses, decorates
the loss (`loss_fn = eagerctl.debuggable(loss_fn)`) and goes on. The compiled
`train_step` keeps its graph, which holds the old loss: eagerctl warns and
says what to do, and doing it (retracing `train_step`) debugs the loss, with
the same losses as without eagerctl.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from program_checks import assert_close, keras

import eagerctl
from eagerctl import EagerctlWarning

SEEN: list[bool] = []
note = SEEN.append


@tf.function
def loss_fn(y: Any, y_pred: Any) -> Any:
    note(tf.executing_eagerly())
    return tf.reduce_mean(tf.abs(y - y_pred))


def program(debug: bool) -> list[float]:
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.05)
    x = np.linspace(-2, 2, 64, dtype="float32").reshape(16, 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, x[:, :1] * 2)).batch(8)
    loss = loss_fn

    def step_body(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss(yb, model(xb, training=True))
        grads = tape.gradient(value, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
        return value

    train_step = tf.function(step_body)
    losses = [float(train_step(xb, yb)) for xb, yb in dataset]  # epoch 1, compiled
    if debug:
        with pytest.warns(EagerctlWarning) as record:
            loss = eagerctl.debuggable(loss_fn)  # too late for train_step's graph
        assert record[0].filename == __file__
        message = str(record[0].message)
        assert message.startswith(
            "@debuggable loss_fn was applied after the tf.function was traced (1 trace)")
        assert "make the callers retrace (a Keras model: compile it again; a tf.function: " \
               "tf.function(caller.python_function))" in message
        SEEN.clear()
        losses += [float(train_step(xb, yb)) for xb, yb in dataset]  # epoch 2: the old graph
        assert SEEN == []  # the loss did not run eagerly: what the warning said
        train_step = tf.function(train_step.python_function)  # the remedy
        SEEN.clear()
    else:
        losses += [float(train_step(xb, yb)) for xb, yb in dataset]
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerctlWarning)
        losses += [float(train_step(xb, yb)) for xb, yb in dataset]  # epoch 3
    if debug:
        assert SEEN.count(True) == 2 and SEEN[-2:] == [True, True], SEEN  # an island: eager every step
    return losses


def test_late_decoration_warns_and_the_remedy_debugs_the_loss() -> None:
    debugged = program(debug=True)
    reference = program(debug=False)
    assert_close(debugged, reference, "losses")

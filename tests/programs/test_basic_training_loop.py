"""A `tf.Module` model with a compiled `__call__`, trained by an eager loop with a `GradientTape`.

In the style of the TensorFlow guide "Basic training loops": a `tf.Module`
whose `@tf.function __call__` computes the predictions, a loss, and a `train`
function that takes the gradient of the loss (the tape is outside the compiled
call) and assigns the updates; then the trained model evaluated many times.
The suspect a user would decorate: the hidden layer's function, called inside
`__call__`, where it becomes an eager island. Its gradient is taken from
outside the graph, and the same graph then runs for evaluation without any
tape: those runs must keep nothing for a gradient that will never come
(memory stays flat with a 1 MiB activation per call).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorflow as tf
from program_checks import (
    assert_close,
    assert_memory_flat,
    assert_ran_eagerly_every_step,
    maybe_debuggable,
)

EPOCHS = 5
ROWS, WIDTH = 2048, 128  # the hidden activation: 1 MiB of float32


def loss(target_y: Any, predicted_y: Any) -> Any:
    return tf.reduce_mean(tf.square(target_y - predicted_y))


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append

    @maybe_debuggable(debug)
    def hidden_layer(x: Any, w: Any, b: Any) -> Any:
        note(tf.executing_eagerly())
        return tf.nn.relu(tf.matmul(x, w) + b)

    class MyModel(tf.Module):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.w1 = tf.Variable(tf.random.stateless_normal((4, WIDTH), seed=(1, 1)) * 0.5)
            self.b1 = tf.Variable(tf.zeros((WIDTH,)))
            self.w2 = tf.Variable(tf.random.stateless_normal((WIDTH, 1), seed=(2, 2)) * 0.1)
            self.b2 = tf.Variable(0.0)

        @tf.function
        def __call__(self, x: Any) -> Any:
            return tf.matmul(hidden_layer(x, self.w1, self.b1), self.w2) + self.b2

    def train(model: Any, x: Any, y: Any, learning_rate: float) -> Any:
        with tf.GradientTape() as t:
            current_loss = loss(y, model(x))
        variables = [model.w1, model.b1, model.w2, model.b2]
        for v, grad in zip(variables, t.gradient(current_loss, variables), strict=True):
            v.assign_sub(learning_rate * grad)
        return current_loss

    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(ROWS, 4)).astype("float32"))
    y = tf.constant((x.numpy() @ np.array([[3.0], [-1.0], [0.5], [2.0]], np.float32)) + 1.0)
    return SimpleNamespace(model=MyModel(), train=train, x=x, y=y, record=record)


def training_loop(program: SimpleNamespace) -> list[float]:
    return [float(program.train(program.model, program.x, program.y, learning_rate=0.05))
            for _epoch in range(EPOCHS)]


def weights(program: SimpleNamespace) -> list[Any]:
    return [v.numpy() for v in program.model.trainable_variables]


def test_losses_and_weights_match_the_compiled_program() -> None:
    debugged, reference = make_program(True), make_program(False)
    losses, want = training_loop(debugged), training_loop(reference)
    assert_ran_eagerly_every_step(debugged.record, EPOCHS)
    assert True not in reference.record
    assert_close(losses, want, "losses")
    assert_close(weights(debugged), weights(reference), "weights")
    evaluated = loss(debugged.y, debugged.model(debugged.x))
    assert_close(evaluated, loss(reference.y, reference.model(reference.x)), "evaluation loss")


def test_evaluation_after_training_keeps_memory_flat() -> None:
    program = make_program(True)
    training_loop(program)  # the island's gradient has been built and computed
    program.record.clear()
    assert_memory_flat(lambda: loss(program.y, program.model(program.x)), warmup=3, steps=40)
    assert_ran_eagerly_every_step(program.record, 43)


def test_training_keeps_memory_flat() -> None:
    program = make_program(True)
    assert_memory_flat(lambda: program.train(program.model, program.x, program.y, learning_rate=0.01),
                       warmup=3, steps=40)

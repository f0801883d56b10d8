"""A custom training loop over a model with a layer that regularizes its activations via `add_loss`.

In the style of the Keras guides "Making new layers and models via
subclassing" (a layer calling `self.add_loss`; on Keras 2 also
`self.add_metric`) and "Writing a training loop from scratch" (a compiled
`train_step` that adds `sum(model.losses)`). The same model is also trained
with `compile` and `fit`, which add the layer's losses (and on Keras 2 report
its metric) by themselves. The suspect a user would decorate: the
regularizing layer's `call`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorflow as tf
from program_checks import (
    KERAS_3,
    assert_close,
    assert_memory_flat,
    assert_ran_eagerly_every_step,
    keras,
    maybe_debuggable,
)

layers = keras.layers
STEPS = 8  # 2 epochs of 4 batches


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append

    class ActivitySparsity(layers.Layer):  # type: ignore[misc]
        """Adds an L1 penalty on its inputs to the model's losses, and passes them through."""

        def __init__(self, rate: float = 1e-2, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.rate = rate

        @maybe_debuggable(debug)
        def call(self, inputs: Any) -> Any:
            note(tf.executing_eagerly())
            self.add_loss(self.rate * tf.reduce_mean(tf.abs(inputs)))
            if not KERAS_3:  # Keras 3 has no add_metric
                self.add_metric(tf.reduce_mean(inputs), name="mean_activation")
            return inputs

    keras.utils.set_random_seed(1234)
    inputs = keras.Input(shape=(16,))
    x = layers.Dense(32, activation="relu")(inputs)
    x = ActivitySparsity()(x)
    x = layers.Dense(32, activation="relu")(x)
    outputs = layers.Dense(4)(x)
    model = keras.Model(inputs, outputs)

    optimizer = keras.optimizers.Adam(learning_rate=1e-2)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss_value = loss_fn(y, logits)
            loss_value += sum(model.losses)
        grads = tape.gradient(loss_value, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))  # noqa: B905 (as the guide writes it)
        return loss_value

    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(64, 16)).astype("float32")
    y_train = rng.integers(0, 4, size=(64,)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).batch(16)
    record.clear()  # building the functional model calls the layer symbolically
    return SimpleNamespace(model=model, train_step=train_step, dataset=dataset, record=record)


def train(program: SimpleNamespace) -> list[float]:
    losses = []
    for _epoch in range(2):
        for x_batch, y_batch in program.dataset:
            losses.append(float(program.train_step(x_batch, y_batch)))
    return losses


def test_losses_and_weights_match_the_compiled_program() -> None:
    debugged, reference = make_program(True), make_program(False)
    losses, want = train(debugged), train(reference)
    assert_ran_eagerly_every_step(debugged.record, STEPS)
    assert_close(losses, want, "losses")
    assert_close(debugged.model.get_weights(), reference.model.get_weights(), "weights")
    assert True not in reference.record  # the reference body only ran while tracing


def test_memory_stays_flat() -> None:
    program = make_program(True)
    x_batch, y_batch = next(iter(program.dataset))
    assert_memory_flat(lambda: program.train_step(x_batch, y_batch))


def test_fit_reports_the_same_losses_and_metric_as_the_compiled_program() -> None:
    debugged, reference = make_program(True), make_program(False)
    x_train = np.concatenate([x for x, _ in debugged.dataset])
    y_train = np.concatenate([y for _, y in debugged.dataset])
    histories = []
    for program in (debugged, reference):
        program.model.compile(optimizer=keras.optimizers.SGD(0.05),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = program.model.fit(x_train, y_train, batch_size=16, epochs=2, shuffle=False, verbose=0)
        histories.append(history.history)
    got, want = histories
    assert sorted(got) == sorted(want) == (["loss"] if KERAS_3 else ["loss", "mean_activation"])
    assert_ran_eagerly_every_step(debugged.record, STEPS)
    for name in want:
        assert_close(got[name], want[name], name)
    assert_close(debugged.model.get_weights(), reference.model.get_weights(), "weights")

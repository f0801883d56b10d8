"""Mixup (keras.io's "MixUp augmentation for image classification", as a custom `train_step`), bisected.

The mixing weight is drawn with `np.random.beta` two calls below the train
step (train_step > mix_up > sample_lambda): drawn once when the step is
traced, frozen into the graph, and drawn anew at every eager call. bisect on
the first call (which builds Adam's slots) must name `sample_lambda`, and the
program must then train exactly as the same program without eagerctl:
losses, weights, optimizer state and the next random numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from program_checks import assert_close

STEPS = 6


def program(bisect_first_step: bool) -> dict[str, Any]:
    from program_checks import keras

    keras.utils.set_random_seed(42)

    def sample_lambda(alpha: float) -> Any:
        return np.random.beta(alpha, alpha)

    def mix_up(images: Any, labels: Any, alpha: float = 0.2) -> tuple[Any, Any]:
        lam = sample_lambda(alpha)
        # keras.io mixes two shuffled copies of the dataset; mixing each batch with itself rolled is the same.
        mixed_images = lam * images + (1 - lam) * tf.roll(images, 1, axis=0)
        mixed_labels = lam * labels + (1 - lam) * tf.roll(labels, 1, axis=0)
        return mixed_images, mixed_labels

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    optimizer = keras.optimizers.Adam(1e-2)
    loss_fn = keras.losses.CategoricalCrossentropy()
    loss_tracker = keras.metrics.Mean(name="loss")

    @tf.function
    def train_step(images: Any, labels: Any) -> Any:
        images, labels = mix_up(images, labels)
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        loss_tracker.update_state(loss)
        return loss

    rng = np.random.RandomState(0)
    images = rng.uniform(size=(48, 8, 8, 1)).astype("float32")
    labels = np.eye(4, dtype="float32")[rng.randint(0, 4, 48)]
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(48, seed=1).batch(16).repeat()
    batches = iter(dataset)
    report = None
    losses = []
    for step in range(STEPS):
        batch = next(batches)
        if step == 0 and bisect_first_step:
            import eagerctl

            report = eagerctl.bisect(train_step, *batch)
        losses.append(float(train_step(*batch)))
    return {"report": report, "losses": losses, "weights": [w.numpy() for w in model.weights],
            "optimizer": [np.array(v.numpy()) for v in optimizer.variables],
            "tracker": float(loss_tracker.result()),
            "next": (np.random.uniform(), float(tf.random.uniform([])))}


def test_bisect_names_np_random_beta_and_the_program_trains_as_without_eagerctl() -> None:
    plain = program(bisect_first_step=False)
    bisected = program(bisect_first_step=True)
    report = bisected["report"]
    assert report is not None and not report.match
    assert [(c.qualname, c.cause.kind) for c in report.culprits] == [
        ("program.<locals>.sample_lambda", "python-random")]
    assert any("np.random.beta()" in e for e in report.culprits[0].cause.evidence)
    assert_close(bisected["losses"], plain["losses"], "losses")
    for got, want in zip(bisected["weights"], plain["weights"], strict=True):
        assert_close(got, want, "weights")
    for got, want in zip(bisected["optimizer"], plain["optimizer"], strict=True):
        assert_close(got, want, "optimizer state")
    assert bisected["tracker"] == plain["tracker"]
    assert bisected["next"] == plain["next"]

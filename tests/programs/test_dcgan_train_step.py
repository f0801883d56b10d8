"""A DCGAN whose Keras model overrides `train_step`, trained with `fit`.

In the style of the keras.io example "DCGAN to generate face images": a
generator of small images from latent vectors, a convolutional discriminator
with dropout, and a `GAN(keras.Model)` whose `train_step` updates the
discriminator on real and generated images, then the generator. The suspect a
user would decorate: `train_step` itself (Keras runs it inside its compiled
train function, so it becomes an eager island there). Latent vectors come from
a seeded `tf.random.Generator`, which draws the same numbers eagerly and
compiled.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from program_checks import (
    assert_close,
    assert_memory_flat,
    assert_ran_eagerly_every_step,
    keras,
    maybe_debuggable,
)

pytestmark = pytest.mark.usefixtures("same_random_numbers")
layers = keras.layers
LATENT_DIM = 8
BATCHES = 3
EPOCHS = 2


class BatchLosses(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, float]] = []

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen.append((float(logs["d_loss"]), float(logs["g_loss"])))


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append
    keras.utils.set_random_seed(42)
    discriminator = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        layers.Conv2D(16, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(0.2),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(1, activation="sigmoid"),
    ], name="discriminator")
    generator = keras.Sequential([
        keras.Input(shape=(LATENT_DIM,)),
        layers.Dense(2 * 2 * 16),
        layers.Reshape((2, 2, 16)),
        layers.Conv2DTranspose(16, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(1, kernel_size=4, strides=2, padding="same", activation="sigmoid"),
    ], name="generator")

    class GAN(keras.Model):  # type: ignore[misc]
        def __init__(self, discriminator: Any, generator: Any, latent_dim: int) -> None:
            super().__init__()
            self.discriminator = discriminator
            self.generator = generator
            self.latent_dim = latent_dim
            self.noise = tf.random.Generator.from_seed(7)

        def compile(self, d_optimizer: Any, g_optimizer: Any, loss_fn: Any) -> None:
            super().compile()
            self.d_optimizer = d_optimizer
            self.g_optimizer = g_optimizer
            self.loss_fn = loss_fn
            self.d_loss_metric = keras.metrics.Mean(name="d_loss")
            self.g_loss_metric = keras.metrics.Mean(name="g_loss")

        @property
        def metrics(self) -> list[Any]:
            return [self.d_loss_metric, self.g_loss_metric]

        @maybe_debuggable(debug)
        def train_step(self, real_images: Any) -> Any:
            note(tf.executing_eagerly())
            batch_size = tf.shape(real_images)[0]
            latent = self.noise.normal(shape=(batch_size, self.latent_dim))
            generated = self.generator(latent)
            combined = tf.concat([generated, real_images], axis=0)
            labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
            with tf.GradientTape() as tape:
                predictions = self.discriminator(combined, training=True)
                d_loss = self.loss_fn(labels, predictions)
            grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))  # noqa: B905

            latent = self.noise.normal(shape=(batch_size, self.latent_dim))
            misleading = tf.zeros((batch_size, 1))
            with tf.GradientTape() as tape:
                predictions = self.discriminator(self.generator(latent, training=True), training=True)
                g_loss = self.loss_fn(misleading, predictions)
            grads = tape.gradient(g_loss, self.generator.trainable_weights)
            self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))  # noqa: B905

            self.d_loss_metric.update_state(d_loss)
            self.g_loss_metric.update_state(g_loss)
            return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}

    gan = GAN(discriminator, generator, LATENT_DIM)
    gan.compile(
        d_optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        g_optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss_fn=keras.losses.BinaryCrossentropy(),
    )
    images = np.random.default_rng(3).uniform(size=(BATCHES * 8, 8, 8, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(8)
    return SimpleNamespace(gan=gan, dataset=dataset, record=record)


def train(program: SimpleNamespace, epochs: int = EPOCHS) -> list[tuple[float, float]]:
    losses = BatchLosses()
    program.gan.fit(program.dataset, epochs=epochs, shuffle=False, verbose=0, callbacks=[losses])
    return losses.seen


def weights(program: SimpleNamespace) -> list[Any]:
    return [*program.gan.discriminator.get_weights(), *program.gan.generator.get_weights()]


@pytest.fixture(scope="module")
def trained(same_random_numbers: None) -> dict[str, Any]:
    """Both programs trained from the same seed, and what that gave (the debugged one trains on later)."""
    debugged, reference = make_program(True), make_program(False)
    losses, want = train(debugged), train(reference)
    return {"debugged": debugged, "losses": losses, "want": want, "record": list(debugged.record),
            "reference record": list(reference.record), "weights": weights(debugged),
            "want weights": weights(reference)}


def test_losses_and_weights_match_the_compiled_program(trained: dict[str, Any]) -> None:
    assert_ran_eagerly_every_step(trained["record"], BATCHES * EPOCHS)
    assert True not in trained["reference record"]
    assert_close(trained["losses"], trained["want"], "losses")
    assert_close(trained["weights"], trained["want weights"], "weights")


def test_memory_stays_flat(trained: dict[str, Any]) -> None:
    program = trained["debugged"]  # trained already: warmed up
    assert_memory_flat(lambda: train(program, epochs=4), warmup=0, steps=1)  # one fit of 12 steps



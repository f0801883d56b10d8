"""A convolutional variational autoencoder trained by a compiled custom step.

In the style of the TensorFlow tutorial "Convolutional Variational
Autoencoder": a `CVAE(tf.keras.Model)` with a convolutional encoder that
outputs a mean and log-variance, a reparameterized sample, a transposed
convolutional decoder, and a `compute_loss` that estimates the ELBO from
`log_normal_pdf` terms and a sigmoid cross-entropy, called by a
`@tf.function train_step(model, x, optimizer)`. The suspect a user would
decorate: `compute_loss`. The reparameterization noise comes from a seeded
`tf.random.Generator`, the same eagerly and compiled.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorflow as tf
from program_checks import (
    assert_close,
    assert_memory_flat,
    assert_ran_eagerly_every_step,
    keras,
    maybe_debuggable,
)

layers = keras.layers
LATENT_DIM = 2
BATCHES = 3
EPOCHS = 2


class CVAE(keras.Model):  # type: ignore[misc]
    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = keras.Sequential([
            keras.Input(shape=(8, 8, 1)),
            layers.Conv2D(8, kernel_size=3, strides=2, activation="relu"),
            layers.Flatten(),
            layers.Dense(latent_dim + latent_dim),
        ])
        self.decoder = keras.Sequential([
            keras.Input(shape=(latent_dim,)),
            layers.Dense(4 * 4 * 8, activation="relu"),
            layers.Reshape((4, 4, 8)),
            layers.Conv2DTranspose(1, kernel_size=3, strides=2, padding="same"),
        ])
        self.noise = tf.random.Generator.from_seed(9)

    def encode(self, x: Any) -> Any:
        mean, logvar = tf.split(self.encoder(x), num_or_size_splits=2, axis=1)
        return mean, logvar

    def reparameterize(self, mean: Any, logvar: Any) -> Any:
        eps = self.noise.normal(shape=tf.shape(mean))
        return eps * tf.exp(logvar * 0.5) + mean

    def decode(self, z: Any) -> Any:
        return self.decoder(z)


def log_normal_pdf(sample: Any, mean: Any, logvar: Any, raxis: int = 1) -> Any:
    log2pi = math.log(2.0 * math.pi)
    return tf.reduce_sum(-0.5 * ((sample - mean) ** 2.0 * tf.exp(-logvar) + logvar + log2pi), axis=raxis)


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append

    @maybe_debuggable(debug)
    def compute_loss(model: Any, x: Any) -> Any:
        note(tf.executing_eagerly())
        mean, logvar = model.encode(x)
        z = model.reparameterize(mean, logvar)
        x_logit = model.decode(z)
        cross_ent = tf.nn.sigmoid_cross_entropy_with_logits(logits=x_logit, labels=x)
        logpx_z = -tf.reduce_sum(cross_ent, axis=[1, 2, 3])
        logpz = log_normal_pdf(z, 0.0, 0.0)
        logqz_x = log_normal_pdf(z, mean, logvar)
        return -tf.reduce_mean(logpx_z + logpz - logqz_x)

    @tf.function
    def train_step(model: Any, x: Any, optimizer: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = compute_loss(model, x)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # noqa: B905
        return loss

    keras.utils.set_random_seed(31)
    model = CVAE(LATENT_DIM)
    optimizer = keras.optimizers.Adam(1e-3)
    images = np.random.default_rng(6).uniform(size=(BATCHES * 8, 8, 8, 1))
    images = (images > 0.5).astype("float32")  # binarized, as in the tutorial
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(8)
    return SimpleNamespace(model=model, optimizer=optimizer, train_step=train_step, dataset=dataset,
                           record=record)


def train(program: SimpleNamespace, epochs: int = EPOCHS) -> list[float]:
    losses = []
    for _epoch in range(epochs):
        for x in program.dataset:
            losses.append(float(program.train_step(program.model, x, program.optimizer)))
    return losses


def test_losses_and_weights_match_the_compiled_program() -> None:
    debugged, reference = make_program(True), make_program(False)
    losses, want = train(debugged), train(reference)
    assert_ran_eagerly_every_step(debugged.record, BATCHES * EPOCHS)
    assert True not in reference.record
    assert_close(losses, want, "losses")
    assert_close(debugged.model.get_weights(), reference.model.get_weights(), "weights")


def test_memory_stays_flat() -> None:
    program = make_program(True)
    x = next(iter(program.dataset))
    assert_memory_flat(lambda: program.train_step(program.model, x, program.optimizer))

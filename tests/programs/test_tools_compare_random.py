"""`eagerctl.compare` on train steps that draw random numbers: a GAN step and a dropout classifier.

In the style of the Keras examples "DCGAN" (latent vectors drawn with
`tf.random.normal` inside the train step, unseeded) and "customizing what
happens in fit()" (a `Dropout` in the model). Compiled and eager runs of such a
step cannot agree value for value; `compare` must say why (the function is
nondeterministic, and which random ops), and still compare what does not vary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from program_checks import KERAS_3, keras

import eagerctl

layers = keras.layers


def gan() -> tuple[Any, Any, Any]:
    keras.utils.set_random_seed(7)
    generator = keras.Sequential([keras.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(6)])
    discriminator = keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu"), layers.Dense(1)])
    d_optimizer = keras.optimizers.Adam(1e-3)
    g_optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def train_step(real: Any) -> Any:
        batch = tf.shape(real)[0]
        latent = tf.random.normal((batch, 4), name="latent")  # unseeded, stateful: new numbers per call
        fake = generator(latent)
        with tf.GradientTape() as tape:
            logits = discriminator(tf.concat([fake, real], axis=0))
            labels = tf.concat([tf.ones((batch, 1)), tf.zeros((batch, 1))], axis=0)
            d_loss = loss_fn(labels, logits)
        grads = tape.gradient(d_loss, discriminator.trainable_weights)
        d_optimizer.apply_gradients(zip(grads, discriminator.trainable_weights, strict=True))
        with tf.GradientTape() as tape:
            g_loss = loss_fn(tf.zeros((batch, 1)), discriminator(generator(latent)))
        grads = tape.gradient(g_loss, generator.trainable_weights)
        g_optimizer.apply_gradients(zip(grads, generator.trainable_weights, strict=True))
        return {"d_loss": d_loss, "g_loss": g_loss, "batch": batch}

    return train_step, generator, discriminator


def test_gan_step_is_reported_nondeterministic_with_its_random_op() -> None:
    train_step, generator, discriminator = gan()
    real = tf.constant(np.linspace(0, 1, 48, dtype="float32").reshape(8, 6))
    weights = [w.copy() for w in generator.get_weights() + discriminator.get_weights()]

    result = eagerctl.compare(train_step, real, repeat=1)

    assert result.deterministic is False
    assert result.random_ops == ("latent (RandomStandardNormal)",)
    # The losses and every weight the latent vectors reach vary; the batch size does not, and
    # the optimizers' step counters neither: those are compared, and agree.
    assert {"output['d_loss']", "output['g_loss']"} <= set(result.nondeterministic)
    assert "output['batch']" not in result.nondeterministic
    assert result.match is True
    text = str(result)
    assert "nondeterministic: " in text and "random ops in the graph: latent (RandomStandardNormal)" in text
    assert "a seed does not help (each call draws new numbers)" in text
    after = generator.get_weights() + discriminator.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, after, strict=True))  # compare did not train


def test_the_same_step_with_the_latent_vectors_passed_in_matches() -> None:
    """What the report suggests: the random values as an argument make the step comparable."""
    keras.utils.set_random_seed(7)
    generator = keras.Sequential([keras.Input((4,)), layers.Dense(6)])
    optimizer = keras.optimizers.SGD(0.1)

    @tf.function
    def train_step(real: Any, latent: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((generator(latent) - real) ** 2)
        grads = tape.gradient(loss, generator.trainable_weights)
        optimizer.apply_gradients(zip(grads, generator.trainable_weights, strict=True))
        return loss

    latent = tf.random.stateless_normal((8, 4), seed=(1, 2))
    result = eagerctl.compare(train_step, tf.ones((8, 6)), latent, repeat=1)
    assert result.deterministic is True and result.match is True, str(result)


def test_dropout_classifier() -> None:
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5,)), layers.Dense(16, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(2)])
    optimizer = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
        return loss

    x = tf.constant(np.linspace(-1, 1, 40, dtype="float32").reshape(8, 5))
    y = tf.constant([0, 1] * 4)
    result = eagerctl.compare(train_step, x, y, repeat=1)
    if KERAS_3:
        # Keras 3 draws dropout masks from a seed generator, whose state is a variable compare
        # restores: the step is deterministic from a given state, and graph and eager agree.
        assert result.deterministic is True and result.match is True, str(result)
    else:
        # Keras 2's Dropout uses TF's stateful random ops by default.
        assert result.deterministic is False
        assert result.random_ops and all("(RandomUniform)" in op for op in result.random_ops)
        assert "output" in result.nondeterministic

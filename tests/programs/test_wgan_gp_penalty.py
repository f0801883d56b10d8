"""A WGAN with gradient penalty (WGAN-GP), trained with `fit`.

In the style of the keras.io example "WGAN-GP overriding `Model.train_step`":
the critic is updated several times per generator update, with a Wasserstein
loss plus a penalty on the norm of the critic's gradient at images
interpolated between real and generated ones. The suspect a user would
decorate: the gradient-penalty method. It becomes an eager island inside the
compiled train step, and the critic's weights get second-order gradients
through it (the penalty differentiates the critic inside the island). The
interpolation weights and latent vectors come from a seeded
`tf.random.Generator`, the same eagerly and compiled.
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
D_STEPS = 2
BATCHES = 2
EPOCHS = 2


class BatchLosses(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, float]] = []

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen.append((float(logs["d_loss"]), float(logs["g_loss"])))


def critic_loss(real_logits: Any, fake_logits: Any) -> Any:
    return tf.reduce_mean(fake_logits) - tf.reduce_mean(real_logits)


def generator_loss(fake_logits: Any) -> Any:
    return -tf.reduce_mean(fake_logits)


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append
    keras.utils.set_random_seed(11)
    critic = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        layers.Conv2D(8, kernel_size=3, strides=2, padding="same"),
        layers.LeakyReLU(0.2),
        layers.Flatten(),
        layers.Dense(1),
    ], name="critic")
    generator = keras.Sequential([
        keras.Input(shape=(LATENT_DIM,)),
        layers.Dense(4 * 4 * 8),
        layers.Reshape((4, 4, 8)),
        layers.Conv2DTranspose(1, kernel_size=3, strides=2, padding="same", activation="tanh"),
    ], name="generator")

    class WGAN(keras.Model):  # type: ignore[misc]
        def __init__(self, critic: Any, generator: Any, gp_weight: float = 10.0) -> None:
            super().__init__()
            self.critic = critic
            self.generator = generator
            self.gp_weight = gp_weight
            self.noise = tf.random.Generator.from_seed(5)

        def compile(self, d_optimizer: Any, g_optimizer: Any) -> None:
            super().compile()
            self.d_optimizer = d_optimizer
            self.g_optimizer = g_optimizer

        @maybe_debuggable(debug)
        def gradient_penalty(self, real_images: Any, fake_images: Any) -> Any:
            """Mean squared distance of the critic's gradient norm from 1, between real and fake."""
            note(tf.executing_eagerly())
            alpha = self.noise.uniform(shape=(tf.shape(real_images)[0], 1, 1, 1))
            interpolated = real_images + alpha * (fake_images - real_images)
            with tf.GradientTape() as gp_tape:
                gp_tape.watch(interpolated)
                prediction = self.critic(interpolated, training=True)
            grads = gp_tape.gradient(prediction, [interpolated])[0]
            norm = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]))
            return tf.reduce_mean((norm - 1.0) ** 2)

        def train_step(self, real_images: Any) -> Any:
            batch_size = tf.shape(real_images)[0]
            for _ in range(D_STEPS):
                latent = self.noise.normal(shape=(batch_size, LATENT_DIM))
                with tf.GradientTape() as tape:
                    fake_images = self.generator(latent, training=True)
                    fake_logits = self.critic(fake_images, training=True)
                    real_logits = self.critic(real_images, training=True)
                    d_cost = critic_loss(real_logits, fake_logits)
                    d_loss = d_cost + self.gp_weight * self.gradient_penalty(real_images, fake_images)
                d_gradient = tape.gradient(d_loss, self.critic.trainable_variables)
                self.d_optimizer.apply_gradients(zip(d_gradient, self.critic.trainable_variables))  # noqa: B905

            latent = self.noise.normal(shape=(batch_size, LATENT_DIM))
            with tf.GradientTape() as tape:
                g_loss = generator_loss(self.critic(self.generator(latent, training=True), training=True))
            g_gradient = tape.gradient(g_loss, self.generator.trainable_variables)
            self.g_optimizer.apply_gradients(zip(g_gradient, self.generator.trainable_variables))  # noqa: B905
            return {"d_loss": d_loss, "g_loss": g_loss}

    wgan = WGAN(critic, generator)
    wgan.compile(
        d_optimizer=keras.optimizers.Adam(learning_rate=2e-4, beta_1=0.5, beta_2=0.9),
        g_optimizer=keras.optimizers.Adam(learning_rate=2e-4, beta_1=0.5, beta_2=0.9),
    )
    images = np.random.default_rng(4).uniform(-1, 1, size=(BATCHES * 8, 8, 8, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(8)
    return SimpleNamespace(wgan=wgan, dataset=dataset, record=record)


def train(program: SimpleNamespace, epochs: int = EPOCHS) -> list[tuple[float, float]]:
    losses = BatchLosses()
    program.wgan.fit(program.dataset, epochs=epochs, shuffle=False, verbose=0, callbacks=[losses])
    return losses.seen


def weights(program: SimpleNamespace) -> list[Any]:
    return [*program.wgan.critic.get_weights(), *program.wgan.generator.get_weights()]


@pytest.fixture(scope="module")
def trained(same_random_numbers: None) -> dict[str, Any]:
    """Both programs trained from the same seed, and what that gave (the debugged one trains on later)."""
    debugged, reference = make_program(True), make_program(False)
    losses, want = train(debugged), train(reference)
    return {"debugged": debugged, "losses": losses, "want": want, "record": list(debugged.record),
            "reference record": list(reference.record), "weights": weights(debugged),
            "want weights": weights(reference)}


def test_losses_and_weights_match_the_compiled_program(trained: dict[str, Any]) -> None:
    # The Python loop over critic steps is unrolled in the graph: one island per critic step.
    assert_ran_eagerly_every_step(trained["record"], BATCHES * EPOCHS, per_step=D_STEPS)
    assert True not in trained["reference record"]
    assert_close(trained["losses"], trained["want"], "losses")
    assert_close(trained["weights"], trained["want weights"], "weights")


def test_memory_stays_flat(trained: dict[str, Any]) -> None:
    program = trained["debugged"]  # trained already: warmed up
    assert_memory_flat(lambda: train(program, epochs=5), warmup=0, steps=1)  # one fit of 10 steps

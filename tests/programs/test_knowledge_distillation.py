"""Knowledge distillation: a student learns from a teacher, in a `Distiller` model's `train_step`.

In the style of the keras.io example "Knowledge Distillation": a convolutional
teacher trained first with `fit`, a smaller student, and a
`Distiller(keras.Model)` whose `compile` takes the optimizer, metrics, a
student loss, a distillation loss, `alpha` and `temperature`, and whose
`train_step` runs the frozen teacher, the student under a tape, and combines
the student loss with the distillation loss (KL divergence between the
temperature-softened outputs, scaled by the temperature squared). `fit` then
trains the student; `evaluate` runs the `test_step`. The suspect a user would
decorate: the distillation loss, a method of the `Distiller` called inside the
compiled `train_step` under the tape: an eager island whose gradient reaches
the student (and not the frozen teacher).
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
BATCHES = 3
EPOCHS = 2


class BatchLosses(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, float]] = []

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen.append((float(logs["student_loss"]), float(logs["distillation_loss"])))


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append

    class Distiller(keras.Model):  # type: ignore[misc]
        def __init__(self, student: Any, teacher: Any) -> None:
            super().__init__()
            self.teacher = teacher
            self.student = student

        def compile(self, optimizer: Any, metrics: Any, student_loss_fn: Any,  # noqa: PLR0917 (as the example)
                    distillation_loss_fn: Any,
                    alpha: float = 0.1, temperature: float = 3.0) -> None:
            super().compile(optimizer=optimizer, metrics=metrics)
            self.student_loss_fn = student_loss_fn
            self.distillation_loss_fn = distillation_loss_fn
            self.alpha = alpha
            self.temperature = temperature
            self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
            self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")

        @property
        def metrics(self) -> list[Any]:
            return [self.student_loss_tracker, self.distillation_loss_tracker]

        @maybe_debuggable(debug)
        def distillation_loss(self, teacher_predictions: Any, student_predictions: Any) -> Any:
            note(tf.executing_eagerly())
            soft_teacher = tf.nn.softmax(teacher_predictions / self.temperature, axis=1)
            soft_student = tf.nn.softmax(student_predictions / self.temperature, axis=1)
            return self.distillation_loss_fn(soft_teacher, soft_student) * self.temperature**2

        def train_step(self, data: Any) -> Any:
            x, y = data
            teacher_predictions = self.teacher(x, training=False)
            with tf.GradientTape() as tape:
                student_predictions = self.student(x, training=True)
                student_loss = self.student_loss_fn(y, student_predictions)
                distillation_loss = self.distillation_loss(teacher_predictions, student_predictions)
                loss = self.alpha * student_loss + (1 - self.alpha) * distillation_loss
            trainable_vars = self.student.trainable_variables
            gradients = tape.gradient(loss, trainable_vars)
            self.optimizer.apply_gradients(zip(gradients, trainable_vars))  # noqa: B905
            self.student_loss_tracker.update_state(student_loss)
            self.distillation_loss_tracker.update_state(distillation_loss)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data: Any) -> Any:
            x, y = data
            self.student_loss_tracker.update_state(self.student_loss_fn(y, self.student(x, training=False)))
            return {"student_loss": self.student_loss_tracker.result()}

    keras.utils.set_random_seed(31)
    teacher = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        layers.Conv2D(16, (3, 3), strides=(2, 2), padding="same"),
        layers.LeakyReLU(0.2),
        layers.Conv2D(32, (3, 3), strides=(2, 2), padding="same"),
        layers.Flatten(),
        layers.Dense(4),
    ], name="teacher")
    student = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        layers.Conv2D(4, (3, 3), strides=(2, 2), padding="same"),
        layers.LeakyReLU(0.2),
        layers.Flatten(),
        layers.Dense(4),
    ], name="student")

    rng = np.random.default_rng(12)
    x_train = rng.uniform(size=(BATCHES * 8, 8, 8, 1)).astype("float32")
    y_train = (x_train[:, :4, :4, 0].mean(axis=(1, 2)) * 8).astype("int64") % 4  # learnable labels
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x_train, y_train, batch_size=8, epochs=2, shuffle=False, verbose=0)

    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1,
        temperature=10,
    )
    return SimpleNamespace(distiller=distiller, teacher=teacher, student=student, x=x_train, y=y_train,
                           record=record)


def train(program: SimpleNamespace, epochs: int = EPOCHS) -> list[tuple[float, float]]:
    losses = BatchLosses()
    program.distiller.fit(program.x, program.y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                          callbacks=[losses])
    return losses.seen


@pytest.fixture(scope="module")
def trained(same_random_numbers: None) -> dict[str, Any]:
    """Both programs trained from the same seed, and what that gave (the debugged one trains on later)."""
    debugged, reference = make_program(True), make_program(False)
    teacher_before = debugged.teacher.get_weights()
    facts: dict[str, Any] = {"debugged": debugged, "losses": train(debugged), "want": train(reference)}
    facts.update({"record": list(debugged.record), "reference record": list(reference.record),
                  "weights": debugged.student.get_weights(), "want weights": reference.student.get_weights(),
                  "teacher before": teacher_before, "teacher after": debugged.teacher.get_weights()})
    facts["evaluated"] = debugged.distiller.evaluate(debugged.x, debugged.y, batch_size=8, verbose=0)
    facts["want evaluated"] = reference.distiller.evaluate(reference.x, reference.y, batch_size=8, verbose=0)
    return facts


def test_losses_and_student_weights_match_the_compiled_program(trained: dict[str, Any]) -> None:
    assert_ran_eagerly_every_step(trained["record"], BATCHES * EPOCHS)
    assert True not in trained["reference record"]
    assert_close(trained["losses"], trained["want"], "losses")
    assert_close(trained["weights"], trained["want weights"], "student weights")
    assert_close(trained["evaluated"], trained["want evaluated"], "evaluation")


def test_the_frozen_teacher_is_untouched(trained: dict[str, Any]) -> None:
    for before, after in zip(trained["teacher before"], trained["teacher after"], strict=True):
        np.testing.assert_array_equal(before, after)


def test_memory_stays_flat(trained: dict[str, Any]) -> None:
    program = trained["debugged"]  # trained already: warmed up
    assert_memory_flat(lambda: train(program, epochs=4), warmup=0, steps=1)  # one fit of 12 steps

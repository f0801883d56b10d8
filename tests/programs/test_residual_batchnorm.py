"""A small residual image classifier with batch normalization, trained with `fit`, also in mixed precision.

In the style of the keras.io example "Image classification from scratch"
(residual blocks of convolutions, batch normalization and activations, added
to a projected shortcut; here the residual branch is scaled by a learned
per-channel weight, as ConvNeXt's "layer scale" does) and of the TensorFlow "Mixed precision" guide (the
same model under the `mixed_bfloat16` dtype policy, float32 outputs). The
suspect a user would decorate: the residual block's `call`. Keras runs it
inside its compiled train function, so it becomes an eager island that must
see what the compiled block sees: the training flag from Keras's call
context (its batch normalization uses batch statistics and updates its moving
mean and variance while `fit` trains, not while `evaluate` runs), and under
mixed precision the autocast scope that makes its layers compute in bfloat16
with float32 variables (its own layer-scale weight is read as bfloat16 only
inside that scope).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from program_checks import (
    ATOL,
    RTOL,
    assert_close,
    assert_memory_flat,
    assert_ran_eagerly_every_step,
    keras,
    maybe_debuggable,
)

layers = keras.layers
BATCHES = 3
# bfloat16 keeps 8 significant bits (relative step 2**-8 = 0.4%): the compiled program (Grappler's
# rewrites) and the same program run eagerly without eagerctl already differ by about 0.05% in
# the losses here, and 2 epochs of SGD updates carry a little of that into the weights (up to
# 1e-3 absolute, on weights of about 0.1 to 1). A lost training flag or autocast scope changes
# the losses by percents, or fails.
BFLOAT16_RTOL = 5e-3
BFLOAT16_ATOL = 2e-3
EPOCHS = 2


def _eager_fused_batch_norm_takes_bfloat16() -> bool:
    """Whether this TF build's eager CPU kernel of FusedBatchNormV3 takes bfloat16.

    The island runs the block eagerly, as the same layer does outside any graph.
    TF 2.13's CPU kernel refuses bfloat16 on CPUs without oneDNN's bfloat16 path
    (AVX2-only machines), eagerctl or not; a graph rewrites the op and runs.
    """
    x = tf.zeros([1, 1, 1, 2], tf.bfloat16)
    try:
        tf.compat.v1.nn.fused_batch_norm(x, tf.ones([2]), tf.zeros([2]), is_training=True)
    except tf.errors.InvalidArgumentError as exc:
        if "does not support bfloat16" in str(exc):
            return False
        raise
    return True


@pytest.fixture(params=["float32", "mixed_bfloat16"])
def policy(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "mixed_bfloat16" and not _eager_fused_batch_norm_takes_bfloat16():
        pytest.skip(f"TF {tf.__version__} cannot run FusedBatchNormV3 on bfloat16 eagerly on this CPU, "
                    "with or without eagerctl")
    mixed_precision = keras.mixed_precision
    before = mixed_precision.global_policy()
    mixed_precision.set_global_policy(request.param)
    try:
        yield str(request.param)
    finally:
        mixed_precision.set_global_policy(before)


class BatchLosses(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen.append(float(logs["loss"]))


def make_program(debug: bool) -> SimpleNamespace:
    record: list[tuple[bool, str]] = []
    note = record.append

    class ResidualBlock(layers.Layer):  # type: ignore[misc]
        def __init__(self, filters: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.conv1 = layers.Conv2D(filters, 3, padding="same", use_bias=False)  # BN follows
            self.bn1 = layers.BatchNormalization()
            self.conv2 = layers.Conv2D(filters, 3, padding="same", use_bias=False)
            self.bn2 = layers.BatchNormalization()
            self.project = layers.Conv2D(filters, 1, padding="same")
            self.add = layers.Add()
            self.filters = filters

        def build(self, input_shape: Any) -> None:
            self.gamma = self.add_weight(name="gamma", shape=(self.filters,),
                                         initializer=keras.initializers.Constant(0.5))

        @maybe_debuggable(debug)
        def call(self, inputs: Any) -> Any:
            x = self.conv1(inputs)
            x = self.bn1(x)
            x = tf.nn.relu(x)
            x = self.conv2(x)
            x = self.bn2(x) * self.gamma  # float32 weight: autocast to the compute dtype
            note((tf.executing_eagerly(), x.dtype.name))
            return tf.nn.relu(self.add([x, self.project(inputs)]))

    keras.utils.set_random_seed(51)
    inputs = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = ResidualBlock(8)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    # SGD, whose updates scale with the gradients (bfloat16 rounding stays small in the weights;
    # Adam would turn it into steps of its full learning rate).
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")

    rng = np.random.default_rng(12)
    x_train = rng.normal(size=(BATCHES * 8, 8, 8, 3)).astype("float32")
    y_train = rng.integers(0, 3, size=(BATCHES * 8,)).astype("int32")
    record.clear()  # building the functional model calls the block symbolically
    return SimpleNamespace(model=model, x=x_train, y=y_train, record=record)


def train(program: SimpleNamespace, epochs: int = EPOCHS) -> list[float]:
    losses = BatchLosses()
    program.model.fit(program.x, program.y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                      callbacks=[losses])
    return losses.seen


def test_losses_weights_and_moving_statistics_match_the_compiled_program(policy: str) -> None:
    debugged, reference = make_program(True), make_program(False)
    losses, want = train(debugged), train(reference)
    tolerance = (BFLOAT16_RTOL, BFLOAT16_ATOL) if policy == "mixed_bfloat16" else (RTOL, ATOL)
    assert_ran_eagerly_every_step([eager for eager, _ in debugged.record], BATCHES * EPOCHS)
    # The block computes in the policy's compute dtype, as the compiled block does.
    compute_dtype = "bfloat16" if policy == "mixed_bfloat16" else "float32"
    assert {dtype for _, dtype in debugged.record} == {compute_dtype}
    assert {dtype for _, dtype in reference.record} == {compute_dtype}
    assert_close(losses, want, "losses", *tolerance)
    # get_weights() includes the batch normalizations' moving means and variances.
    assert_close(debugged.model.get_weights(), reference.model.get_weights(), "weights", *tolerance)
    evaluated = debugged.model.evaluate(debugged.x, debugged.y, batch_size=8, verbose=0)
    assert_close(evaluated, reference.model.evaluate(reference.x, reference.y, batch_size=8, verbose=0),
                 "evaluation loss", *tolerance)


def test_memory_stays_flat() -> None:
    program = make_program(True)
    train(program, epochs=1)  # warm-up
    assert_memory_flat(lambda: train(program, epochs=4), warmup=0, steps=1)  # one fit of 12 steps

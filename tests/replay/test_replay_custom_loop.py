"""replay() on a custom training loop: an assert deep in a helper, a NaN only in a gradient."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(open(__file__), 1) if line.rstrip().endswith(marker))


def check_scale(scale: Any) -> Any:
    tf.debugging.assert_non_negative(scale, message="scale went negative")  # ASSERT LINE
    return scale


def normalise(x: Any, scale: Any) -> Any:
    return x / (check_scale(scale) + 1.0)


def make_loop() -> tuple[Any, tf.Variable, tf.Variable]:
    w = tf.Variable([[1.0], [2.0]], name="w")
    scale = tf.Variable([1.0, 1.0], name="scale")
    opt = tf.keras.optimizers.SGD(0.1)

    @tf.function
    def train_step(x: Any, y: Any, shift: Any) -> Any:
        scale.assign_sub(shift)
        with tf.GradientTape() as tape:
            pred = tf.matmul(normalise(x, scale), w)
            loss = tf.reduce_mean((pred - y) ** 2)
        opt.apply_gradients([(tape.gradient(loss, w), w)])
        return loss

    return train_step, w, scale


def batches() -> list[tuple[Any, Any, Any]]:
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    y = tf.constant([[1.0], [2.0]])
    return [(x, y, tf.constant([0.5, 0.25]))] * 4  # scale[0]: 0.5, 0.0, -0.5 (step 3)


def test_assert_in_a_helper_is_named_with_its_values() -> None:
    step, w, scale = make_loop()
    with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay():
        for batch in batches():
            step(*batch)
    error = info.value
    assert (error.filename, error.lineno, error.step) == (__file__, line_of("# ASSERT LINE"), 3)
    assert error.site is not None and error.site.function == "check_scale"
    assert isinstance(error.__cause__, tf.errors.InvalidArgumentError)  # the compiled call's own error
    message = str(error)
    assert "the compiled call raised InvalidArgumentError" in message
    where = f"test_replay_custom_loop.py:{line_of('# ASSERT LINE')} in check_scale"
    assert f"{where}: raised InvalidArgumentError" in message
    assert "scale went negative" in message
    assert "x (shape=(2,) dtype=float32) = " in message  # the values, from the eager assert
    assert "['-0.5', '0.25']" in message
    # Afterwards: the state the failed compiled call left (its assign ran, the update did not).
    np.testing.assert_array_equal(scale.numpy(), [-0.5, 0.25])
    plain_step, plain_w, plain_scale = make_loop()
    with pytest.raises(tf.errors.InvalidArgumentError):
        for batch in batches():
            plain_step(*batch)
    np.testing.assert_array_equal(w.numpy(), plain_w.numpy())
    np.testing.assert_array_equal(scale.numpy(), plain_scale.numpy())


def make_sqrt_model() -> tuple[Any, tf.Variable]:
    w = tf.Variable([1.0, 0.5], name="w")
    opt = tf.keras.optimizers.SGD(0.1)

    @tf.function
    def train_step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            dist = tf.sqrt(tf.reduce_sum(tf.square(w * x)))  # SQRT LINE
            loss = dist
        opt.apply_gradients([(tape.gradient(loss, w), w)])
        return loss

    return train_step, w


def test_nan_only_in_a_gradient_is_found_when_the_variables_are_checked() -> None:
    zeros = tf.constant([0.0, 0.0])  # sqrt(0) is finite, its gradient 0 * inf is NaN
    ones = tf.constant([1.0, 1.0])

    step, w = make_sqrt_model()
    with eagerctl.replay():  # outputs only: the loss is finite, nothing is reported
        assert np.isfinite(step(ones).numpy())
        assert float(step(zeros).numpy()) == 0.0
    assert np.isnan(w.numpy()).all()

    step, w = make_sqrt_model()
    with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay(check_variables=True):
        step(ones)
        step(zeros)
    error = info.value
    assert error.step == 2
    assert "left non-finite values in the variables it wrote" in str(error)
    assert error.site is not None and error.site.gradient_of is not None
    assert error.site.gradient_of.op_type == "Sqrt"
    assert error.site.gradient_of.lineno == line_of("# SQRT LINE")
    assert "in the gradient of op Sqrt at " in str(error)
    assert np.isnan(w.numpy()).all()  # as the failed compiled call left it


class Trainer(tf.Module):  # type: ignore[misc]
    """A tf.function method, as in TF's custom-training tutorials."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(3.0)

    @tf.function
    def train_step(self, x: Any) -> Any:
        self.w.assign_add(-1.0)
        return tf.math.log(self.w * x)  # METHOD LINE


def test_a_traced_method_is_named_at_its_own_line() -> None:
    # Once traced, TF runs a method's AutoGraph-converted body even eagerly: the report maps it back.
    trainer = Trainer()
    with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay():
        for _ in range(4):
            trainer.train_step(tf.constant(2.0))
    error = info.value
    assert (error.filename, error.lineno, error.step) == (__file__, line_of("# METHOD LINE"), 3)
    assert error.site is not None and error.site.source == "return tf.math.log(self.w * x)  # METHOD LINE"
    assert "op Log produced Inf (float32 ())" in str(error)
    assert float(trainer.w.numpy()) == 0.0

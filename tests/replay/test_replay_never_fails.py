"""A step that never fails: replay() changes nothing it computes, and patches nothing outside its block."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager.polymorphic_function import polymorphic_function

import eagerctl
from eagerctl._replay import scope as replay_scope

TF_CALL = polymorphic_function.Function.__dict__["__call__"]


def train(use_replay: bool) -> tuple[list[float], list[np.ndarray], list[bool], int]:
    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential([tf.keras.Input((5,)), tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dropout(0.3), tf.keras.layers.Dense(1)])
    opt = tf.keras.optimizers.Adam(0.01)
    gen = tf.random.Generator.from_seed(1)
    modes: list[bool] = []

    @tf.function
    def step(x: Any, y: Any) -> Any:
        modes.append(tf.executing_eagerly())
        noise = gen.normal(tf.shape(x)) * 0.01
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x + noise, training=True) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    losses = []
    block = eagerctl.replay() if use_replay else None
    if block is not None:
        block.__enter__()
    try:
        for i in range(0, 64, 8):
            losses.append(float(step(x[i:i + 8], y[i:i + 8])))
    finally:
        if block is not None:
            block.__exit__(None, None, None)
    return losses, [v.numpy() for v in model.weights], modes, step.experimental_get_tracing_count()


def test_results_are_those_of_the_same_program_without_replay() -> None:
    plain = train(False)
    replayed = train(True)
    assert replayed[0] == plain[0]  # losses, bit for bit
    for mine, theirs in zip(replayed[1], plain[1], strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert replayed[2] == plain[2]  # the body ran only to trace (twice: it creates the optimizer's slots)
    assert not any(replayed[2])  # never eagerly
    assert replayed[3] == plain[3]


def test_nothing_is_patched_outside_a_replay_block() -> None:
    assert polymorphic_function.Function.__dict__["__call__"] is TF_CALL
    with eagerctl.replay():
        assert polymorphic_function.Function.__dict__["__call__"] is not TF_CALL
        with eagerctl.replay(check_variables=True):
            assert replay_scope.active_count() == 2
        assert replay_scope.active_count() == 1
    assert polymorphic_function.Function.__dict__["__call__"] is TF_CALL
    with pytest.raises(KeyboardInterrupt), eagerctl.replay():
        raise KeyboardInterrupt
    assert polymorphic_function.Function.__dict__["__call__"] is TF_CALL
    assert replay_scope.active_count() == 0


def test_other_threads_and_the_decorator() -> None:
    @tf.function
    def bad(x: Any) -> Any:
        return tf.math.log(x)

    results: list[float] = []

    def other() -> None:  # no replay in this thread: TF's behaviour, a NaN returned
        results.append(float(bad(tf.constant(-1.0))))

    @eagerctl.replay()
    def guarded() -> None:
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        bad(tf.constant(-1.0))

    with pytest.raises(eagerctl.ReplayError, match="op Log produced NaN"):
        guarded()
    assert np.isnan(results).all() and len(results) == 1
    assert replay_scope.active_count() == 0


def test_bad_options_and_misuse() -> None:
    message = r"eagerctl.replay\(post_mortem=1\): post_mortem must be True or False"
    with pytest.raises(TypeError, match=message):
        eagerctl.replay(post_mortem=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot decorate 3"):
        eagerctl.replay()(3)
    block = eagerctl.replay()
    with block, pytest.raises(eagerctl.EagerctlError, match="is already active"):
        block.__enter__()
    with pytest.raises(eagerctl.EagerctlError, match="it is not active"):
        block.__exit__(None, None, None)
    assert replay_scope.active_count() == 0

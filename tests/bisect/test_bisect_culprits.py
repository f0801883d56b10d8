"""bisect names the right culprit: on a first call, for ops whose kernels keep state, for what `fit` runs.

Programs in the style of the Keras examples (mixup, candidate sampling,
a training flag flipped after `fit`), each with the culprit buried a few calls deep.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl

try:  # Keras 3 where installed (TF 2.16+), else tf.keras (Keras 2)
    import keras

    if not hasattr(keras, "ops"):
        raise ImportError
except ImportError:  # pragma: no cover - TF 2.13
    keras = tf.keras


def bound(report: eagerctl.Bisection, k: int = 1) -> float:
    return 2 * k * math.log2(max(2, len(report.candidates))) + 2


# -- mixup: np.random.beta two calls deep, on a first call that builds Adam's slots --------------


def sample_lambda(alpha: float) -> Any:
    return np.random.beta(alpha, alpha)


def mix_up(x: Any, y: Any, alpha: float = 0.2) -> tuple[Any, Any]:
    lam = sample_lambda(alpha)  # mixed with the next example of the batch (the batch is shuffled already)
    return lam * x + (1 - lam) * tf.roll(x, 1, axis=0), lam * y + (1 - lam) * tf.roll(y, 1, axis=0)


def test_mixup_on_a_first_call_that_builds_optimizer_slots_names_np_random_beta() -> None:
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    optimizer = keras.optimizers.Adam(1e-2)
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(x: Any, y: Any) -> Any:
        x, y = mix_up(x, y)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    rng = np.random.RandomState(0)
    x = tf.constant(rng.normal(size=(32, 8)).astype("float32"))
    y = tf.constant(np.eye(3, dtype="float32")[rng.randint(0, 3, 32)])
    report = eagerctl.bisect(train_step, x, y)
    assert [(c.qualname, c.cause.kind) for c in report.culprits] == [("sample_lambda", "python-random")]
    assert report.culprits[0].path[-2:] == ("mix_up", "sample_lambda")
    assert any("np.random.beta()" in e for e in report.culprits[0].cause.evidence)
    assert report.runs <= bound(report)


# -- ops whose kernels keep their own state, found from TensorFlow's op registry -------------------


def sampled_logits(labels: Any) -> Any:
    sampled, _, _ = tf.random.log_uniform_candidate_sampler(
        true_classes=labels, num_true=1, num_sampled=4, unique=True, range_max=50)
    return tf.cast(sampled, tf.float32)


def stamp(x: Any) -> Any:
    return x + tf.cast(tf.timestamp() % 1.0, tf.float32)


def scale(x: Any) -> Any:
    return x * 2.0


@pytest.mark.parametrize(("culprit", "op", "data"), [
    (sampled_logits, "LogUniformCandidateSampler", [[1], [7]]), (stamp, "Timestamp", [[0.5], [2.0]])])
def test_an_op_with_hidden_state_outside_any_list_is_named_with_the_op(culprit: Any, op: str,
                                                                       data: Any) -> None:
    labels = tf.constant(data, tf.int64 if culprit is sampled_logits else tf.float32)

    def head(x: Any) -> Any:
        return scale(tf.reduce_sum(culprit(x)))

    @tf.function
    def step(x: Any) -> Any:
        return head(x) + scale(1.0)

    report = eagerctl.bisect(step, labels)
    assert [(c.qualname, c.cause.kind) for c in report.culprits] == [(culprit.__name__, "stateful-random")]
    assert any(op in e for e in report.culprits[0].cause.evidence)
    assert not any("tracing it again" in s for s in report.steps)
    assert report.runs <= bound(report)
    comparison = eagerctl.compare(step, labels, repeat=1)
    assert any(f"({op})" in r for r in comparison.random_ops)


# -- what fit runs -------------------------------------------------------------------------------


class Augment(keras.layers.Layer):
    """Adds noise only while `self.enabled`, a Python flag read at trace time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enabled = False

    def call(self, x: Any) -> Any:
        if self.enabled:
            return x * 0.5
        return x


@pytest.mark.skipif(not hasattr(keras, "ops"), reason=(
    "Keras 2: fit's train function takes a distributed iterator; bisect does not build one yet, so it "
    "compares a fresh train step"))
def test_an_already_fitted_model_is_bisected_against_the_train_function_fit_runs() -> None:
    keras.utils.set_random_seed(0)
    augment = Augment(name="augment")
    model = keras.Sequential([keras.Input((4,)), augment, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.RandomState(0).normal(size=(16, 4)).astype("float32")
    y = np.random.RandomState(1).normal(size=(16, 1)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    augment.enabled = True  # fit's cached train function keeps the branch it traced
    weights = [w.numpy().copy() for w in model.weights]
    report = eagerctl.bisect(model, x, y)
    assert not report.match
    assert [(c.qualname, c.cause.kind) for c in report.culprits] == [
        ("Sequential.train_function", "stale-train-function")]
    assert "model.make_train_function(force=True)" in report.culprits[0].cause.summary
    for before, w in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(before, w.numpy())


def test_bisect_of_a_models_train_function_is_refused_with_the_call_that_works() -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 4), "float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(8))
    with pytest.raises(TypeError, match=(
            r"bisect\(\) cannot bisect Sequential.train_function: Keras's cached step function takes an "
            r"iterator and hides the batch; pass the model and one batch instead, bisect\(model, x, y\)")):
        eagerctl.bisect(model.train_function, iterator)


# -- threads --------------------------------------------------------------------------------------


def double_counted(x: Any) -> Any:
    COUNTS["double"] += 1
    return x * float(COUNTS["double"])


def offset(x: Any) -> Any:
    return x + np.random.uniform()


COUNTS = {"double": 0}


def test_two_threads_bisecting_at_once_each_get_their_culprit_and_no_patch_is_left() -> None:
    from tensorflow.python.autograph.impl import api
    from tensorflow.python.framework import ops

    results: dict[str, Any] = {}

    def run(name: str, culprit: Any) -> None:
        @tf.function
        def step(x: Any) -> Any:
            return tf.reduce_sum(culprit(tf.nn.relu(x)) + 1.0)

        results[name] = eagerctl.bisect(step, tf.constant([1.0, 2.0]))

    threads = [threading.Thread(target=run, args=("a", double_counted)),
               threading.Thread(target=run, args=("b", offset))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.qualname for c in results["a"].culprits] == ["double_counted"]
    assert [c.qualname for c in results["b"].culprits] == ["offset"]
    # No patch of bisect's is left (other parts of eagerctl may patch these at first use: not bisect's).
    assert "Hooks.install" not in api.converted_call.__qualname__
    assert "Hooks.install" not in ops.Graph.__dict__["_create_op_internal"].__qualname__


# -- outputs and options -----------------------------------------------------------------------------


def test_a_python_string_output_is_compared_as_the_string_tensor_compiled_returns() -> None:
    @tf.function
    def classify(x: Any) -> Any:
        return {"activation": "relu", "score": tf.nn.relu(x) * 2.0}

    report = eagerctl.bisect(classify, tf.constant([1.0, -1.0]))
    assert report.match and report.max_abs_diff == 0
    assert eagerctl.compare(classify, tf.constant([1.0, -1.0]), repeat=1).match


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_tolerance_that_is_not_finite_is_refused(value: float) -> None:
    with pytest.raises(eagerctl.EagerctlError, match=(
            rf"bisect\(rtol={value}\): rtol must be 0 or more, and finite \(the default is 1e-05\)")):
        eagerctl.bisect(scale, tf.constant(1.0), rtol=value)

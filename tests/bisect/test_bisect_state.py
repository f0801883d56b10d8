"""bisect touches nothing: after it returns or raises, the program goes on exactly as it would without it.

Each test runs a small training program twice from the same seeds, once with
`eagerctl.bisect` on its first step and once without, and compares what the
program computes afterwards (losses, weights, optimizer and metric state,
random streams, iterator position, Python counters, stdout).
"""

from __future__ import annotations

import sys
from typing import Any

import bisect_state_counters as counters
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


def values(variables: Any) -> list[Any]:
    return [np.array(v.numpy(), copy=True) for v in variables]


def assert_same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# -- the compiled run fails: a layer creating a variable --------------------------------------


class Grow(keras.layers.Layer):
    """Creates a variable at every call: fine eagerly, refused by tf.function after the first trace."""

    def call(self, x: Any) -> Any:
        self.gain = tf.Variable(1.0)
        return x * self.gain


@pytest.mark.skipif(not hasattr(keras, "ops"), reason=(
    "Keras 2: the eager run of a tf.keras model whose layer makes a variable at every call fails too, "
    "so bisect raises the compiled error (the tf.function test below covers the restore)"))
def test_a_keras_model_whose_compiled_step_fails_is_left_as_it_was() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), Grow()])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    x = np.random.RandomState(0).normal(size=(8, 4)).astype("float32")
    y = np.ones((8, 2), "float32")
    weights = values(model.weights)
    report = eagerctl.bisect(model, x, y)
    assert report.verdict.endswith("FAILS compiled and runs eagerly, because of Grow.call")
    assert report.culprits[0].cause.kind == "variable-creation"
    assert_same(values(model.weights), weights)
    assert int(model.optimizer.iterations.numpy()) == 0
    # Adam's slots (made by bisect's runs) are back at their first value: zeros, as the program makes them.
    slots = [v for v in model.optimizer.variables if "iteration" not in v.name and "rate" not in v.name]
    assert slots and all(not np.any(v.numpy()) for v in slots)
    assert all(not np.any(v.numpy()) for m in model.metrics for v in m.variables)


def test_a_tf_function_whose_compiled_run_fails_leaves_weights_slots_and_metrics() -> None:
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(2)
    dense.build((None, 4))
    grow = Grow()
    optimizer = keras.optimizers.Adam(0.01)
    tracker = keras.metrics.Mean()

    @tf.function
    def train_step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(grow(dense(x)) ** 2)
        grads = tape.gradient(loss, dense.trainable_variables)
        optimizer.apply_gradients(zip(grads, dense.trainable_variables, strict=True))
        tracker.update_state(loss)
        return loss

    x = tf.constant(np.random.RandomState(0).normal(size=(8, 4)).astype("float32"))
    weights = values(dense.weights)
    report = eagerctl.bisect(train_step, x)
    assert "FAILS compiled" in report.verdict and report.culprits[0].qualname == "Grow.call"
    assert_same(values(dense.weights), weights)
    assert int(optimizer.iterations.numpy()) == 0
    assert float(tracker.count.numpy()) == 0.0 and float(tracker.total.numpy()) == 0.0
    slots = [v for v in optimizer.variables if "iteration" not in v.name and "rate" not in v.name]
    assert slots and all(not np.any(v.numpy()) for v in slots)


# -- the user's iterator -----------------------------------------------------------------------


def test_bisect_of_a_step_that_reads_an_iterator_consumes_no_batch_and_blames_the_real_culprit() -> None:
    def batches() -> Any:
        features = np.arange(40, dtype="float32").reshape(20, 2)
        dataset = tf.data.Dataset.from_tensor_slices(features).shuffle(20, seed=3)
        return dataset.map(lambda v: v / 10.0).batch(4)

    expected = [b.numpy() for b in batches().take(3)]
    step_count = [0]

    def schedule(x: Any) -> Any:
        step_count[0] += 1  # trace-only: a Python counter frozen into the graph
        return x * float(step_count[0])

    @tf.function
    def step(iterator: Any) -> Any:
        return tf.reduce_sum(schedule(next(iterator)))

    iterator = iter(batches())
    report = eagerctl.bisect(step, iterator)
    assert [c.qualname for c in report.culprits] == [
        "test_bisect_of_a_step_that_reads_an_iterator_consumes_no_batch_and_blames_the_real_culprit"
        ".<locals>.schedule"]
    assert any("rewound" in s for s in report.steps)
    # The program reads the batches it would have read without bisect.
    np.testing.assert_array_equal(next(iterator).numpy(), expected[0])
    np.testing.assert_array_equal(next(iterator).numpy(), expected[1])
    assert step_count == [1]  # the program's own trace (its first call's), kept


# -- Python counters wherever they are kept ----------------------------------------------------


class Stats:
    traced = 0  # a class attribute


NESTED = {"trace": {"calls": 0, "shapes": []}}


def counted(x: Any) -> Any:
    Stats.traced += 1
    counters.traced += 1
    NESTED["trace"]["calls"] += 1
    NESTED["trace"]["shapes"].append(tuple(x.shape))
    return x * float(Stats.traced + counters.traced + NESTED["trace"]["calls"])


def test_counters_in_a_class_another_module_and_a_nested_dict_are_as_the_program_leaves_them() -> None:
    Stats.traced, counters.traced = 0, 0
    NESTED["trace"] = inner = {"calls": 0, "shapes": []}

    @tf.function
    def step(x: Any) -> Any:
        return tf.reduce_sum(counted(tf.nn.relu(x)))

    x = tf.constant([[1.0, -2.0]])
    report = eagerctl.bisect(step, x)
    assert [c.qualname for c in report.culprits] == ["counted"]
    # Bisect made the program's own first trace (kept for its call) and undid its other traces.
    assert NESTED["trace"] is inner
    assert (Stats.traced, counters.traced, inner["calls"], inner["shapes"]) == (1, 1, 1, [(1, 2)])
    step(x)  # the program's first call: as without bisect, one trace in all
    assert (Stats.traced, counters.traced, inner["calls"], inner["shapes"]) == (1, 1, 1, [(1, 2)])


# -- TF state the function touches only eagerly, tables, random streams -----------------------------


def test_eager_only_variables_tables_and_random_streams_continue_as_without_bisect() -> None:
    def program(use_bisect: bool) -> list[Any]:
        tf.random.set_seed(7)
        np_rng = np.random.default_rng(3)
        eager_calls = tf.Variable(0)
        table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=-1)
        generator = tf.random.Generator.from_seed(5)

        def record(x: Any) -> Any:
            if tf.executing_eagerly():  # runs only eagerly: the graph never touches these
                eager_calls.assign_add(1)
                table.insert(tf.constant(["seen"]), tf.constant([int(eager_calls.numpy())], tf.int64))
                x = x + float(np_rng.normal())
            return x + tf.random.uniform([]) + generator.normal([])

        @tf.function
        def step(x: Any) -> Any:
            return record(x) * 2.0

        if use_bisect:
            eagerctl.bisect(step, tf.constant(1.0))
        return [float(step(tf.constant(1.0))), int(eager_calls.numpy()), int(table.size().numpy()),
                float(tf.random.uniform([])), float(np_rng.normal()), float(generator.normal([]))]

    assert program(use_bisect=True) == program(use_bisect=False)


# -- stdout ------------------------------------------------------------------------------------------


def test_what_bisects_runs_print_goes_into_the_report_not_onto_stdout(
        capfd: pytest.CaptureFixture[str]) -> None:
    @tf.function
    def step(x: Any) -> Any:
        print("tracing step")  # Python print: at trace time, and at every eager call
        tf.print("step value", x, output_stream=sys.stdout)
        return x * 2.0

    print("before")
    report = eagerctl.bisect(step, tf.constant(3.0))
    print("after")
    assert report.match
    out = capfd.readouterr().out
    # The program's own trace printed where its first call would have; bisect's runs' prints are its own.
    assert out == "before\ntracing step\nafter\n"
    assert "tracing step" in report.printed and "step value 3" in report.printed
    assert f"bisect's runs of {report.name} printed (not the program's output):\n    | " in str(report)


# -- interrupted -------------------------------------------------------------------------------------


def test_a_keyboard_interrupt_in_bisects_runs_leaves_patches_state_and_stdout_as_they_were(
        capfd: pytest.CaptureFixture[str]) -> None:
    from tensorflow.python.autograph.impl import api

    stdout = sys.stdout
    weights = tf.Variable([1.0, 2.0])

    @tf.function
    def step(x: Any) -> Any:
        weights.assign_add(x)
        if tf.executing_eagerly():
            print("eager run")
            raise KeyboardInterrupt  # Ctrl-C during bisect's eager reference run
        return tf.reduce_sum(weights)

    with pytest.raises(KeyboardInterrupt):
        eagerctl.bisect(step, tf.constant([0.5, 0.5]))
    # (other parts of eagerctl may patch converted_call themselves, installed at first use)
    assert "Hooks.install" not in api.converted_call.__qualname__ and sys.stdout is stdout
    np.testing.assert_array_equal(weights.numpy(), [1.0, 2.0])
    print("still mine")
    assert capfd.readouterr().out == "still mine\n"
    assert eagerctl.bisect(lambda x: x * 2.0, tf.constant(1.0)).match  # nothing left locked

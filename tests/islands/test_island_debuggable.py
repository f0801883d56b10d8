"""`@debuggable` called while a graph is traced: eager islands, in tf.functions and Keras `fit`.

Runs on Keras 3 (TF 2.16+) and on Keras 2 (`tf.keras` in TF 2.13-2.15).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl
from eagerctl import EagerctlError, EagerctlWarning

keras = tf.keras
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def max_rel_err(got: list[Any], want: list[Any]) -> float:
    return max(float(np.max(np.abs(np.asarray(g) - np.asarray(w))) / max(np.max(np.abs(w)), 1e-30))
               for g, w in zip(got, want, strict=True))


def compiled_caller(fn: Any, **options: Any) -> Any:
    """A tf.function whose body calls `fn` (so `fn` is called while that graph is traced)."""

    @tf.function(**options)
    def outer(x: Any) -> Any:
        return fn(x)

    return outer


def test_loss_in_a_compiled_train_step_runs_eagerly_and_trains_like_the_compiled_step() -> None:
    record: list[Any] = []

    def make(island: bool) -> tuple[Any, Any]:
        w = tf.Variable([[0.5], [-0.25]])

        @eagerctl.debuggable(island=island)
        def loss(y: Any, y_pred: Any) -> Any:
            record.append(tf.executing_eagerly())
            if tf.executing_eagerly():
                record.append(round(float(y_pred.numpy().sum()), 4))
            return tf.reduce_mean(tf.square(y - y_pred))

        @tf.function
        def step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                value = loss(y, tf.matmul(x, w))
            w.assign_sub(0.1 * tape.gradient(value, w))
            return value

        return step, w

    x, y = tf.constant([[1.0, 2.0], [3.0, -1.0]]), tf.constant([[1.0], [0.0]])
    step, w = make(True)
    losses = [float(step(x, y)) for _ in range(3)]
    assert record[:4] == [False, True, 1.75, True]  # scratch trace, then eager every step
    assert record.count(True) == 3
    assert step.experimental_get_tracing_count() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerctlWarning)
        ref_step, ref_w = make(False)
        ref_losses = [float(ref_step(x, y)) for _ in range(3)]
    assert max_rel_err([losses, w.numpy()], [ref_losses, ref_w.numpy()]) < 1e-6


def test_island_false_keeps_warn_and_trace() -> None:
    runs: list[bool] = []

    @eagerctl.debuggable(island=False)
    def body(x: Any) -> Any:
        runs.append(tf.executing_eagerly())
        return x + 1.0

    outer = compiled_caller(body)
    with pytest.warns(EagerctlWarning, match=re.escape("its body becomes part of the graph")):
        outer(tf.constant(1.0))
    outer(tf.constant(2.0))
    assert runs == [False]


def test_island_option_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=re.escape(
            "debuggable(island='yes'): island must be a bool (True or False), not str")):
        eagerctl.debuggable(island="yes")  # type: ignore[call-overload]


def test_recursive_false_keeps_nested_tf_functions_compiled_inside_the_island() -> None:
    inner_runs: list[bool] = []

    @tf.function
    def inner(x: Any) -> Any:
        inner_runs.append(tf.executing_eagerly())
        return x * 2.0

    @eagerctl.debuggable(recursive=False)
    def body(x: Any) -> Any:
        return inner(x) + 1.0

    outer = compiled_caller(body)
    assert float(outer(tf.constant(1.0))) == 3.0
    assert float(outer(tf.constant(2.0))) == 5.0
    assert True not in inner_runs


def test_debug_aids_run_inside_the_island() -> None:
    @eagerctl.debuggable(check_numerics=True)
    def body(x: Any) -> Any:
        return {"ratio": x / x}

    outer = compiled_caller(body)
    assert float(outer(tf.constant(2.0))["ratio"]) == 1.0
    with pytest.raises(tf.errors.OpError, match=re.escape(
            "(check_numerics=True): outputs['ratio'] holds non-finite values: 1 NaN and 0 Inf")):
        outer(tf.constant(0.0))


def test_xla_compiled_outer_function_is_an_error_naming_the_function() -> None:
    @eagerctl.debuggable
    def my_loss(x: Any) -> Any:
        return x * 2.0

    outer = compiled_caller(my_loss, jit_compile=True)
    with pytest.raises(EagerctlError, match=re.escape(
            "@debuggable function 'test_xla_compiled_outer_function_is_an_error_naming_the_function."
            "<locals>.my_loss' was called while TensorFlow traces the XLA-compiled function 'outer'")):
        outer(tf.constant(1.0))


class Squash(keras.layers.Layer):  # type: ignore[misc]
    """A Dense+tanh layer whose `call` is @debuggable; records how each run of its body ran."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs: list[bool] = []

    def build(self, input_shape: Any) -> None:
        self.w = self.add_weight(name="w", shape=(int(input_shape[-1]), 2), initializer="ones")
        self.b = self.add_weight(name="b", shape=(2,), initializer="zeros")

    @eagerctl.debuggable
    def call(self, x: Any) -> Any:
        self.runs.append(bool(tf.executing_eagerly()))
        return tf.tanh(tf.matmul(x, self.w) + self.b)


def train(island: bool, jit_compile: bool = False) -> tuple[list[Any], Squash]:
    keras.utils.set_random_seed(1)
    layer = Squash()
    if not island:
        layer.call = Squash.call.__wrapped__.__get__(layer)  # the undecorated body: compiled
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4), layer, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    layer.runs.clear()
    model.fit(x, x.sum(axis=1, keepdims=True), batch_size=8, epochs=2, verbose=0, shuffle=False)
    return [v.numpy() for v in model.weights], layer


def test_keras_layer_call_runs_eagerly_on_every_batch_and_trains_like_compiled() -> None:
    weights, layer = train(True)
    assert layer.runs.count(True) == 8  # 4 batches x 2 epochs
    assert set(layer.runs[: layer.runs.index(True)]) == {False}  # only trace-time runs before
    ref_weights, ref_layer = train(False)
    assert True not in ref_layer.runs
    assert max_rel_err(weights, ref_weights) < 1e-6


def test_keras_jit_compile_is_an_error_naming_the_layer_call() -> None:
    with pytest.raises(EagerctlError, match=re.escape(
            "@debuggable function 'Squash.call' was called while TensorFlow traces the XLA-compiled "
            "function")) as caught:
        train(True, jit_compile=True)
    assert "Turn jit_compile off for that model or function" in str(caught.value)


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    import eagerctl
    from test_island_debuggable import Squash, keras

    def train(island):
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            keras.utils.set_random_seed(1)
            layer = Squash()
            if not island:
                layer.call = Squash.call.__wrapped__.__get__(layer)
            model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(4), layer,
                                      keras.layers.Dense(1)])
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
        x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
        layer.runs.clear()
        model.fit(x, x.sum(axis=1, keepdims=True), batch_size=8, epochs=2, verbose=0, shuffle=False)
        return [v.numpy() for v in model.weights], layer.runs

    try:
        got, runs = train(True)
        want, ref_runs = train(False)
        err = max(float(np.max(np.abs(g - w)) / np.max(np.abs(w))) for g, w in zip(got, want))
        print(json.dumps({"eager_runs": runs.count(True), "ref_eager_runs": ref_runs.count(True),
                          "rel_err": err, "replicas": 2}))
    except eagerctl.EagerctlError as exc:
        print(json.dumps({"error": str(exc)}))
""")


def test_keras_fit_under_mirrored_strategy_with_two_logical_cpus() -> None:
    # Logical devices must be configured before TF initializes them: a fresh process.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", MIRRORED, os.path.dirname(os.path.abspath(__file__))],
                          capture_output=True, text=True, env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Each of the 2 replicas runs the body eagerly on each of its 8 steps.
    assert result["eager_runs"] == 16, result
    assert result["ref_eager_runs"] == 0
    assert result["rel_err"] < 1e-5  # eager and graph kernels round differently over 8 steps


class Peek(keras.layers.Layer):  # type: ignore[misc]
    """Calls `.numpy()` unguarded in `call`, as a debugging user does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[Any] = []

    @eagerctl.debuggable
    def call(self, x: Any) -> Any:
        self.seen.append((bool(tf.executing_eagerly()), x.numpy().shape))
        return x * 2.0


def test_numpy_in_a_layer_call_works_while_keras_builds_and_fit_traces() -> None:
    layer = Peek()
    model = keras.Sequential([keras.Input(shape=(3,)), layer, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=False)
    built = list(layer.seen)
    assert built and not any(eager for eager, _ in built)  # symbolic: a stand-in value
    layer.seen.clear()
    x = np.ones((8, 3), "float32")
    model.fit(x, x.sum(axis=1), batch_size=4, epochs=1, verbose=0)
    assert [s for s in layer.seen if s[0]] == [(True, (4, 3)), (True, (4, 3))]

"""eagerctl.bisect: which nested function, layer or tf.function makes graph and eager disagree, and why.

Each program below buries one known culprit two or three calls deep among
innocent functions, a Keras layer and a nested tf.function, the way training
code is written; the test checks that bisect names it first, with its cause.
"""

from __future__ import annotations

import itertools
import math
import random
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
KERAS_3 = hasattr(keras, "ops")
# What fit cached is bisected on Keras 3; Keras 2 feeds its train function a distributed
# iterator bisect cannot rebuild, so it bisects a fresh train step and says so (docs/bisect.md).
STALE = [("Sequential.train_function", "stale-train-function")] if KERAS_3 else []


# -- innocent building blocks ------------------------------------------------------------


def normalize(x: Any) -> Any:
    return (x - tf.reduce_mean(x)) / (tf.math.reduce_std(x) + 1.0)


def activate(x: Any) -> Any:
    return tf.nn.relu(x) + 0.5


@tf.function
def pool(x: Any) -> Any:
    return tf.reduce_sum(x, axis=-1)


class Shift(keras.layers.Layer):
    def call(self, x: Any) -> Any:
        return x + 1.0


SHIFT = Shift()


def head(x: Any) -> Any:
    return pool(activate(SHIFT(x)))


def build(culprit: Any) -> Any:
    """train-step-like tf.function: the culprit sits at step > features > block > culprit."""

    def block(x: Any) -> Any:
        return culprit(activate(x)) * 2.0

    def features(x: Any) -> Any:
        return block(normalize(x))

    @tf.function
    def step(x: Any) -> Any:
        return {"score": head(features(x)), "aux": tf.reduce_mean(activate(x))}

    return step


X = tf.constant([[1.0, -2.0, 3.0, 0.5], [0.0, 2.0, -1.0, 4.0]])


def names(report: eagerctl.Bisection) -> list[str]:
    return [c.qualname for c in report.culprits]


# -- the culprits, one per cause ---------------------------------------------------------

CALLS = 0


def count_calls(x: Any) -> Any:
    global CALLS
    CALLS += 1
    return x * float(CALLS)


def test_trace_only_side_effect_is_found_three_calls_deep_and_state_is_left_as_the_program_left_it() -> None:
    global CALLS
    CALLS = 0
    step = build(count_calls)
    report = eagerctl.bisect(step, X)
    assert not report.match
    assert names(report) == ["count_calls"]
    culprit = report.culprits[0]
    assert culprit.kind == "function"
    assert culprit.where.endswith(f"test_bisect.py:{count_calls.__code__.co_firstlineno}")
    assert culprit.path == ("build.<locals>.features", "build.<locals>.block", "count_calls")
    assert culprit.cause.kind == "trace-side-effect"
    assert "global CALLS went from 1 to 2" in culprit.cause.summary  # after the program's own trace
    assert culprit.outputs == ("output['score']",) and culprit.max_abs_diff > 0
    # The program's own trace happened inside bisect and is kept: the state is the one it leaves.
    assert step.experimental_get_tracing_count() == 1
    assert CALLS == 1
    step(X)
    assert (step.experimental_get_tracing_count(), CALLS) == (1, 1)
    text = str(report)
    assert text.startswith("bisect(build.<locals>.step): graph and eager DIFFER because of count_calls\n"
                           "  culprit 1: count_calls (function)  at ")
    assert "output['score']" in text and "how: " in text


SCALE = 1.0


def scaled(x: Any) -> Any:
    return x * SCALE


def test_python_value_frozen_at_trace_time_is_found_by_the_constant_that_changed() -> None:
    global SCALE
    SCALE = 1.0
    step = build(scaled)
    before = step(X)["score"].numpy()
    SCALE = 3.0  # the graph keeps 1.0
    report = eagerctl.bisect(step, X)
    assert names(report) == ["scaled"]
    cause = report.culprits[0].cause
    assert cause.kind == "frozen-value"
    assert "it reads SCALE" in cause.summary
    assert any("was 1.0 in the graph traced earlier, 3.0 in a fresh trace" in e for e in cause.evidence)
    # Nothing retraced the program's function: it still computes what it did.
    np.testing.assert_array_equal(step(X)["score"].numpy(), before)
    SCALE = 1.0


def jitter(x: Any) -> Any:
    return x + np.random.uniform(-1.0, 1.0)


def test_numpy_random_drawn_at_trace_time_and_the_random_state_is_restored() -> None:
    np.random.seed(5)
    report = eagerctl.bisect(build(jitter), X)
    assert names(report) == ["jitter"]
    assert report.culprits[0].cause.kind == "python-random"
    assert any("np.random.uniform()" in e for e in report.culprits[0].cause.evidence)
    # The only draw left is the one the program's own trace made.
    state = np.random.get_state()
    np.random.seed(5)
    np.random.uniform(-1.0, 1.0)
    after_one_draw = np.random.get_state()
    np.testing.assert_array_equal(state[1], after_one_draw[1])
    assert state[2] == after_one_draw[2]


def add_noise(x: Any) -> Any:
    return x + tf.random.normal(tf.shape(x), stddev=0.1)


def test_unseeded_stateful_random_op_is_named_with_the_op_it_builds() -> None:
    report = eagerctl.bisect(build(add_noise), X)
    assert names(report) == ["add_noise"]
    cause = report.culprits[0].cause
    assert cause.kind == "stateful-random"
    assert any("RandomStandardNormal" in e for e in cause.evidence)
    assert any("two compiled runs" in e for e in cause.evidence)


def debug_print(x: Any) -> Any:
    if tf.executing_eagerly():  # "only when debugging": a different computation eagerly
        x = tf.clip_by_value(x, 0.0, 1.0)
    return x


def test_python_control_flow_on_the_execution_mode() -> None:
    report = eagerctl.bisect(build(debug_print), X)
    assert names(report) == ["debug_print"]
    cause = report.culprits[0].cause
    assert cause.kind == "control-flow"
    assert any("`tf.executing_eagerly()`" in e and "branches on the execution mode" in e
               for e in cause.evidence)


def fresh_accumulator(x: Any) -> Any:
    total = tf.Variable(tf.zeros_like(x))
    total.assign_add(x)
    return total.read_value()


def test_variable_created_inside_the_function_fails_compiled_only_and_is_named() -> None:
    report = eagerctl.bisect(build(fresh_accumulator), X)
    assert names(report) == ["fresh_accumulator"]
    assert report.culprits[0].cause.kind == "variable-creation"
    assert "FAILS compiled and runs eagerly" in report.verdict
    assert any("singleton tf.Variables" in e for e in report.culprits[0].cause.evidence)


def safe_log(x: Any) -> Any:
    # Stands in for a compiler rewrite that loses an epsilon: NaN only eagerly.
    eps = -1.0 if tf.executing_eagerly() else 1e-3
    return tf.math.log(tf.nn.relu(x) * 0.0 + eps)


def test_nan_in_one_mode_only_is_the_cause_it_reports_first() -> None:
    report = eagerctl.bisect(build(safe_log), X)
    assert names(report) == ["safe_log"]
    culprit = report.culprits[0]
    assert culprit.cause.kind == "nonfinite"
    assert "NaN/Inf value(s) eagerly and none compiled" in culprit.cause.summary
    assert math.isinf(culprit.max_abs_diff)


def fused_scale(x: Any) -> Any:
    # Stands in for a fused kernel that rounds differently: a relative 1e-4 off eagerly.
    return x * (1.0 + 1e-4) if tf.executing_eagerly() else x


def test_differences_at_float_rounding_level_are_called_numerics() -> None:
    report = eagerctl.bisect(build(fused_scale), X)
    assert names(report) == ["fused_scale"]
    assert report.culprits[0].cause.kind == "float-rounding"
    assert report.culprits[0].max_abs_diff < 1e-3
    assert eagerctl.bisect(build(fused_scale), X, rtol=1e-3).match


# -- Keras --------------------------------------------------------------------------------


class Warmup(keras.layers.Layer):
    """Ramps its input with a Python call counter: frozen at its trace-time value once fit traces it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen = 0

    def call(self, x: Any) -> Any:
        self.seen += 1
        return x * (1.0 + 0.1 * self.seen)


def test_keras_custom_layer_with_a_python_counter_in_fits_train_step() -> None:
    keras.utils.set_random_seed(0)
    warmup = Warmup(name="warmup")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), Shift(), warmup,
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.RandomState(0).normal(size=(16, 4)).astype("float32")
    y = np.random.RandomState(1).normal(size=(16, 1)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    weights = [w.numpy().copy() for w in model.weights]
    seen = warmup.seen

    report = eagerctl.bisect(model, x, y)

    assert report.name == "Sequential.train_step"
    # What fit runs is the train function it cached, traced when `seen` was lower: stale, and Warmup is why.
    assert names(report) == [name for name, _ in STALE] + ["Warmup.call"]
    if KERAS_3:
        assert report.culprits[0].cause.kind == "stale-train-function"
    culprit = report.culprits[len(STALE)]
    assert (culprit.kind, culprit.name, culprit.cause.kind) == ("layer", "warmup", "trace-side-effect")
    assert "self.seen went from" in culprit.cause.summary
    assert any(path.startswith("variables[") for path in report.mismatches)
    # Training did not advance, the counter is back.
    for before, w in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(before, w.numpy())
    assert warmup.seen == seen


# -- several culprits, none, fn itself -----------------------------------------------------


def test_two_independent_culprits_are_both_named() -> None:
    global CALLS
    CALLS = 0

    def block(x: Any) -> Any:
        return count_calls(activate(x)) + jitter(normalize(x))

    @tf.function
    def step(x: Any) -> Any:
        return head(block(x)) + pool(normalize(x))

    report = eagerctl.bisect(step, X)
    assert sorted(names(report)) == ["count_calls", "jitter"]
    assert {c.cause.kind for c in report.culprits} == {"trace-side-effect", "python-random"}
    assert not any(c.together for c in report.culprits)


ARMED = {"armed": False}


def arm(x: Any) -> Any:
    if tf.executing_eagerly():
        ARMED["armed"] = True
    return x


def fire(x: Any) -> Any:
    return x * 2.0 if ARMED["armed"] and tf.executing_eagerly() else x


def test_a_difference_that_needs_two_candidates_together_says_so() -> None:
    @tf.function
    def step(x: Any) -> Any:
        return pool(fire(activate(arm(normalize(x)))))

    report = eagerctl.bisect(step, X)
    assert sorted(names(report)) == ["arm", "fire"]
    assert all(c.together for c in report.culprits)
    assert report.verdict.startswith("graph and eager DIFFER only when ")
    assert "run eagerly together" in report.verdict
    assert ARMED == {"armed": False}


def test_when_the_modes_agree_it_says_so_after_two_runs() -> None:
    report = eagerctl.bisect(build(activate), X)
    assert report.match and report.culprits == ()
    assert report.runs == 2
    assert "graph and eager AGREE" in str(report)
    assert len(report.candidates) >= 6  # normalize, block, activate, head, Shift, pool, ...


def test_a_difference_in_fn_itself_is_not_blamed_on_its_callees() -> None:
    @tf.function
    def step(x: Any) -> Any:
        y = head(normalize(x))
        if tf.executing_eagerly():
            y = y + 1.0
        return y

    report = eagerctl.bisect(step, X)
    expected = [(step.python_function.__qualname__, "fn itself")]
    assert [(c.qualname, c.kind) for c in report.culprits] == expected
    assert "the difference is in" in report.verdict and "no nested candidate explains it" in report.verdict


def test_runs_grow_with_the_log_of_the_number_of_candidates() -> None:
    global CALLS
    CALLS = 0
    helpers = []
    for i in range(31):
        def helper(x: Any, i: int = i) -> Any:
            return x + float(i)

        helper.__code__ = helper.__code__.replace(co_name=f"h{i}", co_qualname=f"h{i}")
        helpers.append(helper)
    helpers.insert(20, count_calls)

    @tf.function
    def step(x: Any) -> Any:
        for h in helpers:
            x = h(x) * 0.5
        return x

    report = eagerctl.bisect(step, X)
    n = len(report.candidates)
    assert n == 32 and names(report) == ["count_calls"]
    assert report.runs <= 2 * math.log2(n) + 2
    assert report.traces <= report.runs  # bisect's own traces: at most one per run


# -- API and bad input ----------------------------------------------------------------------


def test_report_fields_repr_and_html() -> None:
    global CALLS
    CALLS = 0
    report = eagerctl.bisect(build(count_calls), X)
    assert isinstance(report, eagerctl.Bisection) and report.seconds > 0 and report.runs >= 3
    assert repr(report).startswith("<Bisection build.<locals>.step: match=False, culprits=['count_calls']")
    html = report._repr_html_()
    assert "<code>count_calls</code>" in html and "trace" in html
    assert "culprit 1: count_calls" in str(report).splitlines()[1]


def test_bad_input_gets_compares_errors_and_changes_nothing() -> None:
    from tensorflow.python.autograph.impl import api

    converted_call = api.converted_call
    needs = r"bisect\(\) needs a tf.function, a Keras model or a Python callable, not 3"
    with pytest.raises(TypeError, match=needs):
        eagerctl.bisect(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"bisect\(rtol='x'\): rtol must be a number, not str"):
        eagerctl.bisect(activate, X, rtol="x")  # type: ignore[arg-type]
    with pytest.raises(eagerctl.EagerctlError, match=r"bisect\(atol=-1\): atol must be 0 or more"):
        eagerctl.bisect(activate, X, atol=-1)
    concrete = tf.function(activate).get_concrete_function(X)
    with pytest.raises(TypeError, match="a ConcreteFunction has no Python body"):
        eagerctl.bisect(concrete, X)

    @tf.function
    def outer(x: Any) -> Any:
        eagerctl.bisect(activate, x)
        return x

    tracing = r"bisect\(activate\) was called while TensorFlow traces a graph"
    with pytest.raises(eagerctl.EagerctlError, match=tracing):
        outer(X)
    assert api.converted_call is converted_call
    with pytest.raises(Exception, match="division by zero"):  # both modes fail: the compiled error
        eagerctl.bisect(lambda x: 1 / 0, X)
    assert api.converted_call is converted_call
    assert random.random() is not None


def test_program_results_after_bisect_equal_those_without_it() -> None:
    def train(with_bisect: bool) -> list[float]:
        global CALLS
        CALLS = 0
        var = tf.Variable([1.0, 2.0])

        @tf.function
        def step(x: Any) -> Any:
            var.assign_add(count_calls(activate(x)))
            return tf.reduce_sum(var)

        x = tf.constant([0.5, -0.5])
        if with_bisect:
            assert names(eagerctl.bisect(step, x)) == ["count_calls"]
        return [float(step(x)) for _ in range(3)] + [float(CALLS)]

    assert train(True) == train(False)


# -- shapes of real TensorFlow issue reports ---------------------------------------------------


class Net(keras.Model):
    """A model whose `call` is a tf.function reading a Python attribute (tensorflow#61885, #32895)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(4)
        self.out = keras.layers.Dense(1)
        self.temperature = 1.0

    @tf.function
    def call(self, x: Any) -> Any:
        return self.out(self.hidden(x) / self.temperature)


def test_model_with_a_tf_function_call_traced_before_an_attribute_changed() -> None:
    keras.utils.set_random_seed(1)
    net = Net()
    before = net(X).numpy()
    net.temperature = 4.0  # the traced call keeps 1.0
    report = eagerctl.bisect(net, X)
    assert report.name == "Net.call"
    assert names(report) == ["Net.call"]
    cause = report.culprits[0].cause
    assert cause.kind == "frozen-value" and "it reads" in cause.summary and "temperature" in cause.summary
    assert any("was 1.0 in its trace, 4.0 in a fresh trace" in e for e in cause.evidence)
    np.testing.assert_array_equal(net(X).numpy(), before)


def test_keras_fit_with_dropout_names_dropout_when_graph_and_eager_draw_differently() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.5, name="drop"), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.RandomState(0).normal(size=(16, 4)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    report = eagerctl.bisect(model, x, x[:, :1])
    if report.match:  # Keras 3: dropout draws from a seed-generator variable, restored like any variable
        assert keras.__version__.startswith("3")
        return
    # Keras 2: a stateful random op without a fixed stream (tensorflow#34221's usual answer)
    assert [(c.qualname, c.name, c.cause.kind) for c in report.culprits] == [
        ("Dropout.call", "drop", "stateful-random")]


AUGMENT = False


def augment(x: Any) -> Any:
    if AUGMENT:  # a Python flag: the branch is decided when the graph is traced
        x = tf.reverse(x, axis=[0])
    return x


def test_python_control_flow_on_a_flag_changed_after_the_trace() -> None:
    global AUGMENT
    AUGMENT = False
    step = build(augment)
    step(X)
    AUGMENT = True
    try:
        report = eagerctl.bisect(step, X)
    finally:
        AUGMENT = False
    assert names(report) == ["augment"]
    cause = report.culprits[0].cause
    assert cause.kind == "control-flow"
    assert any("which the graph traced earlier does not have" in e for e in cause.evidence)
    assert any("`AUGMENT`" in e and "Python value AUGMENT" in e for e in cause.evidence)


def test_the_benchmark_names_the_culprit_layer() -> None:
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:  # benchmarks/ is a top-level folder, not part of the package
        sys.path.insert(0, root)
    from benchmarks import bisect_runs as bench

    row = bench.measure(5)
    assert row["found"] and row["candidates"] == 6
    assert row["runs"] <= row["bound"]


def test_rounding_level_differences_everywhere_stop_the_search_early_and_say_so() -> None:
    kernels = []
    for i in range(8):
        def kernel(x: Any) -> Any:  # a fused kernel of its own, rounding differently
            return (x * (1.0 + 1e-4) if tf.executing_eagerly() else x) + 0.25

        kernel.__code__ = kernel.__code__.replace(co_name=f"kernel{i}", co_qualname=f"kernel{i}")
        kernels.append(kernel)

    @tf.function
    def step(x: Any) -> Any:
        for kernel in kernels:
            x = kernel(x)
        return pool(x)

    report = eagerctl.bisect(step, X)
    assert report.verdict == ("graph and eager DIFFER because of kernel0, kernel1, kernel2 (and more: the "
                              "search stopped there); every difference is at the level of float rounding")
    assert [c.cause.kind for c in report.culprits] == ["float-rounding"] * 3
    assert "stopped after 3 culprits: more candidates change the result" in str(report)


@tf.function(jit_compile=True)
def xla_step(x: Any) -> Any:
    # tensorflow#58752: cosh(cosh(x)) overflows to values whose tan differs between XLA and TF kernels
    return tf.math.tan(tf.math.cosh(tf.math.cosh(x)))


def test_an_xla_compiled_function_is_bisected_without_xla_and_xla_is_named() -> None:
    x = tf.random.stateless_uniform([64], seed=(1, 2), minval=-5, maxval=5, dtype=tf.float64)
    report = eagerctl.bisect(xla_step, x, rtol=0, atol=0)
    if report.match:  # pragma: no cover - XLA and TF kernels happened to agree on this machine
        pytest.skip("XLA computes the same here")
    culprit = report.culprits[0]
    assert (culprit.kind, culprit.cause.kind) in {("fn itself", "xla"), ("fn itself", "float-rounding")}
    assert "XLA (jit_compile=True)" in culprit.cause.summary
    assert any("trials run without XLA" in step for step in report.steps)


class Gain(keras.layers.Layer):
    """Keras-2-style build that sets `self.built` itself, and a Python counter."""

    def build(self, input_shape: Any) -> None:
        self.gain = self.add_weight(name="gain", shape=(), initializer="ones")
        self.calls = 0
        self.built = True

    def call(self, x: Any) -> Any:
        self.calls += 1
        return x * self.gain * float(self.calls)


def test_a_layer_built_during_bisect_is_built_once_and_keeps_its_weights() -> None:
    gain = Gain()

    @tf.function
    def step(x: Any) -> Any:
        return head(gain(normalize(x)))

    report = eagerctl.bisect(step, X)  # the first call: bisect's trace builds the layer
    assert names(report) == ["Gain.call"]
    assert gain.built and len(gain.weights) == 1
    weight = gain.weights[0]
    step(X)
    assert gain.weights[0] is weight


TICKS = itertools.count()


def stamp(x: Any) -> Any:
    return x + float(next(TICKS) % 5)  # a Python value that changes by itself at every trace


def test_a_value_that_changes_between_traces_by_itself_is_found_by_tracing_twice() -> None:
    global CALLS
    CALLS = 0

    def block(x: Any) -> Any:
        return stamp(activate(normalize(x)))

    @tf.function
    def step(x: Any) -> Any:
        return head(block(x)) + pool(count_calls(x))

    report = eagerctl.bisect(step, X)
    assert [(c.qualname, c.cause.kind) for c in report.culprits] == [("stamp", "frozen-value")]
    assert any("in one trace" in e and "in the next" in e for e in report.culprits[0].cause.evidence)
    assert any("tracing it again from the same state builds a different graph" in s for s in report.steps)


SEEN = {"batches": 0}


def scheduled_mse(y_true: Any, y_pred: Any) -> Any:
    SEEN["batches"] += 1  # a Python counter in a loss passed to compile()
    return tf.reduce_mean((y_true - y_pred) ** 2) * min(1.0, SEEN["batches"] / 10)


def test_a_loss_passed_to_compile_is_named_whether_keras_runs_it_through_autograph_or_not() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=scheduled_mse)
    x = np.random.RandomState(0).normal(size=(16, 4)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    seen = dict(SEEN)
    report = eagerctl.bisect(model, x, x[:, :1])
    # fit's cached train function froze the schedule at its first batch; the counter in the loss is why.
    assert [(c.qualname, c.cause.kind) for c in report.culprits] == [
        *STALE, ("scheduled_mse", "trace-side-effect")]
    assert SEEN == seen

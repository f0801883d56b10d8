"""eagerctl.compare(): graph against eager from the same state, with real TensorFlow."""

from __future__ import annotations

import collections
import functools
import re
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl
from eagerctl import Comparison, EagerctlError, compare

Pair = collections.namedtuple("Pair", "first second")


def make_train_step() -> tuple[Any, Any, Any, list[bool]]:
    """A Keras model and Adam optimizer (slots created on the first call) and a tf.function step."""
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(4), tf.keras.layers.Dense(1)])
    optimizer = tf.keras.optimizers.Adam(0.1)
    ran: list[bool] = []

    @tf.function
    def train_step(x: Any, y: Any) -> Any:
        ran.append(tf.executing_eagerly())
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return {"loss": loss, "step": optimizer.iterations}

    return model, optimizer, train_step, ran


X = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
Y = tf.constant([[1.0], [2.0]])


def test_stateful_train_step_matches_from_the_same_state_and_state_is_restored() -> None:
    model, optimizer, train_step, ran = make_train_step()
    before = [v.numpy().copy() for v in model.variables]

    result = compare(train_step, X, Y, repeat=3)

    assert isinstance(result, Comparison)
    assert result.match is True
    assert result.mismatches == ()
    assert result.max_abs_diff < 1e-5
    # Graph mode ran the body only while tracing (twice: TF retraces once the
    # first trace created the Adam slots); eager mode ran it on all 2 + 3 calls
    # (each mode runs twice from the same state, to tell nondeterminism apart).
    assert ran == [False, False, True, True, True, True, True]
    assert result.deterministic is True and result.nondeterministic == () and result.graph_error is None
    assert result.traces == 2
    assert result.trace_seconds > 0
    # Weights, the optimizer's slots (created on the first call) and its counter were compared...
    paths = [r.path for r in result.rows]
    assert paths[:2] == ["output['loss']", "output['step']"]
    variable_paths = paths[2:]
    # (Keras 2 keeps the learning rate outside optimizer.variables; the graph reads it, so it is compared.)
    assert len(variable_paths) >= len(model.variables) + len(optimizer.variables)
    assert all(p.startswith("variables['") for p in variable_paths)
    # Adam's two slots per weight (Keras 3: *_momentum/*_velocity, Keras 2: Adam/m/*, Adam/v/*).
    assert sum(1 for p in variable_paths if re.search(r"momentum|velocity|Adam/[mv]/", p)) == 8
    assert any("iteration" in p for p in variable_paths)
    # ...from the same state: both compared calls were the first step, counted from 0.
    assert int(result.graph_output["step"]) == 1
    assert int(result.eager_output["step"]) == 1
    # compare() did not train: weights back where they were, counter back at 0.
    after = [v.numpy() for v in model.variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert int(optimizer.iterations.numpy()) == 0
    assert result.graph_seconds > 0 and result.eager_seconds > 0
    assert result.slowdown == pytest.approx(result.eager_seconds / result.graph_seconds)


def test_plain_python_function_is_compared_against_tf_function_of_it() -> None:
    ran: list[bool] = []

    def plain(x: Any) -> Any:
        ran.append(tf.executing_eagerly())
        return Pair(x * 2, [x + 1, {"z": x - 1, "none": None}])

    result = compare(plain, tf.constant([1.0, 2.0]), repeat=2)

    assert result.match is True
    assert result.traces == 1
    # One trace (not eager), then the eager mode's 2 + 2 calls.
    assert ran == [False, True, True, True, True]
    assert [r.path for r in result.rows] == [
        "output.first", "output.second[0]", "output.second[1]['z']", "output.second[1]['none']",
    ]
    assert result.variables == ()
    assert result.name == "test_plain_python_function_is_compared_against_tf_function_of_it.<locals>.plain"


def test_outputs_that_differ_are_named_by_path_with_the_largest_difference() -> None:
    @tf.function
    def diverges(x: Any) -> Any:
        # A Python-level branch on the mode: the classic graph/eager divergence.
        offset = 1.5 if tf.executing_eagerly() else 0.0
        return (x, {"shifted": x + offset})

    result = compare(diverges, tf.constant([1.0, 2.0]), repeat=1)

    assert result.match is False
    assert result.mismatches == ("output[1]['shifted']",)
    assert result.max_abs_diff == 1.5
    row = result.rows[1]
    assert (row.path, row.kind, row.shape, row.dtype, row.match) == (
        "output[1]['shifted']", "output", "(2,)", "float32", False)


def test_rtol_and_atol_decide_what_counts_as_a_match() -> None:
    @tf.function
    def nearly(x: Any) -> Any:
        return x + (1e-3 if tf.executing_eagerly() else 0.0)

    x = tf.constant([1.0])
    assert compare(nearly, x, repeat=1).match is False
    loose = compare(nearly, x, repeat=1, atol=1e-2)
    assert loose.match is True
    assert loose.max_abs_diff == pytest.approx(1e-3, rel=1e-2)
    assert compare(nearly, x, repeat=1, rtol=1e-2, atol=0).match is True


def test_variables_that_end_up_different_are_mismatches_and_are_restored() -> None:
    counter = tf.Variable(10.0, name="counter")

    @tf.function
    def bump() -> Any:
        counter.assign_add(2.0 if tf.executing_eagerly() else 1.0)
        return tf.constant(0.0)

    result = compare(bump, repeat=2)

    assert result.mismatches == ("variables['counter']",)
    assert result.max_abs_diff == 1.0
    assert result.variables == ("counter",)
    assert float(counter.numpy()) == 10.0


def test_a_variable_passed_as_an_argument_is_snapshotted_and_restored() -> None:
    # TF does not record variables that are graph inputs; compare() finds them in the arguments.
    v = tf.Variable([1.0, 2.0], name="passed_in")

    def step(var: Any) -> Any:
        var.assign(var * 3.0)
        return var.read_value()

    result = compare(step, v, repeat=4)

    assert result.match is True
    assert result.variables == ("passed_in",)
    np.testing.assert_array_equal(result.graph_output, [3.0, 6.0])
    np.testing.assert_array_equal(result.eager_output, [3.0, 6.0])
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


def test_ragged_and_sparse_outputs_are_compared_by_their_components() -> None:
    ragged = tf.ragged.constant([[1.0, 2.0], [3.0]])
    sparse = tf.sparse.from_dense(tf.constant([[0.0, 1.0], [2.0, 0.0]]))

    def both(r: Any, s: Any) -> Any:
        # A Python-level branch makes the sparse values differ by 0.5 in eager mode only.
        shift = 0.5 if tf.executing_eagerly() else 0.0
        return {"ragged": r * 2.0, "sparse": tf.sparse.map_values(tf.add, s, shift)}

    result = compare(both, ragged, sparse, repeat=1)
    rows = {row.path: row for row in result.rows}
    assert (rows["output['ragged']"].shape, rows["output['ragged']"].dtype) == ("(2, None)", "RaggedTensor")
    assert rows["output['ragged']"].match is True
    assert (rows["output['sparse']"].shape, rows["output['sparse']"].dtype) == ("(2, 2)", "SparseTensor")
    assert result.mismatches == ("output['sparse']",)
    assert result.max_abs_diff == 0.5


def test_nan_in_the_same_place_in_both_modes_matches() -> None:
    result = compare(tf.math.log, tf.constant([-1.0, 1.0]), repeat=1)
    assert result.match is True
    assert result.max_abs_diff == 0.0


def test_graph_mode_is_compiled_even_under_the_global_flag() -> None:
    ran: list[bool] = []

    @tf.function
    def probe(x: Any) -> Any:
        ran.append(tf.executing_eagerly())
        return x * 2

    tf.config.run_functions_eagerly(True)
    try:
        result = compare(probe, tf.constant(1.0), repeat=1)
        assert tf.config.functions_run_eagerly() is True
    finally:
        tf.config.run_functions_eagerly(False)
    assert result.match is True
    assert ran == [False, True, True, True]


def test_a_debuggable_proxy_is_compared_on_what_it_wraps() -> None:
    ran: list[bool] = []

    @eagerctl.debuggable
    @tf.function
    def probe(x: Any) -> Any:
        ran.append(tf.executing_eagerly())
        return x + 1

    result = compare(probe, tf.constant(1.0), repeat=1)
    assert ran == [False, True, True, True]
    assert result.traces == 1


def test_an_error_in_one_mode_propagates_and_leaves_the_variables_as_they_were() -> None:
    v = tf.Variable(5.0, name="guarded")

    def step() -> Any:
        v.assign_add(1.0)
        if tf.executing_eagerly():
            raise ValueError("only eagerly")
        return v.read_value()

    with pytest.raises(ValueError, match=r"^only eagerly$"):
        compare(step, repeat=1)
    assert float(v.numpy()) == 5.0
    assert eagerctl.status().scopes == ()


def test_keyword_arguments_go_to_the_function() -> None:
    def scale(x: Any, *, factor: float) -> Any:
        return x * factor

    result = compare(scale, tf.constant(2.0), factor=3.0, repeat=1)
    assert float(result.graph_output) == 6.0
    assert float(result.eager_output) == 6.0
    # compare's own option names reach fn through functools.partial.
    result = compare(functools.partial(lambda x, repeat: x * repeat, repeat=4), tf.constant(1.0), repeat=1)
    assert float(result.eager_output) == 4.0


def test_str_is_a_readable_table() -> None:
    counter = tf.Variable(0, name="ticks")

    @tf.function
    def tick(x: Any) -> Any:
        counter.assign_add(1)
        return x * (3.0 if tf.executing_eagerly() else 2.0), x

    result = compare(tick, tf.constant([1.0, 1.0]), repeat=2)
    lines = str(result).splitlines()
    assert lines[0] == "compare(test_str_is_a_readable_table.<locals>.tick): graph and eager DIFFER in 1  " \
                       "(rtol=1e-05, atol=1e-06)"
    assert lines[1] == "  value               shape        dtype     max |graph - eager|  same"
    assert lines[2] == "  output[0]           (2,)         float32   1                    NO"
    assert lines[3] == "  output[1]           (2,)         float32   0                    yes"
    assert lines[4] == "  variables['ticks']  ()           int32     0                    yes"
    timing = (r"  time per call: graph \S+ \S+, eager \S+ \S+, (slowdown \S+x|eager \S+x faster)  "
              r"\(2 timed calls each\)")
    assert re.fullmatch(timing, lines[5])
    assert re.fullmatch(r"  tracing: 1 trace, \S+ \S+ \(not in the times above\)", lines[6])
    assert len(lines) == 7
    assert repr(result).startswith("<Comparison test_str_is_a_readable_table.<locals>.tick: match=False, ")


def test_already_traced_function_reports_no_traces() -> None:
    f = tf.function(lambda x: x * x)
    f(tf.constant(2.0))
    result = compare(f, tf.constant(2.0), repeat=1)
    assert result.traces == 0
    assert result.trace_seconds == 0.0
    assert str(result).splitlines()[-1] == "  tracing: none (already traced for these arguments)"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"repeat": 0}, EagerctlError,
         "compare(repeat=0): repeat must be 1 or more (the number of timed calls in each mode)"),
        ({"repeat": 2.0}, TypeError, "compare(repeat=2.0): repeat must be an int, not float"),
        ({"repeat": True}, TypeError, "compare(repeat=True): repeat must be an int, not bool"),
        ({"rtol": -1.0}, EagerctlError, "compare(rtol=-1.0): rtol must be 0 or more"),
        ({"atol": "0"}, TypeError, "compare(atol='0'): atol must be a number, not str"),
    ],
)
def test_bad_options(options: dict[str, Any], error: type[Exception], message: str) -> None:
    ran: list[int] = []
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        compare(lambda: ran.append(1), **options)
    assert ran == []


def test_not_callable_and_concrete_functions_are_type_errors() -> None:
    message = "compare() needs a tf.function or a Python callable, not 3"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        compare(3)  # type: ignore[arg-type]
    concrete = tf.function(lambda x: x).get_concrete_function(tf.constant(1.0))
    with pytest.raises(TypeError, match=re.escape(
            f"compare() cannot run {concrete!r} eagerly: a ConcreteFunction has no Python body; "
            "pass the tf.function (or the Python function) it came from")):
        compare(concrete, tf.constant(1.0))


def test_calling_compare_while_tracing_is_an_error() -> None:
    def inner(x: Any) -> Any:
        return x

    @tf.function(autograph=False)  # autograph would rewrap the error as a StagingError
    def outer(x: Any) -> Any:
        compare(inner, x)
        return x

    message = ("compare(test_calling_compare_while_tracing_is_an_error.<locals>.inner) was called while "
               "TensorFlow traces a graph; it runs the function itself and must be called eagerly, "
               "outside any tf.function")
    with pytest.raises(EagerctlError, match=f"^{re.escape(message)}$"):
        outer(tf.constant(1.0))


# -- a stale graph: traced against objects the program has since replaced ----------------


def test_a_faster_eager_run_is_said_as_such_not_as_a_slowdown_below_one() -> None:
    from eagerctl._compare import speed

    assert speed(7.06) == "slowdown 7.1x"
    assert speed(0.25) == "eager 4.0x faster"
    assert speed(float("nan")) == "slowdown n/a"


def test_a_graph_referencing_deleted_variables_is_reported_as_a_divergence() -> None:
    ran: list[bool] = []
    state = {"weights": tf.Variable([1.0, 2.0], name="weights")}

    @tf.function
    def step(x: Any) -> Any:
        ran.append(tf.executing_eagerly())
        state["weights"].assign_add(x)
        return tf.reduce_sum(state["weights"])

    step(tf.constant([1.0, 1.0]))  # traced against the first variable
    state["weights"] = tf.Variable([10.0, 20.0], name="weights")  # the first one is deleted
    ran.clear()

    result = compare(step, tf.constant([1.0, 1.0]), repeat=2)

    assert result.match is False
    assert result.graph_error == (
        "test_a_graph_referencing_deleted_variables_is_reported_as_a_divergence.<locals>.step was traced "
        "against 1 variable that no longer exists (the program replaced what it read, e.g. a global "
        "`model = ...` assigned again), so its compiled graph cannot run, while the eager run uses the "
        "current objects; retrace it to train them: "
        "test_a_graph_referencing_deleted_variables_is_reported_as_a_divergence.<locals>.step = "
        "tf.function(test_a_graph_referencing_deleted_variables_is_reported_as_a_divergence.<locals>.step"
        ".python_function)")
    assert result.mismatches == ("output",)
    assert result.graph_output is None
    assert float(result.eager_output) == 32.0  # the eager run used the current variable
    assert np.isnan(result.graph_seconds) and np.isnan(result.slowdown)
    assert ran == [False, True, True, True, True]  # a fresh trace to find its variables, then eager only
    assert state["weights"].numpy().tolist() == [10.0, 20.0]  # restored: compare did not train
    lines = str(result).splitlines()
    assert lines[0].endswith("graph and eager DIFFER: the compiled graph is stale  (rtol=1e-05, atol=1e-06)")
    assert lines[1] == f"  {result.graph_error}"
    assert lines[3] == "  output  ()           float32   inf                  NO  the graph could not run"
    assert re.fullmatch(r"  time per call: eager \S+ \S+  \(2 timed calls; the graph did not run\)", lines[4])


# -- nondeterminism: each mode runs twice from the same state -----------------------------


def test_unseeded_random_ops_are_named_and_the_rest_is_still_compared() -> None:
    scale = tf.Variable(2.0, name="scale")

    @tf.function
    def noisy(x: Any) -> Any:
        noise = tf.random.normal(tf.shape(x), name="latent")
        kept = tf.nn.dropout(x, rate=0.5)
        scale.assign_add(1.0)
        return {"noisy": x + noise, "kept": kept, "clean": x * scale}

    result = compare(noisy, tf.ones((4, 3)), repeat=1)

    assert result.deterministic is False
    assert set(result.nondeterministic) == {"output['noisy']", "output['kept']"}
    assert result.random_ops == ("latent (RandomStandardNormal)", "dropout/random_uniform (RandomUniform)")
    # What does not vary is compared, and matches.
    assert result.match is True and result.mismatches == ()
    assert [r.varies for r in result.rows] == ["graph and eager", "graph and eager", "", ""]
    lines = str(result).splitlines()
    assert lines[0].endswith("graph and eager MATCH of 2 comparable values  (rtol=1e-05, atol=1e-06)")
    assert lines[1] == ("  nondeterministic: 2 values differ between two runs from the same state in graph "
                        "and eager mode, so graph against eager says nothing about them (marked 'varies')")
    assert lines[2] == ("  random ops in the graph: latent (RandomStandardNormal), dropout/random_uniform "
                        "(RandomUniform)")
    assert lines[3].startswith("  a seed does not help (each call draws new numbers): pass the random values")
    assert "varies" in lines[5] and "varies" in lines[6]
    assert float(scale.numpy()) == 2.0


def test_a_real_divergence_next_to_random_values_is_still_found() -> None:
    @tf.function
    def step(x: Any) -> Any:
        offset = 1.0 if tf.executing_eagerly() else 0.0
        return x + tf.random.uniform(tf.shape(x)), x + offset

    result = compare(step, tf.zeros((2,)), repeat=1)
    assert result.match is False
    assert result.mismatches == ("output[1]",)
    assert result.nondeterministic == ("output[0]",)
    assert result.max_abs_diff == 1.0  # over comparable values only


def test_only_random_values_is_nothing_comparable() -> None:
    @tf.function
    def sample() -> Any:
        return tf.random.uniform((3,))

    result = compare(sample, repeat=1)
    assert result.match is False and result.mismatches == ()
    assert str(result).splitlines()[0] == (
        "compare(test_only_random_values_is_nothing_comparable.<locals>.sample): NOTHING COMPARABLE: every "
        "value varies from run to run  (rtol=1e-05, atol=1e-06)")


def test_python_randomness_in_the_body_varies_only_eagerly() -> None:
    import random

    rng = random.Random(0)

    def jitter(x: Any) -> Any:
        return x + rng.random()  # frozen into the graph when traced; drawn again on each eager call

    result = compare(jitter, tf.constant(1.0), repeat=1)
    assert result.nondeterministic == ("output",)
    assert result.rows[0].varies == "eager"
    assert result.random_ops == ()
    assert str(result).splitlines()[2] == (
        "  no random op in the graph: the Python body draws random numbers (random, numpy) or reads changing "
        "Python state, which the graph froze when traced")

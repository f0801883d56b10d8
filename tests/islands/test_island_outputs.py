"""What an island returns, the errors that say how to fix a body, and the edges it meets.

NumPy arrays and Python numbers a body computes become tensors with each
run's value; a value the graph cannot carry is refused when the graph is
traced; a variable the trace never saw is an error when its gradient is
needed, never a silent None. Compared with the same computation compiled or
run eagerly: equal (these are exact float32 operations).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import eagerctl  # noqa: E402
from eagerctl import EagerctlError  # noqa: E402


def test_numpy_and_python_values_come_out_as_tensors_with_each_runs_value() -> None:
    @eagerctl.debuggable
    def stats(x: Any) -> Any:
        values = x.numpy()
        return {"mean": float(values.mean()), "doubled": values * 2, "count": int(values.size),
                "positive": bool((values > 0).all()), "peak": np.float32(values.max())}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def f(x: Any) -> Any:
        out = stats(x)
        assert all(isinstance(t, tf.Tensor) for t in out.values())
        assert out["doubled"].shape.as_list() == [None]  # depends on values: unknown
        return out

    for data in ([1.0, 2.0, 4.5], [-3.0, 0.5]):
        got = {k: v.numpy().tolist() for k, v in f(tf.constant(data)).items()}
        want = {k: np.asarray(v).tolist() for k, v in stats(tf.constant(data)).items()}
        assert got == want
    assert f.experimental_get_tracing_count() == 1


def test_a_string_made_from_a_value_is_refused_while_tracing() -> None:
    @eagerctl.debuggable
    def describe(x: Any) -> Any:
        return x * 2.0, f"max={x.numpy().max()}"

    f = tf.function(lambda x: describe(x))  # noqa: PLW0108 (called in a traced body)
    with pytest.raises(EagerctlError, match=re.escape(
            "eager island 'test_a_string_made_from_a_value_is_refused_while_tracing.<locals>.describe' "
            "returns a string at outputs[1] and reads `.numpy()` values: a string made from them would "
            "be the trace-time stand-in forever in the graph. Return a tensor instead "
            "(tf.constant(text), or tf.strings.as_string(tensor)), which carries each run's value")):
        f(tf.constant([1.0]))


def test_none_where_the_trace_returned_a_tensor_says_what_to_fix() -> None:
    @eagerctl.debuggable
    def forgetful(x: Any) -> Any:
        if tf.executing_eagerly() and float(tf.reduce_sum(x)) > 0:
            return None
        return x + 1.0

    f = tf.function(lambda x: forgetful(x))  # noqa: PLW0108 (called in a traced body)
    assert f(tf.constant(-1.0)).numpy() == 0.0
    with pytest.raises(tf.errors.UnknownError, match=re.escape(
            "eager island 'test_none_where_the_trace_returned_a_tensor_says_what_to_fix.<locals>."
            "forgetful' returned None at outputs, where its trace returned a float32 tensor: return a "
            "tensor there on every path (a branch without `return`?)")):
        f(tf.constant(1.0))


def test_a_value_where_the_trace_returned_none_is_an_error() -> None:
    @eagerctl.debuggable
    def only_eager(x: Any) -> Any:
        return x * 2.0 if tf.executing_eagerly() else None

    f = tf.function(lambda x: only_eager(x))  # noqa: PLW0108 (called in a traced body)
    with pytest.raises(tf.errors.UnknownError, match=re.escape(
            "at outputs, where its trace returned None, so the graph has no place for it: return it "
            "on every path, also when `tf.executing_eagerly()` is False")):
        f(tf.constant(1.0))


def test_a_body_returning_none_is_fine_when_its_trace_did_too() -> None:
    seen: list[float] = []

    @eagerctl.debuggable
    def log(x: Any) -> None:
        if tf.executing_eagerly():
            seen.append(float(x))

    @tf.function
    def f(x: Any) -> Any:
        log(x)
        return x * 2.0

    assert [float(f(tf.constant(v))) for v in (1.0, 2.0)] == [2.0, 4.0]
    assert seen == [1.0, 2.0]


def branching_model() -> tuple[Any, Any, Any]:
    small = tf.Variable(2.0, name="small_weight")
    large = tf.Variable(-1.0, name="large_weight")

    def body(x: Any) -> Any:
        # Branches on a value: the trace sees a stand-in (0.0) and takes the first branch.
        if float(tf.reduce_max(x).numpy()) < 1.0:
            return tf.reduce_sum(x * small)
        return tf.reduce_sum(x * large)

    return small, large, body


def test_a_variable_only_a_branch_the_trace_did_not_take_reads_is_an_error_not_a_none() -> None:
    small, large, body = branching_model()
    island = eagerctl.debuggable(body)

    @tf.function
    def grads(x: Any) -> Any:
        with tf.GradientTape() as tape:
            y = island(x)
        return tape.gradient(y, [small, large])

    got = grads(tf.constant([0.5]))
    assert (float(got[0]), got[1]) == (0.5, None)  # as compiled: `large` is not read on this path
    with pytest.raises(tf.errors.UnknownError, match=re.escape(
            "read the trainable variable(s) 'large_weight:0' in this run, but not in the trace that "
            "built the graph (a Python branch on a `.numpy()` value took another path there), so the "
            "graph has no gradient for them: they would silently get None. Read them on every path of "
            "the body (e.g. `w = tf.identity(self.kernel)` before the branch), or branch with tf.cond")):
        grads(tf.constant([3.0]))


def test_a_variable_read_only_at_run_time_by_a_body_with_nothing_to_differentiate_in_its_trace() -> None:
    # The trace reads no trainable variable and gets no float input: nothing for a tape to
    # differentiate there. A run that reads one under a tape must not leave it a silent None.
    weight = tf.Variable(2.0, name="late_weight")

    def body(n: Any) -> Any:
        if n.numpy() > 1:  # the trace's stand-in is 0: it takes the other branch
            return weight * tf.cast(n, tf.float32)
        return tf.cast(n, tf.float32)

    island = eagerctl.debuggable(body)

    @tf.function
    def grads(n: Any) -> Any:
        with tf.GradientTape() as tape:
            y = island(n)
        return y, tape.gradient(y, weight)

    y, g = grads(tf.constant(1))
    assert (float(y), g) == (1.0, None)  # as compiled: `weight` is not read on this path
    with pytest.raises(tf.errors.UnknownError, match=re.escape(
            "read the trainable variable(s) 'late_weight:0' in this run, but not in the trace")):
        grads(tf.constant(3))

    @tf.function
    def forward(n: Any) -> Any:  # no tape: nothing is checked, the value is right
        return island(n)

    assert float(forward(tf.constant(3))) == 6.0


def test_reading_every_variable_before_the_branch_gives_the_compiled_gradients() -> None:
    small, large, body = branching_model()

    def reads_both(x: Any) -> Any:
        tf.identity(small), tf.identity(large)
        return body(x)

    island = eagerctl.debuggable(reads_both)

    def compiled(x: Any) -> Any:
        return tf.cond(tf.reduce_max(x) < 1.0, lambda: tf.reduce_sum(x * small),
                       lambda: tf.reduce_sum(x * large))

    def make(fn: Any) -> Any:
        @tf.function
        def grads(x: Any) -> Any:
            with tf.GradientTape() as tape:
                y = fn(x)
            g = tape.gradient(y, [small, large], unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return y, g

        return grads

    for data in ([0.5], [3.0, 2.0]):
        got = make(island)(tf.constant(data))
        want = make(compiled)(tf.constant(data))
        assert tf.nest.map_structure(float, got) == tf.nest.map_structure(float, want)


def test_vectorized_map_over_an_island_runs_it_per_element_with_compiled_results() -> None:
    w = tf.Variable(3.0)
    seen: list[float] = []

    @eagerctl.debuggable
    def body(x: Any) -> Any:
        if tf.executing_eagerly():
            seen.append(float(x[0]))
        return x * w

    def make(fn: Any) -> Any:
        @tf.function
        def f(xs: Any) -> Any:
            with tf.GradientTape() as tape:
                y = tf.vectorized_map(fn, xs)
                total = tf.reduce_sum(y)
            return y, tape.gradient(total, w)

        return f

    xs = tf.constant([[1.0], [2.0], [4.0]])
    got = make(body)(xs)
    want = make(body.__wrapped__)(xs)
    assert tf.nest.map_structure(lambda t: t.numpy().tolist(), got) == \
        tf.nest.map_structure(lambda t: t.numpy().tolist(), want)
    # TF cannot vectorize an island: its fallback loop runs it once per element,
    # after one run on the first element alone.
    assert seen == [1.0, 1.0, 2.0, 4.0]


def test_an_island_in_a_tf_data_map_function_runs_per_element() -> None:
    seen: list[bool] = []

    @eagerctl.debuggable
    def scale(x: Any) -> Any:
        seen.append(tf.executing_eagerly())
        return x * 10.0 + float(x.numpy()) if tf.executing_eagerly() else x * 10.0 + x

    ds = tf.data.Dataset.from_tensor_slices([1.0, 2.0, 3.0]).map(scale)
    assert [float(v) for v in ds] == [11.0, 22.0, 33.0]
    assert seen == [False, True, True, True]
    assert [float(v) for v in ds] == [11.0, 22.0, 33.0]  # iterated again: eager again
    assert seen.count(True) == 6


THREADS_PROGRAM = """
import os, sys, threading
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(3)
import eagerctl

@tf.function
def inner(x):
    return tf.reduce_sum(x * x)

@eagerctl.debuggable(recursive=False)
def body(x):
    return inner(x) + 1.0

@tf.function
def step(x):
    return body(x)

results = []
def work():
    results.extend(float(step(tf.ones([4]))) for _ in range(10))

threads = [threading.Thread(target=work, daemon=True) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
print(len(results), sorted(set(results)), inner.experimental_get_tracing_count())
sys.stdout.flush()
os._exit(0)
"""


def test_recursive_false_islands_from_two_threads_with_an_inter_op_thread_to_spare() -> None:
    # The documented remedy for the py_function-style deadlock: more inter-op
    # threads than threads running such islands at once (set before TF starts).
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", THREADS_PROGRAM], capture_output=True, text=True,
                          env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 20 runs, each 4 + 1; `inner` stayed compiled (traced once) inside the islands.
    assert proc.stdout.strip().splitlines()[-1] == "20 [5.0] 1"

"""Eager islands (`eagerctl._island.call_as_island`) inside compiled tf.functions.

Real TensorFlow throughout. Gradients are compared with the compiled version of
the same function (the body traced into the graph), relative error < 1e-6.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from eagerctl import EagerctlError, _island  # noqa: E402
from eagerctl._island import call_as_island  # noqa: E402


def rel_err(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def assert_close(got: Any, want: Any) -> None:
    got_flat, want_flat = tf.nest.flatten(got), tf.nest.flatten(want)
    assert len(got_flat) == len(want_flat)
    for g, w in zip(got_flat, want_flat, strict=True):
        assert rel_err(g, w) < 1e-6, (g, w)


def island(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return call_as_island(fn, args, kwargs, name=fn.__name__)


def test_train_step_runs_the_island_eagerly_on_every_call() -> None:
    w = tf.Variable([[0.5, -1.0], [2.0, 0.25]])
    record: list[Any] = []

    def loss(x: Any, y: Any, *, scale: float) -> Any:
        record.append(tf.executing_eagerly())
        if tf.executing_eagerly():
            record.append(x.numpy().tolist())
        return tf.reduce_mean(tf.square(tf.matmul(x, w) - y)) * scale

    @tf.function
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            value = island(loss, x, y, scale=2.0)
        (grad,) = tape.gradient(value, [w])
        w.assign_sub(0.1 * grad)
        return value

    for i in range(3):
        step(tf.constant([[1.0, float(i)]]), tf.constant([[0.0, 1.0]]))
    # Traced once into a scratch graph (False), then eager on every step.
    assert record == [False, True, [[1.0, 0.0]], True, [[1.0, 1.0]], True, [[1.0, 2.0]]]
    assert step.experimental_get_tracing_count() == 1


def test_gradients_match_the_compiled_function() -> None:
    layer_w = tf.Variable(np.linspace(-1.0, 1.0, 12).reshape(4, 3).astype("float32"))
    layer_b = tf.Variable([0.1, -0.2, 0.3])
    idx = tf.constant([0, 2, 1, 0, 2])

    def head(h: Any, labels: Any, temperature: Any) -> Any:
        logits = (tf.matmul(h, layer_w) + layer_b) / temperature
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    def make(fn: Any) -> Any:
        @tf.function
        def grads(h: Any, t: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch([h, t])
                value = fn(tf.tanh(h), idx, t)
            return value, tape.gradient(value, [h, t, layer_w, layer_b])

        return grads

    h = tf.constant(np.random.default_rng(0).normal(size=(5, 4)).astype("float32"))
    t = tf.constant(1.5)
    got = make(lambda *a: island(head, *a))(h, t)
    want = make(head)(h, t)
    assert_close(got, want)


def test_persistent_tape_asks_twice() -> None:
    v = tf.Variable(3.0)

    def body(x: Any) -> Any:
        return tf.reduce_sum(x * x * v)

    @tf.function
    def twice(x: Any) -> Any:
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y = island(body, x)
        return tape.gradient(y, [x, v]), tape.gradient(y, [x, v])

    first, second = twice(tf.constant([1.0, -2.0]))
    assert_close(first, [np.array([6.0, -12.0]), 5.0])
    assert_close(second, first)


def test_nested_tapes_second_order_matches_compiled() -> None:
    v = tf.Variable(2.0)

    def cube(x: Any) -> Any:
        return tf.reduce_sum(x**3 * v)

    def make(fn: Any) -> Any:
        @tf.function
        def hessian(x: Any) -> Any:
            with tf.GradientTape() as outer:
                outer.watch(x)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    y = fn(x)
                g = inner.gradient(y, x)
            return y, g, outer.gradient(g, [x, v])

        return hessian

    x = tf.constant([1.0, 2.0, -0.5])
    assert_close(make(lambda x: island(cube, x))(x), make(cube)(x))


def test_tape_outside_the_tf_function() -> None:
    v = tf.Variable(0.5)

    def body(x: Any) -> Any:
        return tf.reduce_sum(tf.sin(x) * v)

    f = tf.function(lambda x: island(body, x))
    x = tf.constant([0.1, 0.7])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = f(x)
    got = tape.gradient(y, [x, v])
    assert_close(got, [0.5 * np.cos([0.1, 0.7]), np.sum(np.sin([0.1, 0.7]))])
    assert_close(tape.gradient(y, [x, v]), got)


def test_assigned_variables_update_once_per_run_and_in_order() -> None:
    calls = tf.Variable(0, dtype=tf.int64)
    total = tf.Variable(0.0)

    def body(x: Any) -> Any:
        calls.assign_add(1)
        total.assign_add(tf.reduce_sum(x))
        return x * 2.0

    @tf.function
    def step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = island(body, x)
        grad = tape.gradient(y, x)
        # Read after the island in the same graph: sees this run's update.
        return calls.read_value(), total.read_value(), grad

    assert [int(step(tf.constant([1.0, 2.0]))[0]) for _ in range(3)] == [1, 2, 3]
    c, t, g = step(tf.constant([1.0, 2.0]))
    assert (int(c), float(t), g.numpy().tolist()) == (4, 12.0, [2.0, 2.0])


def test_nested_outputs_keep_structure_dtypes_and_static_shapes() -> None:
    seen: dict[str, Any] = {}

    def body(x: Any, n: Any) -> Any:
        return {"pair": (x * 2.0, tf.cast(n, tf.int64)), "rows": tf.shape(x)[0], "none": None,
                "name": "tag"}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([], tf.int32)])
    def f(x: Any, n: Any) -> Any:
        out = island(body, x, n)
        seen.update(tf.nest.map_structure(
            lambda t: (t.dtype.name, t.shape.as_list()) if isinstance(t, tf.Tensor) else t, out))
        return out

    out = f(tf.ones([2, 3]), tf.constant(7))
    assert seen == {"pair": (("float32", [None, 3]), ("int64", [])), "rows": ("int32", []),
                    "none": None, "name": "tag"}
    assert out["pair"][0].numpy().tolist() == [[2.0] * 3] * 2
    assert (int(out["pair"][1]), int(out["rows"]), out["none"], out["name"]) == (7, 2, None, "tag")


def test_tf_functions_called_by_the_island_run_eagerly() -> None:
    record: list[bool] = []

    @tf.function
    def inner(x: Any) -> Any:
        record.append(tf.executing_eagerly())
        return x + 1.0

    def body(x: Any) -> Any:
        return inner(x)

    f = tf.function(lambda x: island(body, x))
    f(tf.constant(1.0))
    f(tf.constant(2.0))
    # The scratch trace traces `inner` (False); both runs call its Python body.
    assert record == [False, True, True]
    assert inner.experimental_get_tracing_count() == 1


def test_xla_compiled_function_is_an_error_at_trace_time() -> None:
    def my_loss(x: Any) -> Any:
        return x * 2.0

    @tf.function(jit_compile=True)
    def compiled_step(x: Any) -> Any:
        return call_as_island(my_loss, (x,), {}, name="my_loss")

    message = (
        "@debuggable function 'my_loss' was called while TensorFlow traces the XLA-compiled "
        "function 'compiled_step'; it cannot run eagerly there, because XLA compiles the whole "
        "function and cannot call back into Python. Turn jit_compile off for that model or "
        "function (model.compile(..., jit_compile=False) or tf.function(..., jit_compile=False)), "
        "or use @debuggable(island=False) to trace its body into the graph"
    )
    with pytest.raises(EagerctlError, match=re.escape(message)):
        compiled_step(tf.constant(1.0))


def test_outside_a_trace_is_an_error() -> None:
    with pytest.raises(EagerctlError, match=re.escape(
            "call_as_island('f') was called while TensorFlow executes eagerly; an eager island only "
            "makes sense while a tf.function is being traced: call the function directly")):
        call_as_island(lambda: 1, (), {}, name="f")


def test_untraceable_body_names_the_function() -> None:
    def picky(x: Any) -> Any:
        if not tf.executing_eagerly():
            raise ValueError("no graphs here")
        return x

    f = tf.function(lambda x: call_as_island(picky, (x,), {}, name="picky"))
    with pytest.raises(EagerctlError, match=re.escape(
            "@debuggable function 'picky' could not be traced to learn its outputs, which an eager "
            "island needs before it runs (ValueError: ")) as caught:
        f(tf.constant(1.0))
    assert str(caught.value).endswith(
        "no graphs here\n). Its body is traced once with symbolic tensors: guard code that needs real "
        "values with `if tf.executing_eagerly():`, or use @debuggable(island=False)")


def test_outputs_that_change_shape_at_run_time_are_an_error() -> None:
    def shifty(x: Any) -> Any:
        return tf.concat([x, x], 0) if tf.executing_eagerly() else x

    f = tf.function(lambda x: call_as_island(shifty, (x,), {}, name="shifty"))
    with pytest.raises(tf.errors.UnknownError, match=re.escape(
            "eager island 'shifty' returned a float32 tensor of shape (4,) at outputs, but its "
            "traced output there is float32 with shape (2,): an island must return the dtypes and "
            "shapes it was traced with. If that shape depends on values (it was learned from a trace "
            "where `.numpy()` returns a stand-in, unknown dimensions as 1), compute the output with "
            "TF ops from the tensor arguments (e.g. tf.boolean_mask, not NumPy), or return it as a "
            "NumPy array, whose dimensions an island leaves unknown")):
        f(tf.constant([1.0, 2.0]))


def test_gradient_of_a_dropped_run_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_island.tapes, "KEEP_PENDING", 1)

    def body(x: Any) -> Any:
        return x * 3.0

    f = tf.function(lambda x: island(body, x))
    x = tf.constant(1.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        first = f(x)
        second = f(x)
    assert float(tape.gradient(second, x)) == 3.0
    with pytest.raises(tf.errors.UnknownError, match=re.escape(
            "eager island 'body': the order-1 gradient of one of its calls is not available: "
            "eagerctl keeps the tapes of the last 1 runs of an island that wait for a gradient (at "
            "most 268435456 bytes, estimated) and of the last 4 whose gradient was computed, and this "
            "run is older, or it recorded no tape for this order of gradient")):
        tape.gradient(first, x)


def test_runs_without_a_gradient_graph_keep_no_tape(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    build = _island._Island.build

    def spy(self: Any) -> Any:
        built.append(self)
        return build(self)

    monkeypatch.setattr(_island._Island, "build", spy)
    w = tf.Variable(2.0)

    def body(x: Any) -> Any:
        return x * w

    predict = tf.function(lambda x: island(body, x))
    for _ in range(3):
        predict(tf.constant(1.0))

    @tf.function
    def train(x: Any) -> Any:
        with tf.GradientTape() as tape:
            y = island(body, x)
        return tape.gradient(y, w)

    for _ in range(3):
        assert float(train(tf.constant(1.0))) == 1.0
    inference, training = built
    assert (len(inference.pending), len(inference.done)) == (0, 0)
    assert (len(training.pending), len(training.done)) == (0, 3)  # each run's gradient computed
    assert all(len(entry.tapes) == 1 for entry in training.done.values())



def test_numpy_while_tracing_gets_a_stand_in_only_in_the_tracing_thread() -> None:
    printed: list[str] = []

    def body(x: Any) -> Any:
        printed.append(str(x.numpy()))
        return x + 1.0

    f = tf.function(lambda x: island(body, x))
    assert float(f(tf.constant(1.5))) == 2.5
    assert printed == ["<value unknown: eagerctl is tracing an eager island once to learn its outputs>",
                       "1.5"]

    @tf.function
    def plain(x: Any) -> Any:
        printed.append(str(hasattr(x, "numpy")))
        return x

    plain(tf.constant(1.0))
    assert printed[-1] == "False"


def test_nested_and_ragged_arguments_reach_the_body_rebuilt() -> None:
    seen: list[Any] = []

    def body(batch: Any, rows: Any, *, extra: Any, scale: float) -> Any:
        if tf.executing_eagerly():
            seen.append((sorted(batch), type(rows).__name__, rows.row_lengths().numpy().tolist(), scale))
        return batch["a"] * scale + tf.reduce_sum(rows.values) + extra[0]

    @tf.function
    def f(a: Any, b: Any, values: Any) -> Any:
        rows = tf.RaggedTensor.from_row_lengths(values, [2, 1])
        with tf.GradientTape() as tape:
            tape.watch([a, values])
            out = call_as_island(body, ({"a": a, "b": b}, rows), {"extra": [b], "scale": 3.0}, name="body")
        return out, tape.gradient(out, [a, values])

    out, (ga, gv) = f(tf.constant([1.0, 2.0]), tf.constant(10.0), tf.constant([1.0, 2.0, 4.0]))
    assert out.numpy().tolist() == [20.0, 23.0]
    assert (ga.numpy().tolist(), gv.numpy().tolist()) == ([3.0, 3.0], [2.0, 2.0, 2.0])
    assert seen == [(["a", "b"], "RaggedTensor", [2, 1], 3.0)]


def test_islands_in_while_loop_and_cond_match_compiled_gradients() -> None:
    v = tf.Variable(1.1)

    def step(y: Any) -> Any:
        return y * v + 0.5

    def make(fn: Any) -> Any:
        @tf.function
        def f(x: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.while_loop(lambda i, y: i < 5, lambda i, y: (i + 1, fn(y)), (0, x))[1]
                z = tf.cond(x > 0, lambda: fn(y), lambda: y)
            return z, tape.gradient(z, [x, v])

        return f

    x = tf.constant(0.7)
    assert_close(make(lambda y: island(step, y))(x), make(step)(x))


def test_tf_gradients_first_and_second_order_match_compiled() -> None:
    v = tf.Variable(3.0)

    def body(x: Any) -> Any:
        return x * x * v

    def make(fn: Any) -> Any:
        @tf.function
        def f(x: Any) -> Any:
            y = fn(x)
            gx, gv = tf.gradients(y, [x, v])
            return gx, gv, tf.gradients(gx, x)[0]

        return f

    x = tf.constant(2.0)
    assert_close(make(lambda x: island(body, x))(x), make(body)(x))

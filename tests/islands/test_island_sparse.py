"""Sparse gradients through eager islands stay sparse, as in the compiled program.

A gather from a variable (an `Embedding`) has a `tf.IndexedSlices` gradient.
Optimizers update such a variable differently: Keras 3's Adam moves the
moments of the gathered rows only, so a dense gradient (every other row's
moments decaying) trains another model; and the dense gradient of a large
embedding is a tensor of its full size on every step. An island's gradient
keeps the type the traced body's gradient has (`_island._learn_gradient_specs`).

Each test compares with the same program without the island (the body traced
into the graph). Before islands kept gradient types, every test here failed:
the optimizer got a dense tensor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import eagerctl  # noqa: E402
from eagerctl._island import call_as_island  # noqa: E402

keras = tf.keras
VOCAB = 300
DIM = 8


def maybe(debug: bool) -> Any:
    return eagerctl.debuggable if debug else (lambda fn: fn)


def make_classifier(debug: bool) -> tuple[Any, Any, list[bool]]:
    """A bag-of-words text classifier whose embedding layer's `call` is the suspect."""
    record: list[bool] = []

    class Embed(keras.layers.Layer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.tokens = keras.layers.Embedding(VOCAB, DIM)

        @maybe(debug)
        def call(self, ids: Any) -> Any:
            record.append(tf.executing_eagerly())
            return tf.reduce_mean(self.tokens(ids), axis=1)

    keras.utils.set_random_seed(5)
    model = keras.Sequential([Embed(), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.build((None, 6))
    optimizer = keras.optimizers.Adam(0.05)

    @tf.function
    def train_step(ids: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(ids, training=True) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, grads[0]

    return model, train_step, record


def batches(n: int) -> list[tuple[Any, Any]]:
    rng = np.random.default_rng(3)
    out = []
    for _ in range(n):
        ids = rng.integers(0, 40, size=(8, 6)).astype("int32")  # rows 40..299 never seen
        out.append((tf.constant(ids), tf.constant((ids[:, :1] % 3).astype("float32"))))
    return out


def test_adam_trains_an_island_embedding_exactly_like_the_compiled_program() -> None:
    debugged, debugged_step, record = make_classifier(True)
    reference, reference_step, _ = make_classifier(False)
    for ids, y in batches(6):
        loss, grad = debugged_step(ids, y)
        want_loss, want_grad = reference_step(ids, y)
        assert isinstance(want_grad, tf.IndexedSlices)
        assert isinstance(grad, tf.IndexedSlices), type(grad)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
        np.testing.assert_allclose(tf.convert_to_tensor(grad), tf.convert_to_tensor(want_grad),
                                   rtol=1e-5, atol=1e-7)
    assert record[-6:] == [True] * 6
    for got, want in zip(debugged.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_fit_with_an_island_embedding_matches_fit_without() -> None:
    def train(debug: bool) -> tuple[list[float], list[Any], list[bool]]:
        model, _, record = make_classifier(debug)
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        data = batches(4)
        x = np.concatenate([ids.numpy() for ids, _ in data])
        y = np.concatenate([t.numpy() for _, t in data])
        history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return history.history["loss"], model.get_weights(), record

    losses, weights, record = train(True)
    want_losses, want_weights, _ = train(False)
    assert record[-12:] == [True] * 12
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    for got, want in zip(weights, want_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_million_row_embedding_gets_a_gradient_of_the_rows_it_gathered() -> None:
    table = tf.Variable(tf.zeros([1_000_000, 4]))

    def lookup(ids: Any) -> Any:
        return tf.nn.embedding_lookup(table, ids) * 2.0

    @tf.function
    def grads(ids: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(call_as_island(lookup, (ids,), {}, name="lookup"))
        return tape.gradient(loss, table)

    grad = grads(tf.constant([7, 999_999, 7]))
    assert isinstance(grad, tf.IndexedSlices), type(grad)
    assert grad.values.shape == (3, 4)
    assert grad.indices.numpy().tolist() == [7, 999_999, 7]
    assert grad.dense_shape.numpy().tolist() == [1_000_000, 4]
    np.testing.assert_array_equal(grad.values, np.full((3, 4), 2.0))


PEAK_PROGRAM = """
import os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
import eagerctl

table = tf.Variable(tf.zeros([1_000_000, 64]))  # 256 MB
optimizer = tf.keras.optimizers.SGD(0.1)

def lookup(ids):
    return tf.nn.embedding_lookup(table, ids)

if sys.argv[1] == "island":
    lookup = eagerctl.debuggable(lookup)

@tf.function
def step(ids):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(lookup(ids)))
    optimizer.apply_gradients([(tape.gradient(loss, table), table)])
    return loss

ids = tf.constant([1, 2, 3])
step.get_concrete_function(ids)  # traced: the island's scratch trace, the optimizer's state
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(5):
    step(ids)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) * 1024)
"""


def test_training_a_million_row_embedding_in_an_island_keeps_peak_memory_small(tmp_path: Any) -> None:
    """Peak RSS over 5 steps after the trace, in a fresh process, against the program without eagerctl.

    A dense gradient took 256 MB more, and reading the table for it another 256 MB
    (TF copies a variable that sparse ops touched on every read). Keras 2's optimizer
    (TF 2.13) itself takes more than both: the bound is relative.
    """
    script = tmp_path / "peak.py"
    script.write_text(textwrap.dedent(PEAK_PROGRAM))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    grown = {}
    for mode in ("island", "plain"):
        done = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True,
                              env=env, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        grown[mode] = int(done.stdout.split()[-1])
    assert grown["island"] < grown["plain"] + 32 * 2**20, json.dumps(grown)


def test_a_gathered_tensor_argument_keeps_its_sparse_gradient_and_its_second_order() -> None:
    def pick(params: Any, ids: Any) -> Any:
        return tf.gather(params, ids) ** 2

    def make(fn: Any) -> Any:
        @tf.function
        def run(params: Any, ids: Any) -> Any:
            with tf.GradientTape() as outer:
                outer.watch(params)
                with tf.GradientTape() as inner:
                    inner.watch(params)
                    y = tf.reduce_sum(fn(params, ids))
                g = inner.gradient(y, params)
                penalty = tf.reduce_sum(g.values ** 2) if isinstance(g, tf.IndexedSlices) else \
                    tf.reduce_sum(g ** 2)
            return g, outer.gradient(penalty, params)

        return run

    params = tf.constant(np.arange(12, dtype="float32").reshape(6, 2))
    ids = tf.constant([4, 1])
    got_g, got_gg = make(lambda p, i: call_as_island(pick, (p, i), {}, name="pick"))(params, ids)
    want_g, want_gg = make(pick)(params, ids)
    assert isinstance(want_g, tf.IndexedSlices)
    assert isinstance(got_g, tf.IndexedSlices), type(got_g)
    np.testing.assert_allclose(got_g.values, want_g.values)
    np.testing.assert_array_equal(got_g.indices, want_g.indices)
    np.testing.assert_allclose(tf.convert_to_tensor(got_gg), tf.convert_to_tensor(want_gg))


def test_a_run_that_takes_a_dense_path_gives_the_same_values_as_slices() -> None:
    table = tf.Variable(np.arange(10, dtype="float32").reshape(5, 2))

    def lookup(ids: Any) -> Any:
        # The trace sees stand-in zeros and gathers; a run with a negative id
        # reads the whole table instead (dense gradient), and one may read nothing.
        if tf.executing_eagerly() and int(ids.numpy()[0]) < 0:
            return tf.reduce_sum(table * 3.0, axis=0, keepdims=True)
        if tf.executing_eagerly() and int(ids.numpy()[0]) > 100:
            return tf.zeros([1, 2])
        return tf.gather(table, ids[:1])

    @tf.function
    def grads(ids: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(call_as_island(lookup, (ids,), {}, name="lookup"))
        return tape.gradient(loss, table)

    sparse = grads(tf.constant([3]))
    assert isinstance(sparse, tf.IndexedSlices)
    np.testing.assert_array_equal(tf.convert_to_tensor(sparse), [[0, 0], [0, 0], [0, 0], [1, 1], [0, 0]])
    dense = grads(tf.constant([-1]))
    assert isinstance(dense, tf.IndexedSlices)
    np.testing.assert_array_equal(tf.convert_to_tensor(dense), np.full((5, 2), 3.0))
    empty = grads(tf.constant([500]))
    assert isinstance(empty, tf.IndexedSlices) and empty.values.shape[0] == 0
    np.testing.assert_array_equal(tf.convert_to_tensor(empty), np.zeros((5, 2)))


def test_a_dense_read_next_to_the_gather_gives_a_dense_gradient_as_compiled() -> None:
    table = tf.Variable(np.ones((4, 3), "float32"))

    def both(ids: Any) -> Any:
        return tf.gather(table, ids) + tf.reduce_sum(table)

    def make(fn: Any) -> Any:
        @tf.function
        def grads(ids: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(fn(ids))
            return tape.gradient(loss, table)

        return grads

    got = make(lambda i: call_as_island(both, (i,), {}, name="both"))(tf.constant([0, 2]))
    want = make(both)(tf.constant([0, 2]))
    assert type(got) is type(want)
    np.testing.assert_allclose(tf.convert_to_tensor(got), tf.convert_to_tensor(want))

"""An eager island inside a `tf.while_loop` of many iterations, differentiated.

The loop runs the island once per iteration, and the loop's gradient asks for
those runs' tapes newest first, after all of them ran. Islands once kept at
most 1,024 runs waiting for a gradient (oldest dropped first), so a loop of
1,500 iterations failed with `UnknownError` ("the order-1 gradient of one of
its calls is not available") where the same program without eagerctl
trained. Memory is bounded by the estimated bytes of the kept tapes
(`KEEP_BYTES`, each run counting at least `RUN_BYTES`) instead.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import eagerctl  # noqa: E402
from eagerctl import _island  # noqa: E402

STEPS = 1500
UNITS = 4


def make_rnn(debug: bool) -> tuple[Any, list[Any], list[bool]]:
    """A hand-written RNN over a long sequence (AutoGraph makes the `for` a tf.while_loop)."""
    record: list[bool] = []
    rng = np.random.default_rng(11)
    w = tf.Variable(rng.normal(0, 0.3, (2, UNITS)).astype("float32"), name="w")
    u = tf.Variable(rng.normal(0, 0.3, (UNITS, UNITS)).astype("float32"), name="u")

    def cell(x_t: Any, h: Any) -> Any:
        record.append(tf.executing_eagerly())
        return tf.tanh(tf.matmul(x_t, w) + tf.matmul(h, u))

    if debug:
        cell = eagerctl.debuggable(cell)

    @tf.function
    def loss_and_grads(xs: Any) -> Any:
        with tf.GradientTape() as tape:
            h = tf.zeros([1, UNITS])
            total = tf.constant(0.0)
            for t in tf.range(STEPS):
                h = cell(xs[t], h)
                total += tf.reduce_sum(h)
        return total, tape.gradient(total, [w, u])

    return loss_and_grads, [w, u], record


def test_an_island_in_a_1500_iteration_loop_has_the_compiled_gradient() -> None:
    xs = tf.constant(np.random.default_rng(2).normal(size=(STEPS, 1, 2)).astype("float32"))
    debugged, _, record = make_rnn(True)
    reference, _, _ = make_rnn(False)
    loss, grads = debugged(xs)
    want_loss, want_grads = reference(xs)
    assert record.count(True) == STEPS
    assert not any(_island.live_islands()[-1].pending.values())  # every run's tape was used
    np.testing.assert_allclose(loss, want_loss, rtol=1e-4)
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_runs_are_still_bounded_by_their_estimated_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop longer than the byte bound allows fails with the error naming the island and the fix."""
    monkeypatch.setattr(_island.tapes, "KEEP_BYTES", 200 * _island.tapes.RUN_BYTES)
    xs = tf.zeros([STEPS, 1, 2])
    debugged, _, _ = make_rnn(True)
    with pytest.raises(tf.errors.UnknownError, match=re.escape(
            "eager island 'make_rnn.<locals>.cell': the order-1 gradient of one of its calls is not "
            "available")):
        debugged(xs)

"""replay() and its inputs: an iterator's batch is kept, not read again; what cannot be kept is said."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import eagerctl


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(open(__file__), 1) if line.rstrip().endswith(marker))


def make_step() -> tuple[Any, tf.Variable, list[float]]:
    total = tf.Variable(0.0)
    seen: list[float] = []

    @tf.function
    def step(iterator: Any) -> Any:
        batch = next(iterator)
        total.assign_add(tf.reduce_sum(batch))
        return tf.reduce_sum(tf.math.sqrt(batch))  # SQRT LINE

    return step, total, seen


def test_the_batch_an_iterator_gave_is_replayed_and_the_iterator_goes_on_after_it() -> None:
    data = np.array([[1.0, 4.0], [9.0, 16.0], [-1.0, 1.0], [25.0, 36.0], [49.0, 64.0]], "float32")
    step, total, _ = make_step()
    iterator = iter(tf.data.Dataset.from_tensor_slices(data).prefetch(2))  # batches read ahead, too
    order = list(data)
    bad = 3
    with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay():
        for _ in range(5):
            step(iterator)
    error = info.value
    assert (error.lineno, error.step) == (line_of("# SQRT LINE"), bad)
    assert "op Sqrt produced NaN in 1 of 2 values (float32 (2,))" in str(error)
    assert "input 0: finite, min -1, max 1 (float32 (2,))" in str(error)  # the very batch, read again
    # Afterwards the iterator is where the failed call left it: the next batch comes next.
    np.testing.assert_array_equal(next(iterator).numpy(), order[bad])
    assert float(total.numpy()) == pytest.approx(sum(float(row.sum()) for row in order[:bad]))


def test_an_iterator_that_cannot_be_saved_is_reported_not_replayed() -> None:
    def gen() -> Any:
        yield from ([1.0, 4.0], [-1.0, 4.0])

    dataset = tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec((2,), tf.float32))
    step, total, _ = make_step()
    iterator = iter(dataset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay():
            step(iterator)
            step(iterator)
    error = info.value
    assert error.step == 2 and error.site is None
    assert "not replayed: the batch could not be kept: its tf.data iterator cannot be saved" in str(error)
    assert float(total.numpy()) == 8.0
    # Said once, at the first call (not only when a call fails), pointing at the program's line.
    ours = [w for w in caught if issubclass(w.category, eagerctl.EagerctlWarning)]
    assert len(ours) == 1 and ours[0].filename == __file__
    head = "eagerctl.replay(): calls of tf.function 'step' cannot be replayed: its tf.data iterator cannot be"
    assert str(ours[0].message).startswith(head)


def test_a_call_that_fails_only_compiled_is_reported_as_a_difference() -> None:
    settings = {"sign": -1.0}

    @tf.function
    def step(x: Any) -> Any:
        return tf.math.log(x * settings["sign"])  # Python: frozen into the graph when traced

    with pytest.raises(eagerctl.ReplayError) as info, eagerctl.replay():
        step(tf.constant(-2.0))  # traced with sign -1: log(2)
        settings["sign"] = 1.0
        step(tf.constant(2.0))  # compiled: still sign -1, log(-2) is NaN; eagerly: log(2)
    error = info.value
    assert error.site is None and error.step == 2
    assert "it ran through without a NaN or Inf and without an error: compiled and eager runs" in str(error)

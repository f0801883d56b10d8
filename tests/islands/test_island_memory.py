"""Eager islands keep memory bounded and flat.

Measured, never timed. Heap bytes are glibc's `mallinfo2` (bytes in use,
mmap'd blocks included): TensorFlow's CPU tensors and its C++ caches are
allocated there, so a kept tape or a cached constant per call shows. Python
objects are counted with `gc.get_objects()`. Each bound below is far under
what one leaked tape per call (or one cached tensor per call) would add over
the number of calls made, and far over the noise seen here (a few KB).
"""

from __future__ import annotations

import ctypes
import gc
import weakref
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from eagerctl import _island  # noqa: E402
from eagerctl._island import call_as_island  # noqa: E402

ACTIVATION = 128 * 1024  # float32 elements: a 512 KB activation


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def heap_bytes() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def growth(step: Any, calls: int, warmup: int = 50) -> tuple[float, int]:
    """Heap bytes retained per call, and Python objects gained, over `calls` calls after a warm-up."""
    for _ in range(warmup):
        step()
    gc.collect()
    heap, objects = heap_bytes(), len(gc.get_objects())
    for _ in range(calls):
        step()
    gc.collect()
    return (heap_bytes() - heap) / calls, len(gc.get_objects()) - objects


def islands_named(name: str) -> list[Any]:
    return [i for i in _island.live_islands() if i.name == name]


def test_inference_after_a_gradient_keeps_no_tapes() -> None:
    w = tf.Variable(1.5)

    def big(x: Any) -> Any:
        return tf.reduce_sum(tf.sin(x) * w)

    f = tf.function(lambda x: call_as_island(big, (x,), {}, name="big"))
    x = tf.random.normal([ACTIVATION])
    with tf.GradientTape() as tape:  # a gradient through the island, from outside the function
        y = f(x)
    assert tape.gradient(y, w) is not None
    (island,) = islands_named("big")
    per_call, objects = growth(lambda: f(x), calls=300)
    # Each inference run used to keep a persistent tape of the 512 KB activation.
    assert (len(island.pending), island.pending_bytes) == (0, 0)
    assert per_call < 2048, per_call
    assert objects < 100, objects


def test_gradient_every_tenth_step_keeps_only_the_runs_that_are_differentiated() -> None:
    w = tf.Variable(0.5)

    def big(x: Any) -> Any:
        return tf.reduce_sum(tf.tanh(x * w))

    f = tf.function(lambda x: call_as_island(big, (x,), {}, name="tenth"))
    x = tf.random.normal([ACTIVATION])
    step = [0]

    def run() -> None:
        step[0] += 1
        if step[0] % 10:
            f(x)
            return
        with tf.GradientTape() as tape:
            y = f(x)
        tape.gradient(y, w)

    per_call, _ = growth(run, calls=300)
    (island,) = islands_named("tenth")
    assert len(island.pending) == 0
    assert len(island.done) <= _island.tapes.KEEP_DONE
    assert per_call < 4096, per_call


def test_kept_tapes_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_island.tapes, "KEEP_BYTES", 8 * 2**20)
    w = tf.Variable(2.0)

    def big(x: Any) -> Any:
        return tf.reduce_sum(tf.exp(x * w))

    f = tf.function(lambda x: call_as_island(big, (x,), {}, name="bounded"))
    x = tf.random.normal([ACTIVATION]) * 0.1
    with tf.GradientTape(persistent=True) as tape:
        ys = [f(x) for _ in range(40)]  # 40 runs wait for a gradient that never comes for most
        (island,) = islands_named("bounded")
        assert 0 < island.pending_bytes <= _island.tapes.KEEP_BYTES
        assert len(island.pending) < 40
    # The newest runs are still there: their gradients are right.
    assert np.isclose(float(tape.gradient(ys[-1], w)), float(tf.reduce_sum(x * tf.exp(x * w))), rtol=1e-5)


_trials = iter(range(10**6))


def make_and_train() -> weakref.ref[Any]:
    trial = next(_trials)
    model_w = tf.Variable(np.full((64, 64), 0.01, "float32"))

    def head(h: Any) -> Any:
        return tf.reduce_mean(tf.square(tf.matmul(h, model_w)))

    @tf.function
    def train_step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = call_as_island(head, (tf.nn.relu(x),), {}, name=f"trial{trial}")
        model_w.assign_sub(0.01 * tape.gradient(loss, model_w))
        return loss

    for _ in range(3):
        train_step(tf.ones((256, 64)))
    (island,) = islands_named(f"trial{trial}")
    return weakref.ref(island)


def test_islands_and_their_tapes_are_freed_with_the_function() -> None:
    refs = [make_and_train() for _ in range(3)]
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    # One train step per hyperparameter trial: flat over many trials.
    per_trial, _ = growth(make_and_train, calls=20, warmup=3)
    assert per_trial < 64 * 1024, per_trial


def test_nothing_grows_per_call_in_training_or_inference() -> None:
    w = tf.Variable(tf.ones([8, 8]))

    def small(x: Any) -> Any:
        return tf.matmul(x, w)

    @tf.function
    def train(x: Any) -> Any:
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(call_as_island(small, (x,), {}, name="small"))
        w.assign_sub(1e-6 * tape.gradient(y, w))
        return y

    infer = tf.function(lambda x: call_as_island(small, (x,), {}, name="small"))
    x = tf.ones([4, 8])
    # A fresh Python int per call (a call id) is cached by TF: about 1.5 KB per call, forever.
    per_call, objects = growth(lambda: train(x), calls=1000)
    assert per_call < 200, per_call
    assert objects < 100, objects
    per_call, objects = growth(lambda: infer(x), calls=1000)
    assert per_call < 200, per_call
    assert objects < 100, objects

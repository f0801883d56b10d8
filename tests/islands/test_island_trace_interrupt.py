"""Ctrl-C while an eager island is traced, or runs, reaches the user as `KeyboardInterrupt`.

An island's first call traces its body once into a scratch graph (to learn its
outputs). Ctrl-C raises `KeyboardInterrupt` in whatever Python code the main
thread runs at that moment; when that is a callback of TensorFlow's C++ layer
(a variable's `handle`, read for the `VariableWatcher` that tells which
variables the body reads), the C++ function returns as if nothing happened,
Python reports `SystemError: ... returned a result with an exception set`,
Keras and AutoGraph wrap that again, and eagerctl used to wrap it once more
into an `IslandError` telling the user to guard `.numpy()` code. Now the
interrupt itself propagates, the state is as before (no scope, the flag
unchanged, the layers' loss lists as they were), and the next `fit` traces
again and trains exactly as the program without eagerctl.

Every signal here is a real SIGINT (`signal.pthread_kill` to the main thread),
handled by Python's own handler, which each test installs for itself
(`ctrl_c_raises`: pytest may run in the background with SIGINT ignored). To
land it in TensorFlow's C++ callback, where a person's Ctrl-C lands now and
then, the first test sends it from a profile hook at the moment that callback
calls back into Python, while the island is being traced.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from helpers import ctrl_c_raises  # noqa: E402

import eagerctl  # noqa: E402

keras = tf.keras
MAIN: int = threading.main_thread().ident or threading.get_ident()
WAIT = 30.0  # only a lost signal waits this long


def maybe(debug: bool) -> Any:
    return eagerctl.debuggable if debug else (lambda fn: fn)


def make_model(debug: bool, wait_in_trace: threading.Event | None = None) -> tuple[Any, list[bool]]:
    """A regression model with a custom `train_step` whose forward pass and loss are the suspect.

    With `wait_in_trace`, the body's first trace sets it and loops until Ctrl-C ends it.
    """
    runs: list[bool] = []

    class Regressor(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.hidden = keras.layers.Dense(16, activation="relu",
                                             activity_regularizer=keras.regularizers.L2(1e-3))
            self.norm = keras.layers.BatchNormalization()
            self.out = keras.layers.Dense(1)

        def build(self, input_shape: Any) -> None:
            self.hidden.build(input_shape)
            self.norm.build((None, 16))
            self.out.build((None, 16))
            super().build(input_shape)

        def call(self, x: Any, training: bool = False) -> Any:
            return self.out(self.norm(self.hidden(x), training=training))

        @maybe(debug)
        def forward(self, x: Any, y: Any) -> Any:
            runs.append(tf.executing_eagerly())
            pred = self(x, training=True)
            loss = tf.reduce_mean(tf.square(pred - y)) + tf.add_n(self.losses)
            if wait_in_trace is not None and not wait_in_trace.is_set() and not tf.executing_eagerly():
                wait_in_trace.set()
                deadline = time.monotonic() + WAIT
                while time.monotonic() < deadline:  # Ctrl-C ends this
                    time.sleep(0.01)
            return loss

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y = data
            with tf.GradientTape() as tape:
                loss = self.forward(x, y)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
            return {"loss": loss}

    keras.utils.set_random_seed(7)
    model = Regressor()
    model.build((None, 8))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.optimizer.build(model.trainable_variables)  # as fit does before its first step
    return model, runs


def dataset() -> Any:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x @ rng.normal(size=(8, 1)) + 0.1).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def weights(model: Any) -> list[Any]:
    return [np.asarray(w) for w in model.get_weights()]


def plain_run() -> tuple[list[float], list[Any]]:
    """The same program without eagerctl and without Ctrl-C: two epochs of `fit`."""
    model, _ = make_model(debug=False)
    history = model.fit(dataset(), epochs=2, verbose=0)
    return history.history["loss"], weights(model)


def loss_ids(model: Any) -> list[int]:
    """The losses the model's layers hold (Keras 2 keeps those of `build`'s symbolic call)."""
    return [id(loss) for layer in (model.hidden, model.norm, model.out) for loss in layer.losses]


def assert_idle() -> None:
    state = eagerctl.status()
    assert state.scopes == () and state.override is None, state
    assert tf.config.functions_run_eagerly() is False
    assert eagerctl.is_eager() is False


def assert_trains_as_without_eagerctl(model: Any, runs: list[bool]) -> None:
    runs.clear()
    history = model.fit(dataset(), epochs=2, verbose=0)
    want_loss, want_weights = plain_run()
    np.testing.assert_allclose(history.history["loss"], want_loss, rtol=1e-4)
    for got, want in zip(weights(model), want_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # Traced once again, then run eagerly on each of the 2 x 4 steps.
    assert runs[0] is False and runs[1:] == [True] * 8, runs


def _is_island_trace(frame: FrameType | None) -> bool:
    """Whether `frame` runs inside the island's build (eagerctl's `_island/build.py`) of `forward`."""
    names, files = set(), set()
    while frame is not None:
        names.add(frame.f_code.co_name)
        files.add(os.path.basename(os.path.dirname(frame.f_code.co_filename)) + "/"
                  + os.path.basename(frame.f_code.co_filename))
        frame = frame.f_back
    return bool({"forward", "tf__forward"} & names) and "_island/build.py" in files


@contextmanager
def sigint_in_tf_callback(c_function: str, python_function: str) -> Iterator[list[str]]:
    """Send SIGINT once, when TF's C++ `c_function` calls `python_function` in an island's trace.

    Yields the list of where it was sent (empty: never).
    """
    calls: list[bool] = []  # per C call in progress: is it `c_function`?
    sent: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call":
            calls.append(getattr(arg, "__name__", None) == c_function)
        elif event in ("c_return", "c_exception"):
            if calls:
                calls.pop()
        elif (event == "call" and not sent and calls and calls[-1]
              and frame.f_code.co_name == python_function and _is_island_trace(frame)):
            sent.append(f"{c_function} -> {python_function}")
            signal.pthread_kill(MAIN, signal.SIGINT)  # Python raises it in `python_function`

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield sent
    finally:
        sys.setprofile(previous)


def test_ctrl_c_inside_a_tf_callback_while_the_island_is_traced_is_a_keyboard_interrupt() -> None:
    model, runs = make_model(debug=True)
    losses = loss_ids(model)
    with ctrl_c_raises():
        with pytest.raises(KeyboardInterrupt) as caught, \
                sigint_in_tf_callback("TFE_Py_VariableWatcherVariableAccessed", "handle") as sent:
            model.fit(dataset(), epochs=2, verbose=0)
    assert sent == ["TFE_Py_VariableWatcherVariableAccessed -> handle"]
    # Before: IslandError("... could not be traced ... (SystemError: <built-in method
    # TFE_Py_VariableWatcherVariableAccessed ...> returned a result with an exception set)").
    assert type(caught.value) is KeyboardInterrupt
    assert runs == [False]  # interrupted in its first trace
    assert_idle()
    assert loss_ids(model) == losses  # no loss of the interrupted trace stayed behind
    assert_trains_as_without_eagerctl(model, runs)


def test_ctrl_c_while_the_island_body_is_traced_is_a_keyboard_interrupt() -> None:
    in_trace = threading.Event()
    model, runs = make_model(debug=True, wait_in_trace=in_trace)
    losses = loss_ids(model)

    def press_ctrl_c() -> None:
        if in_trace.wait(WAIT):
            signal.pthread_kill(MAIN, signal.SIGINT)

    with ctrl_c_raises():
        presser = threading.Thread(target=press_ctrl_c)
        presser.start()
        try:
            with pytest.raises(KeyboardInterrupt) as caught:
                model.fit(dataset(), epochs=2, verbose=0)
        finally:
            presser.join()
    assert type(caught.value) is KeyboardInterrupt
    assert in_trace.is_set() and runs == [False]
    assert_idle()
    # The body's trace had called the model (an activity loss) before Ctrl-C: gone again.
    assert loss_ids(model) == losses
    assert_trains_as_without_eagerctl(model, runs)


def custom_loop(debug: bool, ctrl_c_at: int | None) -> tuple[Any, Any, list[bool]]:
    """The writing-a-training-loop-from-scratch shape: tf.data batches, a compiled step, its loss an island.

    With `ctrl_c_at`, the island's eager run in that step sends SIGINT to the main thread.
    """
    runs: list[bool] = []
    keras.utils.set_random_seed(11)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    optimizer.build(model.trainable_variables)

    @maybe(debug)
    def loss_fn(y: Any, pred: Any) -> Any:
        runs.append(tf.executing_eagerly())
        if tf.executing_eagerly() and len(runs) - 1 == ctrl_c_at:
            signal.pthread_kill(MAIN, signal.SIGINT)  # this runs in a TF executor thread
            time.sleep(0.2)  # the main thread waits for the step meanwhile
        return tf.reduce_mean(tf.square(pred - y))

    @tf.function
    def train_step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return model, train_step, runs


def test_ctrl_c_while_an_island_runs_in_a_compiled_step_is_a_keyboard_interrupt() -> None:
    """Passed before too (Ctrl-C only interrupts the main thread); held here with the trace cases."""
    model, train_step, runs = custom_loop(debug=True, ctrl_c_at=3)
    batches = list(dataset())
    with ctrl_c_raises(), pytest.raises(KeyboardInterrupt) as caught:
        for x, y in batches:
            train_step(x, y)
    assert type(caught.value) is KeyboardInterrupt
    assert runs == [False, True, True, True]  # the trace, then steps 1 to 3
    assert_idle()
    # The step that was running when Ctrl-C came completed in TF (the graph ran to
    # its end); the interrupt reached Python once it returned.
    plain, plain_step, _ = custom_loop(debug=False, ctrl_c_at=None)
    for x, y in batches[:3]:
        plain_step(x, y)
    for got, want in zip(weights(model), weights(plain), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The program goes on: the same step function, without another trace, as the plain one.
    for x, y in batches[3:]:
        train_step(x, y)
        plain_step(x, y)
    assert runs[4:] == [True] * (len(batches) - 3)
    for got, want in zip(weights(model), weights(plain), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# The SIGSEGV of issue 17. TensorFlow's C++ tape code (`TFE_Py_RecordGradient`, run for every op
# built while a gradient tape records) calls a graph tensor's Python `dtype` and does not check
# that call for an error: Ctrl-C landing there kills the interpreter with SIGSEGV, in plain
# TensorFlow too, wherever a tape records a trace (a train step's `GradientTape`). An island's
# trace used to record on a tape of eagerctl's own (to learn its gradients' types), so a
# `tf.data` map function or an inference function, which plain TensorFlow traces with no tape
# recording, got that window on every op. It now learns them from the graph after the trace.


@contextmanager
def tape_callbacks() -> Iterator[list[int]]:
    """Counts the Python calls TF's `TFE_Py_RecordGradient` makes in this thread in the block."""
    calls: list[int] = []  # per C call in progress: the id of its caller's frame, or 0
    count = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call":
            calls.append(id(frame) if getattr(arg, "__name__", None) == "TFE_Py_RecordGradient" else 0)
        elif event in ("c_return", "c_exception"):
            if calls:
                calls.pop()
        elif event == "call" and calls and calls[-1] and id(frame.f_back) == calls[-1]:
            count[0] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(previous)


def image_pipeline(debug: bool) -> tuple[Any, int, list[bool]]:
    """The load-and-preprocess tutorial's shape: uint8 images scaled and standardized in `map`."""
    runs: list[bool] = []

    @maybe(debug)
    def preprocess(images: Any, labels: Any) -> tuple[Any, Any]:
        runs.append(tf.executing_eagerly())
        images = tf.image.convert_image_dtype(images, tf.float32)
        images = tf.image.per_image_standardization(tf.image.resize(images, (6, 6)))
        return tf.reshape(images, (-1, 36)), labels

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (64, 8, 8, 1)).astype(np.uint8)
    labels = rng.integers(0, 2, (64, 1)).astype(np.float32)
    with tape_callbacks() as count:
        ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16).map(preprocess)
    assert runs == [False]  # traced once, by `map`
    return ds, count[0], runs


def test_an_island_in_a_tf_data_map_is_traced_with_no_tape_recording() -> None:
    plain, plain_calls, _ = image_pipeline(debug=False)
    island, island_calls, runs = image_pipeline(debug=True)
    assert plain_calls == 0
    # Before: 30-odd, one per tensor of every op the body built (each a place where Ctrl-C crashed).
    assert island_calls == plain_calls
    for (got_x, got_y), (want_x, want_y) in zip(island, plain, strict=True):
        np.testing.assert_allclose(got_x.numpy(), want_x.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got_y.numpy(), want_y.numpy())
    assert runs == [False, True, True, True, True]  # then eagerly, once per batch

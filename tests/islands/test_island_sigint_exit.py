"""Ctrl-C during a program with eager islands, and the interpreter's exit.

TensorFlow runs an island's callback in its own threads (the executor's, or a
`tf.data` pipeline's parallel `map`). After Ctrl-C the main thread unwinds and
the interpreter exits while those threads can still be running islands, or
starting new ones: a `Dataset.map` keeps producing elements until its iterator
is destroyed. Once CPython finalizes, a thread re-taking the GIL is ended inside
TF's C++ frames. eagerctl's `atexit` handler (`eagerctl/_shutdown.py`) therefore
stops island callbacks from entering user code from then on and waits briefly
for running ones to return to TensorFlow.

Each program runs in a fresh interpreter (`python -X faulthandler`), installs
the SIGINT handler it needs (pytest may run in the background, SIGINT ignored),
and prints READY once training runs; the test then sends a real SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("tensorflow")

TIMEOUT = 150  # only a hang reaches it; the programs exit within seconds of the signal

HEADER = """\
import os, signal, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
import tensorflow as tf
import eagerctl
keras = tf.keras
"""

# The tf.data tutorial's shape: preprocessing in a parallel `map`, then `fit`.
MAP_FIT = HEADER + """
runs = []

@eagerctl.debuggable
def normalize(x, y):
    runs.append(tf.executing_eagerly())
    return x * 2.0 - 1.0, y

rng = np.random.default_rng(0)
x = rng.random((2048, 16), dtype=np.float32)
y = rng.random((2048, 1), dtype=np.float32)
ds = (tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
      .map(normalize, num_parallel_calls=4).prefetch(8).repeat())
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(1)])
model.compile("adam", "mse")
model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
print("READY", False in runs, runs[-1], flush=True)  # traced, then run eagerly
model.fit(ds, steps_per_epoch=10**6, epochs=1, verbose=0)
"""

# A custom training step whose model body is an island (Embedding + Adam).
CUSTOM_STEP = HEADER + """
emb = keras.layers.Embedding(200, 8)
dense = keras.layers.Dense(1)
opt = keras.optimizers.Adam()

runs = []

@eagerctl.debuggable
def body(ids):
    runs.append(tf.executing_eagerly())
    return dense(tf.reduce_mean(emb(ids), axis=1))

@tf.function
def train_step(ids, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(body(ids) - y))
    variables = emb.trainable_variables + dense.trainable_variables
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

ids = tf.constant(np.random.default_rng(0).integers(0, 200, (16, 6)), tf.int32)
y = tf.ones([16, 1])
train_step(ids, y)
print("READY", False in runs, runs[-1], flush=True)  # traced, then run eagerly
while True:
    train_step(ids, y)
"""

# An atexit handler registered before eagerctl (so it runs after eagerctl's)
# reads a pipeline whose `map` is an island: the island must not run.
LATE = """\
import atexit, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf

def drain_at_exit():
    try:
        print("DRAINED", [int(v) for v in pipeline], flush=True)
    except Exception as e:
        print("REFUSED", type(e).__name__, "the Python interpreter is exiting" in str(e), flush=True)

atexit.register(drain_at_exit)
import eagerctl

@eagerctl.debuggable
def scale(x):
    # One write per line: the parallel map runs the body in two threads at once.
    sys.stdout.write("BODY eager\\n" if tf.executing_eagerly() else "BODY traced\\n")
    sys.stdout.flush()
    return x * 2

pipeline = tf.data.Dataset.range(3).map(scale, num_parallel_calls=2)
print("RUN", [int(v) for v in pipeline], flush=True)
"""


def _env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONFAULTHANDLER="1")


def _start(source: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(source)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _finish(proc: subprocess.Popen[str]) -> tuple[int | str, str, str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return "hang", out, err
    return proc.returncode, out, err


def test_island_callbacks_never_enter_user_code_once_the_interpreter_exits() -> None:
    proc = _start(LATE)
    code, out, err = _finish(proc)
    assert code == 0, err[-3000:]
    lines = out.splitlines()
    # While the program runs: traced once, then once per element, eagerly.
    assert lines[0] == "BODY traced", out
    assert sorted(lines[1:4]) == ["BODY eager"] * 3 and lines[4] == "RUN [0, 2, 4]", out
    # At exit the body never runs again, and the pipeline fails with eagerctl's reason.
    assert lines[5:] == ["REFUSED UnknownError True"], out


@pytest.mark.parametrize(("program", "delays"), [
    pytest.param(MAP_FIT, (0.3,), id="tf.data-map-island-and-fit"),
    pytest.param(CUSTOM_STEP, (0.3,), id="custom-step-with-island"),
])
def test_ctrl_c_ends_the_program_with_keyboard_interrupt(program: str, delays: tuple[float, ...]) -> None:
    procs = [_start(program) for _ in delays]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "READY True True\n", proc.communicate()[1][-3000:]
    start = time.monotonic()
    for proc, delay in sorted(zip(procs, delays, strict=True), key=lambda pd: pd[1]):
        time.sleep(max(0.0, start + delay - time.monotonic()))
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        code, _, err = _finish(proc)
        assert "Fatal Python error" not in err, err[-5000:]
        assert code == -signal.SIGINT, f"exit {code}\n{err[-5000:]}"
        assert err.rstrip().endswith("KeyboardInterrupt"), err[-3000:]

"""replay() around Keras `fit` under MirroredStrategy (two logical CPUs, a fresh process).

One batch makes the loss NaN (a log of a data-dependent value in a custom
layer). Keras gives the compiled train function a distributed iterator, whose
state TensorFlow cannot save, so that call cannot be replayed: replay() says so
at the first call (a warning naming the workaround), still stops `fit` at the
failing step with a report saying why there is no replay, and leaves the
weights of the plain failed run. The workaround it names, the same fit without
the strategy, finds the layer's line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

PROGRAM = '''\
import json
import warnings

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import eagerctl

keras = tf.keras
BATCH, STEPS, BAD = 32, 12, 8


class LogFeatures(keras.layers.Layer):
    def call(self, x):
        return tf.math.log(x + 0.5)  # LOG LINE


def make_model(strategy):
    keras.utils.set_random_seed(7)
    with strategy.scope():
        model = keras.Sequential([keras.Input(shape=(4,)), LogFeatures(),
                                  keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


rng = np.random.default_rng(0)
x = rng.uniform(0.0, 2.0, (BATCH * STEPS, 4)).astype("float32")
x[(BAD - 1) * BATCH + 5, 2] = -3.0  # one sample of batch 8
y = x.sum(axis=1, keepdims=True)
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {}

# The plain program, without eagerctl: Keras's own TerminateOnNaN stops after the NaN step.
plain = make_model(mirrored)
plain.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
          callbacks=[keras.callbacks.TerminateOnNaN()])

model = make_model(mirrored)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        with eagerctl.replay():
            model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)  # FIT LINE
    except eagerctl.ReplayError as error:
        out.update(error=str(error), step=error.step, site=error.site is not None)
ours = [w for w in caught if issubclass(w.category, eagerctl.EagerctlWarning)]
out["warnings"] = [[str(w.message), w.lineno] for w in ours]
out["iterations"] = [int(m.optimizer.iterations.numpy()) for m in (plain, model)]
pairs = list(zip(plain.get_weights(), model.get_weights()))
out["same_weights"] = len(pairs) == 4 and all(np.array_equal(a, b, equal_nan=True) for a, b in pairs)
out["weights_nan"] = bool(any(np.isnan(w).any() for w in model.get_weights()))

# The workaround the message names: the same fit on one device.
single = make_model(tf.distribute.get_strategy())
try:
    with eagerctl.replay():
        single.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
except eagerctl.ReplayError as error:
    out["single"] = [error.step, error.lineno, error.op_type]
print(json.dumps(out))
'''


def line_of(marker: str) -> int:
    return next(i for i, text in enumerate(PROGRAM.splitlines(), 1) if text.endswith(marker))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    script = tmp_path_factory.mktemp("fit_mirrored") / "fit_mirrored.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_the_failing_step_is_reported_without_a_replay_saying_why(run: dict[str, Any]) -> None:
    assert run["step"] == 8 and run["site"] is False
    error = run["error"]
    assert "at step 8 (its call 8 inside this replay()): the compiled call returned non-finite" in error
    assert ("not replayed: the batch could not be kept: it reads a distributed iterator "
            "(DistributedIterator), whose state TensorFlow cannot save: Keras fit, evaluate and predict "
            "under a tf.distribute strategy pass one") in error
    assert "run the same fit without the strategy (one device) inside replay()" in error
    assert "The variables and iterators are as the failed compiled call left them." in error


def test_the_first_call_warns_once_at_the_fit_line(run: dict[str, Any]) -> None:
    [[message, lineno]] = run["warnings"]
    assert message.startswith("eagerctl.replay(): calls of tf.function ")
    assert "cannot be replayed: it reads a distributed iterator (DistributedIterator)" in message
    assert message.endswith("a failing one is still reported (which call, what failed), without a replay.")
    assert lineno == line_of("# FIT LINE")


def test_the_weights_are_those_of_the_plain_failed_run(run: dict[str, Any]) -> None:
    assert run["iterations"] == [8, 8]  # fit stopped after the NaN step, as TerminateOnNaN stopped plain
    assert run["same_weights"] is True
    assert run["weights_nan"] is True  # the NaN step's update is in them, as in the plain run


def test_the_workaround_without_the_strategy_names_the_layer_line(run: dict[str, Any]) -> None:
    assert run["single"] == [8, line_of("# LOG LINE"), "Log"]

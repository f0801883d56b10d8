"""`eagerctl run --debug __main__:CustomModel.train_step` on a script that defines `CustomModel` three times.

In the style of the Keras guide "Customizing what happens in fit()", turned
into a script as users do: a first `CustomModel` whose `train_step` computes
the loss and tracks its own metrics, a second that honours `sample_weight`, a
third that adds gradient clipping; each is compiled and trained with `fit`
before the next one is defined. Every definition's `train_step` must run its
body eagerly (an eager island inside Keras's compiled train function), the run
must report the three definitions, and the losses and weights must equal those
of the same script run without eagerctl.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from program_checks import assert_close

from eagerctl._cli import main

SCRIPT = '''\
import json
import numpy as np
import tensorflow as tf

keras = tf.keras
ran_eagerly = []  # (definition, tf.executing_eagerly()) from inside each train_step body
note = ran_eagerly.append  # called, not `.append`ed: AutoGraph leaves a call alone
history = {}


def data(seed, n=64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1)) + 0.1).astype("float32")
    return x, y


def functional_inputs_outputs():
    inputs = keras.Input(shape=(6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return inputs, keras.layers.Dense(1)(hidden)


class CustomModel(keras.Model):
    """First: the loss and the metrics by hand."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")
        self.loss_fn = keras.losses.MeanSquaredError()

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]

    def train_step(self, data):
        note(("first", tf.executing_eagerly()))
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.loss_fn(y, y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        self.mae_metric.update_state(y, y_pred)
        return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}


keras.utils.set_random_seed(1)
model = CustomModel(*functional_inputs_outputs())
model.compile(optimizer=keras.optimizers.SGD(0.05))
x, y = data(0)
history["first"] = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history["loss"]
weights = {"first": [w.tolist() for w in model.get_weights()]}


class CustomModel(keras.Model):
    """Second: sample weights reach the loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.loss_fn = keras.losses.MeanSquaredError()

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        note(("second", tf.executing_eagerly()))
        x, y, sample_weight = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.loss_fn(y, y_pred, sample_weight=sample_weight)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


keras.utils.set_random_seed(2)
model = CustomModel(*functional_inputs_outputs())
model.compile(optimizer=keras.optimizers.Adam(0.01))
x, y = data(1)
sw = np.linspace(0.5, 1.5, len(x)).astype("float32")
history["second"] = model.fit(x, y, sample_weight=sw, batch_size=16, epochs=2, verbose=0).history["loss"]
weights["second"] = [w.tolist() for w in model.get_weights()]


class CustomModel(keras.Model):
    """Third: gradients clipped by global norm before the update."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.loss_fn = keras.losses.MeanSquaredError()

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        note(("third", tf.executing_eagerly()))
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, self(x, training=True))
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, self.trainable_variables), 1.0)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


keras.utils.set_random_seed(3)
model = CustomModel(*functional_inputs_outputs())
model.compile(optimizer=keras.optimizers.SGD(0.1))
x, y = data(2)
history["third"] = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history["loss"]
weights["third"] = [w.tolist() for w in model.get_weights()]
print(json.dumps({"ran_eagerly": ran_eagerly, "history": history, "weights": weights}))
'''

STEPS = {"first": 4 * 2, "second": 4 * 2, "third": 2 * 2}  # batches per epoch x epochs


def run(script: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[dict[str, Any], str]:
    assert main(["run", *options, str(script)]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_every_custom_model_definition_is_debugged_and_trains_the_same(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "custom_fit.py"
    script.write_text(SCRIPT)
    debugged, err = run(script, capsys, "--debug", "__main__:CustomModel.train_step")
    reference, reference_err = run(script, capsys)

    for definition, steps in STEPS.items():
        modes = [eager for name, eager in debugged["ran_eagerly"] if name == definition]
        # Each train_step is an eager island in Keras's compiled train function: traced once
        # (False) to learn its outputs, then its body runs eagerly on every batch.
        assert modes.count(True) == steps, (definition, modes)
        assert modes[-steps:] == [True] * steps, (definition, modes)
        compiled = [eager for name, eager in reference["ran_eagerly"] if name == definition]
        assert True not in compiled, (definition, compiled)  # without eagerctl: traced only
    lines = [line for line in SCRIPT.splitlines()]
    defs = [i + 1 for i, line in enumerate(lines) if line.startswith("    def train_step(self, data):")]
    assert err == (
        "eagerctl run: --debug __main__:CustomModel.train_step wrapped 3 definitions: "
        + ", ".join(f"{script}:{line}" for line in defs) + "\n"
    )
    assert reference_err == ""
    # eagerctl changed nothing the script computes.
    for definition in STEPS:
        assert_close(debugged["history"][definition], reference["history"][definition],
                     f"{definition} losses")
        assert_close([np.array(w) for w in debugged["weights"][definition]],
                     [np.array(w) for w in reference["weights"][definition]], f"{definition} weights")
    assert sys.gettrace() is None

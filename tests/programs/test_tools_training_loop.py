"""The custom training loop guide's shape: `train_step` redefined, the global `model` rebound.

In the style of the TensorFlow/Keras guide "Writing a training loop from
scratch", as a script: a functional model, an optimizer and a loss at module
level, `@tf.function def train_step(x, y)` reading the global `model`, a loop
over a `tf.data` dataset; then the script builds a new model with an activity
regularizer (the global `model` assigned again) and defines `train_step` again
to add `model.losses`, and once more to clip gradients.

- `eagerctl run --debug __main__:train_step` debugs all three definitions
  and changes nothing the script computes.
- `eagerctl.compare(train_step, ...)` on the first `train_step` after the
  model was rebound (its graph refers to the deleted model's variables)
  reports that stale graph as a divergence instead of crashing.
"""

from __future__ import annotations

import json
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
ran_eagerly = []
note = ran_eagerly.append
losses = {}


def get_model(regularized=False):
    inputs = keras.Input(shape=(8,), name="features")
    hidden = keras.layers.Dense(
        16, activation="relu",
        activity_regularizer=keras.regularizers.L2(1e-2) if regularized else None)(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="predictions")(hidden))


rng = np.random.default_rng(0)
x_train = rng.normal(size=(96, 8)).astype("float32")
y_train = (x_train.sum(axis=1, keepdims=True) * 0.3).astype("float32")
train_dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).batch(32)
loss_fn = keras.losses.MeanSquaredError()

keras.utils.set_random_seed(1)
model = get_model()
optimizer = keras.optimizers.SGD(learning_rate=0.05)


@tf.function
def train_step(x, y):
    note(("plain", tf.executing_eagerly()))
    with tf.GradientTape() as tape:
        loss_value = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss_value, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return loss_value


for epoch in range(2):
    for step, (x_batch, y_batch) in enumerate(train_dataset):
        losses.setdefault("plain", []).append(float(train_step(x_batch, y_batch)))

# The model tracks an activity loss now: a new model, and train_step adds it.
keras.utils.set_random_seed(2)
model = get_model(regularized=True)
optimizer = keras.optimizers.SGD(learning_rate=0.05)


@tf.function
def train_step(x, y):
    note(("regularized", tf.executing_eagerly()))
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss_value = loss_fn(y, logits) + tf.add_n(model.losses)
    grads = tape.gradient(loss_value, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return loss_value


for epoch in range(2):
    for step, (x_batch, y_batch) in enumerate(train_dataset):
        losses.setdefault("regularized", []).append(float(train_step(x_batch, y_batch)))


@tf.function
def train_step(x, y):
    note(("clipped", tf.executing_eagerly()))
    with tf.GradientTape() as tape:
        loss_value = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses)
    grads = tape.gradient(loss_value, model.trainable_weights)
    grads = [tf.clip_by_norm(g, 0.5) for g in grads]
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return loss_value


for step, (x_batch, y_batch) in enumerate(train_dataset):
    losses.setdefault("clipped", []).append(float(train_step(x_batch, y_batch)))
print(json.dumps({"ran_eagerly": ran_eagerly, "losses": losses,
                  "weights": [w.tolist() for w in model.get_weights()]}))
'''

STEPS = {"plain": 6, "regularized": 6, "clipped": 3}


def run(script: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[dict[str, Any], str]:
    assert main(["run", *options, str(script)]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_run_debug_debugs_every_train_step_definition_and_computes_the_same(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "training_loop.py"
    script.write_text(SCRIPT)
    debugged, err = run(script, capsys, "--debug", "__main__:train_step")
    reference, _ = run(script, capsys)

    for definition, steps in STEPS.items():
        assert [eager for name, eager in debugged["ran_eagerly"] if name == definition] == [True] * steps
        # Without eagerctl: the body ran only while tracing (twice where the optimizer's first
        # call creates its variables, as Keras 2's does).
        assert set(eager for name, eager in reference["ran_eagerly"] if name == definition) == {False}
    lines = SCRIPT.splitlines()
    defs = [i + 1 for i, line in enumerate(lines) if line == "@tf.function"]
    assert err == ("eagerctl run: --debug __main__:train_step wrapped 3 definitions: "
                   + ", ".join(f"{script}:{line}" for line in defs) + "\n")
    for definition in STEPS:
        assert_close(debugged["losses"][definition], reference["losses"][definition], f"{definition} losses")
    assert_close([np.array(w) for w in debugged["weights"]], [np.array(w) for w in reference["weights"]],
                 "final weights")


STALE_SCRIPT = '''\
import json
import numpy as np
import tensorflow as tf
import eagerctl

keras = tf.keras


def get_model():
    inputs = keras.Input(shape=(4,))
    return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8, activation="relu")(inputs)))


x = np.linspace(-1, 1, 32, dtype="float32").reshape(8, 4)
y = x.sum(axis=1, keepdims=True)
loss_fn = keras.losses.MeanSquaredError()
keras.utils.set_random_seed(0)
model = get_model()
optimizer = keras.optimizers.SGD(0.1)


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss_value = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss_value, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return loss_value


train_step(x, y)
# A fresh start, without defining train_step again: its graph still reads the old model.
model = get_model()
optimizer = keras.optimizers.SGD(0.1)
before = [w.copy() for w in model.get_weights()]
result = eagerctl.compare(train_step, x, y, repeat=1)
expected = float(loss_fn(y, model(x, training=True)))
print(result)
print(json.dumps({
    "match": result.match, "graph_error": result.graph_error, "mismatches": list(result.mismatches),
    "eager_loss": float(result.eager_output), "expected": expected,
    "restored": all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())),
}))
'''


def test_compare_reports_a_graph_traced_against_a_rebound_model_as_stale(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "rebound.py"
    script.write_text(STALE_SCRIPT)
    assert main(["run", str(script)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    found = json.loads(out[-1])
    assert found["match"] is False
    assert found["graph_error"].startswith("train_step was traced against ")
    assert ("that no longer exist (the program replaced what it read, e.g. a global `model = ...` "
            "assigned again), so its compiled graph cannot run, while the eager run uses the current "
            "objects; retrace it to train them: train_step = tf.function(train_step.python_function)"
            ) in found["graph_error"]
    assert found["mismatches"] == ["output"]
    assert found["eager_loss"] == pytest.approx(found["expected"], rel=1e-6)  # the current model's loss
    assert found["restored"] is True  # compare did not train the new model
    assert out[0] == "compare(train_step): graph and eager DIFFER: the compiled graph is stale  " \
                     "(rtol=1e-05, atol=1e-06)"

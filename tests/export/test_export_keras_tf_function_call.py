"""A Keras model whose `call` is `@eagerctl.debuggable` over `@tf.function` exports like any other.

The program is the shape of Keras's "customizing fit" tutorials: a subclassed
classifier (Dense, BatchNormalization, Dense) whose `call` is a `tf.function`,
trained with `fit` and Adam, then exported with `model.export(...)` and saved
with `tf.saved_model.save`, and trained on. The same program is built without
eagerctl from the same seed. Before the fix, the island's trace and the export
both called the body with TF's `TfMethodTarget` as `self` (`AttributeError:
'TfMethodTarget' object has no attribute 'hidden'`): `fit` raised
`IslandError`, `model.export` raised an `EagerctlError` telling the user to
guard `.numpy()` code, and the failed attempt left TF's bound method rewired
by AutoGraph, so a later `tf.saved_model.save` failed too.

Checked: training matches the plain program (weights within float noise); the
exports load in a fresh process that never imports eagerctl and compute what
the plain model computes; training after the export still matches; a failed
export leaves no directory behind and does not break the next save; the error
of a body that cannot be compiled says why, and only says to guard `.numpy()`
when that is the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import eagerctl  # noqa: E402
from eagerctl import EagerctlError, EagerctlWarning  # noqa: E402

keras = tf.keras
KERAS_3 = int(tf.__version__.split(".")[1]) >= 16
RNG = np.random.default_rng(7)
X = RNG.normal(size=(64, 4)).astype(np.float32)
LABELS = (X[:, 0] + 2 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5).astype(np.int64)
X_NEW = RNG.normal(size=(16, 4)).astype(np.float32)  # the batch size fit used: the saved signature's


def make_classifier(debug: bool, record: list[bool]) -> Any:
    decorate = eagerctl.debuggable if debug else (lambda fn: fn)

    class Classifier(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.hidden = keras.layers.Dense(16, activation="relu")
            self.norm = keras.layers.BatchNormalization()
            self.logits = keras.layers.Dense(3)
            # Built here, not inside the tf.function's first trace: plain TF would give that trace
            # variables of its own, which fit then never trains (a trap of `@tf.function def call`).
            self.hidden.build((None, 4))
            self.norm.build((None, 16))
            self.logits.build((None, 16))

        @decorate
        @tf.function
        def call(self, x: Any, training: bool = False) -> Any:
            record.append(tf.executing_eagerly())
            return self.logits(self.norm(self.hidden(x), training=training))

    keras.utils.set_random_seed(11)
    model = Classifier()
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def fit(model: Any, epochs: int) -> list[float]:
    history = model.fit(X, LABELS, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return [float(v) for v in history.history["loss"]]


def assert_same_weights(model: Any, plain: Any) -> None:
    got, want = model.get_weights(), plain.get_weights()
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def quietly(save: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save()
    return [str(w.message) for w in caught if issubclass(w.category, EagerctlWarning)]


LOADER = textwrap.dedent('''
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    paths, x = json.loads(sys.argv[1]), np.array(json.loads(sys.argv[2]), np.float32)
    out = {}
    for key, path in paths.items():
        loaded = tf.saved_model.load(path)
        if key == "export":
            out[key] = loaded.serve(tf.constant(x)).numpy().tolist()
        else:
            serving = loaded.signatures["serving_default"]
            (name,) = serving.structured_input_signature[1]
            (value,) = serving(**{name: tf.constant(x)}).values()
            out[key] = value.numpy().tolist()
    out["eagerctl imported"] = "eagerctl" in sys.modules
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("export_call")
    record: list[bool] = []
    model, plain = make_classifier(True, record), make_classifier(False, [])
    facts: dict[str, Any] = {"losses": (fit(model, 2), fit(plain, 2)), "paths": {}, "warnings": {}}
    facts["island runs in fit"] = record.count(True)
    assert_same_weights(model, plain)
    expected = plain(X_NEW, training=False).numpy()

    saves = {"export": model.export, "saved_model": lambda p: tf.saved_model.save(model, p)}
    if not KERAS_3:
        saves["keras2_savedmodel"] = lambda p: model.save(p, save_format="tf")
    for key, save in saves.items():
        path = str(root / key)
        facts["warnings"][key] = quietly(lambda save=save, path=path: save(path))
        facts["paths"][key] = path

    # The program goes on: the island still runs eagerly, and training still matches.
    before = record.count(True)
    facts["after"] = model(X_NEW, training=False).numpy()
    facts["island runs after"] = record.count(True) - before
    facts["losses after"] = (fit(model, 1), fit(plain, 1))
    assert_same_weights(model, plain)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-c", LOADER, json.dumps(facts["paths"]), json.dumps(X_NEW.tolist())]
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    facts["loaded"] = json.loads(run.stdout.strip().splitlines()[-1])
    facts["expected"] = expected
    return facts


SAVES = ["export", "saved_model"] + ([] if KERAS_3 else ["keras2_savedmodel"])


def test_fit_with_the_island_matches_the_plain_program(program: dict[str, Any]) -> None:
    losses, plain_losses = program["losses"]
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5)
    assert program["island runs in fit"] >= 2 * 4  # the body ran eagerly on every batch
    losses, plain_losses = program["losses after"]
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5)


@pytest.mark.parametrize("key", SAVES)
def test_the_export_loads_without_eagerctl_and_computes_what_the_plain_model_does(
        program: dict[str, Any], key: str) -> None:
    assert program["loaded"]["eagerctl imported"] is False
    np.testing.assert_allclose(program["loaded"][key], program["expected"], rtol=1e-5, atol=1e-6)
    (message,) = program["warnings"][key]
    assert message.startswith("@debuggable ") and "gets its compiled body, not an eager island" in message


def test_in_this_process_the_island_is_unchanged_after_the_saves(program: dict[str, Any]) -> None:
    assert program["island runs after"] == 1
    np.testing.assert_allclose(program["after"], program["expected"], rtol=1e-5, atol=1e-6)


def make_peeking_classifier() -> Any:
    class Peeking(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(2)

        @eagerctl.debuggable
        @tf.function
        def call(self, x: Any) -> Any:
            scale = float(tf.reduce_max(tf.abs(x)).numpy())  # eager-only: fine in an island
            return self.dense(x / scale)

    model = Peeking()
    model(X_NEW)
    return model


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    failing = make_peeking_classifier()
    record: list[bool] = []
    good = make_classifier(True, record)
    good(X_NEW)
    for save in (failing.export, lambda p: tf.saved_model.save(failing, p)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EagerctlWarning)
            with pytest.raises(EagerctlError) as raised:
                save(str(tmp_path / "failing"))
        assert "this body needs real values, which a traced graph does not have: guard eager-only code" \
            in str(raised.value)
        assert not (tmp_path / "failing").exists()
    # Neither the failing model nor the rest of the program is changed by the failure.
    expected = good(X_NEW).numpy()
    assert failing(X_NEW).shape == (16, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerctlWarning)
        good.export(str(tmp_path / "good"))
        tf.saved_model.save(good, str(tmp_path / "good_saved"))
    loaded = tf.saved_model.load(str(tmp_path / "good"))
    np.testing.assert_allclose(loaded.serve(X_NEW), expected, rtol=1e-5, atol=1e-6)


def make_pairs_module(debug: bool) -> Any:
    def as_pairs(x: Any) -> Any:
        return tf.reshape(x, [x.shape[0] * 2, 2])  # the static batch size: None in a serving signature

    helper = eagerctl.debuggable(as_pairs) if debug else as_pairs

    class Pairs(tf.Module):  # type: ignore[misc]
        @tf.function
        def __call__(self, x: Any) -> Any:
            return tf.reduce_sum(helper(x), axis=1)

    return Pairs()


def test_a_body_that_fails_to_trace_for_another_reason_is_not_told_to_guard_numpy(tmp_path: Path) -> None:
    # Called with batches of 16, the helper traces (and runs as an island); a serving signature
    # with a None batch cannot be traced, with or without eagerctl. The fix is tf.shape(x), not a
    # .numpy() guard, and the message must not send the user there.
    spec = tf.TensorSpec([None, 4], tf.float32)
    plain, model = make_pairs_module(False), make_pairs_module(True)
    np.testing.assert_allclose(model(X_NEW), plain(X_NEW), rtol=1e-6)
    with pytest.raises(TypeError):
        serving = tf.function(plain, input_signature=[spec])
        tf.saved_model.save(plain, str(tmp_path / "plain"), signatures=serving)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerctlWarning)
        with pytest.raises(EagerctlError) as raised:
            serving = tf.function(model, input_signature=[spec])
            tf.saved_model.save(model, str(tmp_path / "pairs"), signatures=serving)
    message = str(raised.value)
    assert message.startswith("@debuggable make_pairs_module.<locals>.as_pairs could not be compiled into "
                              "the model being saved (TypeError: ")
    assert message.endswith("traced as TensorFlow traces the undecorated function; that trace failed: the "
                            "traceback above shows where")
    assert ".numpy()" not in message
    assert not (tmp_path / "pairs").exists()

"""Saving code that contains eager islands exports the compiled body.

Every program here trains or runs with a `@debuggable` island first (so its
`tf.function`s are traced with island ops), is saved in this process, and is
then loaded and run in a fresh Python process that never imports eagerctl. The
values it computes there must equal those of the same program built without
eagerctl from the same seed; the saved graphs must hold no `EagerPyFunc` op
(the island op, which only works in the process that built it); each save
warns once with `EagerctlWarning`; the island keeps running eagerly in this
process afterwards.

One module fixture saves everything and one subprocess loads it all (TF's
import dominates the cost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import eagerctl  # noqa: E402
from eagerctl import EagerctlError, EagerctlWarning  # noqa: E402

keras = tf.keras
KERAS_3 = int(tf.__version__.split(".")[1]) >= 16  # tf.keras is Keras 3 from TF 2.16
RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 2)).astype(np.float32)
Y = (X @ np.array([[1.5], [-2.0]], np.float32) + 0.5).astype(np.float32)
X_NEW = RNG.normal(size=(5, 2)).astype(np.float32)


# -- the programs: each built twice, with @debuggable and plain --------------------------

def make_regressor(debug: bool, record: list[bool]) -> Any:
    """A tf.Module with compiled predict/train methods that call a helper (the island when `debug`)."""

    def leaky(x: Any) -> Any:
        record.append(tf.executing_eagerly())
        return tf.where(x > 0, x, 0.1 * x)

    act = eagerctl.debuggable(leaky) if debug else leaky

    class Regressor(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.w1 = tf.Variable(tf.random.stateless_normal((2, 3), seed=(1, 2)))
            self.w2 = tf.Variable(tf.random.stateless_normal((3, 1), seed=(3, 4)))
            self.b = tf.Variable(0.0)

        @tf.function
        def predict(self, x: Any) -> Any:
            return tf.matmul(act(tf.matmul(x, self.w1)), self.w2) + self.b

        @tf.function
        def train(self, x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self.predict(x) - y))
            variables = [self.w1, self.w2, self.b]
            for v, g in zip(variables, tape.gradient(loss, variables), strict=True):
                v.assign_sub(0.05 * g)
            return loss

    module = Regressor()
    for _ in range(3):
        module.train(tf.constant(X), tf.constant(Y))
    module.predict(tf.constant(X_NEW))
    return module


def make_server(debug: bool) -> Any:
    """A tf.Module whose `@debuggable @tf.function` method is a signature and is called by another."""
    decorate = eagerctl.debuggable if debug else (lambda fn: fn)

    class Server(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[0.5], [-1.5]])

        @decorate
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def serve(self, x: Any) -> Any:
            return tf.matmul(x, self.w) + 1.0

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def outer(self, x: Any) -> Any:
            return self.serve(x) * 2.0  # an island in this graph

    server = Server()
    server.outer(tf.constant(X_NEW))
    return server


def make_scale_class(debug: bool, record: list[bool]) -> type:
    def call(self: Any, x: Any) -> Any:
        record.append(tf.executing_eagerly())
        return self.norm(x) * self.gain + self.shift  # moving statistics: touched only in here

    class Scale(keras.layers.Layer):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.norm = keras.layers.BatchNormalization()

        def build(self, input_shape: Any) -> None:
            self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")
            self.shift = self.add_weight(name="shift", shape=(input_shape[-1],), initializer="zeros")

    Scale.call = eagerctl.debuggable(call) if debug else call
    if debug:  # the name the `.keras` file records; the loading process registers its own `Scale`
        Scale = keras.utils.register_keras_serializable("eagerctl_export")(Scale)
    return Scale


def make_keras_model(debug: bool, record: list[bool]) -> Any:
    scale = make_scale_class(debug, record)
    keras.utils.set_random_seed(5)
    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    outputs = keras.layers.Dense(1)(scale()(hidden))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model


def saved_ops(path: Path) -> list[str]:
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    return [n.op for f in graph.library.function for n in f.node_def] + [n.op for n in graph.node]


def save_warnings(save: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save()
    # Each warning points at the user's code (this file), not at eagerctl, TF or Keras.
    return [f"{os.path.basename(w.filename)}: {w.message}" for w in caught
            if issubclass(w.category, EagerctlWarning)]


LOADER = textwrap.dedent('''
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    keras = tf.keras
    paths, x = json.loads(sys.argv[1]), np.array(json.loads(sys.argv[2]), np.float32)
    out = {}
    if "module" in paths:
        loaded = tf.saved_model.load(paths["module"])
        out["module"] = loaded.predict(tf.constant(x)).numpy().tolist()
    if "method" in paths:
        loaded = tf.saved_model.load(paths["method"])
        assert set(loaded.signatures) == {"serve", "outer"}
        out["method"] = loaded.outer(tf.constant(x)).numpy().tolist()
    if "signature" in paths:
        loaded = tf.saved_model.load(paths["signature"])
        (value,) = loaded.signatures["serving_default"](x=tf.constant(x)).values()
        out["signature"] = value.numpy().tolist()
    for key in ("export", "archive"):
        if key in paths:
            loaded = tf.saved_model.load(paths[key])
            out[key] = loaded.serve(tf.constant(x)).numpy().tolist()
    for key in ("keras_tf_save", "keras2_savedmodel"):
        if key in paths:
            loaded = tf.saved_model.load(paths[key])
            (value,) = loaded.signatures["serving_default"](tf.constant(x)).values()
            out[key] = value.numpy().tolist()
    if "keras_file" in paths:
        @keras.utils.register_keras_serializable("eagerctl_export")
        class Scale(keras.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.norm = keras.layers.BatchNormalization()
            def build(self, input_shape):
                self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")
                self.shift = self.add_weight(name="shift", shape=(input_shape[-1],), initializer="zeros")
            def call(self, x):
                return self.norm(x) * self.gain + self.shift
        model = keras.models.load_model(paths["keras_file"])
        out["keras_file"] = model(x).numpy().tolist()
    out["eagerctl imported"] = "eagerctl" in sys.modules
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("export")
    record: list[bool] = []
    plain_record: list[bool] = []
    facts: dict[str, Any] = {"paths": {}, "expected": {}, "warnings": {}, "ops": {}}

    def save(key: str, fn: Any, expected: Any) -> None:
        path = root / key
        facts["warnings"][key] = save_warnings(lambda: fn(str(path)))
        facts["paths"][key] = str(path)
        facts["expected"][key] = np.asarray(expected)
        if (path / "saved_model.pb").exists():
            facts["ops"][key] = saved_ops(path)

    module = make_regressor(True, record)
    plain_module = make_regressor(False, plain_record)
    facts["module_island_runs"] = record.count(True)
    expected = plain_module.predict(tf.constant(X_NEW))
    save("module", lambda p: tf.saved_model.save(module, p), expected)
    # A ConcreteFunction traced (with the island) before the save, passed as the signature.
    signature = module.predict.get_concrete_function(tf.TensorSpec([None, 2], tf.float32, name="x"))
    save("signature", lambda p: tf.saved_model.save(module, p, signatures=signature), expected)
    before = record.count(True)
    module.predict(tf.constant(X_NEW))
    facts["island_after_save"] = record.count(True) - before

    server, plain_server = make_server(True), make_server(False)
    expected = plain_server.outer(tf.constant(X_NEW))
    save("method", lambda p: tf.saved_model.save(server, p, signatures={"serve": server.serve,
                                                                        "outer": server.outer}), expected)

    keras_record: list[bool] = []
    model = make_keras_model(True, keras_record)
    plain_model = make_keras_model(False, [])
    facts["keras_island_runs"] = keras_record.count(True)
    expected = plain_model(X_NEW)
    save("export", model.export, expected)
    save("keras_tf_save", lambda p: tf.saved_model.save(model, p), expected)

    @tf.function
    def serve(x: Any) -> Any:
        return model(x)

    serve(tf.constant(X_NEW))  # traced with the island: the archive's fast path keeps this trace
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve)
    save("archive", archive.write_out, expected)
    if not KERAS_3:
        save("keras2_savedmodel", lambda p: model.save(p, save_format="tf"), expected)
    save("keras_file", lambda p: model.save(p + ".keras"), expected)
    facts["paths"]["keras_file"] += ".keras"
    for got, want in zip(model.get_weights(), plain_model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-c", LOADER, json.dumps(facts["paths"]), json.dumps(X_NEW.tolist())]
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    facts["loaded"] = json.loads(run.stdout.strip().splitlines()[-1])
    return facts


SAVED_MODELS = ["module", "signature", "method", "export", "keras_tf_save", "archive"]
if not KERAS_3:
    SAVED_MODELS.append("keras2_savedmodel")


@pytest.mark.parametrize("key", [*SAVED_MODELS, "keras_file"])
def test_loads_in_a_fresh_process_without_eagerctl_and_computes_the_same_values(
        exported: dict[str, Any], key: str) -> None:
    assert exported["loaded"]["eagerctl imported"] is False
    np.testing.assert_allclose(exported["loaded"][key], exported["expected"][key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key", SAVED_MODELS)
def test_the_saved_graphs_hold_the_compiled_body_not_the_island(exported: dict[str, Any], key: str) -> None:
    ops = exported["ops"][key]
    assert "EagerPyFunc" not in ops
    assert "PyFunc" not in ops
    assert ops  # the graph is there


@pytest.mark.parametrize("key", SAVED_MODELS)
def test_each_save_warns_once(exported: dict[str, Any], key: str) -> None:
    (message,) = exported["warnings"][key]
    assert message.startswith("test_island_export.py: @debuggable ")
    assert "the model being saved gets its compiled body, not an eager island" in message
    assert "islands belong to the running process" in message


def test_a_keras_file_holds_no_graph_and_does_not_warn(exported: dict[str, Any]) -> None:
    assert exported["warnings"]["keras_file"] == []


def test_the_islands_ran_eagerly_before_and_after_the_save(exported: dict[str, Any]) -> None:
    assert exported["module_island_runs"] == 4  # 3 training steps and one prediction
    assert exported["keras_island_runs"] >= 4  # 2 epochs of 2 batches (and predictions)
    assert exported["island_after_save"] == 1  # the running process keeps its island


def test_a_body_that_needs_values_cannot_be_exported_and_says_why(tmp_path: Path) -> None:
    @eagerctl.debuggable
    def clipped(x: Any) -> Any:
        limit = float(tf.reduce_max(x).numpy())  # eager-only: fine in an island, not in a graph
        return tf.clip_by_value(x, -limit, limit)

    class Clipper(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x: Any) -> Any:
            return clipped(x) * 2.0

    clipper = Clipper()
    assert clipper(tf.constant([1.0, -3.0])).numpy().tolist() == [2.0, -2.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerctlWarning)
        with pytest.raises(EagerctlError) as raised:
            tf.saved_model.save(clipper, str(tmp_path / "clipper"))
    message = str(raised.value)
    assert message.startswith("@debuggable test_a_body_that_needs_values_cannot_be_exported_and_says_why"
                              ".<locals>.clipped could not be compiled into the model being saved (")
    assert message.endswith("and this body needs real values, which a traced graph does not have: guard "
                            "eager-only code (.numpy(), float() or bool() of a tensor, print of values, pdb) "
                            "with `if tf.executing_eagerly():`")
    # Nothing changed for this process: the island still runs.
    assert clipper(tf.constant([1.0, -3.0])).numpy().tolist() == [2.0, -2.0]


def test_the_signature_wrapper_is_installed_with_the_first_island_and_can_be_removed() -> None:
    from tensorflow.python.saved_model import signature_serialization

    from eagerctl import _export

    @eagerctl.debuggable
    def double(x: Any) -> Any:
        return x * 2.0

    @tf.function
    def uses_island(x: Any) -> Any:
        return double(x)

    uses_island(tf.constant(1.0))
    assert signature_serialization.canonicalize_signatures is _export._canonicalize_signatures
    original = _export._original_canonicalize
    _export.uninstall()
    try:
        assert signature_serialization.canonicalize_signatures is original
        _export.uninstall()  # twice: nothing to do
        assert signature_serialization.canonicalize_signatures is original
    finally:
        _export.install()
    assert signature_serialization.canonicalize_signatures is _export._canonicalize_signatures


def test_what_a_retrace_needs_goes_with_the_graph() -> None:
    import gc

    from eagerctl import _export

    @eagerctl.debuggable
    def double(x: Any) -> Any:
        return x * 2.0

    @tf.function
    def uses_island(x: Any) -> Any:
        return double(x)

    concrete = uses_island.get_concrete_function(tf.TensorSpec([], tf.float32))
    graph_ref = weakref.ref(concrete.graph)
    assert callable(getattr(concrete.graph, _export._SOURCE))
    del concrete, uses_island
    gc.collect()
    assert graph_ref() is None


def test_a_signature_that_cannot_be_retraced_is_an_error_naming_it(tmp_path: Path) -> None:
    @eagerctl.debuggable
    def double(x: Any) -> Any:
        return x * 2.0

    python_state = {"retraceable": True}

    @tf.function
    def doubled(x: Any) -> Any:
        if not python_state["retraceable"]:
            raise ValueError("the Python state this function was traced with is gone")
        return double(x)

    signature = doubled.get_concrete_function(tf.TensorSpec([None], tf.float32))
    python_state["retraceable"] = False
    with pytest.raises(EagerctlError) as raised:
        tf.saved_model.save(tf.Module(), str(tmp_path / "m"), signatures=signature)
    message = str(raised.value)
    assert message.startswith(f"the signature {signature.name!r} passed to tf.saved_model.save was traced "
                              "with an eager island, and eagerctl could not retrace it with the compiled "
                              "body (ValueError: ")
    assert message.endswith("Pass the tf.function itself as the signature (with an input_signature), so "
                            "that TensorFlow traces it while it saves")


CALLS: list[bool] = []  # module level: AutoGraph treats globals and closure cells differently


def test_compiled_bodies_are_converted_with_the_callers_autograph_options(tmp_path: Path) -> None:
    """The compiled body (an export, or island=False) is converted as TF converts the plain function.

    AutoGraph's `ConversionOptions()` default turns on every optional feature, which rewrites
    `list.append` into a list op: `CALLS.append(...)` on a module-level list then failed with
    UnboundLocalError. tf.function passes no optional features.
    """
    CALLS.clear()

    @eagerctl.debuggable(island=False)
    def traced_in(x: Any) -> Any:
        CALLS.append(tf.executing_eagerly())
        return x * 2.0

    @eagerctl.debuggable
    def island(x: Any) -> Any:
        CALLS.append(tf.executing_eagerly())
        return x + 1.0

    class Both(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def __call__(self, x: Any) -> Any:
            return island(traced_in(x))

    both = Both()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerctlWarning)
        assert float(both(tf.constant(1.0))) == 3.0
        tf.saved_model.save(both, str(tmp_path / "both"))
    assert float(tf.saved_model.load(str(tmp_path / "both"))(tf.constant(2.0))) == 5.0
    assert CALLS == [False, False, True, False, False]  # traced, island scratch trace, run; saved


def test_what_a_retrace_needs_does_not_keep_an_object_whose_function_closes_over_it() -> None:
    """Keras's train function closes over its model: remembering it must not make the model immortal."""
    import gc

    @eagerctl.debuggable
    def double(x: Any) -> Any:
        return x * 2.0

    class Trainer:
        def __init__(self) -> None:
            self.scale = tf.Variable(3.0)

            def step(x: Any) -> Any:
                return double(x) * self.scale

            self.step = tf.function(step)

    trainer = Trainer()
    assert float(trainer.step(tf.constant(1.0))) == 6.0
    gone = weakref.ref(trainer)
    del trainer
    gc.collect()
    assert gone() is None


def test_a_signature_whose_tf_function_is_gone_is_still_retraced(tmp_path: Path) -> None:
    """`signatures=tf.function(f).get_concrete_function(spec)`: the tf.function object is dropped."""

    @eagerctl.debuggable
    def double(x: Any) -> Any:
        return x * 2.0

    def doubled_plus_one(x: Any) -> Any:
        return double(x) + 1.0

    spec = tf.TensorSpec([None], tf.float32, name="x")
    signature = tf.function(doubled_plus_one).get_concrete_function(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EagerctlWarning)
        tf.saved_model.save(tf.Module(), str(tmp_path / "m"), signatures=signature)
    assert "EagerPyFunc" not in saved_ops(tmp_path / "m")
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    (value,) = loaded.signatures["serving_default"](x=tf.constant([1.0, 2.0])).values()
    assert value.numpy().tolist() == [3.0, 5.0]

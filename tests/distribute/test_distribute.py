"""eagerctl under `tf.distribute.MirroredStrategy` with two logical CPU devices.

The two logical devices must be configured before TensorFlow initializes its
devices, which any other test module may already have done in this process.
So the scenarios run in one fresh Python process (this file run as a script),
which prints what it saw as JSON; the tests assert on that record.

In each scenario every `tf.function` body records (function, thread, eager)
when it runs: "replica" threads are MirroredStrategy's per-replica threads,
"other" is the TF executor thread that runs an eager island of `@debuggable`.
A compiled call of an already traced function runs no Python, so records
nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

SCRIPT = os.path.abspath(__file__)
TIMEOUT = 240  # seconds; the scenario takes about 20 on two busy cores

Record = list[list[Any]]  # sorted [function, "main" or "replica", eager] triples


def run_scenario(name: str) -> dict[str, Any]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, SCRIPT, name], env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0, f"scenario {name} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def mirrored() -> dict[str, Any]:
    return run_scenario("mirrored")


R, M = "replica", "main"


def test_two_replicas(mirrored: dict[str, Any]) -> None:
    assert mirrored["replicas"] == 2
    assert mirrored["devices"] == ["/job:localhost/replica:0/task:0/device:CPU:0",
                                   "/job:localhost/replica:0/task:0/device:CPU:1"]


def test_without_a_scope_nested_functions_run_compiled(mirrored: dict[str, Any]) -> None:
    # A plain fn passed to strategy.run outside a tf.function runs eagerly in
    # the replica threads (TF's own doing); the tf.function it calls runs its graph.
    assert mirrored["plain:none"] == [["step", R, True]]
    assert mirrored["tf:none"] == []


@pytest.mark.parametrize("step", ["plain", "tf"])
def test_local_scope_reaches_functions_replica_threads_call(mirrored: dict[str, Any], step: str) -> None:
    assert mirrored[f"{step}:local"] == [["inner", R, True], ["step", R, True]]


@pytest.mark.parametrize("step", ["plain", "tf"])
def test_process_scope_reaches_replica_threads(mirrored: dict[str, Any], step: str) -> None:
    assert mirrored[f"{step}:process"] == [["inner", R, True], ["step", R, True]]


@pytest.mark.parametrize("step", ["plain", "tf"])
def test_local_graph_scope_wins_over_the_flag_in_replica_threads(mirrored: dict[str, Any], step: str) -> None:
    assert mirrored[f"{step}:graph_under_flag"] == ([["step", R, True]] if step == "plain" else [])


@pytest.mark.parametrize("step", ["plain", "tf"])
def test_replica_threads_start_with_an_empty_context_without_the_patch(
    mirrored: dict[str, Any], step: str
) -> None:
    # Why eagerctl._distribute exists: without it the scope reaches the
    # function passed to strategy.run, not the tf.functions it calls.
    assert mirrored[f"{step}:local_unpatched"] == [["step", R, True]]


def test_error_in_a_replica_thread_leaves_no_scope_behind(mirrored: dict[str, Any]) -> None:
    assert mirrored["error"] == {"raised": "ValueError: replica 1 failed", "scopes": 0, "is_eager": False}


def test_custom_loop_losses_equal_in_every_mode(mirrored: dict[str, Any]) -> None:
    graph = mirrored["loop:graph"]
    assert len(graph["losses"]) == 6
    assert graph["runs"] == [["loss_fn", R, False], ["replica_step", R, False], ["train_step", M, False]]
    for mode in ["local", "process"]:
        eager = mirrored[f"loop:{mode}"]
        assert eager["losses"] == pytest.approx(graph["losses"], rel=1e-5)
        assert eager["w"] == pytest.approx(graph["w"], rel=1e-5)
        assert eager["runs"] == [["loss_fn", R, True], ["replica_step", R, True], ["train_step", M, True]]


def test_keras_fit_in_strategy_scope_losses_equal_in_every_mode(mirrored: dict[str, Any]) -> None:
    graph = mirrored["fit:graph"]
    assert len(graph["losses"]) == 3
    assert [r for r in graph["runs"] if r[1] == R] == [["helper", R, False], ["layer_call", R, False]]
    for mode in ["local", "process"]:
        eager = mirrored[f"fit:{mode}"]
        assert eager["losses"] == pytest.approx(graph["losses"], rel=1e-5)
        assert [r for r in eager["runs"] if r[1] == R] == [["helper", R, True], ["layer_call", R, True]]


def test_debuggable_function_called_by_replica_threads(mirrored: dict[str, Any]) -> None:
    # Called by replica threads while the compiled step is traced, the
    # @debuggable loss_fn becomes an eager island: its body runs eagerly each
    # step (in the TF thread that runs the island op), the rest stays compiled.
    graph, debug = mirrored["loop:graph"], mirrored["loop:debuggable:loss_fn"]
    assert debug["losses"] == pytest.approx(graph["losses"], rel=1e-5)
    assert debug["runs"] == [["loss_fn", "other", True], ["loss_fn", R, False], ["replica_step", R, False],
                             ["train_step", M, False]]


def test_debuggable_step_reaches_replica_threads(mirrored: dict[str, Any]) -> None:
    # @debuggable on the tf.function that calls strategy.run: its override
    # reaches the replica threads, so everything they call runs eagerly.
    graph, debug = mirrored["loop:graph"], mirrored["loop:debuggable:train_step"]
    assert debug["losses"] == pytest.approx(graph["losses"], rel=1e-5)
    assert debug["runs"] == [["loss_fn", R, True], ["replica_step", R, True], ["train_step", M, True]]


def test_debuggable_replica_fn_with_a_sync_point_cannot_be_an_island(mirrored: dict[str, Any]) -> None:
    # TF cannot run a merge_call (here: assigning a MEAN variable) outside the
    # replica context, which is where an eager island would run it.
    error = mirrored["loop:debuggable:replica_step"]
    assert error.startswith(
        "IslandError: @debuggable function 'custom_loop.<locals>.replica_step' could not be traced to "
        "learn its outputs, which an eager island needs before it runs (RuntimeError: "
    )
    assert "`merge_call` called while defining a new graph or a tf.function." in error


def test_debuggable_layer_call_in_keras_fit(mirrored: dict[str, Any]) -> None:
    graph, debug = mirrored["fit:graph"], mirrored["fit:debuggable:call"]
    assert debug["losses"] == pytest.approx(graph["losses"], rel=1e-5)
    # The layer's call runs eagerly every step; what it calls runs eagerly too.
    assert ["layer_call", "other", True] in debug["runs"]
    assert ["helper", "other", True] in debug["runs"]
    assert [r for r in debug["runs"] if r[1] == R and r[2]] == []


def test_gather_on_two_devices_works_in_every_mode(mirrored: dict[str, Any]) -> None:
    # Where TF implements a gather with collectives (MirroredStrategy over more than
    # one device, MultiWorkerMirroredStrategy), eagerctl keeps TF's internal
    # all-gather function compiled under its own eager scopes.
    expected = [[0.0, 1.0], [[0.0, 1.0], [0.0, 1.0]]]
    for mode in ["none", "local", "process"]:
        assert mirrored[f"gather:{mode}"] == expected, mode


def test_gather_under_tfs_own_flag_fails_as_in_tf(mirrored: dict[str, Any]) -> None:
    # Inert unless asked: under TF's own run_functions_eagerly(True), with the hook
    # installed and no eagerctl scope, TF raises its own error, as it does alone.
    tf_error = "RuntimeError: all_gather is not supported in eager mode."
    assert mirrored["gather:flag_tf_alone"] == tf_error
    assert mirrored["gather:flag"] == tf_error


def test_flag_and_scopes_clean_at_the_end(mirrored: dict[str, Any]) -> None:
    assert mirrored["end"] == {"flag": False, "scopes": 0}


# -- the scenario, run in a fresh process: python tests/distribute/test_distribute.py mirrored ---------------

RUNS: list[tuple[str, str, bool]] = []


def note(name: str) -> None:
    import tensorflow as tf
    from tensorflow.python.distribute import mirrored_run

    thread = threading.current_thread()
    if thread is threading.main_thread():
        kind = M
    else:
        kind = R if isinstance(thread, mirrored_run._MirroredReplicaThread) else "other"
    RUNS.append((name, kind, bool(tf.executing_eagerly())))


def collect(fn: Any) -> Record:
    """Run `fn` and return what ran, as sorted unique triples."""
    RUNS.clear()
    fn()
    return records()


def records() -> Record:
    return [list(r) for r in sorted(set(RUNS))]


def make_data() -> tuple[Any, Any]:
    import numpy as np

    data = np.arange(16, dtype="float32").reshape(8, 2) / 10.0
    return data, data @ np.array([[1.0], [2.0]], dtype="float32")


def scenario_mirrored() -> dict[str, Any]:
    import tensorflow as tf

    import eagerctl
    from eagerctl import _distribute

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out: dict[str, Any] = {
        "replicas": strategy.num_replicas_in_sync,
        "devices": list(strategy.extended.worker_devices),
    }

    @tf.function
    def inner(x: Any) -> Any:
        note("inner")
        return x * 2.0

    def step_plain(x: Any) -> Any:
        note("step")
        return inner(x)

    @tf.function
    def step_tf(x: Any) -> Any:
        note("step")
        return inner(x)

    x = tf.constant(1.0)
    for name, fn in [("plain", step_plain), ("tf", step_tf)]:
        strategy.run(fn, args=(x,))  # trace once, so a compiled call records nothing

        def run(fn: Any = fn) -> Any:
            return strategy.run(fn, args=(x,))

        out[f"{name}:none"] = collect(run)
        out[f"{name}:local"] = collect(eagerctl.eager_scope()(run))
        out[f"{name}:process"] = collect(eagerctl.eager_scope(process=True)(run))
        tf.config.run_functions_eagerly(True)
        try:
            out[f"{name}:graph_under_flag"] = collect(eagerctl.graph_scope()(run))
        finally:
            tf.config.run_functions_eagerly(False)
        _distribute.uninstall()
        try:
            out[f"{name}:local_unpatched"] = collect(eagerctl.eager_scope()(run))
        finally:
            _distribute.install()

    def failing(x: Any) -> Any:
        if tf.distribute.get_replica_context().replica_id_in_sync_group == 1:
            raise ValueError("replica 1 failed")
        return inner(x)

    try:
        with eagerctl.eager_scope():
            strategy.run(failing, args=(x,))
    except ValueError as exc:
        out["error"] = {"raised": f"ValueError: {exc}", "scopes": len(eagerctl.status().scopes),
                        "is_eager": eagerctl.is_eager()}

    for mode in ["graph", "local", "process"]:
        out[f"loop:{mode}"] = custom_loop(strategy, mode)
    for mode in ["graph", "local", "process"]:
        out[f"fit:{mode}"] = keras_fit(strategy, mode)
    for name in ["loss_fn", "replica_step", "train_step"]:
        out[f"loop:debuggable:{name}"] = custom_loop(strategy, "graph", debug=name)
    out["fit:debuggable:call"] = keras_fit(strategy, "graph", debug=True)
    out.update(gathers(strategy))
    out["end"] = {"flag": tf.config.functions_run_eagerly(), "scopes": len(eagerctl.status().scopes)}
    return out


def gathers(strategy: Any) -> dict[str, Any]:
    """`Strategy.gather` and `ReplicaContext.all_gather` on two devices, eagerly, in each mode."""
    import tensorflow as tf

    import eagerctl

    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([float(ctx.replica_id_in_sync_group)]))

    def replica_gather(v: Any) -> Any:
        return tf.distribute.get_replica_context().all_gather(v, axis=0)

    def attempt() -> Any:
        try:
            gathered = strategy.gather(values, axis=0).numpy().tolist()
            per_replica = strategy.experimental_local_results(strategy.run(replica_gather, args=(values,)))
            return [gathered, [r.numpy().tolist() for r in per_replica]]
        except Exception as exc:  # noqa: BLE001 - the outcome is the record
            return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"

    out = {"gather:none": attempt()}
    with eagerctl.eager_scope():
        out["gather:local"] = attempt()
    with eagerctl.eager_scope(process=True):
        out["gather:process"] = attempt()
    tf.config.run_functions_eagerly(True)
    try:
        out["gather:flag"] = attempt()
        eagerctl.uninstall_hook()
        try:
            out["gather:flag_tf_alone"] = attempt()
        finally:
            eagerctl.install_hook()
    finally:
        tf.config.run_functions_eagerly(False)
    return out


def scope_for(mode: str) -> Any:
    import contextlib

    import eagerctl

    if mode == "graph":
        return contextlib.nullcontext()
    return eagerctl.eager_scope(process=mode == "process")


def custom_loop(strategy: Any, mode: str, debug: str = "") -> Any:
    """Three epochs of two batches: strategy.run inside a tf.function, all_reduce by a MEAN variable.

    `debug` names the function decorated with `@eagerctl.debuggable`, if any.
    """
    import tensorflow as tf

    import eagerctl

    def maybe_debuggable(fn: Any) -> Any:
        return eagerctl.debuggable(fn) if fn.__name__ == debug else fn

    with strategy.scope():
        w = tf.Variable([[0.5], [-0.3]], aggregation=tf.VariableAggregation.MEAN)
    data, target = make_data()
    batches = tf.data.Dataset.from_tensor_slices((data, target)).batch(4)
    dist = strategy.experimental_distribute_dataset(batches)

    @maybe_debuggable
    @tf.function
    def loss_fn(xb: Any, yb: Any) -> Any:
        note("loss_fn")
        return tf.reduce_mean((tf.matmul(xb, w) - yb) ** 2)

    @maybe_debuggable
    def replica_step(xb: Any, yb: Any) -> Any:
        note("replica_step")
        with tf.GradientTape() as tape:
            loss = loss_fn(xb, yb)
        w.assign_sub(0.1 * tape.gradient(loss, w))  # a MEAN variable: a merge_call, a sync point
        return loss

    @maybe_debuggable
    @tf.function
    def train_step(xb: Any, yb: Any) -> Any:
        note("train_step")
        return strategy.reduce("MEAN", strategy.run(replica_step, args=(xb, yb)), axis=None)

    losses = []
    RUNS.clear()
    try:
        for _ in range(3):
            for xb, yb in dist:
                with scope_for(mode):
                    losses.append(float(train_step(xb, yb)))
    except eagerctl.EagerctlError as exc:
        return f"{type(exc).__name__}: {exc}"
    return {"losses": losses, "runs": records(), "w": w.numpy().ravel().tolist()}


def keras_fit(strategy: Any, mode: str, debug: bool = False) -> dict[str, Any]:
    """`Model.fit` of a model built in `strategy.scope()`, inside a scope; `debug`: @debuggable call."""
    import numpy as np
    import tensorflow as tf

    import eagerctl

    keras = tf.keras

    @tf.function
    def helper(t: Any) -> Any:
        note("helper")
        return t + 1.0

    class Probe(keras.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.k = self.add_weight(name="k", shape=(int(input_shape[-1]), 1), initializer="zeros")

        def call(self, inputs: Any) -> Any:
            note("layer_call")
            return helper(tf.matmul(inputs, self.k))

    if debug:
        Probe.call = eagerctl.debuggable(Probe.call)
    with strategy.scope():
        model = keras.Sequential([keras.Input(shape=(2,)), Probe()])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    model.set_weights([np.array([[0.5], [-0.3]], dtype="float32")])
    data, target = make_data()
    RUNS.clear()
    with scope_for(mode):
        history = model.fit(data, target, batch_size=4, epochs=3, shuffle=False, verbose=0)
    return {"losses": [float(v) for v in history.history["loss"]], "runs": records()}


if __name__ == "__main__":
    print(json.dumps({"mirrored": scenario_mirrored}[sys.argv[1]]()))

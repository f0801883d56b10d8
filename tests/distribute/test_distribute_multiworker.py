"""eagerctl under `tf.distribute.MultiWorkerMirroredStrategy`: two worker processes.

The test starts two workers on 127.0.0.1 (this file run as a script, with
`TF_CONFIG` naming both), each running the same scenario in the same order,
and asserts on the JSON each prints. Both workers must run every collective in
the same mode: an eager all-reduce and a compiled one are different collective
instances. Timeouts are bounded: TF's collective timeout, and a process
timeout after which both workers are killed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

SCRIPT = os.path.abspath(__file__)
TIMEOUT = 240  # seconds for both workers; they take about 20 on two busy cores
COLLECTIVE_TIMEOUT = 60  # seconds TF waits for the other worker in a collective
R, M = "replica", "main"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def workers() -> list[dict[str, Any]]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs = []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            env = dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2")
            procs.append(subprocess.Popen([sys.executable, SCRIPT], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        outputs = [proc.communicate(timeout=TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    results = []
    for index, (proc, (stdout, stderr)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"worker {index} failed:\n{stderr[-4000:]}"
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def test_each_worker_is_one_of_two(workers: list[dict[str, Any]]) -> None:
    assert [(w["index"], w["replicas"]) for w in workers] == [(0, 2), (1, 2)]


@pytest.mark.parametrize("index", [0, 1])
def test_custom_loop_losses_equal_graph_ones(workers: list[dict[str, Any]], index: int) -> None:
    worker = workers[index]
    graph = worker["loop:graph"]
    assert len(graph["losses"]) == 6
    assert graph["runs"] == [["loss_fn", R, False], ["replica_step", R, False], ["train_step", M, False]]
    for mode in ["local", "process"]:
        eager = worker[f"loop:{mode}"]
        assert eager["losses"] == pytest.approx(graph["losses"], rel=1e-5)
        assert eager["w"] == pytest.approx(graph["w"], rel=1e-5)
        # The loss_fn that the replica thread calls runs eagerly too.
        assert eager["runs"] == [["loss_fn", R, True], ["replica_step", R, True], ["train_step", M, True]]


@pytest.mark.parametrize("index", [0, 1])
def test_debuggable_losses_equal_graph_ones(workers: list[dict[str, Any]], index: int) -> None:
    worker = workers[index]
    graph = worker["loop:graph"]
    island = worker["loop:debuggable:loss_fn"]  # called by the replica thread in the compiled step
    assert island["losses"] == pytest.approx(graph["losses"], rel=1e-5)
    assert island["runs"] == [["loss_fn", "other", True], ["loss_fn", R, False], ["replica_step", R, False],
                              ["train_step", M, False]]
    step = worker["loop:debuggable:train_step"]  # its override reaches the replica thread
    assert step["losses"] == pytest.approx(graph["losses"], rel=1e-5)
    assert step["runs"] == [["loss_fn", R, True], ["replica_step", R, True], ["train_step", M, True]]


def test_workers_agree(workers: list[dict[str, Any]]) -> None:
    # The loss is reduced over both workers, and the variable is synchronized.
    for mode in ["graph", "local", "process", "debuggable:loss_fn", "debuggable:train_step"]:
        first, second = workers[0][f"loop:{mode}"], workers[1][f"loop:{mode}"]
        assert (first["losses"], first["w"]) == (second["losses"], second["w"])


@pytest.mark.parametrize("index", [0, 1])
def test_keras_fit_losses_equal_graph_ones(workers: list[dict[str, Any]], index: int) -> None:
    worker = workers[index]
    if not worker["keras"].startswith("2."):
        # Keras 3's fit first reduces the (x, y) batch with strategy.reduce
        # (Trainer._maybe_symbolic_build), which this strategy cannot do.
        pytest.skip(f"Keras {worker['keras']}: Model.fit under MultiWorkerMirroredStrategy fails before "
                    "training, compiled and without eagerctl (ValueError: Attempt to convert a value "
                    "(PerReplica...)); tested with tf.keras 2 on TF 2.13")
    graph = worker["fit:graph"]
    assert len(graph["losses"]) == 3
    assert [r for r in graph["runs"] if r[1] == R] == [["helper", R, False], ["layer_call", R, False]]
    for mode in ["local", "process"]:
        eager = worker[f"fit:{mode}"]
        assert eager["losses"] == pytest.approx(graph["losses"], rel=1e-5)
        assert [r for r in eager["runs"] if r[1] == R] == [["helper", R, True], ["layer_call", R, True]]


@pytest.mark.parametrize("index", [0, 1])
def test_all_gather_works_in_every_mode(workers: list[dict[str, Any]], index: int) -> None:
    gather = workers[index]["gather"]
    assert gather["graph"] == [[0.0, 1.0], [["step", R, False]]]
    for mode in ["local", "process"]:  # the step's body runs eagerly, the gather works
        assert gather[mode] == [[0.0, 1.0], [["step", R, True]]]
    # Inert unless asked: TF's own flag with no eagerctl scope fails as in TF alone.
    tf_error = "RuntimeError: all_gather is not supported in eager mode."
    assert gather["flag"] == gather["tf_alone_flag"] == tf_error


@pytest.mark.parametrize("index", [0, 1])
def test_all_gather_eager_limitation_and_clear_error(workers: list[dict[str, Any]], index: int) -> None:
    # What TF itself does: its eager all_gather runs through an internal
    # tf.function, which its own global flag makes eager, and then it fails.
    gather = workers[index]["gather"]
    assert gather["tf_alone_flag"] == "RuntimeError: all_gather is not supported in eager mode."
    # Were the launcher still reached eagerly, the error says why and what to do.
    fix = ("Keep the code that gathers compiled: run it under eagerctl.graph_scope(), or move the gather out "
           "of the code you run eagerly")
    assert gather["unfixed_flag"] == gather["tf_alone_flag"]  # no eagerctl scope: TF's own error
    assert gather["unfixed_process"] == (
        "EagerctlError: TensorFlow cannot run a collective all_gather eagerly (ReplicaContext.all_gather, "
        "or Strategy.gather under MultiWorkerMirroredStrategy or a MirroredStrategy over more than one "
        "device), and this call runs eagerly because of "
        f"eager_scope(True, process=True) (entered at {SCRIPT}:{gather['process_line']} in thread "
        f"'MainThread'). {fix}"
    )
    assert gather["unfixed_local"] == (
        "EagerctlError: TensorFlow cannot run a collective all_gather eagerly (ReplicaContext.all_gather, "
        "or Strategy.gather under MultiWorkerMirroredStrategy or a MirroredStrategy over more than one "
        "device), and this call runs eagerly because of "
        f"{gather['scope']} (entered at {gather['where']} in thread 'MainThread'). {fix}"
    )
    assert gather["where"] == f"{SCRIPT}:{gather['line']}"


@pytest.mark.parametrize("index", [0, 1])
def test_flag_and_scopes_clean_at_the_end(workers: list[dict[str, Any]], index: int) -> None:
    assert workers[index]["end"] == {"flag": False, "scopes": 0}


# -- the worker, run in a fresh process with TF_CONFIG set -------------------------------------------

RUNS: list[tuple[str, str, bool]] = []


def note(name: str) -> None:
    """Record that a function body ran: in which thread kind, and whether eagerly."""
    import tensorflow as tf
    from tensorflow.python.distribute import mirrored_run

    thread = threading.current_thread()
    if thread is threading.main_thread():
        kind = M
    else:  # "other": the TF thread that runs an eager island of @debuggable
        kind = R if isinstance(thread, mirrored_run._MirroredReplicaThread) else "other"
    RUNS.append((name, kind, bool(tf.executing_eagerly())))


def records() -> list[list[Any]]:
    return [list(r) for r in sorted(set(RUNS))]


def scope_for(mode: str) -> Any:
    import contextlib

    import eagerctl

    if mode == "graph":
        return contextlib.nullcontext()
    return eagerctl.eager_scope(process=mode == "process")


def worker_data(index: int) -> tuple[Any, Any]:
    """This worker's half of the data: rows index, index + 2, ..."""
    import numpy as np

    data = np.arange(32, dtype="float32").reshape(16, 2) / 10.0
    data = data[index::2]
    return data, data @ np.array([[1.0], [2.0]], dtype="float32")


def custom_loop(strategy: Any, index: int, mode: str, debug: str = "") -> dict[str, Any]:
    """`debug` names the function decorated with `@eagerctl.debuggable`, if any."""
    import tensorflow as tf

    import eagerctl

    def maybe_debuggable(fn: Any) -> Any:
        return eagerctl.debuggable(fn) if fn.__name__ == debug else fn

    with strategy.scope():
        w = tf.Variable([[0.5], [-0.3]], aggregation=tf.VariableAggregation.MEAN)
    data, target = worker_data(index)

    @maybe_debuggable
    @tf.function
    def loss_fn(xb: Any, yb: Any) -> Any:
        note("loss_fn")
        return tf.reduce_mean((tf.matmul(xb, w) - yb) ** 2)

    def replica_step(xb: Any, yb: Any) -> Any:
        note("replica_step")
        with tf.GradientTape() as tape:
            loss = loss_fn(xb, yb)
        w.assign_sub(0.01 * tape.gradient(loss, w))
        return loss

    @maybe_debuggable
    @tf.function
    def train_step(xb: Any, yb: Any) -> Any:
        note("train_step")
        return strategy.reduce("MEAN", strategy.run(replica_step, args=(xb, yb)), axis=None)

    losses = []
    RUNS.clear()
    for _ in range(3):
        for start in (0, 4):
            xb, yb = tf.constant(data[start:start + 4]), tf.constant(target[start:start + 4])
            with scope_for(mode):
                losses.append(float(train_step(xb, yb)))
    return {"losses": losses, "runs": records(), "w": w.numpy().ravel().tolist()}


def keras_version() -> str:
    import keras  # tf.keras is this Keras in both TF 2.13 and 2.21

    return str(keras.__version__)


def keras_fit(strategy: Any, index: int, mode: str) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

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

    with strategy.scope():
        model = keras.Sequential([keras.Input(shape=(2,)), Probe()])
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.set_weights([np.array([[0.5], [-0.3]], dtype="float32")])
    data, target = worker_data(index)
    # Each worker feeds its own half: no auto-sharding.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    batches = tf.data.Dataset.from_tensor_slices((data, target)).batch(4).with_options(options)
    RUNS.clear()
    with scope_for(mode):
        history = model.fit(batches, epochs=3, verbose=0)
    return {"losses": [float(v) for v in history.history["loss"]], "runs": records()}


def gather(strategy: Any, index: int) -> dict[str, Any]:
    """ReplicaContext.all_gather in every mode; then what happens without eagerctl's fix."""
    import tensorflow as tf
    from tensorflow.python.distribute import cross_device_ops

    import eagerctl
    from eagerctl import _compiled, _distribute

    @tf.function
    def step(v: Any) -> Any:
        note("step")
        # identity: a tensor placed on this replica's device, as all_gather needs
        return tf.distribute.get_replica_context().all_gather(tf.identity(v), axis=0)

    mine = tf.constant([float(index)])

    def run() -> Any:
        RUNS.clear()
        try:
            return [strategy.run(step, args=(mine,)).numpy().tolist(), records()]
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            return f"{type(exc).__name__}: {exc}"

    def with_flag() -> Any:
        tf.config.run_functions_eagerly(True)
        try:
            return run()
        finally:
            tf.config.run_functions_eagerly(False)

    out: dict[str, Any] = {"graph": run()}
    with eagerctl.eager_scope():
        out["local"] = run()
    with eagerctl.eager_scope(process=True):
        out["process"] = run()
    out["flag"] = with_flag()
    # Without eagerctl's fix, each worker fails at the same point, before any
    # collective starts: TF alone, and with eagerctl's error.
    _distribute.uninstall()
    _compiled.uninstall()
    try:
        out["tf_alone_flag"] = with_flag()
    finally:
        _distribute.install()
        _compiled.install()
    cls = cross_device_ops.CollectiveAllReduce
    fixed = cls.__dict__["_batch_all_gather"]
    cls._batch_all_gather = _compiled._originals[(cls, "_batch_all_gather")]
    try:
        out["unfixed_flag"] = with_flag()
        process = eagerctl.eager_scope(process=True)
        out["process_line"] = sys._getframe().f_lineno + 1
        with process:
            out["unfixed_process"] = run()
        scope = eagerctl.eager_scope()
        out["line"] = sys._getframe().f_lineno + 1
        with scope:
            out["where"] = eagerctl.status().scopes[0].where
            out["unfixed_local"] = run()
        out["scope"] = repr(scope)
    finally:
        cls._batch_all_gather = fixed
    return out


def worker() -> dict[str, Any]:
    import tensorflow as tf

    import eagerctl

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    out: dict[str, Any] = {"index": index, "replicas": strategy.num_replicas_in_sync}
    for mode in ["graph", "local", "process"]:
        out[f"loop:{mode}"] = custom_loop(strategy, index, mode)
    for name in ["loss_fn", "train_step"]:
        out[f"loop:debuggable:{name}"] = custom_loop(strategy, index, "graph", debug=name)
    out["keras"] = keras_version()
    if out["keras"].startswith("2."):  # see test_keras_fit_losses_equal_graph_ones
        for mode in ["graph", "local", "process"]:
            out[f"fit:{mode}"] = keras_fit(strategy, index, mode)
    out["gather"] = gather(strategy, index)
    out["end"] = {"flag": tf.config.functions_run_eagerly(), "scopes": len(eagerctl.status().scopes)}
    return out


if __name__ == "__main__":
    print(json.dumps(worker()))

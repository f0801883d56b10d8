"""The programs of tests/scopes/test_scopes_inert_tf.py, run in a fresh process.

`python tests/scopes/inert_tf_programs.py VARIANT` prints one JSON line. No
pytest here, and nothing of eagerctl unless the variant imports it: a program
as a TF user writes it. tests/plugin/test_plugin_inert.py runs the same
programs inside a pytest session.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def outcome(fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the outcome is the record
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def setup() -> dict[str, Any]:
    """Two logical CPUs, a MirroredStrategy over them, a small model and a batch."""
    import numpy as np
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    w = tf.Variable(rng.normal(size=(3, 2)).astype("float32"), name="w")
    b = tf.Variable(np.zeros(2, dtype="float32"), name="b")
    x = tf.constant(rng.normal(size=(4, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 2, size=4).astype("int32"))
    return {"tf": tf, "strategy": strategy, "w": w, "b": b, "x": x, "y": y}


def gathers(s: dict[str, Any]) -> dict[str, Any]:
    tf, strategy = s["tf"], s["strategy"]
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([float(ctx.replica_id_in_sync_group)]))

    def replica_gather(v: Any) -> Any:
        return tf.distribute.get_replica_context().all_gather(v, axis=0)

    return {
        "gather": outcome(lambda: strategy.gather(values, axis=0).numpy().tolist()),
        "all_gather": outcome(lambda: [t.numpy().tolist() for t in strategy.experimental_local_results(
            strategy.run(replica_gather, args=(values,)))]),
    }


def per_example_gradient_norms(s: dict[str, Any]) -> list[float]:
    """DP-SGD's per-example gradients: one gradient per row, vectorized."""
    tf, w, b = s["tf"], s["w"], s["b"]

    def grad_norm(row: Any) -> Any:
        xi, yi = row
        with tf.GradientTape() as tape:
            logits = tf.matmul(xi[None, :], w) + b
            loss = tf.keras.losses.sparse_categorical_crossentropy(yi[None], logits, from_logits=True)
        gw, gb = tape.gradient(loss, [w, b])
        return tf.sqrt(tf.reduce_sum(gw * gw) + tf.reduce_sum(gb * gb))

    return [round(float(v), 5) for v in tf.vectorized_map(grad_norm, (s["x"], s["y"]))]


def flag_in_body(s: dict[str, Any]) -> tuple[list[bool], bool]:
    """What a vectorized_map body reads of TF's flag, and writes to it; whether it was traced."""
    tf = s["tf"]
    seen: list[bool] = []
    traced: list[bool] = []

    def body(row: Any) -> Any:
        traced.append(not tf.executing_eagerly())
        seen.append(tf.config.functions_run_eagerly())
        return tf.reduce_sum(row * row)

    tf.vectorized_map(body, s["x"])
    return seen, all(traced) and bool(traced)


def programs(s: dict[str, Any]) -> dict[str, Any]:
    """Under TF's own `run_functions_eagerly(True)`, no eagerctl scope."""
    tf = s["tf"]
    out: dict[str, Any] = {}
    tf.config.run_functions_eagerly(True)
    try:
        out.update(gathers(s))
        out["per_example"] = per_example_gradient_norms(s)
        seen: list[bool] = []

        def writes_the_flag(row: Any) -> Any:
            seen.append(tf.config.functions_run_eagerly())
            tf.config.run_functions_eagerly(True)
            seen.append(tf.config.functions_run_eagerly())
            tf.config.run_functions_eagerly(False)
            seen.append(tf.config.functions_run_eagerly())
            return tf.reduce_sum(row)

        out["vectorized"] = tf.vectorized_map(writes_the_flag, s["x"]).numpy().round(5).tolist()
        out["flag_in_body"] = seen
        out["flag_after"] = tf.config.functions_run_eagerly()

        def bad_row(row: Any) -> Any:
            raise ValueError("a bad row")

        out["raising"] = outcome(lambda: tf.vectorized_map(bad_row, s["x"]))
        out["flag_after_raise"] = tf.config.functions_run_eagerly()
    finally:
        tf.config.run_functions_eagerly(False)
    return out


def scoped(s: dict[str, Any]) -> dict[str, Any]:
    """The same gathers and vectorized maps under eagerctl's eager scopes: its fixes apply."""
    import eagerctl

    out: dict[str, Any] = {}
    for kind in ("local", "process"):
        with eagerctl.eager_scope(process=kind == "process"):
            record = gathers(s)
            record["per_example"] = per_example_gradient_norms(s)
            record["flag_in_body"], record["body_traced"] = flag_in_body(s)
        out[kind] = record
    return out


def patched() -> list[str]:
    """TF's objects that eagerctl could patch and are not TF's own now."""
    import tensorflow as tf
    from tensorflow.python.distribute import cross_device_ops, cross_device_utils, mirrored_run
    from tensorflow.python.eager.polymorphic_function import eager_function_run, polymorphic_function
    from tensorflow.python.ops import cond
    from tensorflow.python.ops.parallel_for import control_flow_ops

    def ours(obj: Any) -> bool:  # eagerctl's wrappers copy TF's names (functools.wraps): ask the code
        code = getattr(obj, "__code__", None)
        return code is not None and os.sep + "eagerctl" + os.sep in code.co_filename

    found = []
    prop = polymorphic_function.Function.__dict__["_run_functions_eagerly"]
    if ours(prop.fget):
        found.append("Function._run_functions_eagerly")
    candidates = {
        "tf.config.run_functions_eagerly": tf.config.run_functions_eagerly,
        "eager_function_run.run_functions_eagerly": eager_function_run.run_functions_eagerly,
        "pfor": control_flow_ops.pfor,
        "_eager_cond_implementation": getattr(cond, "_eager_cond_implementation", None),
        "CollectiveAllReduce._batch_all_gather": cross_device_ops.CollectiveAllReduce._batch_all_gather,
        "CollectiveReplicaLauncher.all_gather": cross_device_utils.CollectiveReplicaLauncher.all_gather,
        "_MirroredReplicaThread.__init__": mirrored_run._MirroredReplicaThread.__init__,
        "_MirroredReplicaThread.run": mirrored_run._MirroredReplicaThread.run,
    }
    for name, obj in candidates.items():
        if ours(obj):
            found.append(name)
    return found


def main(variant: str) -> dict[str, Any]:
    """plain: no eagerctl; imported: eagerctl first; tf_first: after TF; used: a scope used before."""
    if variant == "tf_first":
        import tensorflow  # noqa: F401 - the order a program may import them in
    if variant != "plain":
        import eagerctl
    s = setup()
    if variant == "used":
        with eagerctl.eager_scope():
            pass
    result: dict[str, Any] = {"programs": programs(s), "patched": patched()}
    if variant != "plain":
        result["hook_installed"] = eagerctl.status().hook_installed
    if variant == "used":
        result["scoped"] = scoped(s)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))

"""An island under `tf.distribute` sees its replica or cross-replica context, as its traced body would.

TF runs the island on an executor thread, where `tf.distribute` finds no
context: the replica id would be 0 and a mirrored variable would read (and
differentiate) the first replica's copy. The island carries the replica
context over. Two logical CPUs must be configured before TF starts: a fresh
process. Compared with the same function compiled: equal (exact float32 ops).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("tensorflow")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = textwrap.dedent("""
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import eagerctl

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        v = tf.Variable(2.0)
    seen = []

    def body(x):
        if tf.executing_eagerly():
            ctx = tf.distribute.get_replica_context()
            seen.append([int(ctx.replica_id_in_sync_group), tf.distribute.get_strategy() is strategy,
                         tf.distribute.in_cross_replica_context()])
        return tf.reduce_sum(x * v)

    def make(fn):
        @tf.function
        def step(x):
            def replica_fn(x):
                with tf.GradientTape() as tape:
                    y = fn(x)
                return y, tape.gradient(y, v)
            return strategy.run(replica_fn, (x,))
        return step

    x = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([float(ctx.replica_id_in_sync_group + 1)] * 2))

    def values(out):
        return [[float(t) for t in strategy.experimental_local_results(part)] for part in out]

    got = values(make(eagerctl.debuggable(body))(x))
    want = values(make(body)(x))

    # Cross-replica: called under strategy.scope(), outside strategy.run.
    cross = []

    @eagerctl.debuggable
    def total(t):
        cross.append([tf.distribute.get_strategy() is strategy, tf.distribute.in_cross_replica_context()])
        return t + 1.0

    @tf.function
    def outside(t):
        return total(t)

    with strategy.scope():
        outside(tf.constant(1.0))
    print(json.dumps({"got": got, "want": want, "seen": sorted(seen), "cross": cross}))
""")


def test_island_in_a_replica_sees_its_replica_and_differentiates_its_copy() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env,
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Replica r gets x = [r + 1, r + 1]: y = 2 * (r + 1) * v = 4 (r + 1), dy/dv = 2 (r + 1).
    assert result["want"] == [[4.0, 8.0], [2.0, 4.0]]
    assert result["got"] == result["want"]
    assert result["seen"] == [[0, True, False], [1, True, False]]
    # The scratch trace, then the run: both in the strategy's cross-replica context.
    assert result["cross"] == [[True, True], [True, True]]

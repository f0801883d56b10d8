"""replay() under MirroredStrategy (two logical CPUs, a fresh process): the replicas' step, eagerly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROGRAM = '''\
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import eagerctl

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    w = tf.Variable([1.0, 1.0])


def replica_step(x):
    score = tf.math.log(tf.reduce_sum(x * w))  # LOG LINE
    w.assign_sub(0.01 * tf.ones(2))
    return score


@tf.function
def step(x):
    return strategy.reduce("SUM", strategy.run(replica_step, args=(x,)), axis=None)


data = np.array([[1, 2], [3, 4], [1, 1], [-5, 1], [2, 2], [1, 1]], "float32")
dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(data).batch(2))
try:
    with eagerctl.replay():
        for batch in dist:
            print("loss", float(step(batch)))
except eagerctl.ReplayError as error:
    print("step", error.step, "line", error.lineno, error.op_type, error.site.function)
print("w", [v.numpy().tolist() for v in w.values])
'''


def test_mirrored_strategy_step(tmp_path: Path) -> None:
    script = tmp_path / "mirrored.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600,
                         check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    line = next(i for i, text in enumerate(PROGRAM.splitlines(), 1) if text.endswith("# LOG LINE"))
    assert lines[0].startswith("loss ")
    assert lines[1] == f"step 2 line {line} Log replica_step"
    # As the failed compiled call left them: two steps applied on both replicas, no extra one.
    after = [0.9800000190734863, 0.9800000190734863]
    assert lines[2] == f"w {[after, after]}"

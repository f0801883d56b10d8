"""`eagerctl run --eager` on an asyncio program that first imports TensorFlow in a child task.

The shape that exposed it: an asyncio service that loads its model in a
background task (`asyncio.create_task(load_model())`, where the loader does
`import tensorflow`), then serves predictions from the main coroutine and from
a worker thread (`asyncio.to_thread`). `--eager` must apply to all of them,
and print no warning (it used to warn about a line of eagerctl's own CLI).
One real process: TensorFlow must not be imported before the program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SERVICE = '''\
import asyncio, json, sys

tf_loaded_first = "tensorflow" in sys.modules


async def load_model():
    import tensorflow as tf  # the first import of TensorFlow, in a child task

    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    modes = []

    @tf.function
    def predict(x):
        modes.append(tf.executing_eagerly())
        return tf.nn.softmax(model(x))

    predict(tf.ones((1, 3)))  # warm-up in the loader task
    return predict, modes


async def main():
    predict, modes = await asyncio.create_task(load_model())
    import tensorflow as tf

    batch = tf.constant([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]])
    served = predict(batch)
    await asyncio.to_thread(predict, batch)  # a worker thread copies the task's context
    print(json.dumps({"tf_loaded_first": tf_loaded_first, "modes": modes,
                      "flag": tf.config.functions_run_eagerly(),
                      "rows_sum_to_one": bool(tf.reduce_all(tf.abs(tf.reduce_sum(served, 1) - 1) < 1e-6))}))


asyncio.run(main())
'''


def test_eager_reaches_a_child_task_that_imports_tensorflow_and_warns_about_nothing(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "eagerctl", "run", "--eager", str(script)],
                          capture_output=True, text=True, env=env, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"tf_loaded_first": False, "modes": [True, True, True], "flag": False,
                     "rows_sum_to_one": True}  # the loader task, the main coroutine, the worker thread
    assert "eagerctl" not in done.stderr  # no warning, least of all about eagerctl's own lines

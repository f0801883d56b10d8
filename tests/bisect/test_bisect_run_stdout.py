"""`eagerctl run --bisect` on a training script: stdout byte-identical to a plain `python` run.

A subprocess each, so that nothing of the test process (TF already imported,
pytest's capture) is shared: the plain run does not import eagerctl at all.
The script trains with Adam and a metric from a `tf.data` iterator read inside
the step, draws NumPy and TF random numbers, counts its traces in Python and
prints every step; bisect's own report goes to stderr, with what its runs printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import numpy as np
    import tensorflow as tf

    try:
        import keras
        if not hasattr(keras, "ops"):
            raise ImportError
    except ImportError:
        keras = tf.keras

    keras.utils.set_random_seed(0)  # Python's, NumPy's and TensorFlow's seeds: a reproducible program
    traces = {"train_step": 0}

    def sample_lambda(alpha):
        return np.random.beta(alpha, alpha)

    def mix_up(x, y):
        lam = sample_lambda(0.2)
        return lam * x + (1 - lam) * tf.roll(x, 1, axis=0), lam * y + (1 - lam) * tf.roll(y, 1, axis=0)

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    optimizer = keras.optimizers.Adam(1e-2)
    loss_fn = keras.losses.CategoricalCrossentropy()
    mean_loss = keras.metrics.Mean()

    @tf.function
    def train_step(iterator):
        traces["train_step"] += 1
        print("tracing train_step")
        x, y = next(iterator)
        x, y = mix_up(x, y)
        x = x + tf.random.normal(tf.shape(x), stddev=0.01)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        mean_loss.update_state(loss)
        return loss

    features = np.random.normal(size=(64, 8)).astype("float32")
    labels = np.eye(3, dtype="float32")[np.random.randint(0, 3, 64)]
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(64, seed=1).batch(16)
    iterator = iter(dataset)
    for step in range(4):
        loss = train_step(iterator)
        print(f"step {step} loss {float(loss):.6f} mean {float(mean_loss.result()):.6f}")
    print("traces", traces["train_step"], "iterations", int(optimizer.iterations.numpy()))
    print("weights", float(sum(float(tf.reduce_sum(w)) for w in model.weights)))
    print("next numbers", np.random.uniform(), float(tf.random.uniform([])))
''')


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600, check=False)


def test_run_bisect_leaves_a_training_scripts_stdout_byte_identical(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    plain = run([str(script)], tmp_path)
    bisected = run(["-m", "eagerctl", "run", "--bisect", "__main__:train_step", str(script)], tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert bisected.returncode == 0, bisected.stderr[-3000:]
    assert bisected.stdout == plain.stdout
    # Its first call makes Adam's slots, so TensorFlow traces it twice: with bisect too, printed in place.
    assert plain.stdout.count("tracing train_step") == 2 and "traces 2 iterations 4" in plain.stdout
    err = bisected.stderr
    assert "eagerctl run: --bisect __main__:train_step: its first call, bisected:" in err
    assert "culprit 1: sample_lambda (function)" in err
    assert "    | tracing train_step" in err  # what bisect's runs printed, shown as bisect's

"""Metrics under fit: a plain metric function given to compile(metrics=...), and a Metric subclass.

Run plainly it prints its results; the tests run it under debugpy and pdb and compare.
Lines the tests set breakpoints on are marked `# BP name`.
"""

import json

import numpy as np
import tensorflow as tf

import eagerctl

keras = tf.keras


def mean_gap(y_true, y_pred):
    y = tf.abs(y_true - y_pred)
    return tf.reduce_mean(y, axis=-1)  # BP fn


class SumOfSquares(keras.metrics.Metric):
    def __init__(self, name="sum_of_squares", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_weight(name="total", shape=(), initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y = tf.square(y_pred)
        self.total.assign_add(tf.reduce_sum(y))  # BP update

    def result(self):
        return self.total


eager = {"steps": 0}  # calls of Probe.call that ran eagerly: how many train steps ran as an island


class Probe(keras.layers.Layer):
    def call(self, x):
        if tf.executing_eagerly():
            eager["steps"] += 1
        return x


keras.utils.set_random_seed(0)
features = np.linspace(-1.0, 1.0, 24, dtype="float32").reshape(8, 3)
targets = (features @ np.array([[0.5], [-1.0], [2.0]], dtype="float32") + 0.3).astype("float32")
model = keras.Sequential([keras.Input((3,)), Probe(), keras.layers.Dense(1, kernel_initializer="ones")])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=[mean_gap, SumOfSquares()])
history = model.fit(features, targets, batch_size=4, epochs=1, verbose=0, shuffle=False)
islands = sorted(name.split(" ")[0] for name in eagerctl.status().breakpoint_islands)
print("RESULT " + json.dumps({
    "history": {key: [round(float(v), 5) for v in values] for key, values in sorted(history.history.items())},
    "weights": [np.round(w, 6).tolist() for w in model.get_weights()],
    "islands": islands,
    "eager_steps": eager["steps"],
}))

"""A plain function a Keras layer's `call` calls, under fit: Keras 3 calls `call` unconverted.

Run plainly it prints its results; the tests run it under pdb and compare.
Lines the tests set breakpoints on are marked `# BP name`.
"""

import json

import numpy as np
import tensorflow as tf

import eagerctl

keras = tf.keras


def shifted(x):
    y = x * 2.0
    return y - 1.0  # BP helper


class Shift(keras.layers.Layer):
    def call(self, x):
        return shifted(x)


keras.utils.set_random_seed(0)
features = np.linspace(-1.0, 1.0, 24, dtype="float32").reshape(8, 3)
targets = features.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((3,)), Shift(), keras.layers.Dense(1, kernel_initializer="ones")])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
history = model.fit(features, targets, batch_size=4, epochs=1, verbose=0, shuffle=False)
islands = sorted(name.split(" ")[0] for name in eagerctl.status().breakpoint_islands)
print("RESULT " + json.dumps({
    "loss": [round(float(v), 6) for v in history.history["loss"]],
    "weights": [np.round(w, 6).tolist() for w in model.get_weights()],
    "islands": islands,
}))

"""Keras under fit, and a tf.data pipeline: breakpoints in a layer's call, a loss, a map function.

Run plainly it prints its results; the tests run it under debugpy and compare.
Lines the tests set breakpoints on are marked `# BP name`.
"""

import json

import numpy as np
import tensorflow as tf

import eagerctl

keras = tf.keras


class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        y = x * self.w
        return y + 0.5  # BP layer


def halved_mse(y_true, y_pred):
    y = tf.square(y_true - y_pred)
    return tf.reduce_mean(y, axis=-1) * 0.5  # BP loss


def augment(x, t):
    y = x * 2.0
    return y - 1.0, t  # BP map


keras.utils.set_random_seed(0)
features = np.linspace(-1.0, 1.0, 24, dtype="float32").reshape(8, 3)
targets = features.sum(axis=1, keepdims=True).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((features, targets)).map(augment).batch(4).cache()
# The map function runs here, once per element: fit reads the cache. (Under fit, tf.data's prefetching
# runs it on its own thread while a train step runs: two threads could stop at once, which an IDE shows,
# but a test that counts stops one by one could not tell apart.)
for _ in dataset:
    pass

model = keras.Sequential([keras.Input((3,)), Scale(), keras.layers.Dense(1, kernel_initializer="ones")])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss=halved_mse)
history = model.fit(dataset, epochs=1, verbose=0)
islands = sorted(name.split(" ")[0] for name in eagerctl.status().breakpoint_islands)
print("RESULT " + json.dumps({
    "loss": [round(float(v), 6) for v in history.history["loss"]],
    "weights": [np.round(w, 6).tolist() for w in model.get_weights()],
    "islands": islands,
}))

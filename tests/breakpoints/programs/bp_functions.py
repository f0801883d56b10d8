"""Compiled functions with breakpoints: a tf.function body, a plain function two calls below, a condition.

Run plainly it prints its results; the tests run it under debugpy and pdb and compare.
Lines the tests set breakpoints on are marked `# BP name`.
"""

import json

import tensorflow as tf

import eagerctl

traces = {"step": 0, "outer": 0}


@tf.function
def step(x):
    if not tf.executing_eagerly():
        traces["step"] += 1
    y = x * 2.0 + 1.0
    return tf.reduce_sum(y * y)  # BP step


def inner(x):
    y = tf.sqrt(x + 1.0)
    return y * 3.0  # BP inner


def middle(x):
    return inner(x) - 1.0


@tf.function
def outer(x):
    if not tf.executing_eagerly():
        traces["outer"] += 1
    return middle(x) * 0.5


def ramp(x, i):
    y = x * i
    return y + 1.0  # BP ramp


@tf.function
def ramped(x):
    total = tf.zeros_like(x)
    for i in range(4):
        total += ramp(x, float(i))
    return total


results = []
for k in range(2):
    x = tf.constant([1.0, 2.0, 3.0]) * (k + 1)
    results.append(float(step(x)))
    results.append(outer(x).numpy().tolist())
results.append(ramped(tf.constant([0.5, 1.5])).numpy().tolist())
islands = sorted(name.split(" ")[0] for name in eagerctl.status().breakpoint_islands)
print("RESULT " + json.dumps({"results": results, "traces": traces, "islands": islands}))

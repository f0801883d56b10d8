"""tf.function(autograph=False): a breakpoint in its body, and in a plain function two calls below another.

Run plainly it prints its results; the tests run it under debugpy and pdb and compare.
Lines the tests set breakpoints on are marked `# BP name`.
"""

import json

import tensorflow as tf

import eagerctl

traces = {"scaled": 0, "outer": 0}
counter = tf.Variable(0.0)


@tf.function(autograph=False)
def scaled(x):
    if not tf.executing_eagerly():
        traces["scaled"] += 1
    y = x * 2.0 + 1.0
    return tf.reduce_sum(y * y)  # BP body


def inner(x):
    y = tf.sqrt(x + 1.0)
    return y * 3.0  # BP inner


def middle(x):
    counter.assign_add(1.0)  # a side effect before the breakpoint: it must happen once per call
    return inner(x) - 1.0


@tf.function(autograph=False)
def outer(x):
    if not tf.executing_eagerly():
        traces["outer"] += 1
    return middle(x) * 0.5


results = []
for k in range(2):
    x = tf.constant([1.0, 2.0, 3.0]) * (k + 1)
    results.append(float(scaled(x)))
    results.append([round(v, 5) for v in outer(x).numpy().tolist()])
results.append(float(counter.numpy()))
islands = sorted(name.split(" ")[0] for name in eagerctl.status().breakpoint_islands)
print("RESULT " + json.dumps({"results": results, "traces": traces, "islands": islands}))

"""Breakpoints that come and go while the program runs compiled; a tf.data pipeline built before one.

The test sets the breakpoints only after the program printed READY (it waits for
the file named by its first argument), removes the one in `shift` at its second
stop, and keeps the one in `double`. Lines it sets them on are marked `# BP name`.
"""

import json
import os
import sys
import time

import tensorflow as tf

import eagerctl

go = sys.argv[1]
traces = {"step": 0}


def shift(x):
    y = x + 1.0
    return y * 2.0  # BP shift


@tf.function
def step(x):
    if not tf.executing_eagerly():
        traces["step"] += 1
    return shift(x) - 0.5


def double(x):
    y = x * 2.0
    return y  # BP double


def doubled(i):
    return double(tf.cast(i, tf.float32))


early = tf.data.Dataset.range(3).map(doubled)  # built before any breakpoint is set
results = [float(step(tf.constant(float(i)))) for i in range(5)]  # compiled
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
results += [float(step(tf.constant(float(i)))) for i in range(5, 10)]
islands_after_removal = sorted(name.split(" ")[0] for name in eagerctl.status().breakpoint_islands)
results.append([float(v) for v in early])  # built before: cannot stop, said once
late = tf.data.Dataset.range(3).map(doubled)  # built after: stops
results.append([float(v) for v in late])
islands = sorted(name.split(" ")[0] for name in eagerctl.status().breakpoint_islands)
print("RESULT " + json.dumps({"results": results, "traces": traces, "islands": islands,
                              "islands_after_removal": islands_after_removal}))

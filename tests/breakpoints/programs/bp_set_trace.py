"""`breakpoint()` written in a tf.function body: with eagerctl it stops on every call, with values.

The test types pdb commands on stdin; run with PYTHONBREAKPOINT=0 it is the plain program.
"""

import json

import tensorflow as tf

import eagerctl

eagerctl.breakpoints(True)  # with no debugger attached yet, this is what puts eagerctl's hook in


@tf.function
def step(x):
    y = x * 3.0
    breakpoint()
    return y + 1.0  # BP after


results = [float(step(tf.constant(float(i)))) for i in range(3)]
print("RESULT " + json.dumps({"results": results}))

"""`import ipdb; ipdb.set_trace()` written in a tf.function body, the import inside the body.

ipdb is imported only when the body first runs (while TensorFlow traces it), so
it is not there to be silenced when that trace begins. With eagerctl it stops on
every call, with values, never in the trace. Run with EAGERCTL_BREAKPOINTS=0 and
commands that continue, it is the plain program's result.
"""

import json

import tensorflow as tf

import eagerctl

eagerctl.breakpoints(True)  # with no debugger attached yet, this is what puts eagerctl's hook in


@tf.function
def step(x):
    y = x * 3.0
    import ipdb; ipdb.set_trace()  # noqa: E702, I001
    return y + 1.0  # BP after


results = [float(step(tf.constant(float(i)))) for i in range(3)]
print("RESULT " + json.dumps({"results": results}))

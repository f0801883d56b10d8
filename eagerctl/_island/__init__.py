"""Eager islands: a Python function that runs eagerly inside a compiled graph.

`call_as_island(fn, args, kwargs, name=...)`, called while TensorFlow traces a
`tf.function`, puts one op into the graph being built. Every time the graph
runs, that op calls `fn` eagerly in Python (through TF's `EagerPyFunc` kernel,
the op behind `tf.py_function`), so breakpoints, `print` and `.numpy()` work in
its body while everything around it stays compiled.

How the op is built, at trace time (`build.py`):

1. `fn` is traced once into a scratch `FuncGraph` (never run) to learn the
   nested structure, dtypes and static shapes of its outputs, the trainable
   variables it reads, every variable it touches, and the losses it adds to
   Keras layers (`add_loss`). NumPy and Python number outputs become tensor
   outputs (the value of each run); losses become extra outputs that are put
   where the traced body would have put its own, so `model.losses` sees them
   (`outputs.py`, `losses.py`; `.numpy()` in that trace returns stand-ins,
   `values.py`).
2. The thread-local state the body's trace sees (Keras's call context and
   training flag, autocast and dtype policy, name scope, `tf.distribute`
   replica or cross-replica context, see `context.py`) is captured, and
   re-entered on the TF executor thread around each run; a call-context value
   that is a graph tensor (Keras 2 `training`) is an op input, set in each
   run's copy.
3. The graph tensors among the arguments become the op's inputs (`arguments.py`);
   everything else (Python values, variables, the Keras layer `self`) is closed
   over. The values of the trainable variables the body read are inputs too
   (their gradients come back through those reads; a variable with a sparse
   gradient is fed as its handle instead, as TF's own gather is), and the
   touched variables' resource handles, so TF's automatic control dependencies
   order the op against the graph's other uses of those variables, as if the
   body had been traced.
4. Gradients (`gradients.py`): the op type has one gradient function,
   registered once with TF (and recorded on any tape that watches the graph),
   which builds a gradient op that differentiates the run's own
   `GradientTape`s, found by a call id the forward op returns. The gradient op
   is differentiable the same way (nested tapes, second order). Each gradient
   has the type the traced body's has: a gather's `tf.IndexedSlices` stays
   sparse.

At run time (`runs.py`) the body runs in the carried context and its outputs
are checked against the trace.

Memory (`tapes.py`, `callbacks.py`). An island op is built with two Python
callbacks: one records nothing, the other records tapes. The op calls the one
that records nothing until TensorFlow builds a gradient for it; then its
`token` attribute is switched to the one that records. A function called under
a tape outside it keeps its inference graph (built before the gradient)
recording nothing, so inference calls keep no tapes even after a gradient was
taken. Kept tapes are bounded per island by runs (`KEEP_PENDING`, `KEEP_DONE`)
and by an estimate of their bytes (`KEEP_BYTES`); set them on
`eagerctl._island.tapes`, where they are read. The callbacks live in the
outermost traced graph (not in TF's process-wide default graph, as
`tf.py_function`'s do), so an island and its tapes are freed with the function
that uses them.

Where to start reading: `island.py` (`call_as_island` and `_Island`), then
`build.py` and `runs.py`. Imports run one way: `errors`, `plumbing`, `losses`
and `tapes` stand on nothing here; `values`, `context`, `arguments`,
`callbacks` and `outputs` on those; `gradients` on `callbacks`; `runs` and
`build` on those; `island` on `build` and `runs`; this file re-exports.
"""

from __future__ import annotations

from .errors import IslandError
from .island import _Island, call_as_island, live_islands
from .plumbing import _not_converted
from .tapes import KEEP_BYTES, KEEP_DONE, KEEP_PENDING, RUN_BYTES
from .values import numpy_stand_ins

__all__ = [
    "KEEP_BYTES",
    "KEEP_DONE",
    "KEEP_PENDING",
    "RUN_BYTES",
    "IslandError",
    "_Island",
    "_not_converted",
    "call_as_island",
    "live_islands",
    "numpy_stand_ins",
]

"""`bisect(fn, *args, **kwargs)`: find the nested function that makes graph and eager disagree.

`compare` says *that* a function's compiled and eager runs differ; `bisect`
says *where*, and why it probably does. Where to start reading:

- `api.py`: `bisect()` itself: the checks, one bisection at a time, and the
  promise that nothing advances (state restored, stdout captured).
- `steps.py`: the steps of one bisection, in order.
- `bisector.py`: the function, its arguments and its runs.
- `hooks.py`: the three observers patched into AutoGraph, Keras and op creation;
  `responder.py`: what they do (observe, or make a trial's candidates eager islands).
- `candidates.py`: the call tree of user-level callables found while tracing.
- `trials.py`: a trace with some candidates as eager islands, run compiled.
- `search.py`: group testing over those trials (about log2(N) + 2 per culprit).
- `references.py`: the compiled reference itself (XLA, a stale trace, what `fit` cached).
- `causes.py`, `graphs.py`, `culprits.py`: why a culprit differs, and the report's entries.
- `state.py`, `values.py`, `inputs.py`: everything a bisection must put back:
  TensorFlow and random state, Python values, iterator arguments.
- `report.py`: `Bisection`, `Culprit`, `Cause` and how they read.
- `first_call.py`: `eagerctl run --bisect`.

Imports run one way: `report`, `candidates` and `graphs` stand on nothing
here; `values`, `hooks`, `state` and `inputs` on those; `responder` and
`bisector` on them; `trials`, `search`, `causes`, `culprits` and `references`
above; `steps` above those;
`api` on `steps`; `first_call` on `api`.
"""

from __future__ import annotations

from .api import bisect
from .first_call import bisect_first_call
from .report import Bisection, Cause, Culprit

__all__ = ["Bisection", "Cause", "Culprit", "bisect", "bisect_first_call"]

"""One island: `call_as_island`, its checks, and the `_Island` that ties its build, runs and tapes.

Stands on `build`, `runs`, `gradients`, `tapes` and the modules below them.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from .. import _hook
from . import build as _build
from .arguments import _Arguments
from .context import _Carry
from .errors import IslandError
from .gradients import _GradientOps, _Sources
from .losses import _LossLists
from .outputs import _Outputs
from .plumbing import _graph_name, _not_converted
from .runs import _Runs
from .tapes import _Entry, _Tapes, _TapeSize

_live: weakref.WeakSet[_Island] = weakref.WeakSet()


def live_islands() -> list[_Island]:
    """The islands whose graphs are still alive (for tests and benchmarks)."""
    return list(_live)


@_not_converted
def call_as_island(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], *, name: str,
                   trace_fn: Callable[..., Any] | None = None, override: bool = True) -> Any:
    """Insert `fn(*args, **kwargs)` into the graph being traced, to run eagerly.

    Call it while a `tf.function` is being traced. Returns graph tensors with
    the structure, dtypes and static shapes of `fn`'s outputs; each time the
    graph runs, `fn` runs eagerly (`tf.executing_eagerly()` is True, and every
    `tf.function` it calls runs eagerly too). Gradients flow to the tensor
    arguments and to the variables `fn` reads. `name` names the function in
    messages and in the op's name. `trace_fn` (default `fn`) is what is traced
    to learn the outputs, for a caller whose `fn` wraps the body in run-time
    extras; `override=False` leaves the eager override to `fn` itself.

    Example:
        ```python
        @tf.function
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = call_as_island(my_loss, (model(x), y), {}, name="my_loss")
            ...
        ```
    """
    import tensorflow as tf
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util

    if not callable(fn):
        raise TypeError(f"call_as_island(fn={fn!r}): fn must be callable")
    if tf.executing_eagerly():
        raise IslandError(
            f"call_as_island({name!r}) was called while TensorFlow executes eagerly; an eager "
            "island only makes sense while a tf.function is being traced: call the function directly"
        )
    graph = ops.get_default_graph()
    if control_flow_util.GraphOrParentsInXlaContext(graph):
        raise IslandError(
            f"@debuggable function {name!r} was called while TensorFlow traces the XLA-compiled "
            f"function {_graph_name(graph)!r}; it cannot run eagerly there, because XLA compiles the "
            "whole function and cannot call back into Python. Turn jit_compile off for that model "
            "or function (model.compile(..., jit_compile=False) or tf.function(..., "
            "jit_compile=False)), or use @debuggable(island=False) to trace its body into the graph"
        )
    _hook.require_local()
    return _Island(fn, tuple(args), dict(kwargs), name, trace_fn=trace_fn or fn, override=override).build()


class _Island:
    """One island op in one traced graph: its trace-time facts, its runs, its gradient ops, its tapes.

    `build` (trace time, `build.py`) sets the facts: `arguments`, `carry`,
    `losses`, `outputs`, `sources`, `size`, `static`, `record_token`.
    """

    arguments: _Arguments
    carry: _Carry
    losses: _LossLists
    outputs: _Outputs
    sources: _Sources
    size: _TapeSize
    static: bool

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 name: str, *, trace_fn: Callable[..., Any], override: bool) -> None:
        self.fn = fn
        self.trace_fn = trace_fn
        self.override = override
        self.name = name
        self.structure = (args, kwargs)
        self.order = 0  # highest gradient order some graph built for this op
        self.record_token = b""
        self.tapes = _Tapes()
        self.runs = _Runs(self)
        self.gradients = _GradientOps(self)
        _live.add(self)

    def __repr__(self) -> str:
        return f"<eager island {self.name!r}: {len(self.pending)} pending, {len(self.done)} done>"

    def build(self) -> Any:
        """Insert the island op into the graph being traced; its outputs, as the body's."""
        return _build.build(self)

    @property
    def pending(self) -> OrderedDict[int, _Entry]:
        """Runs whose tapes wait for their first gradient."""
        return self.tapes.pending

    @property
    def done(self) -> OrderedDict[int, _Entry]:
        """Runs whose gradient was computed, kept for persistent tapes."""
        return self.tapes.done

    @property
    def pending_bytes(self) -> int:
        return self.tapes.pending_bytes

"""Building an island op at trace time: the scratch trace of its body, then the op in the graph.

1. The body is traced once into a scratch `FuncGraph` (never run) to learn its
   outputs (`outputs.py`), the variables it reads and touches, the losses it
   adds (`losses.py`), the type of each gradient (`gradients.py`) and what a
   run's tapes hold (`tapes.py`).
2. The thread-local context of the trace is captured (`context.py`).
3. The op is inserted: the graph tensors among the arguments (`arguments.py`),
   the variables' reads, the context's tensors and the touched handles are its
   inputs, so TF's automatic control dependencies order it as if the body had
   been traced; two callbacks (`callbacks.py`), one recording tapes.

Stands on every module of the package but `runs` and `island`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from . import callbacks
from .arguments import _Arguments
from .callbacks import _is_async
from .context import _Carry
from .errors import IslandError, interrupt_behind
from .gradients import (
    _COMPOSITE_GRADIENT_OPS,
    _FORWARD_OP_TYPE,
    _forward_gradient,
    _learn_gradient_specs,
    _set_gradient_type,
    _Sources,
)
from .losses import _LossLists, _reachable
from .outputs import _Outputs
from .plumbing import _as_output, _differentiable, _op_name, _unique
from .tapes import _TapeSize
from .values import _TraceValues, numpy_stand_ins


class _Scratch:
    """The body traced once into a throwaway graph: what it returned, read, touched and added."""

    def __init__(self, island: Any, diff_inputs: list[int]) -> None:
        import tensorflow as tf
        from tensorflow.python.autograph.core import ag_ctx
        from tensorflow.python.autograph.impl import api as autograph
        from tensorflow.python.eager import record
        from tensorflow.python.framework import func_graph

        self.diff_inputs = diff_inputs
        self.graph = scratch = func_graph.FuncGraph(f"{_op_name(island.name)}_outputs")
        losses = island.losses
        before = losses.snapshot()
        # The traced body would have seen the graph's name scope (absolute with the "/").
        scope = f"{island.carry.name_scope}/" if island.carry.name_scope else None
        with scratch.as_default(), scratch.name_scope(scope):
            self.placeholders = [tf.compat.v1.placeholder(t.dtype, t.shape) for t in island.arguments.inputs]
            args, kwargs = island.arguments.rebuild(self.placeholders)
            # Autograph follows the outer function's setting, as a traced body would.
            converted = autograph.tf_convert(island.trace_fn, ag_ctx.control_status_ctx())
            # No tape of eagerctl's own here (the gradients are learned from the graph):
            # a tape makes TF's C++ layer call back into Python for every op, and it
            # crashes the interpreter when Ctrl-C lands in such a callback.
            try:
                with record.VariableWatcher() as watcher, numpy_stand_ins():
                    made = _TraceValues.made.get(threading.get_ident(), 0)
                    out = converted(*args, **kwargs)
                    self.read_values = _TraceValues.made.get(threading.get_ident(), 0) > made
                self.out = tf.nest.map_structure(_as_output, out, expand_composites=True)
            except BaseException as exc:
                losses.added(before, restore=True)
                # Ctrl-C, also when TF's C++ layer turned it into a SystemError or
                # TypeError: no tracing advice (`build` raises the KeyboardInterrupt).
                if not isinstance(exc, Exception) or interrupt_behind(exc) is not None:
                    raise
                raise IslandError(
                    f"@debuggable function {island.name!r} could not be traced to learn its outputs, "
                    f"which an eager island needs before it runs ({type(exc).__name__}: {exc}). "
                    "Its body is traced once with symbolic tensors: guard code that needs real values "
                    "with `if tf.executing_eagerly():`, or use @debuggable(island=False)"
                ) from exc
        self.losses = losses.added(before, restore=False)
        self.read_vars = _unique(watcher.watched_variables())
        self.handles = [ext for ext, internal in scratch.captures if internal.dtype == tf.resource]

    def learn_gradients(self, variables: list[Any]) -> list[Any]:
        """The type of each source's gradient in the traced body (see `_learn_gradient_specs`)."""
        import tensorflow as tf
        from tensorflow.python.eager import record

        # Building the body's gradient costs about what tracing it did: only
        # where an op can make a gradient other than a dense tensor.
        if not any(op.type in _COMPOSITE_GRADIENT_OPS for op in self.graph.get_operations()):
            return [None] * (len(self.diff_inputs) + len(variables))
        targets = [t for t in tf.nest.flatten([self.out, self.losses], expand_composites=True)
                   if isinstance(t, tf.Tensor) and _differentiable(t.dtype)]
        with self.graph.as_default(), record.stop_recording():
            sources = [self.placeholders[k] for k in self.diff_inputs] + variables
            return _learn_gradient_specs(_GraphGradients(), targets, sources)


class _GraphGradients:
    """`tf.gradients` in the scratch graph, where `_learn_gradient_specs` expects a tape.

    The gradients the traced body has, built from the graph after the trace
    rather than recorded on a tape during it: TF's C++ tape code calls Python
    (a tensor's `dtype`, a variable's `handle`) for every op it records and does
    not check those calls for errors, so Ctrl-C landing in one crashes the
    interpreter (SIGSEGV) or is lost. Without a tape of eagerctl's own, an
    island's trace records on the tapes that would have recorded its traced
    body, and on none in a `tf.data` function.
    """

    @staticmethod
    def gradient(targets: list[Any], sources: list[Any]) -> list[Any]:
        import tensorflow as tf

        return tf.gradients(targets, sources)  # type: ignore[no-any-return]


def build(island: Any) -> Any:
    """Learn the island's facts from a scratch trace, insert its op; the op's outputs, packed.

    Ctrl-C anywhere in it reaches the caller as `KeyboardInterrupt`, also when it
    landed in a callback of TF's C++ layer, which reports it as another error.
    """
    try:
        return _build(island)
    except Exception as exc:
        interrupt = interrupt_behind(exc)
        if interrupt is None:
            raise
    raise interrupt


def _build(island: Any) -> Any:
    from tensorflow.python.eager import record
    from tensorflow.python.framework import ops

    arguments = island.arguments = _Arguments(*island.structure)
    graph = ops.get_default_graph()
    island.carry = _Carry(graph)
    island.losses = _LossLists(_reachable(island.trace_fn, arguments.leaves))
    diff_inputs = [k for k, t in enumerate(arguments.inputs) if _differentiable(t.dtype)]
    scratch = _Scratch(island, diff_inputs)
    island.size = _TapeSize(scratch.graph)
    outputs = island.outputs = _Outputs(island.name, scratch.out, scratch.losses, island.losses,
                                        scratch.read_values)
    island.static = outputs.static and all(t.shape.is_fully_defined() for t in arguments.inputs)
    island.sources = _Sources(arguments.inputs, scratch.read_vars, outputs.tout,
                              record.could_possibly_record(), scratch.learn_gradients)
    return _insert_op(island, scratch)


def _insert_op(island: Any, scratch: _Scratch) -> Any:
    from tensorflow.python.eager import record
    from tensorflow.python.ops import gen_script_ops

    sources, outputs = island.sources, island.outputs
    op_inputs = island.arguments.inputs + sources.var_reads + island.carry.tensors + scratch.handles
    plain_token = _callback(island, False)
    island.record_token = _callback(island, True)
    with record.stop_recording():  # the gradient is this op's own, recorded below
        outs = list(gen_script_ops.eager_py_func(
            input=op_inputs, token=plain_token, is_async=_is_async(), Tout=outputs.tout,
            name=_op_name(island.name)))
    op = outs[-1].op
    _set_gradient_type(op, _FORWARD_OP_TYPE)
    results = outs[:-1]
    for tensor, spec in zip(results, outputs.specs + outputs.loss_specs, strict=True):
        tensor.set_shape(spec.shape)
    if sources.differentiable:
        record.record_operation(
            _FORWARD_OP_TYPE, outs, sources.tape_sources,
            lambda *dys: _forward_gradient(op, *dys, sources_only=True))
    outputs.place_losses(scratch.losses, results[len(outputs.specs):])
    return outputs.pack(results[: len(outputs.specs)])


def _callback(island: Any, records: bool) -> bytes:
    run: Callable[..., Any] = lambda *a: island.runs.forward(records, a)  # noqa: E731
    return callbacks.register(island, run, island.outputs.tout)

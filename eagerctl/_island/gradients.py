"""An island's gradients: what it differentiates, the gradient ops, and each gradient's type.

The island op type has one gradient function, registered once with TF (and
recorded on any tape that watches the graph), which builds a gradient op that
differentiates the run's own `GradientTape`s, found by the call id the forward
op returns. The gradient op is differentiable the same way (nested tapes,
second order). Each gradient has the type the traced body's has: a gather's
`tf.IndexedSlices` stays sparse (`_learn_gradient_specs`, `gradient_parts`).
Stands on `callbacks`, `errors` and `plumbing`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import callbacks
from .callbacks import _callback_of, _is_async
from .errors import IslandError
from .plumbing import _differentiable, _eager_tensor, _op_name, _short

_FORWARD_OP_TYPE = "EagerctlIsland"
_GRADIENT_OP_TYPE = "EagerctlIslandGradient"

# Op types whose gradient can be something else than a dense tensor: gathers
# (tf.IndexedSlices), custom gradients (IdentityN), nested islands, function calls
# and control flow (whatever their bodies hold).
_COMPOSITE_GRADIENT_OPS = frozenset({
    "ResourceGather", "Gather", "GatherV2", "IdentityN", "EagerPyFunc", "PartitionedCall",
    "StatefulPartitionedCall", "While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase"})

_registered: set[str] = set()
_register_lock = threading.Lock()


def _set_gradient_type(op: Any, kind: str) -> None:
    """Make TF's symbolic gradients (`tf.gradients`, a function's backward) call our function."""
    from tensorflow.core.framework import attr_value_pb2
    from tensorflow.python.framework import ops

    if kind not in _registered:
        with _register_lock:
            if kind not in _registered:
                gradient = _forward_gradient if kind == _FORWARD_OP_TYPE else _gradient_gradient
                with contextlib.suppress(KeyError):  # registered by an earlier import of this module
                    ops.RegisterGradient(kind)(gradient)
                _registered.add(kind)
    op._set_attr("_gradient_op_type", attr_value_pb2.AttrValue(s=kind.encode()))


def _forward_gradient(op: Any, *dys: Any, sources_only: bool = False) -> Any:
    island = _callback_of(op).island
    grads = island.gradients.forward_gradient(op, dys)
    if sources_only:
        return [grads[k] for k in island.sources.source_pos]
    return grads


def _gradient_gradient(op: Any, *ddys: Any) -> Any:
    func = _callback_of(op)
    return func.island.gradients.gradient_gradient(op, func.order, func.targets, ddys)


def _learn_gradient_specs(tape: Any, targets: list[Any], sources: list[Any]) -> list[Any]:
    """Per source, the TypeSpec of its gradient in the traced body, or None for a dense tensor.

    A gather from a variable or tensor (an `Embedding`) has a `tf.IndexedSlices`
    gradient; optimizers update such a variable sparsely (Keras 3's Adam, for
    one, moves only the gathered rows' moments), and a dense gradient of a large
    embedding is a tensor of its full size. The island's gradient keeps each
    gradient's type as the traced body's gradient has it.
    """
    import tensorflow as tf

    dense: list[Any] = [None] * len(sources)
    if not targets or not sources:
        return dense
    try:
        grads = tape.gradient(targets, sources)
    except Exception:  # noqa: BLE001 (not differentiable here: the run's gradient says why, if asked)
        return dense
    return [None if g is None or isinstance(g, tf.Tensor) else tf.type_spec_from_value(g) for g in grads]


class _Sources:
    """What the island op differentiates: its float inputs and the trainable variables its body read.

    `var_reads` are the op inputs that stand for the variables: reading them
    next to the op is what a tape around the graph watches, so their gradients
    come back through those reads. A variable whose gradient is sparse (a
    gather) is not read: its handle is the source, as for TF's own gather,
    because reading a variable that sparse ops touched copies all of it (TF's
    copy-on-read mode), on every step.
    """

    def __init__(self, inputs: list[Any], read_vars: list[Any], tout: list[Any], could_record: bool,
                 learn_gradients: Callable[[list[Any]], list[Any]]) -> None:
        diff_inputs = [k for k, t in enumerate(inputs) if _differentiable(t.dtype)]
        self.diff_input_pos = diff_inputs
        self.variables = [v for v in read_vars if v.trainable and _differentiable(v.dtype)]
        self.variable_ids = {id(v) for v in self.variables}
        self.diff_out_pos = [k for k, dtype in enumerate(tout[:-1]) if _differentiable(dtype)]
        self.differentiable = bool(self.diff_out_pos) and bool(diff_inputs or self.variables)
        # What each source's gradient is in the traced body: None for a dense
        # tensor, else its TypeSpec (tf.IndexedSlices from a gather), which the
        # gradient op keeps, as the traced body's gradient would be.
        self.grad_specs: list[Any] = (learn_gradients(self.variables) if self.differentiable
                                      else [None] * (len(diff_inputs) + len(self.variables)))
        # Nothing for a tape to differentiate in the trace, while a tape could record:
        # a trainable variable read only at run time (a branch the trace did not
        # take) would silently get no gradient, so each run checks what it reads.
        self.check_reads = bool(self.diff_out_pos) and not self.differentiable and could_record
        var_specs = self.grad_specs[len(diff_inputs):]
        self.var_reads = [v.value() if spec is None else v.handle
                          for v, spec in zip(self.variables, var_specs, strict=True)
                          ] if self.differentiable else []
        # What a tape knows each source as (a variable's handle, where it is the input).
        self.tape_sources = [inputs[k] for k in diff_inputs] + [
            v.handle if spec is not None else read
            for v, spec, read in zip(self.variables, var_specs, self.var_reads, strict=False)]
        self.source_types = [(t.dtype, t.shape) for t in self.tape_sources[:len(diff_inputs)]] + [
            (v.dtype, v.shape) for v in self.variables]
        self.context_pos = len(inputs) + len(self.var_reads)
        self.source_pos = diff_inputs + list(range(len(inputs), len(inputs) + len(self.var_reads)))


class _GradientOps:
    """Builds an island's gradient ops in the graph (TF calls it when it differentiates the op)."""

    def __init__(self, island: Any) -> None:
        self.island = island

    def forward_gradient(self, op: Any, dys: Sequence[Any]) -> list[Any]:
        """Gradients for the forward op's inputs (None for those without one)."""
        from tensorflow.core.framework import attr_value_pb2

        island, sources = self.island, self.island.sources
        grads: list[Any] = [None] * len(op.inputs)
        if not sources.differentiable:
            return grads
        # From now on this op records tapes when it runs; an inference graph
        # serialized before (a function called under a tape outside it) does not.
        island.order = max(island.order, 1)
        op._set_attr("token", attr_value_pb2.AttrValue(s=island.record_token))
        out = self.gradient_op(1, op.outputs[-1], [op.inputs[k] for k in sources.source_pos],
                               [op.outputs[k] for k in sources.diff_out_pos],
                               [dys[k] for k in sources.diff_out_pos], specs=sources.grad_specs)
        for k, g in zip(sources.source_pos, out, strict=True):
            grads[k] = g
        return grads

    def gradient_op(self, order: int, call_id: Any, sources: list[Any], targets: list[Any],
                    dys: Sequence[Any], *, specs: Sequence[Any] = ()) -> list[Any]:
        """Graph op for d(targets)/d(sources) given `dys`, computed from the kept tapes.

        `specs`: per source, None for a dense gradient, or the TypeSpec of a
        composite one (tf.IndexedSlices): the op outputs its component tensors,
        and the gradient returned is that composite again.
        """
        import tensorflow as tf
        from tensorflow.python.eager import record
        from tensorflow.python.ops import gen_script_ops

        island = self.island
        island.order = max(island.order, order)
        specs = list(specs) or [None] * len(sources)
        dys = [tf.zeros_like(t) if dy is None else tf.convert_to_tensor(dy, dtype=t.dtype)
               for t, dy in zip(targets, dys, strict=True)]
        shapes, tout = self._types(sources, specs)
        n = len(dys)
        token = callbacks.register(
            island, lambda call, *rest: island.runs.gradient(order, int(call), list(rest[:n]), specs),
            tout, order=order, targets=n)
        with record.stop_recording():
            outs = list(gen_script_ops.eager_py_func(
                input=[call_id, *dys, *sources], token=token, is_async=_is_async(), Tout=tout,
                name=f"{_op_name(island.name)}_grad{order}"))
        op = outs[-1].op
        _set_gradient_type(op, _GRADIENT_OP_TYPE)
        for g, shape in zip(outs, [shape for per_source in shapes for shape in per_source], strict=False):
            g.set_shape(shape)
        inputs = list(dys) + [island.sources.tape_sources[k] if s.dtype == tf.resource else s
                              for k, s in enumerate(sources)]
        record.record_operation(_GRADIENT_OP_TYPE, outs, inputs,
                                lambda *ddys: _gradient_gradient(op, *ddys)[1:])
        grads = []
        pos = 0
        for spec, per_source in zip(specs, shapes, strict=True):
            parts = outs[pos:pos + len(per_source)]
            pos += len(per_source)
            grads.append(parts[0] if spec is None else tf.nest.pack_sequence_as(spec, parts,
                                                                                expand_composites=True))
        return grads

    def _types(self, sources: list[Any], specs: list[Any]) -> tuple[list[list[Any]], list[Any]]:
        """Per source, the static shapes of its gradient's parts; and the dtypes of all parts, then the id."""
        import tensorflow as tf

        # A variable's handle stands for the variable (see build): its dtype and shape.
        types = [self.island.sources.source_types[k] if s.dtype == tf.resource else (s.dtype, s.shape)
                 for k, s in enumerate(sources)]
        shapes = [[shape] if spec is None else [c.shape for c in spec._component_specs]
                  for (_, shape), spec in zip(types, specs, strict=True)]
        tout = [d for (dtype, _), spec in zip(types, specs, strict=True)
                for d in ([dtype] if spec is None else [c.dtype for c in spec._component_specs])]
        tout.append(tf.int64)
        return shapes, tout

    def gradient_gradient(self, op: Any, order: int, n_targets: int, ddys: Sequence[Any]) -> list[Any]:
        grads: list[Any] = [None] * len(op.inputs)
        dys = list(op.inputs[1:1 + n_targets])
        sources = list(op.inputs[1 + n_targets:])
        # The gradient's float outputs; the integer parts of a composite one (the
        # indices of tf.IndexedSlices) have no gradient.
        diff = [k for k, t in enumerate(op.outputs[:-1]) if _differentiable(t.dtype)]
        out = self.gradient_op(order + 1, op.outputs[-1], sources + dys, [op.outputs[k] for k in diff],
                               [ddys[k] for k in diff])
        for k, g in enumerate(out[: len(sources)]):
            grads[1 + n_targets + k] = g
        for k, g in enumerate(out[len(sources):]):
            grads[1 + k] = g
        return grads


def gradient_parts(name: str, source: Any, grad: Any, spec: Any) -> list[Any]:
    """The gradient op's outputs for one source: the gradient, as the graph expects it.

    This run's gradient may differ in type from the traced body's (another
    path taken, no gradient at all): it is converted, with the same value.
    """
    if spec is None and grad.__class__ is _eager_tensor():
        return [grad]  # the usual case: a dense gradient, a tensor already
    import tensorflow as tf

    # Never a read of a variable source: one touched by sparse ops copies all of it.
    static = source.shape
    if spec is None:
        if grad is not None:
            return [tf.convert_to_tensor(grad)]
        return [tf.zeros(static, source.dtype) if static.is_fully_defined() else tf.zeros_like(source)]
    if isinstance(spec, tf.IndexedSlicesSpec):
        grad = _as_slices(source, grad, spec)
    elif grad is None or not spec.is_compatible_with(grad):
        raise IslandError(
            f"eager island {name!r}: the gradient of one of its inputs or variables is "
            f"{_short(grad)} in this run, where the traced body's gradient is a "
            f"{spec.value_type.__name__} ({spec}): the graph has a place only for that. Compute it "
            "the same way on every call"
        )
    return list(tf.nest.flatten(grad, expand_composites=True))


def _as_slices(source: Any, grad: Any, spec: Any) -> Any:
    """`grad` (slices, a dense tensor, or None) as the `tf.IndexedSlices` that `spec` describes."""
    import tensorflow as tf

    static = source.shape
    shape_dtype = spec._dense_shape_dtype or tf.int64
    if isinstance(grad, tf.IndexedSlices) and grad.dense_shape is not None:
        shape = tf.cast(grad.dense_shape, shape_dtype)
    elif static.is_fully_defined():
        shape = tf.constant(static.as_list(), shape_dtype)
    else:
        shape = tf.shape(source, out_type=shape_dtype)
    if grad is None:  # no slice at all (the run took no gather)
        grad = tf.IndexedSlices(tf.zeros([0, *shape[1:].numpy()], source.dtype),
                                tf.zeros([0], spec._indices_dtype), shape)
    elif not isinstance(grad, tf.IndexedSlices):  # every row, as slices
        grad = tf.convert_to_tensor(grad)
        rows = tf.range(tf.shape(grad, out_type=spec._indices_dtype)[0])
        grad = tf.IndexedSlices(grad, rows, shape)
    return tf.IndexedSlices(
        tf.cast(grad.values, spec._values_dtype), tf.cast(grad.indices, spec._indices_dtype),
        None if spec._dense_shape_dtype is None else shape)

"""Eager islands: a Python function that runs eagerly inside a compiled graph.

`call_as_island(fn, args, kwargs, name=...)`, called while TensorFlow traces a
`tf.function`, puts one op into the graph being built. Every time the graph
runs, that op calls `fn` eagerly in Python (through TF's `EagerPyFunc` kernel,
the op behind `tf.py_function`), so breakpoints, `print` and `.numpy()` work in
its body while everything around it stays compiled.

How the op is built, at trace time:

1. `fn` is traced once into a scratch `FuncGraph` (never run) to learn the
   nested structure, dtypes and static shapes of its outputs, the trainable
   variables it reads and every variable it touches.
2. The graph tensors among the arguments become the op's inputs; everything
   else (Python values, variables, the Keras layer `self`) is closed over. The
   touched variables' resource handles are extra inputs, so TF's automatic
   control dependencies order the op against the graph's other uses of those
   variables, as if the body had been traced.
3. Gradients: at run time the body runs under persistent `GradientTape`s; the
   op also returns a call id under which the tapes are kept. The op is wrapped
   in `tf.custom_gradient` whose gradient is another island op that looks the
   tapes up by that id and returns the gradients for the tensor inputs and for
   the variables the body read (the graph reads them next to the op, so a tape
   around the graph sees them). That gradient op is itself differentiable the
   same way, so nested tapes (second order) work: the forward keeps one tape
   per order that some graph asked for.

Tapes are recorded only once some graph has built a gradient for the op (so
inference keeps nothing). Per island, the tapes of up to `KEEP_PENDING` runs
whose gradient has not been computed yet are kept (a loop calling the island
many times before its backward pass), and of the last `KEEP_DONE` runs whose
gradient has been computed (a persistent tape may ask again); older ones are
dropped, and an error names the island if a dropped run's gradient is needed.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from . import _hook
from ._errors import EagerctlError

KEEP_PENDING = 1024
"""Runs per island whose tapes wait for their first gradient (oldest dropped first)."""
KEEP_DONE = 16
"""Runs per island whose gradient was computed, kept for persistent tapes."""

_call_ids = itertools.count(1)

F = TypeVar("F", bound=Callable[..., Any])


def _not_converted(fn: F) -> F:
    # What tf.autograph.experimental.do_not_convert marks, without importing
    # TF: AutoGraph calls such functions as they are. Island plumbing called
    # from a converted tf.function body must not be rewritten by AutoGraph.
    fn.autograph_info__ = frozenset()  # type: ignore[attr-defined]
    return fn


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

    Example::

        @tf.function
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = call_as_island(my_loss, (model(x), y), {}, name="my_loss")
            ...
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


class IslandError(EagerctlError):
    """An eager island cannot be built here (raised while a graph is traced).

    AutoGraph re-creates errors raised in converted code, and turns a type it
    does not know into a StagingError; `ag_pass_through` makes it let this one
    through unchanged, so callers can catch `EagerctlError`. A class attribute,
    because Keras 2 re-creates a layer's exception from its class.
    """

    ag_pass_through = True


def _graph_name(graph: Any) -> str:
    # The FuncGraph of a tf.function is named after its Python function.
    return str(getattr(graph, "name", graph))


def _op_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip("_.-")
    return f"eager_island_{cleaned or 'fn'}"


class _Entry:
    """What one run of an island op keeps for the gradient op after it."""

    __slots__ = ("sources", "tapes", "targets")

    def __init__(self, tapes: list[Any], sources: list[Any], targets: list[Any]) -> None:
        self.tapes = tapes  # innermost first; tapes[0] differentiates targets
        self.sources = sources
        self.targets = targets


class _Island:
    """One island op in one traced graph: its trace-time facts and its tapes."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 name: str, *, trace_fn: Callable[..., Any], override: bool) -> None:
        self.fn = fn
        self.trace_fn = trace_fn
        self.override = override
        self.name = name
        self.structure = (args, kwargs)
        self.order = 0  # highest gradient order some graph built for this op
        self.pending: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self.done: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self.lock = threading.Lock()

    # -- trace time ------------------------------------------------------------
    def build(self) -> Any:
        import tensorflow as tf
        from tensorflow.python.framework import composite_tensor

        # Split the arguments: graph tensors (and composite tensors made of
        # them) are fed to the op; everything else is closed over.
        leaves = tf.nest.flatten(self.structure)
        self.leaves = leaves
        self.slots: list[tuple[int, Any]] = []  # (leaf index, composite or None)
        inputs: list[Any] = []
        for i, leaf in enumerate(leaves):
            if _is_graph_tensor(leaf):
                self.slots.append((i, None))
                inputs.append(leaf)
            elif isinstance(leaf, composite_tensor.CompositeTensor) and not _is_variable(leaf):
                parts = tf.nest.flatten(leaf, expand_composites=True)
                if any(_is_graph_tensor(p) for p in parts):
                    self.slots.append((i, leaf))
                    inputs.extend(tf.convert_to_tensor(p) for p in parts)
        self.inputs = inputs
        args, kwargs = self.structure
        # Every argument a leaf, and kwargs in the sorted order nest flattens them in.
        self.flat_call = (not any(tf.nest.is_nested(a) for a in (*args, *kwargs.values()))
                          and list(kwargs) == sorted(kwargs)
                          and all(composite is None for _, composite in self.slots))

        out, read_vars, handles = self._trace_scratch()
        self.out_structure = out
        flat_out = tf.nest.flatten(out, expand_composites=True)
        self.out_specs: list[tuple[int, Any, Any]] = []  # (leaf index, dtype, static shape)
        for i, leaf in enumerate(flat_out):
            if isinstance(leaf, tf.Tensor):
                self.out_specs.append((i, leaf.dtype, leaf.shape))
        self.flat_out_static = flat_out

        diff_inputs = [t for t in inputs if _differentiable(t.dtype)]
        self.diff_input_pos = [k for k, t in enumerate(inputs) if _differentiable(t.dtype)]
        self.variables = [v for v in read_vars if v.trainable and _differentiable(v.dtype)]
        self.diff_out_pos = [k for k, (_, dtype, _) in enumerate(self.out_specs) if _differentiable(dtype)]
        self.differentiable = bool(self.diff_out_pos) and bool(diff_inputs or self.variables)
        self.handles = handles

        if self.differentiable:
            # Reading the variables here, next to the op, is what a tape around
            # the graph watches; their gradients come back through these reads.
            var_reads = [v.value() for v in self.variables]
            results = self._differentiable_op(diff_inputs + var_reads)
        else:
            results, _ = self._forward_op()
        return self._pack(results)

    def _trace_scratch(self) -> tuple[Any, list[Any], list[Any]]:
        """Trace `fn` once into a throwaway graph: outputs, variables read, handles touched."""
        import tensorflow as tf
        from tensorflow.python.autograph.core import ag_ctx
        from tensorflow.python.autograph.impl import api as autograph
        from tensorflow.python.eager import record
        from tensorflow.python.framework import func_graph

        scratch = func_graph.FuncGraph(f"{_op_name(self.name)}_outputs")
        with scratch.as_default():
            placeholders = [tf.compat.v1.placeholder(t.dtype, t.shape) for t in self.inputs]
            args, kwargs = self._rebuild(placeholders)
            # Autograph follows the outer function's setting, as a traced body would.
            converted = autograph.tf_convert(self.trace_fn, ag_ctx.control_status_ctx())
            try:
                with record.VariableWatcher() as watcher, numpy_stand_ins():
                    out = converted(*args, **kwargs)
                out = tf.nest.map_structure(_as_output, out, expand_composites=True)
            except Exception as exc:
                raise IslandError(
                    f"@debuggable function {self.name!r} could not be traced to learn its outputs, "
                    f"which an eager island needs before it runs ({type(exc).__name__}: {exc}). "
                    "Its body is traced once with symbolic tensors: guard code that needs real values "
                    "with `if tf.executing_eagerly():`, or use @debuggable(island=False)"
                ) from exc
        read_vars = _unique(watcher.watched_variables())
        handles = [ext for ext, internal in scratch.captures if internal.dtype == tf.resource]
        return out, read_vars, handles

    def _rebuild(self, tensors: Sequence[Any]) -> tuple[Any, Any]:
        """The call's (args, kwargs) with the op inputs replaced by `tensors`."""
        import tensorflow as tf

        if self.flat_call:
            # Every argument is a leaf: no nest round trip (it costs more than
            # a small island body) on each run.
            leaves = list(self.leaves)
            for (i, _), tensor in zip(self.slots, tensors, strict=True):
                leaves[i] = tensor
            args, kwargs = self.structure
            return tuple(leaves[: len(args)]), dict(zip(kwargs, leaves[len(args):], strict=True))
        leaves = list(self.leaves)
        pos = 0
        for i, composite in self.slots:
            if composite is None:
                leaves[i] = tensors[pos]
                pos += 1
            else:
                n = len(tf.nest.flatten(composite, expand_composites=True))
                parts = list(tensors[pos:pos + n])
                leaves[i] = tf.nest.pack_sequence_as(composite, parts, expand_composites=True)
                pos += n
        return tf.nest.pack_sequence_as(self.structure, leaves)  # type: ignore[no-any-return]

    def _pack(self, results: Sequence[Any]) -> Any:
        import tensorflow as tf

        flat = list(self.flat_out_static)
        for (i, _, _), tensor in zip(self.out_specs, results, strict=True):
            flat[i] = tensor
        return tf.nest.pack_sequence_as(self.out_structure, flat, expand_composites=True)

    def _forward_op(self) -> tuple[list[Any], Any]:
        """The island op itself: returns (output tensors, call id tensor)."""
        import tensorflow as tf

        tout = [dtype for _, dtype, _ in self.out_specs] + [tf.int64]
        outs = _eager_op(self._run_forward, self.inputs + self.handles, tout, _op_name(self.name))
        for tensor, (_, _, shape) in zip(outs[:-1], self.out_specs, strict=True):
            tensor.set_shape(shape)
        return outs[:-1], outs[-1]

    def _differentiable_op(self, sources: list[Any]) -> list[Any]:
        import tensorflow as tf

        @tf.custom_gradient  # type: ignore[untyped-decorator]
        def island(*_sources: Any) -> Any:
            results, call_id = self._forward_op()
            targets = [results[k] for k in self.diff_out_pos]

            def grad(*dys: Any) -> Any:
                return self._gradient_op(1, call_id, sources, targets, [dys[k] for k in self.diff_out_pos])

            return results, grad

        return island(*sources)  # type: ignore[no-any-return]

    def _gradient_op(self, order: int, call_id: Any, sources: list[Any], targets: list[Any],
                     dys: list[Any]) -> Any:
        """Graph op for d(targets)/d(sources) given `dys`, computed from the kept tapes."""
        import tensorflow as tf

        self.order = max(self.order, order)
        dys = [
            tf.zeros_like(t) if dy is None else tf.convert_to_tensor(dy, dtype=t.dtype)
            for t, dy in zip(targets, dys, strict=True)
        ]

        def run(call: Any, *eager_dys: Any) -> list[Any]:
            return self._run_gradient(order, int(call), list(eager_dys))

        @tf.custom_gradient  # type: ignore[untyped-decorator]
        def gradient(*_inputs: Any) -> Any:
            outs = _eager_op(run, [call_id, *dys], [s.dtype for s in sources] + [tf.int64],
                             f"{_op_name(self.name)}_grad{order}")
            grads, next_id = outs[:-1], outs[-1]
            for g, s in zip(grads, sources, strict=True):
                g.set_shape(s.shape)

            def grad_of_grad(*ddys: Any) -> Any:
                return self._gradient_op(order + 1, next_id, sources + dys, grads, list(ddys))

            return grads, grad_of_grad

        return gradient(*sources, *dys)

    # -- run time (eager, in whatever thread TF's executor picked) -------------
    def _run_forward(self, *eager_inputs: Any) -> list[Any]:
        import tensorflow as tf

        from ._scope import Scope

        tensors = list(eager_inputs[: len(self.inputs)])
        # One tape per gradient order some graph has built for this op (none:
        # nothing will differentiate this run, so nothing is kept alive).
        tapes = [tf.GradientTape(persistent=True) for _ in range(self.order if self.differentiable else 0)]
        with contextlib.ExitStack() as stack:
            for tape in reversed(tapes):  # outermost first
                stack.enter_context(tape)
                tape.watch([tensors[k] for k in self.diff_input_pos])
            args, kwargs = self._rebuild(tensors)
            if self.override:
                # The override lives in a ContextVar, and this may be a TF executor
                # thread: enter it here, so tf.functions the body calls run eagerly.
                # A fresh Scope per run: replicas may run this island concurrently.
                with Scope(True, False, f"eager island {self.name}"):
                    out = self.fn(*args, **kwargs)
            else:
                out = self.fn(*args, **kwargs)
            results = self._check_outputs(out)
        call_id = next(_call_ids)
        if tapes:
            sources = [tensors[k] for k in self.diff_input_pos] + list(self.variables)
            self._keep(call_id, _Entry(tapes, sources, [results[k] for k in self.diff_out_pos]))
        return [*results, tf.constant(call_id, tf.int64)]

    def _check_outputs(self, out: Any) -> list[Any]:
        import tensorflow as tf

        try:
            if not (isinstance(out, tf.Tensor) and isinstance(self.out_structure, tf.Tensor)):
                tf.nest.assert_same_structure(out, self.out_structure, expand_composites=True)
        except (ValueError, TypeError) as exc:
            raise EagerctlError(
                f"eager island {self.name!r} returned {out!r}, whose structure differs from the one "
                f"traced in the graph ({self.out_structure!r}): an island must return the same "
                "structure on every call"
            ) from exc
        flat = tf.nest.flatten(out, expand_composites=True)
        results = []
        for i, dtype, shape in self.out_specs:
            value = tf.convert_to_tensor(flat[i])
            if value.dtype != dtype or not shape.is_compatible_with(value.shape):
                raise EagerctlError(
                    f"eager island {self.name!r} returned a {value.dtype.name} tensor of shape "
                    f"{value.shape} at output {i}, but its traced output there is {dtype.name} with "
                    f"shape {shape}: an island must return the dtypes and shapes it was traced with"
                )
            results.append(value)
        return results

    def _run_gradient(self, order: int, call_id: int, dys: list[Any]) -> list[Any]:
        import tensorflow as tf

        with self.lock:
            entry = self.pending.pop(call_id, None)
            if entry is None:
                entry = self.done.pop(call_id, None)
            if entry is not None:
                self.done[call_id] = entry
                while len(self.done) > KEEP_DONE:
                    self.done.popitem(last=False)
        if entry is None:
            why = (f"eagerctl keeps the tapes of the last {KEEP_PENDING} runs of an island that wait "
                   f"for a gradient and of the last {KEEP_DONE} whose gradient was computed, and this "
                   "run is older, or it recorded no tape for this order of gradient because no graph "
                   "had built that gradient when it ran; compute gradients sooner after the run, in "
                   "the tf.function that calls the island")
            raise EagerctlError(f"eager island {self.name!r}: the order-{order} gradient of one of its "
                                f"calls is not available: {why}")
        inner, outer = entry.tapes[0], entry.tapes[1:]
        with contextlib.ExitStack() as stack:
            # The outer tapes recorded the forward; let them record this
            # gradient too, so it can be differentiated again.
            for tape in reversed(outer):
                stack.enter_context(tape._ensure_recording())
                tape.watch(dys)
            grads = inner.gradient(entry.targets, entry.sources, output_gradients=dys,
                                   unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = [tf.convert_to_tensor(g) for g in grads]
        next_id = next(_call_ids)
        if outer:
            self._keep(next_id, _Entry(outer, entry.sources + dys, grads))
        return [*grads, tf.constant(next_id, tf.int64)]

    def _keep(self, call_id: int, entry: _Entry) -> None:
        with self.lock:
            self.pending[call_id] = entry
            while len(self.pending) > KEEP_PENDING:
                self.pending.popitem(last=False)


def _eager_op(func: Callable[..., Any], inputs: list[Any], tout: list[Any], name: str) -> list[Any]:
    """An `EagerPyFunc` op calling `func` with eager tensors; like `tf.py_function`.

    Built directly rather than with `tf.py_function`, whose kernel wrapper
    records its own GradientTape whenever one could be active: islands keep
    their own tapes, and the gradient is theirs, not TF's `EagerPyFunc` one.
    """
    from tensorflow.python.eager import context
    from tensorflow.python.framework import func_graph, ops
    from tensorflow.python.ops import gen_script_ops, script_ops

    wrapped = _eager_func_class()(func, tout, False)
    token = script_ops._py_funcs.insert(wrapped)
    # The registry holds functions weakly; the outermost graph keeps them alive,
    # as tf.py_function does.
    graph = ops.get_default_graph()
    while isinstance(graph, func_graph.FuncGraph) and graph.outer_graph is not None:
        graph = graph.outer_graph
    if not hasattr(graph, "_py_funcs_used_in_graph"):
        graph._py_funcs_used_in_graph = []
    graph._py_funcs_used_in_graph.append(wrapped)
    outs = gen_script_ops.eager_py_func(input=inputs, token=token, is_async=context.is_async(),
                                        Tout=tout, name=name)
    return list(outs)


class _TraceValues:
    """`.numpy()` for symbolic tensors, only while this thread traces an island.

    The scratch trace must not fail on the `.numpy()` calls that are the point
    of an eager island. While it runs, `.numpy()` on a graph tensor returns
    zeros of its static shape (unknown dimensions as 1) that print as a note
    saying the value is unknown. Other threads see no such attribute.
    """

    lock = threading.Lock()
    users = 0
    threads: ClassVar[dict[int, int]] = {}
    patched: type | None = None
    array_class: type | None = None


def _numpy_property(graph_tensor_class: type) -> property:
    def numpy(self: Any) -> Callable[[], Any]:
        if threading.get_ident() not in _TraceValues.threads:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'numpy'")

        @_not_converted
        def value() -> Any:
            return _placeholder_value(self)

        return value

    return property(numpy)


@_not_converted
def _placeholder_value(tensor: Any) -> Any:
    import numpy as np

    if _TraceValues.array_class is None:

        class TraceTimeValue(np.ndarray):
            """Zeros standing in for a value that only exists when the island runs."""

            def __repr__(self) -> str:
                return "<value unknown: eagerctl is tracing an eager island once to learn its outputs>"

            __str__ = __repr__

        _TraceValues.array_class = TraceTimeValue
    shape = [] if tensor.shape.rank is None else [1 if d is None else d for d in tensor.shape]
    return np.zeros(shape, dtype=tensor.dtype.as_numpy_dtype).view(_TraceValues.array_class)


@contextlib.contextmanager
def numpy_stand_ins() -> Any:
    """While active, `.numpy()` on a graph tensor in this thread returns a stand-in (see `_TraceValues`)."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    # The graph tensor class: SymbolicTensor in recent TF; in TF 2.13 it is
    # tf.Tensor itself (EagerTensor's own numpy() comes first in its MRO).
    graph_class: type = ops.SymbolicTensor
    if not issubclass(graph_class, tf.Tensor):
        graph_class = tf.Tensor
    ident = threading.get_ident()
    with _TraceValues.lock:
        if _TraceValues.users == 0 and "numpy" not in graph_class.__dict__:
            setattr(graph_class, "numpy", _numpy_property(graph_class))  # noqa: B010
            _TraceValues.patched = graph_class
        _TraceValues.users += 1
        _TraceValues.threads[ident] = _TraceValues.threads.get(ident, 0) + 1
    try:
        yield
    finally:
        with _TraceValues.lock:
            left = _TraceValues.threads[ident] - 1
            if left:
                _TraceValues.threads[ident] = left
            else:
                del _TraceValues.threads[ident]
            _TraceValues.users -= 1
            if _TraceValues.users == 0 and _TraceValues.patched is not None:
                delattr(_TraceValues.patched, "numpy")
                _TraceValues.patched = None


_EAGER_FUNC: type | None = None


def _eager_func_class() -> type:
    global _EAGER_FUNC
    if _EAGER_FUNC is None:
        from tensorflow.python.ops import script_ops

        class IslandFunc(script_ops.EagerFunc):  # type: ignore[misc]
            """TF's EagerFunc without its own tape (islands keep theirs)."""

            def __call__(self, device: Any, token: Any, args: Any) -> Any:
                return self._call(device, args)

        _EAGER_FUNC = IslandFunc
    return _EAGER_FUNC


def _is_graph_tensor(value: Any) -> bool:
    import tensorflow as tf
    from tensorflow.python.framework import ops

    return isinstance(value, tf.Tensor) and not isinstance(value, ops.EagerTensor)


def _is_variable(value: Any) -> bool:
    import tensorflow as tf

    return isinstance(value, tf.Variable) or hasattr(value, "_should_act_as_resource_variable")


def _differentiable(dtype: Any) -> bool:
    return bool(dtype.is_floating or dtype.is_complex)


def _as_output(value: Any) -> Any:
    import tensorflow as tf

    if value is None or isinstance(value, tf.Tensor):
        return value
    if _is_variable(value):
        return tf.convert_to_tensor(value)
    return value


def _unique(variables: Sequence[Any]) -> list[Any]:
    seen: set[int] = set()
    kept = []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            kept.append(v)
    return kept

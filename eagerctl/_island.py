"""Eager islands: a Python function that runs eagerly inside a compiled graph.

`call_as_island(fn, args, kwargs, name=...)`, called while TensorFlow traces a
`tf.function`, puts one op into the graph being built. Every time the graph
runs, that op calls `fn` eagerly in Python (through TF's `EagerPyFunc` kernel,
the op behind `tf.py_function`), so breakpoints, `print` and `.numpy()` work in
its body while everything around it stays compiled.

How the op is built, at trace time:

1. `fn` is traced once into a scratch `FuncGraph` (never run) to learn the
   nested structure, dtypes and static shapes of its outputs, the trainable
   variables it reads, every variable it touches, and the losses it adds to
   Keras layers (`add_loss`). NumPy and Python number outputs become tensor
   outputs (the value of each run); losses become extra outputs that are put
   where the traced body would have put its own, so `model.losses` sees them.
2. The thread-local state the body's trace sees (Keras's call context and
   training flag, autocast and dtype policy, name scope, `tf.distribute`
   replica or cross-replica context, see `_Carry`) is captured, and re-entered
   on the TF executor thread around each run; a call-context value that is a
   graph tensor (Keras 2 `training`) is an op input, set in each run's copy.
3. The graph tensors among the arguments become the op's inputs; everything
   else (Python values, variables, the Keras layer `self`) is closed over. The
   values of the trainable variables the body read are inputs too (their
   gradients come back through those reads; a variable with a sparse gradient
   is fed as its handle instead, as TF's own gather is), and the touched variables'
   resource handles, so TF's automatic control dependencies order the op
   against the graph's other uses of those variables, as if the body had been
   traced.
4. Gradients: the op type has one gradient function, registered once with TF
   (and recorded on any tape that watches the graph), which builds a gradient
   op that differentiates the run's own `GradientTape`s, found by a call id the
   forward op returns. The gradient op is differentiable the same way (nested
   tapes, second order). Each gradient has the type the traced body's has:
   a gather's `tf.IndexedSlices` stays sparse (learned from a tape on the
   scratch trace, see `_learn_gradient_specs`).

Memory. An island op is built with two Python callbacks: one records nothing,
the other records tapes. The op calls the one that records nothing until
TensorFlow builds a gradient for it; then its `token` attribute is switched
to the one that records. A function called under a tape outside it keeps its inference
graph (built before the gradient) recording nothing, so inference calls keep
no tapes even after a gradient was taken. Kept tapes are bounded per island by
runs (`KEEP_PENDING`, `KEEP_DONE`) and by an estimate of their bytes
(`KEEP_BYTES`). The callbacks live in the outermost traced graph (not in TF's
process-wide default graph, as `tf.py_function`'s do), so an island and its
tapes are freed with the function that uses them.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import itertools
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from . import _hook, _shutdown
from ._errors import EagerctlError

KEEP_PENDING = 2**16
"""Runs per island whose tapes wait for their first gradient (oldest dropped first).

High: a `tf.while_loop` runs its body's island once per iteration, and its
gradient asks for the runs newest first, after all of them ran (a loop of
1,500 iterations failed under the bound of 1,024 this once had). `KEEP_BYTES`
is what bounds memory (each run counts at least `RUN_BYTES`)."""
KEEP_DONE = 4
"""Runs per island whose gradient was computed, kept for persistent tapes that ask again."""
KEEP_BYTES = 256 * 2**20
"""Estimated bytes of kept tapes per island (oldest dropped first; the newest run is always kept)."""
RUN_BYTES = 4096
"""Bytes a kept run counts at least: its tapes' own records, whatever its tensors (measured: 3 to 8 KB)."""

_FORWARD_OP_TYPE = "EagerctlIsland"
_GRADIENT_OP_TYPE = "EagerctlIslandGradient"
_STAND_IN_TEXT = "<value unknown: eagerctl is tracing an eager island once to learn its outputs>"

_call_ids = itertools.count(1)
_live: weakref.WeakSet[_Island] = weakref.WeakSet()

F = TypeVar("F", bound=Callable[..., Any])


def _not_converted(fn: F) -> F:
    # What tf.autograph.experimental.do_not_convert marks, without importing
    # TF: AutoGraph calls such functions as they are. Island plumbing called
    # from a converted tf.function body must not be rewritten by AutoGraph.
    fn.autograph_info__ = frozenset()  # type: ignore[attr-defined]
    return fn


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


class IslandError(EagerctlError):
    """An eager island cannot be built or run as asked; a subclass of `EagerctlError`.

    Raised while TensorFlow traces the graph that calls a `@debuggable` function,
    for example inside an XLA-compiled function (`jit_compile=True`, which cannot
    call back into Python), or for a replica function that synchronizes replicas
    (`merge_call`) under a `tf.distribute` strategy. The message names the
    function and the fix (turn `jit_compile` off, use `@debuggable(island=False)`,
    or decorate the function that calls `strategy.run`). Inside Keras `fit` it
    reaches you wrapped in Keras's report of the layer call.

    Example:
        ```python
        try:
            step(x)
        except eagerctl.IslandError as exc:
            print(exc)
        ```
    """

    # AutoGraph re-creates errors raised in converted code, and turns a type it
    # does not know into a StagingError; `ag_pass_through` makes it let this one
    # through unchanged, so callers can catch `EagerctlError`. A class attribute,
    # because Keras 2 re-creates a layer's exception from its class.
    ag_pass_through = True


def _graph_name(graph: Any) -> str:
    # The FuncGraph of a tf.function is named after its Python function.
    return str(getattr(graph, "name", graph))


def _op_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip("_.-")
    return f"eager_island_{cleaned or 'fn'}"


# -- thread-local state carried to the executor thread ------------------------------

# Keras 3 keeps its per-thread state in one `threading.local` (global_state). These
# entries belong to symbolic tracing, not to what a layer computes.
_KERAS3_SKIP = frozenset({"stateless_scope", "symbolic_scope", "in_tf_graph_scope",
                          "uninitialized_variables"})
_KERAS2_PACKAGES = ("keras.src", "keras", "tf_keras.src", "tf_keras")


class _Carry:
    """The thread-local state a traced body would have seen, captured while tracing.

    TF runs the island on one of its executor threads, where Keras and TF find
    their thread-local state empty. What is carried, and why (each read in the
    Keras and TF source of the supported versions):

    - Keras 3 `global_state` (one `threading.local`): the layer call context
      (`training`, and the other call-context arguments), the autocast scope
      (mixed precision), the dtype policy, Keras name scopes, remat scopes;
      not the symbolic or stateless scopes, which belong to tracing.
    - Keras 2 (`tf.keras` 2.13-2.15, `tf_keras`): the layer call context
      (`in_call`, `training`), the autocast-variable dtype (mixed precision)
      and the seed generator set by `set_random_seed`.
    - TF: the name scope, and the `tf.distribute` thread mode (strategy scope,
      replica or cross-replica context).

    Call contexts are copied for each run: Keras writes to them as nested
    layers resolve their arguments, and replicas may run an island at once.
    """

    __slots__ = ("locals", "name_scope", "tensor_slots", "tensors", "thread_mode")

    def __init__(self, graph: Any) -> None:
        from tensorflow.python.distribute import distribute_lib

        self.locals: list[tuple[Any, dict[str, Any]]] = []
        # Call-context values that are tensors of the graph (a `training` tensor):
        # fed to the island op, and put into each run's copy of the context.
        self.tensors: list[Any] = []
        self.tensor_slots: list[tuple[int, str, str, bool]] = []  # (local, attribute, key, in _state)
        state = _module_attr("keras.src.backend.common.global_state", "GLOBAL_STATE_TRACKER")
        captured = {k: _fresh(v) for k, v in vars(state).items()
                    if k not in _KERAS3_SKIP and v is not None} if state is not None else {}
        if captured:
            ctx = captured.get("current_call_ctx")
            if ctx is not None:
                self._find_tensors(len(self.locals), "current_call_ctx", vars(ctx), False)
            self.locals.append((state, captured))
        seen = set()
        for package in _KERAS2_PACKAGES:
            for module, attr in ((f"{package}.engine.base_layer_utils", "_call_context"),
                                 (f"{package}.mixed_precision.autocast_variable", "_autocast_dtype"),
                                 (f"{package}.backend", "_SEED_GENERATOR")):
                local = _module_attr(module, attr)
                if local is None or not vars(local) or id(local) in seen:
                    continue
                seen.add(id(local))
                ctx = getattr(local, "call_context", None)
                if ctx is not None:
                    self._find_tensors(len(self.locals), "call_context", ctx._state, True)
                # Keras restores a call context's fields in place when the call
                # returns: keep a copy of them as they are now.
                self.locals.append((local, {k: _fresh(v) for k, v in vars(local).items()}))
        self.name_scope = graph.get_name_scope()
        mode = distribute_lib._get_per_thread_mode()
        self.thread_mode = None if isinstance(mode, distribute_lib._DefaultReplicaThreadMode) else mode

    @property
    def empty(self) -> bool:
        """Nothing to carry (plain TF code outside Keras, scopes and strategies)."""
        return not (self.locals or self.name_scope or self.thread_mode is not None)

    def _find_tensors(self, local: int, attr: str, values: dict[str, Any], in_state: bool) -> None:
        for key, value in values.items():
            if _is_graph_tensor(value) and key != "inputs":
                self.tensor_slots.append((local, attr, key, in_state))
                self.tensors.append(value)

    @contextlib.contextmanager
    def entered(self, tensors: Sequence[Any] = ()) -> Iterator[None]:
        """This thread's state as captured, with `tensors` (this run's values of `self.tensors`)."""
        from tensorflow.python.distribute import distribute_lib
        from tensorflow.python.eager import context

        saved = []
        for local, captured in self.locals:
            mine = vars(local)
            saved.append(dict(mine))
            mine.clear()
            mine.update({k: _fresh(v) for k, v in captured.items()})
        for (index, attr, key, in_state), value in zip(self.tensor_slots, tensors, strict=False):
            ctx_copy = vars(self.locals[index][0])[attr]
            if in_state:
                ctx_copy._state[key] = value
            else:
                setattr(ctx_copy, key, value)
        ctx = context.context()
        scope = ctx.scope_name
        ctx.scope_name = f"{self.name_scope}/" if self.name_scope else ""
        if self.thread_mode is not None:
            distribute_lib._push_per_thread_mode(self.thread_mode)
        try:
            yield
        finally:
            if self.thread_mode is not None:
                distribute_lib._pop_per_thread_mode()
            ctx.scope_name = scope
            for (local, _), before in zip(self.locals, saved, strict=True):
                mine = vars(local)
                mine.clear()
                mine.update(before)


def _module_attr(module: str, attr: str) -> Any:
    # Never imports: what is not loaded yet cannot hold state.
    loaded = sys.modules.get(module)
    return getattr(loaded, attr, None) if loaded is not None else None


def _fresh(value: Any) -> Any:
    """A copy of a carried call context or scope stack for one run; anything else as is."""
    kind = type(value).__name__
    if kind == "CallContext":
        fresh = copy.copy(value)
        state = getattr(fresh, "_state", None)
        if isinstance(state, dict):  # Keras 2: this run is eager, not a graph build
            fresh._state = dict(state, build_graph=False)
            fresh._in_keras_graph = False
        return fresh
    if isinstance(value, list):
        return list(value)
    return value


# -- Keras layer losses ---------------------------------------------------------------

class _LossLists:
    """The Keras loss lists the body may add to: `add_loss` in its layers.

    Keras 3 keeps a layer's call losses in `layer._losses`; Keras 2 in
    `layer._eager_losses` (per thread) when called in a tf.function, and in
    `layer._losses` otherwise. The layers are those reachable from the body:
    its `self`, its arguments, its closure and the globals it names.
    """

    def __init__(self, objects: Sequence[Any]) -> None:
        layers: dict[int, Any] = {}
        for obj in objects:
            if hasattr(obj, "_flatten_layers") and hasattr(obj, "_losses"):
                try:
                    found = obj._flatten_layers()
                except Exception:  # noqa: BLE001 (a half-built layer: nothing to collect from)
                    continue
                for layer in found:
                    layers.setdefault(id(layer), layer)
        self.slots: list[tuple[Any, str]] = []
        for layer in layers.values():
            attrs = ("_eager_losses", "_losses") if hasattr(type(layer), "_eager_losses") else ("_losses",)
            self.slots.extend((layer, attr) for attr in attrs)

    def snapshot(self) -> list[tuple[Any, list[Any]]]:
        """Each list and a copy of its entries (call before the body)."""
        taken = []
        for layer, attr in self.slots:
            current = getattr(layer, attr, None)
            taken.append((current, list(current) if isinstance(current, list) else []))
        return taken

    def added(self, before: list[tuple[Any, list[Any]]], restore: bool) -> list[list[Any]]:
        """Per slot, the entries the body added; with `restore`, put the lists back as they were."""
        added = []
        for (layer, attr), (old, entries) in zip(self.slots, before, strict=True):
            current = getattr(layer, attr, None)
            ids = {id(t) for t in entries} if current is old else set()
            added.append([t for t in (current or ()) if id(t) not in ids])
            if restore and isinstance(old, list):
                if current is not old:
                    setattr(layer, attr, old)  # Keras 2 replaced the (per-thread) list
                old[:] = entries
        return added

    def label(self, slot: int) -> str:
        layer, _ = self.slots[slot]
        return f"layer {getattr(layer, 'name', type(layer).__name__)!r}"


def _reachable(fn: Callable[..., Any], leaves: Sequence[Any]) -> list[Any]:
    """Objects the body can reach without a lookup we cannot follow: self, arguments, closure, globals."""
    found: list[Any] = list(leaves)
    owner = getattr(fn, "__self__", None)
    if owner is not None:
        found.append(owner)
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    for cell in getattr(func, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            found.append(cell.cell_contents)
    if code is not None:
        namespace = getattr(func, "__globals__", {})
        found.extend(namespace[n] for n in code.co_names if n in namespace)
    return found


# -- the island ---------------------------------------------------------------------

class _Entry:
    """What one run of an island op keeps for the gradient op after it."""

    __slots__ = ("nbytes", "sources", "tapes", "targets", "unseen")

    def __init__(self, tapes: list[Any], sources: list[Any], targets: list[Any], unseen: list[Any],
                 nbytes: int) -> None:
        self.tapes = tapes  # innermost first; tapes[0] differentiates targets
        self.sources = sources
        self.targets = targets
        self.unseen = unseen  # trainable variables read by this run but not by the trace
        self.nbytes = nbytes


class _Output:
    """One tensor output of the island op: where it comes from, dtype, static shape."""

    __slots__ = ("dtype", "index", "is_value", "path", "shape")

    def __init__(self, index: int, dtype: Any, shape: Any, path: str, is_value: bool) -> None:
        self.index = index  # leaf index in the flattened output structure
        self.dtype = dtype
        self.shape = shape
        self.path = path
        self.is_value = is_value  # a NumPy or Python number in the trace: its value each run


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
        self.pending_bytes = 0
        self.lock = threading.Lock()
        self.record_token = b""
        _live.add(self)

    def __repr__(self) -> str:
        return f"<eager island {self.name!r}: {len(self.pending)} pending, {len(self.done)} done>"

    # -- trace time ------------------------------------------------------------
    def build(self) -> Any:
        import tensorflow as tf
        from tensorflow.python.eager import record
        from tensorflow.python.framework import composite_tensor, ops
        from tensorflow.python.ops import gen_script_ops

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

        graph = ops.get_default_graph()
        self.carry = _Carry(graph)
        self.losses = _LossLists(_reachable(self.trace_fn, leaves))
        diff_inputs = [k for k, t in enumerate(inputs) if _differentiable(t.dtype)]
        out, read_vars, handles, scratch_losses, learn_gradients = self._trace_scratch(diff_inputs)
        self._learn_outputs(out, scratch_losses)

        self.variables = [v for v in read_vars if v.trainable and _differentiable(v.dtype)]
        self.variable_ids = {id(v) for v in self.variables}
        self.diff_out_pos = [k for k, dtype in enumerate(self.tout[:-1]) if _differentiable(dtype)]
        self.differentiable = bool(self.diff_out_pos) and bool(diff_inputs or self.variables)
        # What each source's gradient is in the traced body: None for a dense
        # tensor, else its TypeSpec (tf.IndexedSlices from a gather), which the
        # gradient op keeps, as the traced body's gradient would be.
        self.grad_specs: list[Any] = (learn_gradients(self.variables) if self.differentiable
                                      else [None] * (len(diff_inputs) + len(self.variables)))
        # Nothing for a tape to differentiate in the trace, while a tape could record:
        # a trainable variable read only at run time (a branch the trace did not
        # take) would silently get no gradient, so each run checks what it reads.
        self.check_reads = (bool(self.diff_out_pos) and not self.differentiable
                            and record.could_possibly_record())
        # Reading the variables here, next to the op, is what a tape around the
        # graph watches; their gradients come back through these reads. A variable
        # whose gradient is sparse (a gather) is not read: its handle is the
        # source, as for TF's own gather, because reading a variable that sparse
        # ops touched copies all of it (TF's copy-on-read mode), on every step.
        var_reads = [v.value() if spec is None else v.handle
                     for v, spec in zip(self.variables, self.grad_specs[len(diff_inputs):], strict=True)
                     ] if self.differentiable else []
        op_inputs = inputs + var_reads + self.carry.tensors + handles
        # What a tape knows each source as (a variable's handle, where it is the input).
        self.tape_sources = [inputs[k] for k in diff_inputs] + [
            v.handle if spec is not None else read
            for v, spec, read in zip(self.variables, self.grad_specs[len(diff_inputs):], var_reads,
                                     strict=False)]
        self.source_types = [(t.dtype, t.shape) for t in self.tape_sources[:len(diff_inputs)]] + [
            (v.dtype, v.shape) for v in self.variables]
        self.context_pos = len(inputs) + len(var_reads)
        self.diff_input_pos = diff_inputs
        self.source_pos = diff_inputs + list(range(len(inputs), len(inputs) + len(var_reads)))

        plain_token = self._callback(lambda *a: self._run_forward(False, a), self.tout)
        self.record_token = self._callback(lambda *a: self._run_forward(True, a), self.tout)
        with record.stop_recording():  # the gradient is this op's own, recorded below
            outs = list(gen_script_ops.eager_py_func(
                input=op_inputs, token=plain_token, is_async=_is_async(), Tout=self.tout,
                name=_op_name(self.name)))
        op = outs[-1].op
        _set_gradient_type(op, _FORWARD_OP_TYPE)
        results = outs[:-1]
        for tensor, spec in zip(results, self.specs + self.loss_specs, strict=True):
            tensor.set_shape(spec.shape)
        if self.differentiable:
            record.record_operation(
                _FORWARD_OP_TYPE, outs, self.tape_sources,
                lambda *dys: _forward_gradient(op, *dys, sources_only=True))
        self._place_losses(scratch_losses, results[len(self.specs):])
        return self._pack(results[: len(self.specs)])

    def _trace_scratch(self, diff_inputs: list[int]) -> tuple[Any, list[Any], list[Any], list[list[Any]],
                                                              Callable[[list[Any]], list[Any]]]:
        """Trace `fn` once into a throwaway graph: outputs, variables read, handles touched, losses added.

        The last item learns, when called with the trainable variables the body
        read, the type of each source's gradient in the traced body (see
        `_learn_gradient_specs`).
        """
        import tensorflow as tf
        from tensorflow.python.autograph.core import ag_ctx
        from tensorflow.python.autograph.impl import api as autograph
        from tensorflow.python.eager import record
        from tensorflow.python.framework import func_graph

        scratch = func_graph.FuncGraph(f"{_op_name(self.name)}_outputs")
        before = self.losses.snapshot()
        # The traced body would have seen the graph's name scope (absolute with the "/").
        scope = f"{self.carry.name_scope}/" if self.carry.name_scope else None
        with scratch.as_default(), scratch.name_scope(scope):
            placeholders = [tf.compat.v1.placeholder(t.dtype, t.shape) for t in self.inputs]
            args, kwargs = self._rebuild(placeholders)
            # Autograph follows the outer function's setting, as a traced body would.
            converted = autograph.tf_convert(self.trace_fn, ag_ctx.control_status_ctx())
            # A tape of the scratch trace tells what the traced body's gradients are.
            tape = tf.GradientTape(persistent=True)
            try:
                with record.VariableWatcher() as watcher, numpy_stand_ins(), tape:
                    tape.watch([placeholders[k] for k in diff_inputs])
                    made = _TraceValues.made.get(threading.get_ident(), 0)
                    out = converted(*args, **kwargs)
                    self.read_values = _TraceValues.made.get(threading.get_ident(), 0) > made
                out = tf.nest.map_structure(_as_output, out, expand_composites=True)
            except Exception as exc:
                self.losses.added(before, restore=True)
                raise IslandError(
                    f"@debuggable function {self.name!r} could not be traced to learn its outputs, "
                    f"which an eager island needs before it runs ({type(exc).__name__}: {exc}). "
                    "Its body is traced once with symbolic tensors: guard code that needs real values "
                    "with `if tf.executing_eagerly():`, or use @debuggable(island=False)"
                ) from exc
        scratch_losses = self.losses.added(before, restore=False)
        read_vars = _unique(watcher.watched_variables())

        def learn_gradients(variables: list[Any]) -> list[Any]:
            # Building the body's gradient costs about what tracing it did: only
            # where an op can make a gradient other than a dense tensor.
            if not any(op.type in _COMPOSITE_GRADIENT_OPS for op in scratch.get_operations()):
                return [None] * (len(diff_inputs) + len(variables))
            targets = [t for t in tf.nest.flatten([out, scratch_losses], expand_composites=True)
                       if isinstance(t, tf.Tensor) and _differentiable(t.dtype)]
            with scratch.as_default():
                sources = [placeholders[k] for k in diff_inputs] + variables
                return _learn_gradient_specs(tape, targets, sources)

        handles = [ext for ext, internal in scratch.captures if internal.dtype == tf.resource]
        # What a kept tape holds, estimated from the traced body: every op's output.
        self.fixed_bytes = self.batch_bytes = 0
        for graph_op in scratch.get_operations():
            for t in graph_op.outputs:
                if t.dtype == tf.resource or t.shape.rank is None:
                    continue
                known = t.dtype.size
                for d in t.shape:
                    known *= 1 if d is None else d
                if t.shape.is_fully_defined():
                    self.fixed_bytes += known
                else:
                    self.batch_bytes += known
        return out, read_vars, handles, scratch_losses, learn_gradients

    def _learn_outputs(self, out: Any, scratch_losses: list[list[Any]]) -> None:
        import numpy as np
        import tensorflow as tf
        from tensorflow.python.util import nest

        self.out_structure = out
        flat = tf.nest.flatten(out, expand_composites=True)
        try:
            paths = ["outputs" + "".join(f"[{p!r}]" for p in path)
                     for path, _ in nest.flatten_with_tuple_paths(out, expand_composites=True)]
        except Exception:  # noqa: BLE001 (structures nest cannot name: use positions)
            paths = []
        if len(paths) != len(flat):
            paths = [f"output {i}" for i in range(len(flat))]
        self.paths = paths
        self.specs: list[_Output] = []
        for i, leaf in enumerate(flat):
            if isinstance(leaf, tf.Tensor):
                self.specs.append(_Output(i, leaf.dtype, leaf.shape, paths[i], False))
            elif isinstance(leaf, (bool, int, float, complex, np.ndarray, np.generic)):
                # A value computed in Python (maybe from `.numpy()`): a tensor output
                # with each run's value. Its dimensions may depend on values: unknown.
                value = np.asarray(leaf)
                dtype = tf.convert_to_tensor(leaf).dtype if not isinstance(leaf, np.ndarray) else \
                    tf.as_dtype(value.dtype)
                self.specs.append(_Output(i, dtype, tf.TensorShape([None] * value.ndim), paths[i], True))
            elif isinstance(leaf, (str, bytes)) and self.read_values:
                raise IslandError(
                    f"eager island {self.name!r} returns a string at {paths[i]} and reads `.numpy()` "
                    "values: a string made from them would be the trace-time stand-in forever in the "
                    "graph. Return a tensor instead (tf.constant(text), or "
                    "tf.strings.as_string(tensor)), which carries each run's value"
                )
        self.flat_out_static = flat
        self.none_outputs = [i for i, leaf in enumerate(flat) if leaf is None]
        self.loss_counts = [len(added) for added in scratch_losses]
        self.loss_specs = [_Output(-1, t.dtype, t.shape, f"loss {k} added to {self.losses.label(s)}", False)
                           for s, added in enumerate(scratch_losses) for k, t in enumerate(added)]
        self.tout = [s.dtype for s in self.specs] + [s.dtype for s in self.loss_specs] + [tf.int64]

    def _place_losses(self, scratch_losses: list[list[Any]], outputs: list[Any]) -> None:
        """Put the op's loss outputs where the scratch trace left its losses (as a traced body would)."""
        replace = {}
        pos = 0
        for added in scratch_losses:
            for t in added:
                replace[id(t)] = outputs[pos]
                pos += 1
        if not replace:
            return
        for layer, attr in self.losses.slots:
            current = getattr(layer, attr, None)
            if isinstance(current, list):
                current[:] = [replace.get(id(t), t) for t in current]

    def _callback(self, call: Callable[..., Any], tout: list[Any], *, order: int = 0,
                  targets: int = 0) -> bytes:
        """Register `call` as an `EagerPyFunc` callback kept alive by the graph; its token."""
        from tensorflow.python.ops import script_ops

        func = _eager_func_class()(call, tout, order > 0)
        func.island = self
        func.order = order
        func.targets = targets
        token = script_ops._py_funcs.insert(func)
        _keep_with_graph(func)
        return token.encode() if isinstance(token, str) else bytes(token)

    def _rebuild(self, tensors: Sequence[Any]) -> tuple[Any, Any]:
        """The call's (args, kwargs) with the op inputs replaced by `tensors`."""
        import tensorflow as tf

        if self.flat_call:
            # Every argument is a leaf: no nest round trip (it costs more than
            # a small island body) on each run.
            leaves = list(self.leaves)
            for (i, _), tensor in zip(self.slots, tensors, strict=False):
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
        for spec, tensor in zip(self.specs, results, strict=True):
            flat[spec.index] = tensor
        return tf.nest.pack_sequence_as(self.out_structure, flat, expand_composites=True)

    # -- gradients (graph construction) ----------------------------------------------
    def forward_gradient(self, op: Any, dys: Sequence[Any]) -> list[Any]:
        """Gradients for the forward op's inputs (None for those without one)."""
        from tensorflow.core.framework import attr_value_pb2

        grads: list[Any] = [None] * len(op.inputs)
        if not self.differentiable:
            return grads
        # From now on this op records tapes when it runs; an inference graph
        # serialized before (a function called under a tape outside it) does not.
        self.order = max(self.order, 1)
        op._set_attr("token", attr_value_pb2.AttrValue(s=self.record_token))
        sources = [op.inputs[k] for k in self.source_pos]
        targets = [op.outputs[k] for k in self.diff_out_pos]
        out = self.gradient_op(1, op.outputs[-1], sources, targets, [dys[k] for k in self.diff_out_pos],
                               specs=self.grad_specs)
        for k, g in zip(self.source_pos, out, strict=True):
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

        self.order = max(self.order, order)
        specs = list(specs) or [None] * len(sources)
        dys = [tf.zeros_like(t) if dy is None else tf.convert_to_tensor(dy, dtype=t.dtype)
               for t, dy in zip(targets, dys, strict=True)]
        # A variable's handle stands for the variable (see build): its dtype and shape.
        types = [self.source_types[k] if s.dtype == tf.resource else (s.dtype, s.shape)
                 for k, s in enumerate(sources)]
        shapes = [[shape] if spec is None else [c.shape for c in spec._component_specs]
                  for (_, shape), spec in zip(types, specs, strict=True)]
        tout = [d for (dtype, _), spec in zip(types, specs, strict=True)
                for d in ([dtype] if spec is None else [c.dtype for c in spec._component_specs])]
        tout.append(tf.int64)
        n = len(dys)
        token = self._callback(
            lambda call, *rest: self._run_gradient(order, int(call), list(rest[:n]), specs),
            tout, order=order, targets=n)
        with record.stop_recording():
            outs = list(gen_script_ops.eager_py_func(
                input=[call_id, *dys, *sources], token=token, is_async=_is_async(), Tout=tout,
                name=f"{_op_name(self.name)}_grad{order}"))
        op = outs[-1].op
        _set_gradient_type(op, _GRADIENT_OP_TYPE)
        for g, shape in zip(outs, [shape for per_source in shapes for shape in per_source], strict=False):
            g.set_shape(shape)
        inputs = list(dys) + [self.tape_sources[k] if s.dtype == tf.resource else s
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

    # -- run time (eager, in whatever thread TF's executor picked) -------------
    def _run_forward(self, records: bool, eager_inputs: Sequence[Any]) -> list[Any]:
        import numpy as np
        import tensorflow as tf
        from tensorflow.python.eager import record

        from ._scope import Scope

        tensors = list(eager_inputs[: len(self.inputs)])
        # One tape per gradient order some graph has built for this op; none
        # when this graph never differentiates it (nothing is kept alive).
        tapes = [tf.GradientTape(persistent=True) for _ in range(self.order)] if records else []
        watched: list[Any] = []
        with contextlib.ExitStack() as stack:
            for tape in reversed(tapes):  # outermost first
                stack.enter_context(tape)
                tape.watch([tensors[k] for k in self.diff_input_pos])
            if tapes or self.check_reads:
                watcher = stack.enter_context(record.VariableWatcher())
            args, kwargs = self._rebuild(tensors)
            context = eager_inputs[self.context_pos:self.context_pos + len(self.carry.tensors)]
            with contextlib.nullcontext() if self.carry.empty else self.carry.entered(context):
                before = self.losses.snapshot() if self.losses.slots else None
                try:
                    if self.override:
                        # The override lives in a ContextVar, and this may be a TF executor
                        # thread: enter it here, so tf.functions the body calls run eagerly.
                        # A fresh Scope per run: replicas may run this island concurrently.
                        with Scope(True, False, f"eager island {self.name}"):
                            out = self.fn(*args, **kwargs)
                    else:
                        out = self.fn(*args, **kwargs)
                finally:
                    added = self.losses.added(before, restore=True) if before is not None else []
            results = self._check_outputs(out) + self._check_losses(added)
            if tapes or self.check_reads:
                watched = watcher.watched_variables()
        if not tapes:
            if self.check_reads:
                self._refuse_unseen([v for v in _unique(watched) if v.trainable and _differentiable(v.dtype)])
            return [*results, _NO_CALL]
        call_id = next(_call_ids)
        unseen = [v for v in _unique(watched)
                  if v.trainable and _differentiable(v.dtype) and id(v) not in self.variable_ids]
        sources = [tensors[k] for k in self.diff_input_pos] + list(self.variables)
        self._keep(call_id, _Entry(tapes, sources, [results[k] for k in self.diff_out_pos], unseen,
                                   self._estimate(tensors, results)))
        return [*results, np.asarray(call_id, np.int64)]

    def _refuse_unseen(self, missing: list[Any]) -> None:
        if missing:
            names = ", ".join(repr(v.name) for v in missing)
            raise IslandError(
                f"eager island {self.name!r} read the trainable variable(s) {names} in this run, "
                "but not in the trace that built the graph (a Python branch on a `.numpy()` value "
                "took another path there), so the graph has no gradient for them: they would "
                "silently get None. Read them on every path of the body (e.g. `w = "
                "tf.identity(self.kernel)` before the branch), or branch with tf.cond"
            )

    def _estimate(self, tensors: list[Any], results: list[Any]) -> int:
        """Bytes a run's tapes keep: the traced body's op outputs, at this run's batch size."""
        known: int | None = getattr(self, "static_estimate", None)
        if known is not None:  # every input and output shape static in the trace: the same each run
            return known
        batch = next((int(t.shape[0]) for t in tensors if t.shape.rank and t.shape[0] is not None), 1)
        size = sum(int(t.shape.num_elements() or 0) * t.dtype.size for t in (*tensors, *results))
        estimate = int(RUN_BYTES + self.fixed_bytes + self.batch_bytes * batch + size)
        if all(t.shape.is_fully_defined() for t in self.inputs) and all(
                s.shape.is_fully_defined() for s in (*self.specs, *self.loss_specs)):
            self.static_estimate = estimate
        return estimate

    def _check_outputs(self, out: Any) -> list[Any]:
        import numpy as np
        import tensorflow as tf

        try:
            if not (isinstance(out, tf.Tensor) and isinstance(self.out_structure, tf.Tensor)):
                tf.nest.assert_same_structure(out, self.out_structure, expand_composites=True)
        except (ValueError, TypeError) as exc:
            raise IslandError(
                f"eager island {self.name!r} returned {_short(out)}, whose structure differs from the "
                f"one traced in the graph ({_short(self.out_structure)}): an island must return the "
                "same structure on every call; return the same nest of tensors on every path"
            ) from exc
        flat_list = [out] if isinstance(out, tf.Tensor) else tf.nest.flatten(out, expand_composites=True)
        for i in self.none_outputs:
            if flat_list[i] is not None:
                raise IslandError(
                    f"eager island {self.name!r} returned {_short(flat_list[i])} at {self.paths[i]}, "
                    "where its trace returned None, so the graph has no place for it: return it on "
                    "every path, also when `tf.executing_eagerly()` is False"
                )
        results = []
        for spec in self.specs:
            leaf = flat_list[spec.index]
            if leaf is None:
                raise IslandError(
                    f"eager island {self.name!r} returned None at {spec.path}, where its trace "
                    f"returned a {spec.dtype.name} tensor: return a tensor there on every path "
                    "(a branch without `return`?)"
                )
            if spec.is_value:
                array = np.asarray(leaf.numpy() if hasattr(leaf, "numpy") else leaf)
                if array.ndim != spec.shape.rank:
                    raise IslandError(
                        f"eager island {self.name!r} returned a value of rank {array.ndim} at "
                        f"{spec.path}, where its trace returned rank {spec.shape.rank}: return values "
                        "of the same rank on every call"
                    )
                results.append(tf.convert_to_tensor(array, dtype=spec.dtype))
                continue
            if (isinstance(leaf, tf.Tensor) and leaf.dtype is spec.dtype
                    and leaf._shape_tuple() == spec.shape._dims):
                results.append(leaf)  # as traced (the usual case): no conversion, no TensorShape built
                continue
            value = tf.convert_to_tensor(leaf)
            if value.dtype != spec.dtype or not spec.shape.is_compatible_with(value.shape):
                raise IslandError(
                    f"eager island {self.name!r} returned a {value.dtype.name} tensor of shape "
                    f"{value.shape} at {spec.path}, but its traced output there is {spec.dtype.name} "
                    f"with shape {spec.shape}: an island must return the dtypes and shapes it was "
                    "traced with. If that shape depends on values (it was learned from a trace where "
                    "`.numpy()` returns a stand-in, unknown dimensions as 1), compute the output with "
                    "TF ops from the tensor arguments (e.g. tf.boolean_mask, not NumPy), or return it "
                    "as a NumPy array, whose dimensions an island leaves unknown"
                )
            results.append(value)
        return results

    def _check_losses(self, added: list[list[Any]]) -> list[Any]:
        import tensorflow as tf

        counts = [len(a) for a in added]
        if counts != self.loss_counts:
            slot = next(k for k, (got, want) in enumerate(zip(counts, self.loss_counts, strict=True))
                        if got != want)
            raise IslandError(
                f"eager island {self.name!r} added {counts[slot]} loss(es) to "
                f"{self.losses.label(slot)} with add_loss in this run, but {self.loss_counts[slot]} in "
                "the trace that built the graph: the graph has a place for each loss the trace "
                "added. Call add_loss the same number of times on every call (add a zero loss on "
                "the other path)"
            )
        losses = []
        for spec, loss in zip(self.loss_specs, [t for a in added for t in a], strict=True):
            value = tf.convert_to_tensor(loss, dtype=spec.dtype)
            if not spec.shape.is_compatible_with(value.shape):
                raise IslandError(
                    f"eager island {self.name!r}: {spec.path} has shape {value.shape} in this run "
                    f"but {spec.shape} in its trace: add losses of the same shape on every call"
                )
            losses.append(value)
        return losses

    def _run_gradient(self, order: int, call_id: int, dys: list[Any], specs: list[Any]) -> list[Any]:

        with self.lock:
            entry = self.pending.pop(call_id, None)
            if entry is not None:
                self.pending_bytes -= entry.nbytes
            else:
                entry = self.done.pop(call_id, None)
            if entry is not None:
                self.done[call_id] = entry
                while len(self.done) > KEEP_DONE:
                    self.done.popitem(last=False)
        if entry is None:
            why = (f"eagerctl keeps the tapes of the last {KEEP_PENDING} runs of an island that wait "
                   f"for a gradient (at most {KEEP_BYTES} bytes, estimated) and of the last "
                   f"{KEEP_DONE} whose gradient was computed, and this run is older, or it recorded no "
                   "tape for this order of gradient because no graph had built that gradient when it "
                   "ran; compute gradients sooner after the run, in the tf.function that calls the "
                   "island (or raise eagerctl._island.KEEP_PENDING / KEEP_BYTES)")
            raise IslandError(f"eager island {self.name!r}: the order-{order} gradient of one of its "
                              f"calls is not available: {why}")
        # The variables' components depend on the replica context (tf.distribute).
        with contextlib.nullcontext() if self.carry.thread_mode is None else self.carry.entered():
            return self._differentiate(order, entry, dys, specs)

    def _differentiate(self, order: int, entry: _Entry, dys: list[Any], specs: list[Any]) -> list[Any]:
        import numpy as np

        inner, outer = entry.tapes[0], entry.tapes[1:]
        if entry.unseen:
            self._refuse_unseen([v for v, g in zip(entry.unseen, inner.gradient(
                entry.targets, entry.unseen, output_gradients=dys), strict=True) if g is not None])
        with contextlib.ExitStack() as stack:
            # The outer tapes recorded the forward; let them record this
            # gradient too, so it can be differentiated again.
            for tape in reversed(outer):
                stack.enter_context(tape._ensure_recording())
                tape.watch(dys)
            grads = inner.gradient(entry.targets, entry.sources, output_gradients=dys)
            parts = [part for source, grad, spec in zip(entry.sources, grads, specs, strict=True)
                     for part in self._gradient_parts(source, grad, spec)]
        if not outer:
            return [*parts, _NO_CALL]
        next_id = next(_call_ids)
        targets = [p for p in parts if _differentiable(p.dtype)]  # as gradient_gradient picks them
        self._keep(next_id, _Entry(outer, entry.sources + dys, targets, [], entry.nbytes))
        return [*parts, np.asarray(next_id, np.int64)]

    def _gradient_parts(self, source: Any, grad: Any, spec: Any) -> list[Any]:
        """The gradient op's outputs for one source: the gradient, as the graph expects it.

        This run's gradient may differ in type from the traced body's (another
        path taken, no gradient at all): it is converted, with the same value.
        """
        import tensorflow as tf

        # Never a read of a variable source: one touched by sparse ops copies all of it.
        static = source.shape
        if spec is None:
            if grad is not None:
                return [tf.convert_to_tensor(grad)]
            return [tf.zeros(static, source.dtype) if static.is_fully_defined() else tf.zeros_like(source)]
        if isinstance(spec, tf.IndexedSlicesSpec):
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
            grad = tf.IndexedSlices(
                tf.cast(grad.values, spec._values_dtype), tf.cast(grad.indices, spec._indices_dtype),
                None if spec._dense_shape_dtype is None else shape)
        elif grad is None or not spec.is_compatible_with(grad):
            raise IslandError(
                f"eager island {self.name!r}: the gradient of one of its inputs or variables is "
                f"{_short(grad)} in this run, where the traced body's gradient is a "
                f"{spec.value_type.__name__} ({spec}): the graph has a place only for that. Compute it "
                "the same way on every call"
            )
        return list(tf.nest.flatten(grad, expand_composites=True))

    def _keep(self, call_id: int, entry: _Entry) -> None:
        with self.lock:
            self.pending[call_id] = entry
            self.pending_bytes += entry.nbytes
            while len(self.pending) > 1 and (len(self.pending) > KEEP_PENDING
                                             or self.pending_bytes > KEEP_BYTES):
                _, dropped = self.pending.popitem(last=False)
                self.pending_bytes -= dropped.nbytes


# -- TF plumbing ----------------------------------------------------------------------

_NO_CALL: Any = None  # set on first use: a NumPy int64 zero (a run that kept nothing)


def _init_constants() -> None:
    global _NO_CALL
    if _NO_CALL is None:
        import numpy as np

        _NO_CALL = np.zeros((), np.int64)


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


_registered: set[str] = set()
_register_lock = threading.Lock()


def _callback_of(op: Any) -> Any:
    from tensorflow.python.ops import script_ops

    token = op.get_attr("token")
    func = script_ops._py_funcs.get(token.decode() if isinstance(token, bytes) else token)
    if func is None or not hasattr(func, "island"):
        raise IslandError(
            f"the eager island op {op.name!r} belongs to a function that no longer exists in this "
            "process (islands are not saved with a model): differentiate the function that calls "
            "the island while it is alive"
        )
    return func


def _forward_gradient(op: Any, *dys: Any, sources_only: bool = False) -> Any:
    island: _Island = _callback_of(op).island
    grads = island.forward_gradient(op, dys)
    if sources_only:
        return [grads[k] for k in island.source_pos]
    return grads


def _gradient_gradient(op: Any, *ddys: Any) -> Any:
    func = _callback_of(op)
    return func.island.gradient_gradient(op, func.order, func.targets, ddys)


def _keep_with_graph(func: Any) -> None:
    """Keep `func` alive as long as the outermost function graph being built.

    TF's registry of `EagerPyFunc` callbacks holds them weakly. `tf.py_function`
    keeps its callback in the outermost graph, TF's process-wide default graph
    when tracing starts eagerly, so they are never freed. An island's callback
    holds the island and its tapes: keep it in the outermost `FuncGraph`
    instead, which lives as long as the function that runs it.
    """
    from tensorflow.python.framework import func_graph, ops

    graph = ops.get_default_graph()
    while isinstance(graph, func_graph.FuncGraph) and isinstance(graph.outer_graph, func_graph.FuncGraph):
        graph = graph.outer_graph
    if not hasattr(graph, "_py_funcs_used_in_graph"):
        graph._py_funcs_used_in_graph = []
    graph._py_funcs_used_in_graph.append(func)


# Op types whose gradient can be something else than a dense tensor: gathers
# (tf.IndexedSlices), custom gradients (IdentityN), nested islands, function calls
# and control flow (whatever their bodies hold).
_COMPOSITE_GRADIENT_OPS = frozenset({
    "ResourceGather", "Gather", "GatherV2", "IdentityN", "EagerPyFunc", "PartitionedCall",
    "StatefulPartitionedCall", "While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase"})


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


def _is_async() -> bool:
    from tensorflow.python.eager import context

    _init_constants()
    return bool(context.is_async())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


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
    made: ClassVar[dict[int, int]] = {}  # stand-ins handed out, per thread (tells a body read values)
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

    ident = threading.get_ident()
    _TraceValues.made[ident] = _TraceValues.made.get(ident, 0) + 1

    if _TraceValues.array_class is None:

        class TraceTimeValue(np.ndarray):
            """Zeros standing in for a value that only exists when the island runs."""

            def __repr__(self) -> str:
                return _STAND_IN_TEXT

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
                _TraceValues.made.pop(ident, None)
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
                with _shutdown.running(self.island.name):  # refused once the interpreter exits
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

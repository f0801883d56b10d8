"""Where traced graphs meet user functions: the patches, what each trace saw, and retracing.

While TensorFlow traces a `tf.function` (or a `tf.data` function), the user's
functions are reached through a few doors, each patched here:

- AutoGraph's `converted_call`: the `tf.function` body itself, every function
  a converted body calls (however deep), `tf.data` map and filter functions,
  and in Keras 2 (`tf.keras`) every layer's `call` and every loss.
- Keras 3 `Layer.__call__` (layers and models: it calls `call` unconverted) and
  `Loss.__call__` (a loss object's `call`, a loss function's `fn`).

At each door, during a trace: the function's code is noted in every trace in
progress on this thread (an outer graph embeds the inner graphs), and when the
code holds a breakpoint (or calls `breakpoint()` / `set_trace()`), the call
becomes an eager island.

A trace is recorded on its `FuncGraph` (`_Record`: the function cache to
clear, the codes it saw, the codes it made islands). When the debuggers'
breakpoints change, `refresh()` clears the cache of every function whose
graphs no longer match (an island is missing, or one is no longer wanted), so
the next call traces it again; a `tf.data` function cannot be traced again,
and is reported once. Nothing else is ever retraced.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .. import _hook
from .._errors import EagerctlWarning
from . import _table

TRACING_COMPILATION = "tensorflow.python.eager.polymorphic_function.tracing_compilation"  # TF 2.14+
TRACING_COMPILER = "tensorflow.python.eager.polymorphic_function.tracing_compiler"  # TF 2.13
KERAS3_LAYER = "keras.src.layers.layer"
KERAS3_LOSS = "keras.src.losses.loss"
KERAS3_METRICS = "keras.src.metrics.reduction_metrics"
KERAS3_BACKEND = "keras.src.backend"
KERAS3_TRAINER = "keras.src.backend.tensorflow.trainer"
KERAS2_TRAINING = ("keras.src.engine.training", "tf_keras.src.engine.training")


_F = TypeVar("_F", bound=Callable[..., Any])


def _not_converted(fn: _F) -> _F:
    # What tf.autograph.experimental.do_not_convert marks: AutoGraph calls it as it is.
    fn.autograph_info__ = frozenset()  # type: ignore[attr-defined]
    return fn


_refused: set[Any] = set()  # codes already reported as impossible to make islands


def _island(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, name: str,
            trace: Callable[..., Any], code: Any = None) -> Any:
    from .._island import IslandError
    from . import _islands  # with eagerctl's island machinery: not at `import eagerctl`

    try:
        return _islands.build(fn, args, kwargs, name=name, trace=trace)
    except IslandError as exc:
        # An XLA-compiled function (jit_compile=True) cannot call back into Python: the
        # breakpoint cannot stop there, and the program goes on as without a debugger.
        if code not in _refused:
            _refused.add(code)
            warnings.warn(f"a breakpoint in {_table.describe(code) if code is not None else name} cannot "
                          f"stop inside this graph, which runs it compiled as before: {exc}",
                          EagerctlWarning, stacklevel=_user_stacklevel())
        return trace(*args, **kwargs)


class State:
    """What the breakpoints feature knows now (one per process)."""

    def __init__(self) -> None:
        self.enabled = True
        self.key: _table.Key | None = None
        self.lines: dict[str, frozenset[int]] = {}
        self.wanted: dict[Any, bool] = {}  # code -> holds a breakpoint now (cleared on every change)
        self.lock = threading.Lock()
        self.warned: set[Any] = set()  # (graph id, code) of tf.data functions already reported


STATE = State()
_graphs: weakref.WeakSet[Any] = weakref.WeakSet()  # FuncGraphs that carry a _Record
_local = threading.local()  # .stack: the _Records of the traces in progress on this thread


class _Record:
    """One trace: the function cache to clear, and the user codes it saw and made islands."""

    __slots__ = ("cache", "codes", "islands", "kind", "name")

    def __init__(self, cache: Any, kind: str, name: str) -> None:
        self.cache = cache
        self.kind = kind  # "function" or "dataset"
        self.name = name
        self.codes: set[Any] = set()
        self.islands: set[Any] = set()


def _stack() -> list[_Record]:
    stack: list[_Record] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


# -- which code wants an island --------------------------------------------------------


def refresh_if_changed() -> None:
    """Read the debuggers' tables again if they changed; retrace what no longer matches."""
    key = _table.change_key()
    if key != STATE.key:
        refresh(key)


def refresh(key: _table.Key | None = None) -> None:
    with STATE.lock:
        STATE.key = key if key is not None else _table.change_key()
        STATE.lines = _table.line_breakpoints() if STATE.enabled else {}
        STATE.wanted = {}
    stale: list[_Record] = []
    late: list[tuple[Any, _Record, Any]] = []
    for graph in list(_graphs):
        record: _Record | None = getattr(graph, "_eagerctl_breakpoints", None)
        if record is None:
            continue
        needed = {code for code in record.codes if wants_island(code)}
        if needed == record.islands:
            continue
        if record.kind == "dataset":
            for code in needed - record.islands:
                if (id(graph), code) not in STATE.warned:
                    late.append((graph, record, code))
        else:
            stale.append(record)
    for record in stale:
        clear = getattr(record.cache, "clear", None)
        if clear is not None:
            clear()  # the next call traces again, with the islands wanted now
        record.codes.clear()
        record.islands.clear()
    for graph, _record, code in late:
        STATE.warned.add((id(graph), code))
        warnings.warn(
            f"a breakpoint is set in {_table.describe(code)}, which a tf.data pipeline built before it "
            "was set runs as part of its compiled dataset function; TensorFlow cannot trace a dataset "
            "function again, so that pipeline will not stop there. Build the dataset again (call "
            ".map()/.filter() again after setting the breakpoint): pipelines built from now on stop",
            EagerctlWarning, stacklevel=_user_stacklevel(),
        )


def _user_stacklevel() -> int:
    """The `stacklevel` that points a warning at the user's own line (the call that noticed)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and not _table.is_user_code(frame.f_code):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level if frame is not None else 1


def wants_island(code: Any) -> bool:
    """Whether calls of `code` made while tracing become eager islands now."""
    found = STATE.wanted.get(code)
    if found is None:
        found = False
        if STATE.enabled:
            lines = STATE.lines.get(_table.norm(code.co_filename)) if STATE.lines else None
            found = bool(lines and not lines.isdisjoint(_table.code_lines(code)))
            found = found or _table.calls_debugger(code)
        STATE.wanted[code] = found
    return found


def active_islands() -> list[str]:
    """The functions made islands because of breakpoints, in graphs still alive (for status())."""
    codes: dict[Any, None] = {}
    for graph in list(_graphs):
        record = getattr(graph, "_eagerctl_breakpoints", None)
        if record is not None:
            for code in sorted(record.islands, key=_table.describe):
                codes[code] = None
    return [_table.describe(code) for code in codes]


# -- recording traces ----------------------------------------------------------------------


@contextmanager
def _tracing(graph: Any, cache: Any, python_function: Any, name: str) -> Iterator[None]:
    inner = python_function
    for _ in range(8):  # TF wraps tf.data's wrapped_fn in its own decorators
        inner = getattr(inner, "__wrapped__", None) or inner
    code = _table.code_of(inner)
    dataset = code is not None and code.co_filename.endswith("structured_function.py")  # tf.data's wrapper
    kind = "dataset" if dataset else "function"
    record = _Record(cache, kind, str(name))
    stack = _stack()
    stack.append(record)
    abandoned = False
    try:
        yield
    except _Reached:
        abandoned = True  # traced again at once (_retrying), with a record of its own
        raise
    finally:
        stack.pop()
        if record.codes and not abandoned:
            try:
                graph._eagerctl_breakpoints = record
                _graphs.add(graph)
            except (AttributeError, TypeError):
                pass


PLAIN, ISLAND, QUIET = 0, 1, 2
_NO_CODE = compile("", "<none>", "exec")
_SHAPE_GRAPH = re.compile(r"(^|_)scratch_graph(_\d+)?$|^build_graph$")


def decide(code: Any) -> int:
    """At a door, while tracing: note `code` in the traces in progress, and say what the call does.

    ISLAND: an eager island. QUIET: the body as it is, with the debuggers
    silenced: Keras runs a layer symbolically to learn shapes (its
    `compute_output_spec` graphs, Keras 2's build graphs), and graphs outside a
    `tf.function` compute nothing either; a stop there would show symbolic
    tensors, and the calls with data stop. PLAIN: as without eagerctl.
    """
    if code is None:
        return PLAIN
    if _hook.WATCH.on:
        refresh_if_changed()
    _doored.add(code)  # reached through a door: the door makes it an island, never its caller
    island = wants_island(code)
    if not island and not _table.is_user_code(code):
        return PLAIN  # a library's function: never holds the user's breakpoints
    stack = _stack()
    if island and (not stack or _SHAPE_GRAPH.search(str(getattr(_default_graph(), "name", "")))):
        return QUIET
    if island and _saving():
        return PLAIN  # a SavedModel gets the compiled body: islands belong to this process
    for record in stack:
        record.codes.add(code)
        if island:
            record.islands.add(code)
    return ISLAND if island else PLAIN


def _saving() -> bool:
    module = sys.modules.get("tensorflow.python.saved_model.save_context")
    return module is not None and bool(module.in_save_context())


def _default_graph() -> Any:
    from tensorflow.python.framework import ops

    return ops.get_default_graph()


def _quiet(run: Callable[[], Any]) -> Any:
    from ._islands import silenced

    with silenced():
        return run()


# -- calls no door sees -------------------------------------------------------------------
#
# Some user functions are reached inside a trace through no door: a plain function called by a
# `tf.function(autograph=False)` body, a metric function or a `Metric.update_state` that Keras
# calls from its own (unconverted) train step. There the nearest enclosing door makes the island:
# a `tf.function`'s whole body, or Keras's step function. While a debugger is loaded, such a door
# runs its body's trace with a profile function (`sys.setprofile`, this thread, this trace only)
# that notes every user function called not through a door (`_reach`). When one of them holds a
# breakpoint, the trace is abandoned before that function's first line runs (`_Reached`, a
# BaseException so that TF's and AutoGraph's `except Exception` let it through) and traced again
# at once (`_retrying`): the door, knowing now what its body reaches, makes the whole body an island.


class _Reached(BaseException):
    """A door's body reached a function holding a breakpoint: trace again, with the door an island."""

    def __init__(self, depth: int, code: Any) -> None:
        super().__init__(f"eagerctl: {getattr(code, 'co_name', code)} holds a breakpoint; tracing again")
        self.depth = depth
        self.code = code


_doored: set[Any] = set()  # codes that go through a door (converted_call, a layer's or loss's __call__)
_reach: dict[Any, set[Any]] = {}  # a door's code -> user codes its body called through no door


def _through_reach_door(fn: Callable[..., Any], code: Any, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
    """Run a door's body while tracing: an island when it reaches a breakpoint no inner door sees."""
    stack = _stack()
    if not stack or _saving():
        return fn(*args, **kwargs)
    if _hook.WATCH.on:
        refresh_if_changed()
    reached = [c for c in _reach.get(code, ()) if c not in _doored]
    wanted = [c for c in reached if wants_island(c)]
    for record in stack:
        record.codes.update(reached)  # a breakpoint set there later traces this again
        record.islands.update(wanted)
    if wanted:
        return _island(fn, args, kwargs, name=getattr(code, "co_name", "body"), trace=fn, code=wanted[0])
    profiler = sys.getprofile()
    if not _hook.WATCH.on or (profiler is not None and not getattr(profiler, "_eagerctl", False)):
        return fn(*args, **kwargs)  # no debugger; or a profiler of the user's: leave it alone
    return _profiled(fn, code, args, kwargs, len(stack))


def _profiled(fn: Callable[..., Any], code: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
              depth: int) -> Any:
    """`fn(*args, **kwargs)` with a profile function noting the user functions it calls through no door."""
    seen: set[Any] = {code}
    records = list(_stack())
    reach = _reach.setdefault(code, set())
    local = _table.local

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event != "call":
            return
        called = frame.f_code
        if called in seen or getattr(local, "quiet", 0) > 0:
            return
        seen.add(called)
        if called in _doored or not _table.is_user_code(called):
            return
        reach.add(called)
        for record in records:
            record.codes.add(called)
        if (wants_island(called) and not getattr(_local, "settled", False)
                and depth in _retrying_depths()):  # only a trace that `_retrying` started traces again
            raise _Reached(depth, called)

    profile._eagerctl = True  # type: ignore[attr-defined]
    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        return fn(*args, **kwargs)
    finally:
        sys.setprofile(previous)


def _retrying_depths() -> set[int]:
    depths: set[int] | None = getattr(_local, "retrying", None)
    if depths is None:
        depths = _local.retrying = set()
    return depths


def _retrying(define: Callable[[], Any]) -> Any:
    """TF's "trace this function unless cached" (`define`), again when a door's body reached a breakpoint."""
    depth = len(_stack()) + 1  # the depth of this function's own trace
    depths = _retrying_depths()
    outer = depth in depths
    depths.add(depth)
    try:
        for _ in range(3):
            try:
                return define()
            except _Reached as exc:
                if exc.depth != depth:
                    raise
        settled = getattr(_local, "settled", False)
        _local.settled = True  # never loops: the last attempt traces as it goes
        try:
            return define()
        finally:
            _local.settled = settled
    finally:
        if not outer:
            depths.discard(depth)


def _top_door(python_function: Any, autograph: bool) -> Any:
    """A `tf.function`'s body through a door: the user's own function, or `python_function` as it is."""
    from tensorflow.python.util import tf_decorator

    _, original = tf_decorator.unwrap(python_function)
    code = _table.code_of(original)
    if code is None or not _table.is_user_code(code):
        return python_function

    @_not_converted
    def body(*args: Any, **kwargs: Any) -> Any:
        if not autograph:  # AutoGraph's converted_call is the door of a converted body
            action = decide(code)
            if action == QUIET:
                return _quiet(lambda: python_function(*args, **kwargs))
            if action == ISLAND:
                return _island(python_function, args, kwargs, name=code.co_name, trace=python_function,
                               code=code)
        return _through_reach_door(python_function, code, args, kwargs)

    return tf_decorator.make_decorator(original, body)


# -- the patches -----------------------------------------------------------------------------

_saved: list[tuple[Any, str, Any]] = []
# TF's "trace unless cached", run on every tf.function call: patched (to trace again, `_retrying`)
# only while a debugger is watched, so that without one a compiled call runs no eagerctl code
# but the hook's property. (owner, name, TF's function, eagerctl's)
_retry: list[tuple[Any, str, Any, Any]] = []


def retry_traces(on: bool) -> None:
    """Have TF's calls trace again when a door's body reaches a breakpoint (`on`), or not."""
    for owner, name, original, patched in _retry:
        setattr(owner, name, patched if on and installed else original)


def _patch(owner: Any, name: str, value: Any) -> None:
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    _saved.append((owner, name, original))
    setattr(owner, name, value)


def _function_class() -> Any:
    module = sys.modules.get(_hook.FUNCTION_MODULE)
    return getattr(module, "Function", None)


def _patch_converted_call() -> None:
    from tensorflow.python.autograph.impl import api

    original = api.converted_call
    function_class = _function_class()

    @_not_converted
    def converted_call(f: Any, args: Any, kwargs: Any, caller_fn_scope: Any = None,
                       options: Any = None) -> Any:
        if _hook.tracing():  # what a trace sees is noted even while off: turning on retraces it
            code = _table.code_of(f, function_class)
            action = decide(code)
            if action == QUIET:
                return _quiet(lambda: original(f, args, kwargs, caller_fn_scope, options))
            if action == ISLAND:
                def trace(*call_args: Any, **call_kwargs: Any) -> Any:
                    return original(f, call_args, call_kwargs, caller_fn_scope, options)

                return _island(f, tuple(args), dict(kwargs or {}), name=code.co_name, trace=trace, code=code)
        return original(f, args, kwargs, caller_fn_scope, options)

    ag_module = api._TRANSPILER.get_extra_locals()["ag__"]
    _patch(api, "converted_call", converted_call)
    if getattr(ag_module, "converted_call", None) is original:
        _patch(ag_module, "converted_call", converted_call)


def _patch_tracing() -> None:
    compilation = sys.modules.get(TRACING_COMPILATION)
    if compilation is None:
        try:
            __import__(TRACING_COMPILATION)
            compilation = sys.modules[TRACING_COMPILATION]
        except ImportError:
            compilation = None
    if compilation is not None and hasattr(compilation, "_create_concrete_function"):
        create = compilation._create_concrete_function
        define = compilation._maybe_define_function

        def _create_concrete_function(function_type: Any, type_context: Any, func_graph: Any,
                                      tracing_options: Any) -> Any:
            with _tracing(func_graph, tracing_options.function_cache, tracing_options.python_function,
                          tracing_options.name):
                python_function = tracing_options.python_function
                door = _top_door(python_function, bool(tracing_options.autograph))
                if door is python_function:
                    return create(function_type, type_context, func_graph, tracing_options)
                tracing_options.python_function = door  # under the function's lock while it traces
                try:
                    return create(function_type, type_context, func_graph, tracing_options)
                finally:
                    tracing_options.python_function = python_function

        def _maybe_define_function(args: Any, kwargs: Any, tracing_options: Any) -> Any:
            return _retrying(lambda: define(args, kwargs, tracing_options))

        _patch(compilation, "_create_concrete_function", _create_concrete_function)
        _retry[:] = [(compilation, "_maybe_define_function", define, _maybe_define_function)]
        return
    __import__(TRACING_COMPILER)
    compiler_class = sys.modules[TRACING_COMPILER].TracingCompiler
    create_method = compiler_class.__dict__["_create_concrete_function"]

    define_method = compiler_class.__dict__["_maybe_define_function"]

    def _create_concrete_function_213(self: Any, args: Any, kwargs: Any, func_graph: Any) -> Any:
        with _tracing(func_graph, self._function_cache, self._python_function, self._name):
            python_function = self._python_function
            door = _top_door(python_function, bool(self._autograph))
            if door is python_function:
                return create_method(self, args, kwargs, func_graph)
            self._python_function = door  # under the compiler's lock while it traces
            try:
                return create_method(self, args, kwargs, func_graph)
            finally:
                self._python_function = python_function

    def _maybe_define_function_213(self: Any, args: Any, kwargs: Any) -> Any:
        return _retrying(lambda: define_method(self, args, kwargs))

    _patch(compiler_class, "_create_concrete_function", _create_concrete_function_213)
    _retry[:] = [(compiler_class, "_maybe_define_function", define_method, _maybe_define_function_213)]


def _swap_call(obj: Any, body: Callable[..., Any], code: Any, run: Callable[[], Any]) -> Any:
    """Run Keras's `__call__` (`run`) with `obj.call` an island of `body` meanwhile."""
    had = "call" in obj.__dict__
    saved = obj.__dict__.get("call")

    @_not_converted
    def call(*args: Any, **kwargs: Any) -> Any:
        return _island(body, args, kwargs, name=code.co_name, trace=body, code=code)

    object.__setattr__(obj, "call", call)
    try:
        return run()
    finally:
        if had:
            object.__setattr__(obj, "call", saved)
        else:
            object.__delattr__(obj, "call")


def _through_door(step_function: Any, code: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _hook.tracing():
        if _table.is_user_code(code):
            action = decide(code)
            if action == QUIET:
                return _quiet(lambda: step_function(*args, **kwargs))
            if action == ISLAND:
                return _island(step_function, args, kwargs, name=code.co_name, trace=step_function, code=code)
        return _through_reach_door(step_function, code, args, kwargs)
    return step_function(*args, **kwargs)


def _step_door(step_function: Any, code: Any) -> Callable[..., Any]:
    @_not_converted
    @functools.wraps(step_function)
    def step(*args: Any, **kwargs: Any) -> Any:
        return _through_door(step_function, code, args, kwargs)

    return step


def _door_method(model: Any, name: str, code: Any) -> Any:
    """`model.<name>` through the door, bound to `model` (a copy of the model gets its own binding)."""

    @_not_converted
    def door(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _through_door(getattr(type(self), name).__get__(self, type(self)), code, args, kwargs)

    door.__name__ = door.__qualname__ = name
    return types.MethodType(door, model)


def _patch_keras3() -> None:
    layer_module = sys.modules.get(KERAS3_LAYER)
    layer_class = getattr(layer_module, "Layer", None)
    if isinstance(layer_class, type) and not any(owner is layer_class for owner, _, _ in _saved):
        original_layer_call = layer_class.__dict__["__call__"]

        @_not_converted
        def layer_call(layer: Any, *args: Any, **kwargs: Any) -> Any:
            if _hook.tracing():  # what a trace sees is noted even while off: turning on retraces it
                code = _table.code_of(type(layer).call)
                action = decide(code)
                if action == QUIET:
                    return _quiet(lambda: original_layer_call(layer, *args, **kwargs))
                if action == ISLAND:
                    return _swap_call(layer, layer.call, code,
                                      lambda: original_layer_call(layer, *args, **kwargs))
            return original_layer_call(layer, *args, **kwargs)

        _patch(layer_class, "__call__", layer_call)
    backend = sys.modules.get(KERAS3_BACKEND)
    spec = getattr(backend, "compute_output_spec", None)
    if callable(spec) and not getattr(spec, "_eagerctl_breakpoints", False):
        original_spec = spec

        def compute_output_spec(fn: Any, *args: Any, **kwargs: Any) -> Any:
            # A symbolic call to learn output shapes (building a model): nothing to stop at, in it
            # or in what it calls.
            if _hook.WATCH.on:
                refresh_if_changed()
            if STATE.enabled and (STATE.lines or wants_island(_table.code_of(fn) or _NO_CODE)):
                return _quiet(lambda: original_spec(fn, *args, **kwargs))
            return original_spec(fn, *args, **kwargs)

        compute_output_spec._eagerctl_breakpoints = True  # type: ignore[attr-defined]
        _patch(backend, "compute_output_spec", compute_output_spec)
    trainer_module = sys.modules.get(KERAS3_TRAINER)
    trainer_class = getattr(trainer_module, "TensorFlowTrainer", None)
    if isinstance(trainer_class, type) and "_make_function" in trainer_class.__dict__ and not any(
            owner is trainer_class for owner, _, _ in _saved):
        original_make = trainer_class.__dict__["_make_function"]

        def _make_function(trainer: Any, step_function: Any, *args: Any, **kwargs: Any) -> Any:
            # Keras's compiled train/test function calls the model's `train_step` (an override of
            # the user's, say) through tf.distribute, unconverted: this is its door.
            # Keras's own step is a door too: a metric it calls holding a breakpoint makes it an island.
            code = _table.code_of(step_function)
            if code is not None:
                step_function = _step_door(step_function, code)
            return original_make(trainer, step_function, *args, **kwargs)

        _patch(trainer_class, "_make_function", _make_function)
    loss_module = sys.modules.get(KERAS3_LOSS)
    loss_class = getattr(loss_module, "Loss", None)
    if isinstance(loss_class, type) and not any(owner is loss_class for owner, _, _ in _saved):
        original_loss_call = loss_class.__dict__["__call__"]

        @_not_converted
        def loss_call(loss: Any, *args: Any, **kwargs: Any) -> Any:
            if _hook.tracing():  # what a trace sees is noted even while off: turning on retraces it
                fn_code = _table.code_of(getattr(loss, "fn", None))  # a loss function (LossFunctionWrapper)
                code = fn_code if fn_code is not None and _table.is_user_code(fn_code) else \
                    _table.code_of(type(loss).call)
                action = decide(code)
                if action == QUIET:
                    return _quiet(lambda: original_loss_call(loss, *args, **kwargs))
                if action == ISLAND:
                    return _swap_call(loss, loss.call, code,
                                      lambda: original_loss_call(loss, *args, **kwargs))
            return original_loss_call(loss, *args, **kwargs)

        _patch(loss_class, "__call__", loss_call)
    wrapper_class = getattr(sys.modules.get(KERAS3_METRICS), "MeanMetricWrapper", None)
    if isinstance(wrapper_class, type) and "update_state" in wrapper_class.__dict__ and not any(
            owner is wrapper_class for owner, _, _ in _saved):
        original_update = wrapper_class.__dict__["update_state"]

        @_not_converted
        def update_state(metric: Any, *args: Any, **kwargs: Any) -> Any:
            # A metric function (compile(metrics=[fn])): Keras calls `metric._fn` unconverted; the
            # island is that function alone, and the train step around it stays compiled.
            fn = metric.__dict__.get("_fn")
            code = _table.code_of(fn)
            if _hook.tracing() and code is not None and _table.is_user_code(code):
                action = decide(code)
                if action == QUIET:
                    return _quiet(lambda: original_update(metric, *args, **kwargs))
                if action == ISLAND:
                    @_not_converted
                    def island(*call_args: Any, **call_kwargs: Any) -> Any:
                        return _island(fn, call_args, call_kwargs, name=code.co_name, trace=fn, code=code)

                    object.__setattr__(metric, "_fn", island)
                    try:
                        return original_update(metric, *args, **kwargs)
                    finally:
                        object.__setattr__(metric, "_fn", fn)
            return original_update(metric, *args, **kwargs)

        _patch(wrapper_class, "update_state", update_state)


def _patch_keras2() -> None:
    """Keras 2 (`tf.keras` 2.13-2.15, `tf_keras`): its train and test functions call
    `model.train_step(data)` unconverted; the door is an attribute of the model, set
    when Keras makes the function (only for a step the user overrode)."""
    for module_name in KERAS2_TRAINING:
        model_class = getattr(sys.modules.get(module_name), "Model", None)
        if not isinstance(model_class, type) or any(owner is model_class for owner, _, _ in _saved):
            continue
        for maker, step_name in (("make_train_function", "train_step"), ("make_test_function", "test_step")):
            original_maker = model_class.__dict__.get(maker)
            if original_maker is None:
                continue

            def make(model: Any, *args: Any, _original: Any = original_maker, _step: str = step_name,
                     **kwargs: Any) -> Any:
                code = _table.code_of(getattr(type(model), _step, None))
                if code is not None and _table.is_user_code(code) and _step not in model.__dict__:
                    object.__setattr__(model, _step, _door_method(model, _step, code))
                return _original(model, *args, **kwargs)

            _patch(model_class, maker, make)


_import_hooks_registered = False


def _on_keras_import(_module: object) -> None:
    if installed:
        try:
            _patch_keras3()
            _patch_keras2()
        except Exception:  # noqa: BLE001 - never fail the user's import of Keras
            pass


installed = False


def install() -> None:
    global installed, _import_hooks_registered
    if installed:
        return
    _patch_converted_call()
    _patch_tracing()
    installed = True
    _patch_keras3()
    _patch_keras2()
    if not _import_hooks_registered:
        import wrapt

        _import_hooks_registered = True
        for name in (KERAS3_LAYER, KERAS3_LOSS, KERAS3_METRICS, KERAS3_BACKEND, KERAS3_TRAINER,
                     *KERAS2_TRAINING):
            wrapt.register_post_import_hook(_on_keras_import, name)


def uninstall() -> None:
    global installed
    retry_traces(False)
    _retry.clear()
    while _saved:
        owner, name, value = _saved.pop()
        setattr(owner, name, value)
    installed = False

"""`@debuggable`: run one function's Python body eagerly on every call.

The decorator returns a `wrapt` proxy (`_Debuggable`) whose wrapper is the
`_Settings` object of that one decorated function. `wrapt` does the descriptor
binding (instance, class and static methods, and a `tf.function` used as a
method, which TF binds in `Function.__get__`); the wrapper receives
`(wrapped, instance, args, kwargs)`, picks the Python body (for a
`tf.function`: its `python_function`, so nothing is traced) and runs it:

- eagerly, under a local eager override when `recursive=True` (so nested
  `tf.function`s run their bodies too): `_Settings.call_eagerly`;
- while an outer `tf.function` is being traced, the body cannot run eagerly by
  itself: `_Settings._call_while_tracing` is the single place that decides what
  happens then: with `island=True` the call becomes an eager island in that
  graph (`eagerctl._island`), with `island=False` it warns once and builds the
  body into the graph.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

import wrapt

from . import _env, _hook
from ._errors import EagerctlWarning
from ._errors import hide_from_pytest as __tracebackhide__  # noqa: F401 (pytest reads it from the globals)
from ._scope import Activation, Scope, finish_exit

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

ENV_VAR = "EAGERCTL_DEBUGGABLE"

logger = logging.getLogger("eagerctl")

_getframe = sys._getframe
_WARNED_LOCK = threading.Lock()

_FUNCTION_MODULE = _hook.FUNCTION_MODULE
_SUPPORTED = (
    "it decorates tf.functions, functions, coroutine functions, and instance, class and static "
    "methods (including tf.function methods of Keras models and layers and a layer's call)"
)


# -- what can be decorated --------------------------------------------------

def _tf_function_class() -> type | None:
    # No TF import: an object can only be a tf.function if TF is loaded already.
    module = sys.modules.get(_FUNCTION_MODULE)
    return getattr(module, "Function", None) if module is not None else None


def _is_tf_function(obj: object) -> bool:
    cls = _tf_function_class()
    return cls is not None and isinstance(obj, cls)


def _classify(fn: object) -> str:
    """'tf.function', 'coroutine' or 'function'; TypeError for anything else."""
    inner: Any = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn
    if _is_tf_function(inner):
        if any(c.__name__ == "RestoredFunction" for c in type(inner).__mro__):
            raise TypeError(
                f"debuggable cannot decorate {fn!r}: a tf.function restored from a SavedModel has no "
                "Python body to run eagerly; decorate the original Python function (or its class's "
                "method) before saving instead"
            )
        return "tf.function"
    if (inspect.isfunction(inner) or inspect.ismethod(inner)) and not isinstance(inner, type):
        if inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner):
            raise TypeError(
                f"debuggable cannot decorate {fn!r}: it is a generator function; {_SUPPORTED}. "
                "For a generator use @eagerctl.eager_scope(), which is active only while the "
                "generator body runs"
            )
        return "coroutine" if inspect.iscoroutinefunction(inner) else "function"
    if isinstance(fn, type):
        hint = ("decorate the method that misbehaves instead (for a Keras layer or model: call, "
                "train_step or a tf.function method)")
    elif isinstance(fn, functools.partial):
        hint = ("decorate the function it wraps and take the partial of that instead: "
                "functools.partial(eagerctl.debuggable(f), ...)")
    elif callable(fn) and not inspect.isroutine(fn):
        hint = (f"decorate the method instead, e.g. {type(fn).__name__}.call or "
                f"{type(fn).__name__}.__call__ in the class body")
    else:
        hint = "pass the function itself"
    raise TypeError(f"debuggable cannot decorate {fn!r}: {_SUPPORTED}; {hint}")


def _label(fn: object) -> str:
    inner = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn
    for attr in ("__qualname__", "__name__"):
        name = getattr(inner, attr, None)
        if isinstance(name, str):
            return name
    return repr(inner)


def _env_enabled() -> bool:
    return _env.switch(ENV_VAR, off_means=_env.DEBUGGABLE_OFF)  # the parser `eagerctl status` shares


# -- debug aids ---------------------------------------------------------------

def _describe_value(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    if dtype is not None and shape is not None:
        name = getattr(dtype, "name", None) or str(dtype)
        try:
            dims = ", ".join("?" if d is None else str(d) for d in tuple(shape))
        except TypeError:  # unknown rank
            return f"{name}[...]"
        return f"{name}[{dims}]"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe_value(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe_value(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 40 else f"{type(value).__name__}"
    return type(value).__name__


def _describe_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [_describe_value(a) for a in args]
    parts += [f"{k}={_describe_value(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _non_finite(value: Any) -> tuple[int, int, int] | None:
    """(NaN count, Inf count, size) when `value` is a float/complex tensor or array with any; else None."""
    import numpy as np

    dtype = getattr(value, "dtype", None)
    if dtype is None or not hasattr(value, "shape"):
        return None
    is_floating = getattr(dtype, "is_floating", None)
    is_complex = getattr(dtype, "is_complex", None)
    if is_floating is not None:  # a TF dtype
        if not (is_floating or is_complex):
            return None
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    else:
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.inexact):
            return None
    if array.dtype.kind not in "fc":  # bfloat16 and other extension types
        array = array.astype(np.complex128 if array.dtype.kind == "c" else np.float64)
    finite = np.isfinite(array)
    if finite.all():
        return None
    nan = int(np.isnan(array).sum())
    return nan, int((~finite).sum()) - nan, int(array.size)


def _walk(tf: Any, value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, leaf) for every leaf of nested tuples, lists, dicts and namedtuples."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(tf, item, f"{path}[{key!r}]")
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        for field, item in zip(value._fields, value, strict=True):
            yield from _walk(tf, item, f"{path}.{field}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(tf, item, f"{path}[{index}]")
    elif tf.is_tensor(value) and not isinstance(value, (tf.Tensor, tf.Variable)):
        # Composite tensors (ragged, sparse): check their component tensors.
        for index, part in enumerate(tf.nest.flatten(value, expand_composites=True)):
            yield f"{path}<component {index}>", part
    else:
        yield path, value


# -- the proxy ----------------------------------------------------------------

class _EagerCall:
    """One eager call of a `@debuggable` body: its local override and its debug aids.

    The one path for plain and coroutine bodies: entering pushes the override
    (with `recursive`) and starts the clock; leaving opens post-mortem on an
    exception, removes the override and logs the call; `checked` runs
    `check_numerics` on the result.
    """

    __slots__ = ("act", "args", "kwargs", "settings", "start")

    def __init__(self, settings: _Settings, frame: FrameType, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.settings = settings
        self.args = args
        self.kwargs = kwargs
        self.act = Activation(settings.scope, frame) if settings.recursive else None  # entered in __enter__
        self.start = time.perf_counter() if settings.log_calls else 0.0

    def __enter__(self) -> _EagerCall:
        act = self.act
        if act is not None:
            try:
                act.enter(3)
            except BaseException:  # an interrupt past the entry: undo it (the with will not)
                finish_exit(act)
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        settings = self.settings
        try:
            if isinstance(exc, Exception) and settings.post_mortem:
                settings._post_mortem(exc)
        finally:
            act = self.act
            if act is not None:
                try:
                    act.exit()
                except BaseException:
                    finish_exit(act)  # an interrupt cut the exit short: complete it
                    raise
            if settings.log_calls:
                outcome = "returned" if exc is None else f"raised {type(exc).__name__}"
                settings._log(self.args, self.kwargs, outcome, time.perf_counter() - self.start)

    def checked(self, result: Any) -> Any:
        if self.settings.check_numerics:
            self.settings._check_numerics(result)
        return result


class _Settings:
    """Options of one decorated function, and its call path (the `wrapt` wrapper)."""

    __slots__ = ("check_numerics", "inner", "island", "kind", "label", "log_calls", "plain",
                 "post_mortem", "recursive", "scope", "target", "tf_type", "warned")

    def __init__(self, target: Any, kind: str, *, recursive: bool, post_mortem: bool,
                 check_numerics: bool, log_calls: bool, island: bool = True) -> None:
        self.target = target
        self.island = island
        self.label = _label(target)
        self.kind = kind
        self.inner: Any = target.__func__ if isinstance(target, (classmethod, staticmethod)) else target
        self.tf_type: Any = type(self.inner) if kind == "tf.function" else None
        self.recursive = recursive
        self.post_mortem = post_mortem
        self.check_numerics = check_numerics
        self.log_calls = log_calls
        self.plain = recursive and not (post_mortem or check_numerics or log_calls)
        self.scope = Scope(True, False, f"@debuggable {self.label}")
        self.warned = False

    def option_values(self) -> dict[str, bool]:
        """The keyword arguments of `debuggable(...)` that made these settings."""
        return {"recursive": self.recursive, "post_mortem": self.post_mortem,
                "check_numerics": self.check_numerics, "log_calls": self.log_calls, "island": self.island}

    def options(self) -> str:
        parts = [f"recursive={self.recursive}"]
        parts += [name for name in ("post_mortem", "check_numerics", "log_calls") if getattr(self, name)]
        if not self.island:
            parts.append("island=False")
        return ", ".join(parts)

    def _body(self, wrapped: Any, instance: Any, args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        tf_type = self.tf_type
        if tf_type is None:
            return wrapped, args  # wrapt has bound it already
        if wrapped is self.inner:  # the tf.function itself (not a method)
            return wrapped.python_function, args
        # A method: the class's Python function with `instance` first, as in `def call(self, x)`.
        # The one TF's `Function.__get__` binds calls the same function with the same instance,
        # but through a wrapper bound to a `TfMethodTarget` that AutoGraph unwraps when it
        # converts the body for an island or an export (`self` became the TfMethodTarget).
        # Also when called through the class (wrapt hands a partial), or bound by TF with
        # `MethodType` (composite-tensor instances).
        return self.inner.python_function, (instance, *args)

    def __call__(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The general call path (the `wrapt` wrapper); `fast_wrapper` is the lean one."""
        if not _hook.installed:
            _hook.require_local()  # raises EagerctlError where TF cannot be hooked
        body, args = self._body(wrapped, instance, args)
        if self.kind == "coroutine":
            return self._call_coroutine(body, args, kwargs)
        if not _hook.eager_state.is_eager:
            return self._call_while_tracing(body, args, kwargs)
        return self.call_eagerly(body, args, kwargs)

    def wrapper(self) -> Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]:
        """The `wrapt` wrapper: `self`, or a lean closure when no debug aid is on.

        The lean one is the same path with every per-call lookup bound in advance:
        a call through the proxy must cost about what the same `tf.function`
        costs under TF's global eager flag.
        """
        if not self.plain or self.kind == "coroutine":
            return self
        scope, tf_type, inner, hook, settings = self.scope, self.tf_type, self.inner, _hook, self
        # A tf.function's Python function is fixed when it is created: looked up once, not per call.
        python_function = inner.python_function if tf_type is not None else None

        def fast_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not hook.installed:
                hook.require_local()
            if tf_type is None:
                body = wrapped
            elif wrapped is inner:
                body = python_function
            else:  # a method (see `_body`)
                body, args = python_function, (instance, *args)
            if not hook.eager_state.is_eager:
                return settings._call_while_tracing(body, args, kwargs)
            act = Activation(scope, _getframe(1))  # checked for tracing above
            try:  # enter and exit inside: an interrupt at any instruction is undone below
                act.enter(2)
                result = body(*args, **kwargs)
                act.exit()
            except BaseException:
                finish_exit(act)
                raise
            return result

        fast_wrapper.settings = self  # type: ignore[attr-defined]
        return fast_wrapper

    def call_eagerly(self, body: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run `body` eagerly with this function's options (the override and the debug aids)."""
        with _EagerCall(self, _getframe(1), args, kwargs) as call:
            result = body(*args, **kwargs)
        return call.checked(result)

    async def _call_coroutine(self, body: Callable[..., Any], args: tuple[Any, ...],
                              kwargs: dict[str, Any]) -> Any:
        # Entered inside the coroutine: it is the awaiting task's context that has to see
        # the override, and only while the body runs.
        with _EagerCall(self, _getframe(1), args, kwargs) as call:
            result = await body(*args, **kwargs)
        return call.checked(result)

    def _call_while_tracing(self, body: Callable[..., Any], args: tuple[Any, ...],
                            kwargs: dict[str, Any]) -> Any:
        """The call happens while a graph is being built (an outer `tf.function` is traced).

        The one place that decides what such a call does. The body cannot run
        eagerly by itself here. `island=True`: the graph gets an eager island
        that runs `call_eagerly(body, args, kwargs)` each time it runs.
        `island=False` (and TF1-style graphs): the body becomes part of the
        graph, converted by AutoGraph exactly as the undecorated function would
        be, and this warns once per decorated function. Keras's shape-inference
        graphs (a layer's `call` run symbolically to learn output shapes) get the
        body silently, as without the decorator.
        """
        from tensorflow.python.framework import ops

        _forget_allowlisted(body)
        graph = ops.get_default_graph()
        if self.island and hasattr(graph, "outer_graph") and not _is_shape_inference(graph):
            from ._export import compile_for_export, note_island, saving

            if saving():  # a SavedModel gets the compiled body: islands belong to this process
                return compile_for_export(self.label, body, args, kwargs, _build_into_graph,
                                          stacklevel=_user_stacklevel() + 1)
            note_island()
            from ._island import call_as_island

            # An eager island: the graph gets one op that runs `call_eagerly` (the
            # override and the debug aids) each time it runs; `body` is traced once
            # to learn the outputs.
            return call_as_island(self._island_run(body), args, kwargs, name=self.label, trace_fn=body,
                                  override=False)
        if self.island and _is_shape_inference(graph):
            from ._island import numpy_stand_ins

            # Keras learns the output shapes of a layer from a symbolic call: let the
            # `.numpy()` calls meant for the island's eager runs pass there too.
            with numpy_stand_ins():
                return _build_into_graph(body, args, kwargs)
        if not self.warned and not _is_shape_inference(graph):
            with _WARNED_LOCK:  # two threads tracing at once still warn once
                first, self.warned = not self.warned, True
            if first:
                warnings.warn(self._tracing_message(graph), EagerctlWarning, stacklevel=_user_stacklevel())
        return _build_into_graph(body, args, kwargs)

    def _island_run(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """What an island of this function runs each time its graph runs: `call_eagerly(body, ...)`.

        Without debug aids, the lean path of `fast_wrapper` (the override around
        the body, nothing else), bound in advance: it runs on every step.
        """
        if not self.plain:
            def run(*call_args: Any, **call_kwargs: Any) -> Any:
                return self.call_eagerly(body, call_args, call_kwargs)

            return run
        scope = self.scope

        def run_plain(*call_args: Any, **call_kwargs: Any) -> Any:
            act = Activation(scope, _getframe(1))
            try:  # enter and exit inside: an interrupt at any instruction is undone below
                act.enter(2)
                result = body(*call_args, **call_kwargs)
                act.exit()
            except BaseException:
                finish_exit(act)
                raise
            return result

        return run_plain

    def _tracing_message(self, graph: Any) -> str:
        name = getattr(graph, "name", None)
        if not hasattr(graph, "outer_graph"):  # not a FuncGraph
            return (
                f"@debuggable {self.label} was called while TensorFlow builds a TF1-style graph "
                "(tf.Graph().as_default() or tf.compat.v1 graph mode): it cannot run eagerly there, so "
                "its body becomes part of that graph (print, pdb and .numpy() do not work there, and "
                "the debug aids are off); call it outside the graph to debug it"
            )
        head = (f"@debuggable {self.label} was called while TensorFlow traces the tf.function {name!r}: "
                "it cannot run eagerly inside that graph, so its body becomes part of the graph "
                "(print, pdb and .numpy() do not work there, and the debug aids are off). ")
        if name == getattr(self.inner, "__name__", None):
            return head + (f"@debuggable sits below @tf.function on {self.label}: put @eagerctl.debuggable "
                           "above @tf.function so that calls run the Python body eagerly")
        return head + (f"To debug it eagerly, run {name!r} eagerly too: decorate it with "
                       "@eagerctl.debuggable (above @tf.function), or call it inside "
                       "`with eagerctl.eager_scope():`")

    def _post_mortem(self, exc: BaseException) -> None:
        """pdb post-mortem on `exc`, where someone can type into it; the caller re-raises `exc`."""
        if not _interactive():
            # pdb would fail reading stdin (pytest's capture raises OSError) or wait on a pipe, and
            # that failure would replace the body's exception.
            warnings.warn(
                f"@debuggable {self.label} (post_mortem=True): {type(exc).__name__} raised in the body, but "
                "there is no interactive terminal (stdin is not a TTY, e.g. under pytest's output capture "
                "or a pipe), so the pdb post-mortem was skipped and the exception propagates unchanged; "
                "run it from a terminal (pytest -s) to debug it",
                EagerctlWarning, stacklevel=_user_stacklevel(),
            )
            return
        sys.stderr.write(
            f"eagerctl: {type(exc).__name__} in @debuggable {self.label}; "
            "entering pdb post-mortem (type 'c' or 'q' to let the exception propagate)\n"
        )
        import pdb  # here, not at import: it costs `import eagerctl` several milliseconds
        import signal

        # pdb's `c` installs pdb's SIGINT handler (Ctrl-C then stops in pdb instead of
        # raising KeyboardInterrupt) and puts the program's back only at its next prompt,
        # which a post-mortem never reaches: put it back here.
        sigint = signal.getsignal(signal.SIGINT)
        try:
            pdb.post_mortem(exc.__traceback__)
        except Exception as failure:  # noqa: BLE001 - the body's exception must propagate, not pdb's
            warnings.warn(f"@debuggable {self.label} (post_mortem=True): pdb failed ({failure!r}); the "
                          f"{type(exc).__name__} from the body propagates unchanged",
                          EagerctlWarning, stacklevel=_user_stacklevel())
        finally:
            if sigint is not None and signal.getsignal(signal.SIGINT) is not sigint and (
                    threading.current_thread() is threading.main_thread()):
                signal.signal(signal.SIGINT, sigint)
                if getattr(pdb.Pdb, "_previous_sigint_handler", None) is sigint:
                    pdb.Pdb._previous_sigint_handler = None  # type: ignore[attr-defined]  # done: not again

    def _log(self, args: tuple[Any, ...], kwargs: dict[str, Any], outcome: str, seconds: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("debuggable %s(%s) ran eagerly, %s after %.3f ms",
                         self.label, _describe_args(args, kwargs), outcome, seconds * 1000)

    def _check_numerics(self, result: Any) -> None:
        import tensorflow as tf

        for path, leaf in _walk(tf, result, "outputs"):
            bad = _non_finite(leaf)
            if bad is not None:
                nan, inf, size = bad
                raise FloatingPointError(
                    f"@debuggable {self.label} (check_numerics=True): {path} holds non-finite values: "
                    f"{nan} NaN and {inf} Inf among {size} value(s) ({_describe_value(leaf)}); "
                    "set post_mortem=True or put a breakpoint in the body to find where they appear"
                )


def _interactive() -> bool:
    """Whether pdb can talk to someone: stdin is a terminal, or this is a Jupyter kernel."""
    stdin = sys.stdin
    try:
        if stdin is not None and stdin.isatty():
            return True
    except (AttributeError, ValueError, OSError):  # no isatty, or closed
        pass
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    # ipykernel routes pdb's input() through the notebook frontend.
    return shell is not None and type(shell).__module__.startswith("ipykernel")


def _is_shape_inference(graph: Any) -> bool:
    # Keras 3 `compute_output_spec` ("scratch_graph", "scratch_graph_1", ...) and Keras 2
    # ("<layer>_scratch_graph", "build_graph") call a layer's `call` symbolically to learn
    # shapes: the undecorated body would run there too, and no tf.function is involved.
    name = str(getattr(graph, "name", ""))
    return _SHAPE_GRAPH.search(name) is not None


_SHAPE_GRAPH = re.compile(r"(^|_)scratch_graph(_\d+)?$|^build_graph$")


def _forget_allowlisted(body: Callable[..., Any]) -> None:
    """Undo AutoGraph's note that the function behind the proxy must never be converted.

    AutoGraph calls the proxy unconverted (it is an artifact) and caches that
    decision under a key the proxy shares with the function it wraps (wrapt
    forwards hashing and equality, and `__func__` for methods). Left there, the
    undecorated function and the body below would never be converted again in
    any graph. The cache only saves work: without the entry AutoGraph decides
    afresh.
    """
    try:
        from tensorflow.python.autograph.impl import conversion

        entries = conversion._ALLOWLIST_CACHE._cache
        entries.pop(body.__func__ if inspect.ismethod(body) else body, None)
    except (ImportError, AttributeError, TypeError):  # another TF layout, or an unhashable body
        pass


def _build_into_graph(body: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from tensorflow.python.autograph.core import ag_ctx, converter
    from tensorflow.python.autograph.impl import api

    # The proxy is an AutoGraph artifact (so AutoGraph calls the wrapper instead of
    # converting the function behind its back); convert the body here, as AutoGraph would
    # have converted the undecorated function in this context.
    ctx = ag_ctx.control_status_ctx()
    if ctx.status == ag_ctx.Status.ENABLED:
        # The caller's options, as AutoGraph passes them on a call (no optional features unless the
        # tf.function asked: `Feature.ALL`, the class default, would rewrite `list.append`).
        caller = getattr(ctx, "options", None)
        options = (caller.call_options() if caller is not None
                   else converter.ConversionOptions(recursive=True, optional_features=None))
        return api.converted_call(body, args, kwargs, options=options)
    return body(*args, **kwargs)


def _user_stacklevel() -> int:
    """`warnings.warn` stacklevel of the nearest frame outside eagerctl, TF, Keras and wrapt."""
    skip = [os.path.dirname(__file__)]
    for name in ("tensorflow", "keras", "tf_keras", "wrapt"):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            skip.append(os.path.dirname(path))
    frame = sys._getframe(2)  # the caller of warnings.warn is level 1
    level = 2
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(tuple(skip)) and "__autograph_generated_file" not in filename:
            return level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return 2


if TYPE_CHECKING:
    _BoundBase = wrapt.BoundFunctionWrapper[..., Any]
    _UnboundBase = wrapt.FunctionWrapper[..., Any]
else:  # older wrapt releases have no generic (subscriptable) wrappers
    _BoundBase = wrapt.BoundFunctionWrapper
    _UnboundBase = wrapt.FunctionWrapper


class _BoundDebuggable(_BoundBase):
    # wrapt looks attributes of a bound wrapper up on the unbound parent first; for a
    # tf.function method that would answer with the unbound Function's API
    # (`get_concrete_function` without `self`, the class's signature). Ask the bound one.
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_self_"):
            return getattr(self._self_parent, name)
        return getattr(self.__wrapped__, name)

    # AutoGraph converts plain functions it meets in a traced body and would bypass the
    # wrapper; it calls artifacts as they are.
    autograph_info__: dict[str, Any] = {}  # noqa: RUF012

    def __tf_tracing_type__(self, context: Any) -> Any:
        # Passed to a tf.function: its own trace type, not the wrapped function's (see _trace_type).
        from ._trace_type import proxy_type

        instance = self._self_instance
        # Older wrapt releases keep no `_self_owner`: the instance's class is the owner there.
        owner = getattr(self, "_self_owner", None) or (type(instance) if instance is not None else None)
        return proxy_type(self._self_parent, instance, owner)

    # Copied or pickled as a bound method is: the method looked up again on (a copy of) the
    # object it is bound to, which gives a proxy bound to it with the same options.
    def __reduce_ex__(self, protocol: Any) -> Any:
        return getattr, (self._self_binder(), self.__name__)

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:
        return getattr(self._self_binder(), self.__name__)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        import copy

        return getattr(copy.deepcopy(self._self_binder(), memo), self.__name__)

    def _self_binder(self) -> Any:
        """The object this method is bound to: the instance, else the class (class and static methods)."""
        instance = self._self_instance
        return instance if instance is not None else self._self_owner


class _Debuggable(_UnboundBase):
    __bound_function_wrapper__ = _BoundDebuggable
    autograph_info__: dict[str, Any] = {}  # noqa: RUF012

    def __tf_tracing_type__(self, context: Any) -> Any:
        # Passed to a tf.function: its own trace type, not the wrapped function's (see _trace_type).
        from ._trace_type import proxy_type

        return proxy_type(self)

    @property
    def _self_debuggable(self) -> _Settings:
        """This function's options and call path (for eagerctl's own tools and tests)."""
        wrapper = self._self_wrapper
        settings = wrapper if isinstance(wrapper, _Settings) else getattr(wrapper, "settings", None)
        assert isinstance(settings, _Settings)
        return settings

    # Copies are proxies of the copied object with the same options (wrapt's proxies refuse
    # to be copied or pickled at all).
    def __copy__(self) -> Any:
        import copy

        target = self.__wrapped__
        if isinstance(target, (classmethod, staticmethod)):  # Python cannot copy these: a new one
            return _wrap(type(target)(target.__func__), self._self_debuggable.option_values())
        return _wrap(copy.copy(target), self._self_debuggable.option_values())

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        import copy

        target = self.__wrapped__
        if isinstance(target, (classmethod, staticmethod)):
            target = type(target)(copy.deepcopy(target.__func__, memo))
        else:
            target = copy.deepcopy(target, memo)
        return _wrap(target, self._self_debuggable.option_values())

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Reachable under its own name (a decorated module-level function or tf.function): by
        # reference, as pickle saves functions; a copy of such a proxy (same wrapped object) by
        # that name and its own options. Otherwise the wrapped object itself, by value.
        options = self._self_debuggable.option_values()
        found = _global_named_as(self)
        if found is self:
            return self.__qualname__
        if isinstance(found, _Debuggable) and found.__wrapped__ is self.__wrapped__:
            return _copy_of_global, (self.__module__, self.__qualname__, options)
        return _wrap, (self.__wrapped__, options)

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)


def _global_named_as(proxy: Any) -> Any:
    """What the proxy's module holds under its qualified name (None if nothing)."""
    module = sys.modules.get(getattr(proxy, "__module__", None) or "")
    qualname = getattr(proxy, "__qualname__", None)
    if module is None or not isinstance(qualname, str) or "<locals>" in qualname:
        return None
    return _resolve(module, qualname)


def _resolve(module: Any, qualname: str) -> Any:
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def _copy_of_global(module: str, qualname: str, options: dict[str, bool]) -> Any:
    """Unpickle a copy of a module-level proxy: what that name wraps, with the copy's options."""
    import importlib

    found = _resolve(importlib.import_module(module), qualname)
    return _wrap(found.__wrapped__ if isinstance(found, _Debuggable) else found, options)


def _wrap(target: Any, options: dict[str, bool]) -> Any:
    """`debuggable(target, **options)` as a copy or an unpickled proxy makes it: always on, no warning."""
    settings = _Settings(target, _classify(target), **options)
    return _Debuggable(target, settings.wrapper())


def traced_message(target: Any) -> str | None:
    """Why decorating `target` now may come too late for graphs traced already, or None.

    What eagerctl can see: a `tf.function` with concrete functions (for a method:
    those of the copies TF binds to instances), or a Python function AutoGraph has
    converted, which it does when a traced `tf.function` calls it.
    """
    inner: Any = target.__func__ if isinstance(target, (classmethod, staticmethod)) else target
    label = _label(target)
    remedy = (f"apply @eagerctl.debuggable where {label} is defined (above @tf.function), before the first "
              "call, or make the callers retrace (a Keras model: compile it again; a tf.function: "
              "tf.function(caller.python_function))")
    if _is_tf_function(inner):
        traces = _tracing_count(inner)
        if not traces:
            return None
        return (f"@debuggable {label} was applied after the tf.function was traced ({traces} "
                f"trace{'s' if traces != 1 else ''}): calls through the decorated object run its body "
                "eagerly, but graphs traced before (of tf.functions that call it) keep its compiled body "
                f"until they retrace; {remedy}")
    if _autograph_converted(inner):
        return (f"@debuggable {label} was applied after a traced tf.function called it: that graph keeps "
                f"its compiled body until it retraces; {remedy}")
    return None


def _tracing_count(fn: Any) -> int:
    count = int(fn.experimental_get_tracing_count())
    cache = getattr(fn, "_descriptor_cache", None)  # the copies TF binds to instances of a class
    if cache is not None:
        try:
            count += sum(int(bound.experimental_get_tracing_count()) for bound in list(cache.values()))
        except (AttributeError, RuntimeError, TypeError):
            pass
    return count


def _autograph_converted(fn: Any) -> bool:
    # AutoGraph's cache is keyed by code object, which the functions a factory or a loop makes all
    # share: only a function defined once (at module or class level) says it was the one converted.
    code = getattr(fn, "__code__", None)
    api = sys.modules.get("tensorflow.python.autograph.impl.api")
    if code is None or api is None or "<locals>" in str(getattr(fn, "__qualname__", "<locals>")):
        return False
    try:
        return code in api._TRANSPILER._cache._cache
    except (AttributeError, TypeError):  # another TF layout
        return False


# -- the decorator ----------------------------------------------------------------

class _Decorator(Protocol):
    @overload
    def __call__(self, fn: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
    @overload
    def __call__(self, fn: staticmethod[P, R], /) -> staticmethod[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R]: ...


def _check_bool(name: str, value: object, allow_none: bool = False) -> None:
    if isinstance(value, bool) or (allow_none and value is None):
        return
    expected = "a bool (True or False) or None" if allow_none else "a bool (True or False)"
    raise TypeError(f"debuggable({name}={value!r}): {name} must be {expected}, not {type(value).__name__}")


@overload
def debuggable(fn: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
@overload
def debuggable(fn: staticmethod[P, R], /) -> staticmethod[P, R]: ...
@overload
def debuggable(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def debuggable(fn: None = None, /, *, recursive: bool = True, enabled: bool | None = None,
               post_mortem: bool = False, check_numerics: bool = False,
               log_calls: bool = False, island: bool = True) -> _Decorator: ...
def debuggable(fn: Any = None, /, *, recursive: bool = True, enabled: bool | None = None,
               post_mortem: bool = False, check_numerics: bool = False, log_calls: bool = False,
               island: bool = True) -> Any:
    """Run one function's Python body eagerly on every call; the rest stays compiled.

    Decorates a `tf.function` (put `@debuggable` above `@tf.function`), a plain
    or coroutine function, or an instance, class or static method (including
    `tf.function` methods of Keras models and layers, and a layer's `call`).
    A call runs the Python body line by line, so print, pdb and `.numpy()` work
    in it; a `tf.function` is not traced (its tracing count stays unchanged).

    Called while an outer `tf.function` is being traced (a Keras layer's `call`
    inside `fit`, a loss in a compiled train step), it becomes an eager island
    in that graph (`island=True`): its body runs eagerly every time the graph
    runs, gradients flow through it, and the rest of the graph stays compiled.

    Args:
        fn: what to decorate; `@debuggable(...)` without it returns the decorator.
        recursive: `True`: every `tf.function` the body calls runs eagerly too;
            `False`: they keep the mode they would have had.
        enabled: `None` follows the environment variable `EAGERCTL_DEBUGGABLE`
            (`0` turns every `@debuggable` off); `False` (or `EAGERCTL_DEBUGGABLE=0`
            with `enabled=None`) returns the undecorated object itself, read once at
            decoration time; `True` ignores the variable.
        post_mortem: pdb post-mortem on an exception in the body, then re-raise.
        check_numerics: `FloatingPointError` naming the output's path
            (e.g. `outputs[1]['logits']`) when an output tensor holds NaN or Inf.
        log_calls: logger `eagerctl`, DEBUG: argument shapes and dtypes, elapsed time.
        island: `True`: an eager island inside a graph being traced; `False`: the
            body becomes part of that graph, and an `EagerctlWarning` (once per
            function) says so.

    Returns:
        A proxy of `fn` that keeps its name, signature and `tf.function` API
            (or `fn` itself when disabled); without `fn`, the decorator.

    Raises:
        TypeError: `fn` is not something it can decorate (the message says what is).
        IslandError: inside an XLA-compiled function (`jit_compile=True`), which
            cannot call back into Python.
        EagerctlError: where TensorFlow cannot be hooked, at the call.

    Example:
        ```python
        @eagerctl.debuggable
        @tf.function
        def loss_fn(y, y_pred):
            print(y_pred.numpy())          # works: this body runs eagerly
            return tf.reduce_mean((y - y_pred) ** 2)
        ```
    """
    _check_bool("recursive", recursive)
    _check_bool("enabled", enabled, allow_none=True)
    _check_bool("post_mortem", post_mortem)
    _check_bool("check_numerics", check_numerics)
    _check_bool("log_calls", log_calls)
    _check_bool("island", island)

    def decorate(target: Any) -> Any:
        kind = _classify(target)
        if not (enabled if enabled is not None else _env_enabled()):
            return target
        late = traced_message(target)
        if late is not None:
            warnings.warn(late, EagerctlWarning, stacklevel=_user_stacklevel())
        settings = _Settings(target, kind, recursive=recursive, post_mortem=post_mortem,
                             check_numerics=check_numerics, log_calls=log_calls, island=island)
        return _Debuggable(target, settings.wrapper())

    if fn is None:
        return decorate
    return decorate(fn)

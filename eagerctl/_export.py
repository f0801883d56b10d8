"""Saving code that contains eager islands: the export gets the compiled body.

An island is an op that calls back into the Python process that built it (TF's
`EagerPyFunc` with a token into that process's registry). Saved as it is, a
SavedModel loads anywhere and fails when it runs in any other process ("Could
not find callback with key=pyfunc_N"). So while TensorFlow saves
(`tf.saved_model.save`, Keras `model.export()` and Keras 2's SavedModel
`model.save`), a `@debuggable` reached by tracing builds its body into the
graph, as the undecorated function would be, and one `EagerctlWarning` per save
says so.

Functions already traced with islands before the save are covered too: TF
retraces every `tf.function` it saves inside its save context, whose options
are part of the tracing cache key (`function_context.make_function_context`),
so the save never reuses a graph traced outside it. A `ConcreteFunction` got
before the save and passed as a signature (`signatures=f.get_concrete_function(
spec)`, Keras `ExportArchive` endpoints without an input signature) is the one
thing TF saves as it is. For those, `note_island` remembers, on every tf.function
graph being traced when an island is built, the Python function TF traces it
from (`func_graph_from_py_func`'s argument, the same in TF 2.13 to 2.21); at save
time `_canonicalize_signatures` (wrapping TF's `canonicalize_signatures`,
installed the first time an island is built) retraces such a signature from
that function and its input signature, inside the save context, so it too
gets the compiled body.
"""

from __future__ import annotations

import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import EagerctlError, EagerctlWarning

_SAVE_CONTEXT = "tensorflow.python.saved_model.save_context"

_lock = threading.Lock()
_warned_for: Any = None  # the SaveOptions of the last save that warned (one warning per save)
# The attribute of a tf.function's graph with an island that holds the Python function TF traced
# it from. On the graph, not in a table here: that function may close over the graph's owner
# (Keras's train function over its model), a cycle the garbage collector frees with the graph,
# where a module-level table would keep them all alive forever.
_SOURCE = "_eagerctl_traced_from"
_original_canonicalize: Callable[..., Any] | None = None


def saving() -> bool:
    """Whether this thread is inside `tf.saved_model.save` (TF's save context)."""
    module = sys.modules.get(_SAVE_CONTEXT)
    return module is not None and bool(module.in_save_context())


def compile_for_export(label: str, body: Callable[..., Any], args: tuple[Any, ...],
                       kwargs: dict[str, Any], build: Callable[..., Any], *, stacklevel: int) -> Any:
    """Build `body` into the graph TF traces for a save, with one warning per save.

    `build(body, args, kwargs)` builds it as the undecorated function would be;
    `stacklevel` points the warning at the user's code.
    """
    global _warned_for
    from tensorflow.python.saved_model import save_context

    options = save_context.get_save_options()
    with _lock:
        first, _warned_for = _warned_for is not options, options
    if first:
        warnings.warn(
            f"@debuggable {label}: the model being saved gets its compiled body, not an eager island "
            "(islands belong to the running process: the saved model runs compiled wherever it is "
            "loaded, without eagerctl); in this process the island is unchanged",
            EagerctlWarning, stacklevel=stacklevel,
        )
    try:
        return build(body, args, kwargs)
    except Exception as exc:
        head = (f"@debuggable {label} could not be compiled into the model being saved "
                f"({type(exc).__name__}: {exc}). An export holds the compiled body (an eager island "
                "cannot run outside this process), traced as TensorFlow traces the undecorated function")
        if needs_values(exc):
            raise EagerctlError(
                f"{head}, and this body needs real values, which a traced graph does not have: guard "
                "eager-only code (.numpy(), float() or bool() of a tensor, print of values, pdb) with "
                "`if tf.executing_eagerly():`") from exc
        raise EagerctlError(
            f"{head}; that trace failed: the traceback above shows where") from exc


_NEEDS_VALUES = re.compile(
    r"symbolic (tf\.)?`?Tensor|SymbolicTensor|'Tensor' object has no attribute '(numpy|item|tolist)'"
    r"|argument must be .*, not 'Tensor'")


def needs_values(exc: BaseException) -> bool:
    """Whether `exc`, raised while tracing, comes from code that needs a tensor's value.

    What TF 2.13 to 2.21 raise for `.numpy()` and `.item()` of a symbolic tensor
    (AttributeError), `float()`/`int()`/`len()` of one (TypeError), `bool()` and
    iteration (OperatorNotAllowedInGraphError), and NumPy conversion (NotImplementedError).
    """
    if type(exc).__name__ == "OperatorNotAllowedInGraphError":
        return True
    return isinstance(exc, (AttributeError, TypeError, NotImplementedError)) and \
        _NEEDS_VALUES.search(str(exc)) is not None


def note_island() -> None:
    """An island is being built: remember how to retrace the graphs being traced around it."""
    from tensorflow.python.framework import func_graph

    code = func_graph.func_graph_from_py_func.__code__
    frame = sys._getframe(1)
    with _lock:
        while frame is not None:
            # Only the graphs of tf.function traces (TF's `_create_concrete_function` in 2.13 to
            # 2.21), which become ConcreteFunctions; not those of cond and while branches.
            caller = frame.f_back
            if frame.f_code is code and caller is not None and \
                    caller.f_code.co_name == "_create_concrete_function":
                local = frame.f_locals
                graph, python_func = local.get("func_graph"), local.get("python_func")
                if graph is not None and python_func is not None:
                    setattr(graph, _SOURCE, python_func)
            frame = frame.f_back  # type: ignore[assignment]
    if _original_canonicalize is None:
        install()


def install() -> None:
    """Wrap TF's `canonicalize_signatures` so that signatures traced with islands are retraced."""
    global _original_canonicalize
    from tensorflow.python.saved_model import signature_serialization

    with _lock:
        if _original_canonicalize is None:
            _original_canonicalize = signature_serialization.canonicalize_signatures
            signature_serialization.canonicalize_signatures = _canonicalize_signatures


def uninstall() -> None:
    """Put TF's `canonicalize_signatures` back (tests; harmless to leave installed)."""
    global _original_canonicalize
    from tensorflow.python.saved_model import signature_serialization

    with _lock:
        if _original_canonicalize is not None:
            signature_serialization.canonicalize_signatures = _original_canonicalize
            _original_canonicalize = None


def _canonicalize_signatures(signatures: Any) -> Any:
    original = _original_canonicalize
    assert original is not None  # installed before it can be called
    if signatures is not None:
        if isinstance(signatures, Mapping):
            signatures = {key: _retraced(value) for key, value in signatures.items()}
        else:
            signatures = _retraced(signatures)
    return original(signatures)


def _retraced(signature: Any) -> Any:
    """`signature` itself, or, for a ConcreteFunction traced with an island, a compiled retrace."""
    python_func = getattr(getattr(signature, "graph", None), _SOURCE, None)
    if python_func is None:
        return signature
    import tensorflow as tf

    args, kwargs = signature.structured_input_signature
    # AutoGraph was applied (or not) when TF made `python_func`; inside the save context every
    # @debuggable it calls builds its compiled body (`compile_for_export`).
    retrace = tf.function(python_func, autograph=False, reduce_retracing=False)
    try:
        return retrace.get_concrete_function(*args, **kwargs)
    except EagerctlError:
        raise
    except Exception as exc:
        raise EagerctlError(
            f"the signature {signature.name!r} passed to tf.saved_model.save was traced with an eager "
            f"island, and eagerctl could not retrace it with the compiled body ({type(exc).__name__}: "
            f"{exc}); an island cannot run outside this process. Pass the tf.function itself as the "
            "signature (with an input_signature), so that TensorFlow traces it while it saves"
        ) from exc

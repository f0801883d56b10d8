"""An eager island for a function that holds a breakpoint, with the debugger where it runs.

`call_as_island` runs the function on one of TensorFlow's executor threads,
which Python never started: no debugger traces them. Each run first gives that
thread the debugger the program has, as an IDE's own "debug this thread"
does: debugpy's `debug_this_thread()`, PyCharm's pydevd `settrace`, or the
trace function of the pdb session that was tracing the thread that built the
graph. The one trace that learns the island's outputs runs with every debugger
silenced (no trace function, `breakpoint()` and `set_trace()` doing nothing):
a stop there would show symbolic tensors, the very thing this replaces.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .._island import _not_converted, call_as_island
from . import _table


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


_MONITORING = "_pydevd_sys_monitoring.pydevd_sys_monitoring"


def _pydevd_monitoring() -> Any:
    """pydevd's `sys.monitoring` tracer (Python 3.12+), when pydevd traces that way; else None."""
    tracing = sys.modules.get("pydevd_tracing")
    if not getattr(tracing, "PYDEVD_USE_SYS_MONITORING", False):
        return None
    module = sys.modules.get(_MONITORING)
    return module if callable(getattr(module, "suspend_current_thread_tracing", None)) else None


def _settrace() -> Callable[[Any], None]:
    # Under pydevd, its own SetTrace: it wraps sys.settrace to warn that a program is
    # taking tracing away from the debugger. (With sys.monitoring it refuses to run:
    # there, sys.settrace is only a bdb debugger's, and pydevd is silenced on its own.)
    tracing = sys.modules.get("pydevd_tracing")
    set_trace = getattr(tracing, "SetTrace", None)
    if getattr(tracing, "PYDEVD_USE_SYS_MONITORING", False) or not callable(set_trace):
        return sys.settrace
    return set_trace  # type: ignore[no-any-return]


def _quiet_set_trace(original: Callable[..., Any]) -> Callable[..., Any]:
    """`Bdb.set_trace` that does nothing in a silenced thread, and is `original` elsewhere.

    A body that imports its debugger itself (`import ipdb; ipdb.set_trace()`) gets a
    module that was not there to be silenced when the trace began: every bdb debugger
    (pdb, ipdb) starts through `Bdb.set_trace`, silenced here instead.
    """

    def set_trace(self: Any, frame: Any = None, *args: Any, **kwargs: Any) -> Any:
        if getattr(_table.local, "quiet", 0):
            return None
        return original(self, sys._getframe(1) if frame is None else frame, *args, **kwargs)

    set_trace.__wrapped__ = original  # type: ignore[attr-defined]
    return set_trace


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No debugger stops in this thread meanwhile (for the trace that learns outputs)."""
    import bdb  # standard library, light: what pdb and ipdb stand on

    trace = sys.gettrace()
    hook = sys.breakpointhook
    patched: list[tuple[Any, Any]] = []
    for name in ("pdb", "ipdb", "pudb"):
        module = sys.modules.get(name)
        if module is not None and callable(getattr(module, "set_trace", None)):
            patched.append((module, module.set_trace))
    settrace = _settrace()
    settrace(None)
    # pydevd on Python 3.12+ traces through sys.monitoring, for every thread at once: this thread's
    # own switch turns it off here (its events return early; nothing is disabled for other threads).
    monitoring = _pydevd_monitoring()
    was_tracing = bool(monitoring.suspend_current_thread_tracing()) if monitoring is not None else False
    sys.breakpointhook = _noop
    for module, _ in patched:
        module.set_trace = _noop
    bdb_set_trace = bdb.Bdb.__dict__["set_trace"]
    bdb.Bdb.set_trace = _quiet_set_trace(bdb_set_trace)  # type: ignore[method-assign]
    _table.local.quiet = getattr(_table.local, "quiet", 0) + 1  # a door's watch on calls ignores this body
    try:
        yield
    finally:
        _table.local.quiet -= 1
        bdb.Bdb.set_trace = bdb_set_trace  # type: ignore[method-assign]
        for module, original in patched:
            module.set_trace = original
        sys.breakpointhook = hook
        if was_tracing:
            monitoring.resume_current_thread_tracing()
        settrace(trace)


def _bdb_tracer() -> Any:
    """The trace function of a bdb debugger (pdb) tracing this thread, or None."""
    trace = sys.gettrace()
    owner = getattr(trace, "__self__", None)
    bdb = sys.modules.get("bdb")
    if bdb is not None and isinstance(owner, bdb.Bdb):
        return trace
    return None


@contextlib.contextmanager
def _debugger_here(bdb_tracer: Any) -> Iterator[None]:
    """Have this thread (a TF executor thread) traced by the program's debugger meanwhile."""
    if sys.gettrace() is not None:
        yield
        return
    dbg = _table.pydevd_debugger()
    if dbg is not None:
        debugpy = sys.modules.get("debugpy")
        if debugpy is not None and hasattr(debugpy, "debug_this_thread"):
            debugpy.debug_this_thread()
        else:
            pydevd = sys.modules.get("pydevd")
            if pydevd is not None:
                pydevd.settrace(suspend=False, trace_only_current_thread=True, patch_multiprocessing=False)
        yield
        return
    if bdb_tracer is None:
        yield
        return
    sys.settrace(bdb_tracer)
    try:
        yield
    finally:
        sys.settrace(None)


def build(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, name: str,
          trace: Callable[..., Any]) -> Any:
    """Put `fn(*args, **kwargs)` into the graph being traced as an eager island.

    `trace` is what the traced body would have been (AutoGraph's conversion of
    `fn`): traced once, silenced, to learn the outputs.
    """
    bdb_tracer = _bdb_tracer()

    @_not_converted
    def run(*call_args: Any, **call_kwargs: Any) -> Any:
        with _debugger_here(bdb_tracer):
            return fn(*call_args, **call_kwargs)

    @_not_converted
    def learn(*call_args: Any, **call_kwargs: Any) -> Any:
        with silenced():
            return trace(*call_args, **call_kwargs)

    return call_as_island(run, args, kwargs, name=name, trace_fn=learn)

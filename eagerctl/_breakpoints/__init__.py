"""Breakpoints stop inside compiled TensorFlow code: the function that holds one becomes an eager island.

A debugger's line breakpoint in a function that a compiled graph runs (a
`tf.function` body, a function it calls, a Keras layer's `call`, a loss, a
`tf.data` map function) never stops, or stops once while TF traces, with
symbolic tensors. Here such a function, while TF traces the graph that calls
it, becomes an eager island (`eagerctl._island`): the graph runs its Python
body eagerly on every call, where the debugger stops with values, and the rest
stays compiled.

The package, bottom up: `_table` reads the debuggers (pydevd, bdb) and code
objects; `_islands` builds an island with the debugger on TF's thread;
`_traces` holds the patches at the doors where traces reach user code, what
each trace saw, and the retracing. Here: the switch, the per-call watch, and
the wiring into the hook.

The per-call watch (`_hook.WATCH`) is on only while a debugger's module is
imported: then every `tf.function` call compares the debuggers' change
counters with the last ones seen (a few attribute reads), and a change
retraces the functions whose graphs no longer match.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from .. import _env, _hook
from .._errors import EagerctlWarning
from . import _table, _traces

ENV = "EAGERCTL_BREAKPOINTS"

__all__ = ["active_islands", "breakpoints"]

_asked: bool | None = None  # what breakpoints() was last told


def _env_enabled() -> bool:
    """EAGERCTL_BREAKPOINTS, read as `EAGERCTL_DEBUGGABLE` is (one parser); a word it does not know warns."""
    raw = os.environ.get(ENV)
    if raw is None:
        return True
    value = _env.parse(raw)
    if value is None:  # read at `import eagerctl`, which must not fail: say so, and stay on
        warnings.warn(f"{ENV}={raw!r} is not understood, so breakpoint islands stay on: "
                      f"{_env.advice('compiled graphs ignore breakpoints')}", EagerctlWarning, stacklevel=2)
        return True
    return value


def breakpoints(enabled: bool | None = None) -> bool:
    """Turn breakpoint islands on or off; returns whether they are on (no argument: only report).

    On by default (the environment variable `EAGERCTL_BREAKPOINTS=0` turns it
    off at start). While on, a function holding a debugger's line breakpoint, or
    calling `breakpoint()` / `set_trace()`, runs as an eager island wherever a
    compiled graph runs it. Turning it off retraces those graphs without
    islands at their next call; turning it on again retraces them with islands.

    Args:
        enabled: True or False to switch; None (the default) only reports.

    Returns:
        Whether breakpoint islands are on, after the switch.

    Example:
        ```python
        eagerctl.breakpoints(False)   # compiled graphs ignore breakpoints again
        ```
    """
    global _asked
    if enabled is None:
        return _traces.STATE.enabled
    if not isinstance(enabled, bool):
        raise TypeError(f"eagerctl.breakpoints(enabled={enabled!r}): enabled must be True or False")
    _asked = enabled
    if enabled != _traces.STATE.enabled:
        _traces.STATE.enabled = enabled
        _update_watch()
        if _hook.installed:
            _traces.refresh()
    if enabled:
        _start()
    return enabled


def active_islands() -> list[str]:
    """The functions made eager islands because of breakpoints, in graphs still alive."""
    return _traces.active_islands()


_bdb_breaks = False  # a bdb debugger (pdb) has set a breakpoint since the hook was installed


def _update_watch() -> None:
    watch = _hook.WATCH
    watch.check = _table.make_check(_traces.STATE, _traces.refresh)
    debugger = _table.pydevd_loaded() or _bdb_breaks or _table.debugger_active()
    watch.on = _traces.STATE.enabled and _traces.installed and debugger
    _traces.retry_traces(watch.on)


def _on_debugger_import(_module: object) -> None:
    _update_watch()


_saved_set_break: Any = None


def _patch_bdb() -> None:
    """Watch from the first `break file:line` of a pdb session started later (a `breakpoint()`)."""
    global _saved_set_break
    bdb = sys.modules.get("bdb")
    if bdb is None or _saved_set_break is not None:
        return
    original = _saved_set_break = bdb.Bdb.__dict__["set_break"]

    def set_break(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _bdb_breaks
        result = original(self, *args, **kwargs)
        if not _bdb_breaks:
            _bdb_breaks = True
            _update_watch()
        return result

    set_break.__wrapped__ = original  # type: ignore[attr-defined]
    bdb.Bdb.set_break = set_break


def _unpatch_bdb() -> None:
    global _saved_set_break
    bdb = sys.modules.get("bdb")
    if bdb is not None and _saved_set_break is not None:
        bdb.Bdb.set_break = _saved_set_break
    _saved_set_break = None


_import_hooks = False


def _install() -> None:
    global _import_hooks
    _traces.install()
    if not _import_hooks:  # a debugger imported later (Jupyter's, when its debugger starts)
        import wrapt

        _import_hooks = True
        wrapt.register_post_import_hook(_on_debugger_import, _table.PYDEVD_CONSTANTS)
        wrapt.register_post_import_hook(lambda _module: _patch_bdb() if _traces.installed else None, "bdb")
    _patch_bdb()
    _update_watch()


def _uninstall() -> None:
    _hook.WATCH.on = False
    _unpatch_bdb()
    _traces.uninstall()


def _start() -> None:
    """Have the hook (and these patches) install when TF is imported, or now if it is."""
    if _hook.installed:
        return
    _hook.install_when_tf_imported()


def _register() -> None:
    """At `import eagerctl`: patches go in and out with the hook; a debugger present starts it."""
    _traces.STATE.enabled = _env_enabled()
    _hook.add_patches(_install, _uninstall)
    if _traces.STATE.enabled and _table.debugger_active():
        _start()


_register()

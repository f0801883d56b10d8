"""What the debuggers hold: line breakpoints by file, read where each debugger keeps them.

- pydevd (debugpy: VS Code, Visual Studio, the Jupyter debugger; PyCharm):
  `GlobalDebuggerHolder.global_dbg` is the debugger, `.breakpoints` maps a
  canonical file name to {line: breakpoint}, and `.mtime` goes up whenever the
  breakpoints change. Read only when pydevd is already imported: importing it
  would start a debugger's machinery in a program that has none.
- bdb (pdb, ipdb, pudb): `bdb.Breakpoint.bplist` maps (file, line) to the
  breakpoints set with `break file:line`; `Breakpoint.next` numbers them.
- A function whose own code calls `breakpoint()` or a `set_trace()` wants to
  stop too, debugger attached or not.

`change_key()` is what the per-call watch compares: a few attribute reads.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
from collections.abc import Callable
from typing import Any

PYDEVD_CONSTANTS = "_pydevd_bundle.pydevd_constants"

_holder: Any = None  # pydevd's GlobalDebuggerHolder, once pydevd is imported
local = threading.local()  # .quiet: > 0 while this thread runs a body with the debuggers silenced
_bdb_breakpoint: Any = None  # bdb.Breakpoint, once bdb is imported


def pydevd_loaded() -> bool:
    """Whether pydevd is imported: a debugpy or PyCharm debugger is set up (maybe not attached yet)."""
    return PYDEVD_CONSTANTS in sys.modules


def debugger_active() -> bool:
    """Whether a debugger runs now: pydevd's, a trace function (pdb), or bdb breakpoints set.

    Not merely bdb imported: TensorFlow itself imports pdb. Not any trace
    function either: coverage and profilers set one too, and a session under
    them that uses no eagerctl feature must run TensorFlow untouched.
    """
    if pydevd_debugger() is not None or _bdb_tracing():
        return True
    cls = _bdb_class()
    return cls is not None and bool(cls.bplist)


def _bdb_tracing() -> bool:
    """Whether this thread's trace function is a bdb debugger's (pdb, ipdb, pudb)."""
    trace = sys.gettrace()
    if trace is None:
        return False
    bdb = sys.modules.get("bdb")
    return bdb is not None and isinstance(getattr(trace, "__self__", None), bdb.Bdb)


def pydevd_debugger() -> Any:
    """pydevd's debugger object, or None (never imports pydevd)."""
    global _holder
    holder = _holder
    if holder is None:
        constants = sys.modules.get(PYDEVD_CONSTANTS)
        if constants is None:
            return None
        holder = _holder = getattr(constants, "GlobalDebuggerHolder", None)
        if holder is None:
            return None
    return getattr(holder, "global_dbg", None)


def _bdb_class() -> Any:
    global _bdb_breakpoint
    cls = _bdb_breakpoint
    if cls is None:
        bdb = sys.modules.get("bdb")
        if bdb is None:
            return None
        cls = _bdb_breakpoint = bdb.Breakpoint
    return cls


Key = tuple[Any, int, int, int]


def change_key() -> Key:
    """Changes whenever any debugger's line breakpoints may have changed.

    (pydevd's debugger, its `mtime`, bdb's next breakpoint number, how many bdb
    breakpoint locations there are.)
    """
    dbg = pydevd_debugger()
    cls = _bdb_breakpoint or _bdb_class()
    return (dbg, getattr(dbg, "mtime", 0) if dbg is not None else 0,
            cls.next if cls is not None else 0, len(cls.bplist) if cls is not None else 0)


def make_check(state: Any, refresh: Callable[[Key], None]) -> Callable[[object], None]:
    """The per-call check: `refresh(change_key())` when `state.key` is no longer the key.

    The same comparison as `change_key() != state.key`, with every lookup bound
    in advance: it runs at every `tf.function` call while a debugger is loaded.
    """
    pydevd_debugger()  # resolve what is loaded now; the watch makes a new check when that changes
    holder, cls = _holder, _bdb_class()

    def check(_function: object) -> None:
        key = state.key
        dbg = holder.global_dbg if holder is not None else None
        if key is None or dbg is not key[0] or (dbg is not None and dbg.mtime != key[1]) or (
                cls is not None and (cls.next != key[2] or len(cls.bplist) != key[3])):
            refresh(change_key())

    return check


_norm_cache: dict[str, str] = {}


def norm(path: str) -> str:
    """One spelling per file: the debuggers' tables and code objects write paths differently."""
    found = _norm_cache.get(path)
    if found is None:
        found = _norm_cache[path] = os.path.normcase(os.path.realpath(path))
    return found


def line_breakpoints() -> dict[str, frozenset[int]]:
    """Every line breakpoint of every attached debugger: normalised file -> lines."""
    table: dict[str, set[int]] = {}
    dbg = pydevd_debugger()
    if dbg is not None:
        for filename, by_line in list(getattr(dbg, "breakpoints", {}).items()):
            lines = [line for line in list(by_line) if isinstance(line, int)]
            if lines:
                table.setdefault(norm(filename), set()).update(lines)
    cls = _bdb_class()
    if cls is not None:
        for (filename, line), entries in list(cls.bplist.items()):
            if any(getattr(bp, "enabled", True) for bp in entries):
                table.setdefault(norm(filename), set()).add(line)
    return {filename: frozenset(lines) for filename, lines in table.items()}


# -- code objects ----------------------------------------------------------------------

_LIBRARY_DIRS: tuple[str, ...] | None = None


def _library_dirs() -> tuple[str, ...]:
    global _LIBRARY_DIRS
    if _LIBRARY_DIRS is None:
        dirs = {norm(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep}  # eagerctl
        paths = sysconfig.get_paths()
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            if paths.get(key):
                dirs.add(norm(paths[key]) + os.sep)
        for path in sys.path:
            if path.endswith(("site-packages", "dist-packages")):
                dirs.add(norm(path) + os.sep)
        _LIBRARY_DIRS = tuple(sorted(dirs))
    return _LIBRARY_DIRS


_user_cache: dict[str, bool] = {}


def is_user_code(code: Any) -> bool:
    """Code of the user's own files: not a library's, not AutoGraph's generated files."""
    filename = code.co_filename
    found = _user_cache.get(filename)
    if found is None:
        found = _user_cache[filename] = bool(
            filename and not filename.startswith("<") and "__autograph_generated_file" not in filename
            and not norm(filename).startswith(_library_dirs()))
    return found


_lines_cache: dict[Any, frozenset[int]] = {}


def code_lines(code: Any) -> frozenset[int]:
    """The lines that belong to `code` itself (a nested function's lines belong to its own code)."""
    lines = _lines_cache.get(code)
    if lines is None:
        lines = frozenset(line for _, _, line in code.co_lines() if line is not None)
        if len(_lines_cache) > 100_000:
            _lines_cache.clear()
        _lines_cache[code] = lines
    return lines


_DEBUGGER_CALLS = frozenset({"breakpoint", "set_trace"})


def calls_debugger(code: Any) -> bool:
    """Whether `code` itself calls `breakpoint()` or a `set_trace()` (pdb, ipdb, pudb)."""
    names = _DEBUGGER_CALLS.intersection(code.co_names)
    if not names:
        return False
    if names == {"breakpoint"} and os.environ.get("PYTHONBREAKPOINT") == "0":
        return False  # breakpoint() does nothing in this program
    return is_user_code(code)


def code_of(f: Any, function_class: Any = None) -> Any:
    """The code object of a function, method or `tf.function` (None for other callables)."""
    if function_class is not None and isinstance(f, function_class):
        f = f.python_function
    for _ in range(8):
        f = getattr(f, "__func__", f)
        code = getattr(f, "__code__", None)
        if code is not None:
            return code
        wrapped = getattr(f, "__wrapped__", None)
        if wrapped is None:
            return None
        f = wrapped
    return None


def describe(code: Any) -> str:
    """`qualname (file:line)` of a function's code, as status() lists it."""
    qualname = getattr(code, "co_qualname", code.co_name)
    return f"{qualname} ({code.co_filename}:{code.co_firstlineno})"

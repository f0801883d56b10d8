"""The hook into TensorFlow: what eagerctl changes in TF, and nothing else.

Above the data layer (`_local`, `_registry`), below everything else: it reads
the local stack and the registry and knows nothing of scopes. Higher modules
that patch TF too (`_distribute`, `_compiled`) register their patches with
`add_patches()`, and the hook installs and removes them with itself.

TF's `polymorphic_function.Function.__call__` asks the property
`Function._run_functions_eagerly` at every call whether to run the Python body
instead of the graph. TF's own property returns the process flag
`eager_function_run.RUN_FUNCTIONS_EAGERLY`. The hook replaces that property
with one that reads this context's local override first (`_local.STACK`), then
the same flag. `RestoredFunction` (SavedModel) defines its own property and is
left alone. It also routes TF's `run_functions_eagerly` (`tf.config`'s, and
the same function wherever TF's modules bound it) through the registry, so
that while eagerctl's process scopes are active every write to the flag goes
through one place.

Inert unless asked. Nothing here imports TensorFlow at import time, and
`import eagerctl` patches nothing: the hook installs at eagerctl's first use
(a scope entered, a `@debuggable` call, an island, `compare`, `bisect`,
`eagerctl run`), or when asked to, now (`install()`, public as
`eagerctl.install_hook()`) or as soon as TF is imported
(`install_when_tf_imported()`). A pytest session or a program that uses none
of it runs TF's own objects. Once installed, the hook stays (installing and
removing it on every scope would cost each scope a type-cache flush), and
it is inert again whenever no eagerctl override is in force: the property
returns TF's flag, the writer sets it, and the patches above this module ask
`in_force()` before doing anything of their own, so TF's own code runs as
in TF, its errors included.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import _local
from ._errors import EagerctlError
from ._registry import REGISTRY

FLAG_MODULE = "tensorflow.python.eager.polymorphic_function.eager_function_run"
FUNCTION_MODULE = "tensorflow.python.eager.polymorphic_function.polymorphic_function"
ATTR = "_run_functions_eagerly"
INSTALL_COMMAND = "pip install tensorflow  (or tensorflow-cpu on a machine without a GPU)"

# Resolved on first use; `None` until then.
flag_module: Any = None  # TF's eager_function_run module
executing_eagerly: Callable[[], bool] | None = None
# TF's per-thread eager state: `.is_eager` is False while a graph is traced. One
# attribute read, where `executing_eagerly()` costs three calls.
eager_state: Any = None
# TF's per-thread stack of default graphs: empty unless a graph is being built
# (a tf.function traced, `with tf.Graph().as_default()`). Reading it (~30 ns)
# spares the `eager_state` read (~200 ns) on the common path.
graph_stack: Any = None


def _no_loop() -> None:
    return None


# asyncio's `_get_running_loop` (a C call) once TF, which imports asyncio, is loaded.
running_loop: Callable[[], object] = _no_loop
tf_version: str | None = None
function_class: type | None = None
original: Any = None  # TF's own property object, kept to restore it exactly
local_error: EagerctlError | None = None  # why local overrides cannot work here
installed = False

_install_lock = threading.Lock()
# (install, uninstall) pairs registered by the modules above this one.
_patches: list[tuple[Callable[[], None], Callable[[], None]]] = []
# (module, name) -> TF's own `run_functions_eagerly`, where the writer replaced it.
_writers: dict[tuple[ModuleType, str], Any] = {}
_writer: Any = None  # the one replacement, kept across uninstall and install
_writer_sites: list[ModuleType] | None = None  # the modules that bound TF's writer


class Watch:
    """A per-call check for a module above this one (`_breakpoints`): off, it costs one attribute read.

    While `on`, the property calls `check(function)` before deciding, at every
    `tf.function` call (the breakpoints module sees its debugger's changes there).
    """

    __slots__ = ("check", "on")

    def __init__(self) -> None:
        self.on = False
        self.check: Callable[[object], None] = _no_check


def _no_check(_function: object) -> None:
    return None


WATCH = Watch()


def add_patches(install: Callable[[], None], uninstall: Callable[[], None]) -> None:
    """Have `install` and `uninstall` run with the hook's own (from a module above this one)."""
    _patches.append((install, uninstall))
    if installed:
        install()


def _make_property(flag_mod: ModuleType) -> property:
    get = _local.STACK.get
    override = _local.override

    # Default arguments make the reads local-variable loads: this runs on
    # every tf.function call in the process.
    def _run_functions_eagerly(self: object, _get: Any = get, _flag: Any = flag_mod,
                               _override: Any = override, _watch: Watch = WATCH) -> bool:
        if _watch.on:
            _watch.check(self)
        top = _get()
        if top is None:
            return _flag.RUN_FUNCTIONS_EAGERLY  # type: ignore[no-any-return]  # a bool: TF stores bool(x)
        value = top.value
        if value is None:  # a scope that has exited, seen from a copied context: look below it
            value = _override()
            if value is None:
                return _flag.RUN_FUNCTIONS_EAGERLY  # type: ignore[no-any-return]
        return value  # type: ignore[no-any-return]  # a bool: scope values are checked

    return property(_run_functions_eagerly, doc="Patched by eagerctl: local override, then the process flag.")


def _make_writer(tf_writer: Callable[[bool], None]) -> Callable[[bool], None]:
    get = _local.STACK.get

    @functools.wraps(tf_writer)
    def run_functions_eagerly(run_eagerly: bool) -> None:
        top = get()
        if top is not None and top.__class__ is _local.Frame and top.value is False:
            # TF's own code saving and restoring the flag around functions it
            # compiles (see `_compiled`), which already forces them compiled.
            return
        REGISTRY.write(bool(run_eagerly))

    run_functions_eagerly.__eagerctl_original__ = tf_writer  # type: ignore[attr-defined]
    return run_functions_eagerly


def _install_writer(flag_mod: ModuleType) -> None:
    tf_writer = flag_mod.__dict__.get("run_functions_eagerly")
    if tf_writer is None or hasattr(tf_writer, "__eagerctl_original__"):
        return
    global _writer
    if _writer is None or _writer.__eagerctl_original__ is not tf_writer:
        _writer = _make_writer(tf_writer)
    writer = _writer
    global _writer_sites
    if _writer_sites is None:
        # Every module of TF's that bound the function (tf.config, tf.compat.v1.config,
        # def_function, ...), found once: read from module dicts, which never triggers
        # TF's lazy loaders. (Installing again allocates nothing, so that it leaves no
        # garbage collection behind for the code that runs next.)
        _writer_sites = [
            module for name, module in list(sys.modules.items())
            if module is not None and name.startswith(("tensorflow", "keras", "tf_keras"))
            and isinstance(getattr(module, "__dict__", None), dict)
            and module.__dict__.get("run_functions_eagerly") is tf_writer
        ]
    for module in _writer_sites:
        if module.__dict__.get("run_functions_eagerly") is tf_writer:
            _writers[(module, "run_functions_eagerly")] = tf_writer
            setattr(module, "run_functions_eagerly", writer)  # noqa: B010 - a name bound in TF's module


def _install_writer_again() -> None:
    if installed and flag_module is not None:
        _install_writer(flag_module)


def _uninstall_writer() -> None:
    for (module, attr), tf_writer in list(_writers.items()):
        setattr(module, attr, tf_writer)
    _writers.clear()


def _import_tf() -> None:
    """Import TF and resolve the objects the hook and the registry use."""
    global flag_module, executing_eagerly, tf_version, function_class, local_error, eager_state, running_loop
    global graph_stack
    if flag_module is not None:
        return
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise EagerctlError(
            f"eagerctl needs TensorFlow, which cannot be imported here ({exc}); "
            f"install it with: {INSTALL_COMMAND}"
        ) from exc
    from tensorflow.python.eager import context

    version = str(getattr(tf, "__version__", "unknown"))
    try:
        flag_mod = sys.modules.get(FLAG_MODULE) or __import__(FLAG_MODULE, fromlist=["_"])
    except ImportError as exc:
        raise EagerctlError(
            f"TensorFlow {version} has no {FLAG_MODULE}; eagerctl supports TensorFlow 2.13 to 2.21"
        ) from exc
    cls: type | None = None
    problem = None
    try:
        fmod = sys.modules.get(FUNCTION_MODULE) or __import__(FUNCTION_MODULE, fromlist=["_"])
        cls = getattr(fmod, "Function", None)
    except ImportError:
        fmod = None
    if cls is None or not isinstance(cls.__dict__.get(ATTR), property):
        problem = EagerctlError(
            f"TensorFlow {version} has no property Function.{ATTR} to hook, so local scopes and "
            f"@debuggable cannot work with it; use eager_scope(process=True), which drives TF's "
            f"global flag, or install TensorFlow 2.13 to 2.21"
        )
    tf_version = version
    function_class = cls
    local_error = problem
    REGISTRY.flags = flag_mod
    executing_eagerly = context.executing_eagerly
    eager_state = context.context()._thread_local_data
    from tensorflow.python.framework import ops

    graph_stack = ops._default_graph_stack
    import asyncio

    running_loop = asyncio.events._get_running_loop
    flag_module = flag_mod


def load() -> Any:
    """Import TF if needed and resolve what the hook and the registry use; return the flag module.

    Installs nothing (`status()`, `is_eager()` and the pytest plugin's guard
    read through it): the hook installs at first use, and stays out after
    `uninstall()` until the next.
    """
    if flag_module is None:
        _import_tf()
    return flag_module


def loaded() -> bool:
    """Whether TF is imported; if so, resolve what the hook and the registry use. Installs nothing.

    The hook installs at first use, not when TF is imported: a report such as
    `status()` finds TF this way.
    """
    if flag_module is None:
        tf = sys.modules.get("tensorflow")
        if tf is None or FLAG_MODULE not in sys.modules or not hasattr(tf, "__version__"):
            return False  # not imported, or its import is still running
        _import_tf()
    return True


def tracing() -> bool:
    """Whether TF is tracing a graph (a `tf.function` body) in this thread, now.

    Not TF1 graph mode, nor `with tf.Graph().as_default():`: nothing is traced there.
    """
    stack = graph_stack.stack
    return bool(stack) and not eager_state.is_eager and bool(stack[-1]._building_function)


def install(strict: bool = True) -> None:
    """Install the hook (idempotent). With `strict`, raise if TF cannot be hooked."""
    global original, installed
    _import_tf()
    if local_error is not None:
        if strict:
            raise local_error
        return
    assert function_class is not None and flag_module is not None
    with _install_lock:
        if installed:
            return
        current = function_class.__dict__[ATTR]
        if not getattr(current.fget, "__eagerctl__", False):  # still installed, only marked out
            original = current
            prop = _make_property(flag_module)
            prop.fget.__eagerctl__ = True  # type: ignore[union-attr]
            setattr(function_class, ATTR, prop)
        _install_writer(flag_module)
        installed = True
    for install_patch, _ in list(_patches):
        install_patch()


def require_local() -> None:
    """Raise unless local overrides work here (TF importable and hookable)."""
    if not installed:
        install(strict=True)


def uninstall() -> None:
    """Put TF's own objects back, the exact originals (refused while local scopes are active)."""
    global installed
    with _install_lock:
        if not installed:
            return
        # Marked out first, then counted: a scope entered meanwhile either is
        # counted here, or sees `installed` False after its entry and installs
        # again (it waits for this lock). Either way no scope runs unhooked.
        installed = False
        busy = len(_local.live())
        if busy:
            installed = True
            raise EagerctlError(
                f"cannot uninstall eagerctl's hook while {busy} local scope(s) are active: "
                "they would silently stop working; exit them first, or call eagerctl.reset() "
                "(see eagerctl.status())"
            )
        assert function_class is not None
        setattr(function_class, ATTR, original)
        _uninstall_writer()
    for _, uninstall_patch in reversed(_patches):
        uninstall_patch()


def in_force() -> bool:
    """Whether an eagerctl override decides here: a local one in this context, or any process scope.

    The patches of TF's own code (`_compiled`, `_distribute`) act only then;
    otherwise TF runs as TF, its own `run_functions_eagerly(True)` included.
    """
    return _local.override() is not None or REGISTRY.active_count() > 0


def read_flag() -> bool:
    return bool(load().RUN_FUNCTIONS_EAGERLY)


def write_flag(value: bool) -> None:
    """A write to the flag from outside the scopes: the registry's one write path."""
    load()
    REGISTRY.write(bool(value))


def _on_tf_import(_module: object) -> None:
    # Runs inside the user's `import tensorflow`: never let it fail that import.
    try:
        install(strict=False)
    except Exception:  # noqa: BLE001 - reported again at first use
        pass


def install_when_tf_imported() -> None:
    """Install the hook as soon as TensorFlow is imported (at once if it already is).

    Nothing calls this on `import eagerctl`: the hook is inert unless asked.
    It is for a feature that must act before any scope is used (a debugger
    attached to the program, say); `install()` installs now.
    """
    import wrapt

    wrapt.register_post_import_hook(_on_tf_import, "tensorflow")

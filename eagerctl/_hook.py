"""The hook into TensorFlow: the one module that touches TF's internals.

TF's `polymorphic_function.Function.__call__` asks the property
`Function._run_functions_eagerly` at every call whether to run the Python body
instead of the graph. TF's own property returns the process flag
`eager_function_run.RUN_FUNCTIONS_EAGERLY`. The hook replaces only that
property with one that reads this context's local override first
(`_local.STACK`), then the same flag. `RestoredFunction` (SavedModel) defines
its own property and is left alone. The one other patch, installed and removed
with the hook, lives in `_distribute`: `tf.distribute`'s replica threads
inherit the local overrides of the thread that starts them.

Nothing here imports TensorFlow at import time: the hook installs itself from a
`wrapt` post-import hook when the user imports TF, or at eagerctl's first use.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import _local
from ._errors import EagerctlError

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


def _make_property(flag_mod: ModuleType) -> property:
    get = _local.STACK.get

    # Default arguments make both reads local-variable loads: this runs on
    # every tf.function call in the process.
    def _run_functions_eagerly(self: object, _get: Any = get, _flag: Any = flag_mod) -> bool:
        top = _get()
        if top is None:
            return _flag.RUN_FUNCTIONS_EAGERLY  # type: ignore[no-any-return]  # a bool: TF stores bool(x)
        return top.value  # type: ignore[no-any-return]  # a bool: scope values are checked

    return property(_run_functions_eagerly, doc="Patched by eagerctl: local override, then the process flag.")


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
    executing_eagerly = context.executing_eagerly
    eager_state = context.context()._thread_local_data
    from tensorflow.python.framework import ops

    graph_stack = ops._default_graph_stack
    import asyncio

    running_loop = asyncio.events._get_running_loop
    flag_module = flag_mod


def load() -> Any:
    """Import TF if needed and install the hook where possible; return the flag module."""
    if not installed:
        install(strict=False)
    assert flag_module is not None
    return flag_module


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
        original = function_class.__dict__[ATTR]
        setattr(function_class, ATTR, _make_property(flag_module))
        installed = True
    # Local overrides must also reach tf.distribute's replica threads (see _distribute).
    from . import _distribute

    _distribute.install()


def require_local() -> None:
    """Raise unless local overrides work here (TF importable and hookable)."""
    if not installed:
        install(strict=True)


def uninstall() -> None:
    """Put TF's own property back, the exact original object."""
    global installed
    from . import _scope

    with _install_lock:
        if not installed:
            return
        busy = _scope.active_local_count()
        if busy:
            raise EagerctlError(
                f"cannot uninstall eagerctl's hook while {busy} local scope(s) are active: "
                "they would silently stop working; exit them first (see eagerctl.status())"
            )
        assert function_class is not None
        setattr(function_class, ATTR, original)
        installed = False
    from . import _distribute

    _distribute.uninstall()


def read_flag() -> bool:
    return bool(load().RUN_FUNCTIONS_EAGERLY)


def write_flag(value: bool) -> None:
    setattr(load(), "RUN_FUNCTIONS_EAGERLY", value)  # noqa: B010 - a module global of TF's


def _on_tf_import(_module: object) -> None:
    # Runs inside the user's `import tensorflow`: never let it fail that import.
    try:
        install(strict=False)
    except Exception:  # noqa: BLE001 - reported again at first use
        pass


def register_import_hook() -> None:
    import wrapt

    wrapt.register_post_import_hook(_on_tf_import, "tensorflow")

"""eagerctl and `tf.distribute`: replica threads, and what TF cannot do eagerly.

Small patches of TensorFlow's distribution code, all reversible:

1. **Replica threads see the caller's local overrides.** `MirroredStrategy.run(fn)`
   (and `MultiWorkerMirroredStrategy.run`, which shares its code, and Keras
   `fit` under either) calls `fn` in one new thread per replica:
   `mirrored_run._MirroredReplicaThread`, created by the thread that called
   `run`, which waits in `run` until they finish. A new thread starts with an
   empty `contextvars` context, so without this patch a local `eager_scope()`
   around `strategy.run` reaches only a `tf.function` passed to `run` itself:
   every `tf.function` that `fn` calls in a replica thread ignores the scope and
   runs its graph. TF already hands other thread-local state of the caller to
   its replica threads (summary state, op callbacks, name and variable
   scopes); the patch does the same for eagerctl's local stack, and only for
   it. The frames are immutable and the creating thread is blocked in `run`
   until the replica threads finish, so the frames they see stay active while
   they run; a scope a replica thread enters itself is its own, pushed on top.

2. **A collective all-gather names its cause.** A collective all-gather
   (`ReplicaContext.all_gather`, and `Strategy.gather` wherever TF implements
   it with collectives: `MultiWorkerMirroredStrategy`, and `MirroredStrategy`
   over more than one device) exists only in graphs: TF's launcher raises
   `RuntimeError: all_gather is not supported in eager mode.` when run
   eagerly. In eager code TF runs it through an internal `tf.function`
   (`CollectiveAllReduce._batch_all_gather`), which `_compiled` keeps compiled
   under eagerctl's eager scopes; the user's functions around it stay eager.
   Should the launcher still be reached eagerly there (a gather inside a
   function that runs eagerly, another TF version or path), `EagerctlError`
   says why instead of TF's bare error: the scope and where it was entered,
   and the fix.

Both act only under eagerctl (`_hook.in_force()`). Under TF's own
`tf.config.run_functions_eagerly(True)` with no eagerctl scope in force, a
collective gather fails exactly as in TF, with TF's `RuntimeError`: eagerctl
changes nothing it was not asked to. (A replica thread of a caller with no
local override starts with an empty stack, as it would without the patch.)

Nothing here imports TensorFlow. `install()` patches the two TF modules if
they are imported (`import tensorflow` imports them both) and `uninstall()`
restores TF's originals; the hook runs them when it is installed and
uninstalled.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import _hook, _local
from ._errors import EagerctlError
from ._registry import REGISTRY

MIRRORED_RUN = "tensorflow.python.distribute.mirrored_run"
CROSS_DEVICE_UTILS = "tensorflow.python.distribute.cross_device_utils"
ATTR = "_eagerctl_overrides"

_lock = threading.Lock()
# (class, attribute name) -> TF's original object, to restore it exactly.
_originals: dict[tuple[type, str], Any] = {}


def _patch_replica_thread(cls: type) -> dict[str, Callable[..., Any]]:
    init, run = cls.__dict__["__init__"], cls.__dict__["run"]

    # Runs in the thread that calls strategy.run: capture its overrides.
    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        stack = _local.STACK.get()
        if stack is not None:
            setattr(self, ATTR, stack)

    # Runs in the new replica thread, whose context is its own.
    @functools.wraps(run)
    def run_with_overrides(self: Any) -> None:
        stack = getattr(self, ATTR, None)
        if stack is not None:
            _local.STACK.set(stack)
        run(self)

    return {"__init__": __init__, "run": run_with_overrides}


def eager_cause() -> str | None:
    """What makes `tf.function`s run eagerly in this context, if eagerctl or the flag does."""
    top = _local.innermost()
    if top is not None:
        return _name(top) if top.value else None
    if not _hook.read_flag():
        return None
    _, process = REGISTRY.snapshot()
    if process and process[-1].value:
        return _name(process[-1])
    return "tf.config.run_functions_eagerly(True)"


def _name(entry: Any) -> str:
    scope = getattr(entry, "scope", None)
    return f"{scope!r} ({entry.describe()})" if scope is not None else str(entry.describe())


def _patch_all_gather(cls: type) -> dict[str, Callable[..., Any]]:
    all_gather = cls.__dict__["all_gather"]
    from tensorflow.python.eager import context

    @functools.wraps(all_gather)
    def checked_all_gather(self: Any, *args: Any, **kwargs: Any) -> Any:
        if context.executing_eagerly() and _hook.in_force():  # else TF's own error, unchanged
            cause = eager_cause()
            if cause is not None:
                raise EagerctlError(
                    "TensorFlow cannot run a collective all_gather eagerly (ReplicaContext.all_gather, or "
                    "Strategy.gather under MultiWorkerMirroredStrategy or a MirroredStrategy over more than "
                    "one device), and this call runs eagerly "
                    f"because of {cause}. Keep the code that gathers compiled: run it under "
                    "eagerctl.graph_scope(), or move the gather out of the code you run eagerly"
                )
        return all_gather(self, *args, **kwargs)

    return {"all_gather": checked_all_gather}


# module -> (class name, patch maker)
_PATCHES: dict[str, tuple[str, Callable[[type], dict[str, Callable[..., Any]]]]] = {
    MIRRORED_RUN: ("_MirroredReplicaThread", _patch_replica_thread),
    CROSS_DEVICE_UTILS: ("CollectiveReplicaLauncher", _patch_all_gather),
}


def _install_module(name: str, module: ModuleType | None) -> bool:
    class_name, make = _PATCHES[name]
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        return False  # a TF without this class: nothing to patch
    with _lock:
        if any(key[0] is cls for key in _originals):
            return True
    wrappers = make(cls)  # outside the lock: it imports
    with _lock:
        if any(key[0] is cls for key in _originals):
            return True  # another thread patched it meanwhile
        for attr, wrapper in wrappers.items():
            _originals[(cls, attr)] = cls.__dict__[attr]
            setattr(cls, attr, wrapper)
    return True


def install() -> None:
    """Apply the patches to the TF modules already imported (idempotent; imports nothing)."""
    for name in _PATCHES:
        module = sys.modules.get(name)
        if module is not None:
            _install_module(name, module)


def uninstall() -> None:
    """Put TF's own methods back, the exact original objects."""
    with _lock:
        for (cls, attr), original in _originals.items():
            setattr(cls, attr, original)
        _originals.clear()


def installed() -> bool:
    return bool(_originals)


_hook.add_patches(install, uninstall)

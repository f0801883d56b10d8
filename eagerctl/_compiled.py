"""TensorFlow's own code that needs its internal `tf.function`s compiled.

Some TF functions build a `tf.function` and require it to trace: they turn
TF's flag off around the call (`run_functions_eagerly(False)`, then back).
A local `eager_scope()` sits above the flag, and while eagerctl's process
scopes are active the hook routes those writes to the registry as the
baseline, so neither would keep that function compiled. Each function listed
here runs instead with a compiled `Frame` on top of this context's stack: the
same thing TF's flip means, for this call only. TF's own writes inside it are
its save and restore, and the hook ignores them there.

Found by reading TF 2.13 to 2.21 for every write of the flag:

- `parallel_for.control_flow_ops.pfor` (`tf.vectorized_map`,
  `GradientTape.jacobian` and `batch_jacobian`, `parallel_for.gradients`),
  when it wraps its loop in a `tf.function` (eagerly, or under XLA);
- `cond._eager_cond_implementation`, for a predicate with no constant value
  (a parallel device's): TF compiles the branches' `tf.function`s;
- `cross_device_ops.CollectiveAllReduce._batch_all_gather`: a collective
  all-gather exists only in graphs (see `_distribute`).

TF's TPU system initialization and shutdown flip the flag too; without a TPU
they cannot run here, so they are not patched. Keras (2 and 3) reads the flag
but never writes it.

Only under eagerctl: with no eagerctl override in force (`_hook.in_force()`:
no local scope in this context, no process scope anywhere) each wrapper calls
TF's function as it is, and TF's own flip of its own flag does what it does
in TF (inside a `tf.vectorized_map` body under `run_functions_eagerly(True)`,
`functions_run_eagerly()` reads False, and a write there takes effect).

Nothing here imports TensorFlow; the patches install and uninstall with the hook.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import _hook, _local
from ._hook import in_force

PFOR = "tensorflow.python.ops.parallel_for.control_flow_ops"
COND = "tensorflow.python.ops.cond"
CROSS_DEVICE_OPS = "tensorflow.python.distribute.cross_device_ops"

_lock = threading.Lock()
# (owner, attribute name) -> TF's original object, to restore it exactly.
_originals: dict[tuple[Any, str], Any] = {}

_get = _local.STACK.get
_set = _local.STACK.set


def run_compiled(reason: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn` with `tf.function`s forced compiled in this context, as TF's flip means."""
    frame = _local.Frame(False, _get(), reason)
    try:
        _set(frame)
        return fn(*args, **kwargs)
    finally:
        frame.value = None  # first: dead in every context, whatever happens next
        if _get() is frame:
            _set(frame.below)


def _wrap_pfor(pfor: Callable[..., Any], module: Any) -> Callable[..., Any]:
    from tensorflow.python.eager import context

    under_xla = getattr(module, "_is_under_xla_context", lambda: False)
    reason = "TensorFlow's pfor (tf.vectorized_map, jacobian), which compiles its loop"

    @functools.wraps(pfor)
    def compiled_pfor(*args: Any, **kwargs: Any) -> Any:
        # Eagerly or under XLA is where TF wraps it in a tf.function.
        if (context.executing_eagerly() or under_xla()) and in_force():
            return run_compiled(reason, pfor, *args, **kwargs)
        return pfor(*args, **kwargs)

    return compiled_pfor


def _wrap_cond(eager_cond: Callable[..., Any], module: Any) -> Callable[..., Any]:
    from tensorflow.python.framework import ops, tensor_util

    reason = "TensorFlow's tf.cond on a parallel device, which compiles its branches"

    @functools.wraps(eager_cond)
    def compiled_cond(pred: Any, *args: Any, **kwargs: Any) -> Any:
        if not in_force() or isinstance(pred, bool) or (
                tensor_util.constant_value(ops.convert_to_tensor(pred)) is not None):
            return eager_cond(pred, *args, **kwargs)  # TF calls one branch, as it is
        return run_compiled(reason, eager_cond, pred, *args, **kwargs)

    return compiled_cond


def _wrap_batch_all_gather(batch_all_gather: Callable[..., Any], module: Any) -> Callable[..., Any]:
    from tensorflow.python.eager import context

    reason = "TensorFlow's collective all-gather, which exists only in graphs"

    @functools.wraps(batch_all_gather)
    def compiled_batch_all_gather(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not context.executing_eagerly() or not in_force():
            return batch_all_gather(self, *args, **kwargs)
        return run_compiled(reason, batch_all_gather, self, *args, **kwargs)

    return compiled_batch_all_gather


# module -> (class name or None for a module function, attribute, wrapper maker)
_PATCHES: dict[str, tuple[str | None, str, Callable[[Any, Any], Callable[..., Any]]]] = {
    PFOR: (None, "pfor", _wrap_pfor),
    COND: (None, "_eager_cond_implementation", _wrap_cond),
    CROSS_DEVICE_OPS: ("CollectiveAllReduce", "_batch_all_gather", _wrap_batch_all_gather),
}


def install() -> None:
    """Patch the listed functions of the TF modules already imported (idempotent)."""
    for name, (class_name, attr, wrap) in _PATCHES.items():
        module = sys.modules.get(name)
        owner: Any = module if class_name is None else getattr(module, class_name, None)
        if owner is None:
            continue
        original = vars(owner).get(attr)
        if original is None:
            continue  # a TF without it: nothing to patch
        with _lock:
            if (owner, attr) in _originals:
                continue
        wrapper = wrap(original, module)  # outside the lock: it imports
        with _lock:
            if (owner, attr) in _originals:
                continue
            _originals[(owner, attr)] = original
            setattr(owner, attr, wrapper)


def uninstall() -> None:
    """Put TF's own functions back, the exact original objects."""
    with _lock:
        for (owner, attr), original in _originals.items():
            setattr(owner, attr, original)
        _originals.clear()


def installed() -> bool:
    return bool(_originals)


_hook.add_patches(install, uninstall)

"""The Python callbacks an island's ops call (TF's `EagerPyFunc` kernel), kept alive by their graph.

An island op's `token` attribute names a callback in TF's registry of
`EagerPyFunc` callbacks; `register` makes one that knows its island, its
gradient order and its number of targets. Stands on `errors` (and `.._shutdown`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _shutdown
from .errors import IslandError

NO_CALL = 0
"""The call id of a run that kept no tapes. A callback returns its call id as a Python int,
last; `IslandFunc` makes it the op's int64 output: from a fresh 0-d NumPy array (TF's
conversion of a NumPy scalar costs about 40 us, a tensor made from an array about 5 us). Never
from a Python int other than 0: TF caches a tensor per Python scalar converted, forever."""


def _is_async() -> bool:
    from tensorflow.python.eager import context

    return bool(context.is_async())


def register(island: Any, call: Callable[..., Any], tout: list[Any], *, order: int = 0,
             targets: int = 0) -> bytes:
    """Register `call` as an `EagerPyFunc` callback of `island`, kept alive by the graph; its token."""
    from tensorflow.python.ops import script_ops

    func = _eager_func_class()(call, tout, order > 0)
    func.island = island
    func.order = order
    func.targets = targets
    token = script_ops._py_funcs.insert(func)
    _keep_with_graph(func)
    return token.encode() if isinstance(token, str) else bytes(token)


_EAGER_FUNC: type | None = None
_CPU = "/job:localhost/replica:0/task:0/device:CPU:0"  # what TF's kernel means by no device (None)


def _eager_func_class() -> type:
    global _EAGER_FUNC
    if _EAGER_FUNC is None:
        import numpy as np
        from tensorflow.python.eager import context
        from tensorflow.python.framework import dtypes, ops
        from tensorflow.python.ops import script_ops

        array, int64_np = np.array, np.int64
        eager_mode, ensure_initialized = context.eager_mode, context.ensure_initialized
        current = context.context
        eager_tensor = ops.EagerTensor
        int64 = dtypes.int64.as_datatype_enum

        # The callback returns its outputs, checked against the trace (see `outputs.py`),
        # then its call id as a Python int. On the CPU (TF passes no device) outputs that
        # are eager tensors of the op's dtypes there already are passed on as they are
        # (TF's `_convert` costs about 7 us per output); anything else goes TF's way.
        class IslandFunc(script_ops.EagerFunc):  # type: ignore[misc]
            """TF's EagerFunc without its own tape (islands keep theirs), its outputs converted once."""

            def __init__(self, func: Any, tout: list[Any], is_grad_func: bool) -> None:
                super().__init__(func, tout, is_grad_func)
                self.enums = [dtype.as_datatype_enum for dtype in tout]

            def __call__(self, device: Any, token: Any, args: Any) -> Any:
                with _shutdown.running(self.island.name):  # refused once the interpreter exits
                    return self._call(device, args)

            def _call(self, device: Any, args: Any) -> Any:
                with eager_mode():
                    ret = self._func(*args)
                    call = ret[-1]
                    if device is not None:  # another device: TF's conversion, the id as an array
                        ret[-1] = array(call, int64_np)
                        return _converted(self, ret, device)
                    ensure_initialized()  # as TF's conversion does (a tensor needs the context)
                    # Made where TF's conversion makes it (the thread's device, '' for the host's
                    # CPU): `_CPU` names the host only in a local job, not a multi-worker one.
                    ret[-1] = eager_tensor(call if call == 0 else array(call, int64_np),
                                           current().device_name, int64)
                    for x, enum in zip(ret, self.enums, strict=True):
                        if (x.__class__ is not eager_tensor or x._datatype_enum() != enum
                                or x.backing_device != _CPU):
                            return _converted(self, ret, device)
                return ret

        _EAGER_FUNC = IslandFunc
    return _EAGER_FUNC


def _converted(func: Any, ret: list[Any], device: Any) -> list[Any]:
    """TF's conversion of each output (dtype, placement), as `EagerFunc._call` does it."""
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import script_ops

    name = _CPU if device is None else device
    with ops.device(device):
        return [script_ops._maybe_copy_to_context_device(func._convert(x, dtype=dtype), name)
                for x, dtype in zip(ret, func._out_dtypes, strict=True)]


def _keep_with_graph(func: Any) -> None:
    """Keep `func` alive as long as the outermost function graph being built.

    TF's registry of `EagerPyFunc` callbacks holds them weakly. `tf.py_function`
    keeps its callback in the outermost graph, TF's process-wide default graph
    when tracing starts eagerly, so they are never freed. An island's callback
    holds the island and its tapes: keep it in the outermost `FuncGraph`
    instead, which lives as long as the function that runs it.
    """
    from tensorflow.python.framework import func_graph, ops

    graph = ops.get_default_graph()
    while isinstance(graph, func_graph.FuncGraph) and isinstance(graph.outer_graph, func_graph.FuncGraph):
        graph = graph.outer_graph
    if not hasattr(graph, "_py_funcs_used_in_graph"):
        graph._py_funcs_used_in_graph = []
    graph._py_funcs_used_in_graph.append(func)


def _callback_of(op: Any) -> Any:
    """The callback (with its island) an island op calls; IslandError if its function is gone."""
    from tensorflow.python.ops import script_ops

    token = op.get_attr("token")
    func = script_ops._py_funcs.get(token.decode() if isinstance(token, bytes) else token)
    if func is None or not hasattr(func, "island"):
        raise IslandError(
            f"the eager island op {op.name!r} belongs to a function that no longer exists in this "
            "process (islands are not saved with a model): differentiate the function that calls "
            "the island while it is alive"
        )
    return func

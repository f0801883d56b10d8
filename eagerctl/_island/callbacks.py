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

_NO_CALL: Any = None  # set on first use: a NumPy int64 zero (a run that kept nothing)


def no_call() -> Any:
    """The call id of a run that kept no tapes: a NumPy int64 zero."""
    global _NO_CALL
    if _NO_CALL is None:
        import numpy as np

        _NO_CALL = np.zeros((), np.int64)
    return _NO_CALL


def _is_async() -> bool:
    from tensorflow.python.eager import context

    no_call()
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


def _eager_func_class() -> type:
    global _EAGER_FUNC
    if _EAGER_FUNC is None:
        from tensorflow.python.ops import script_ops

        class IslandFunc(script_ops.EagerFunc):  # type: ignore[misc]
            """TF's EagerFunc without its own tape (islands keep theirs)."""

            def __call__(self, device: Any, token: Any, args: Any) -> Any:
                with _shutdown.running(self.island.name):  # refused once the interpreter exits
                    return self._call(device, args)

        _EAGER_FUNC = IslandFunc
    return _EAGER_FUNC


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

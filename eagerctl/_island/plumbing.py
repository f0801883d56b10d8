"""Small facts about TensorFlow values and graphs that every part of an island asks.

Stands on nothing in the package; never imports TensorFlow at import time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _not_converted(fn: F) -> F:
    # What tf.autograph.experimental.do_not_convert marks, without importing
    # TF: AutoGraph calls such functions as they are. Island plumbing called
    # from a converted tf.function body must not be rewritten by AutoGraph.
    fn.autograph_info__ = frozenset()  # type: ignore[attr-defined]
    return fn


def _graph_name(graph: Any) -> str:
    # The FuncGraph of a tf.function is named after its Python function.
    return str(getattr(graph, "name", graph))


def _op_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip("_.-")
    return f"eager_island_{cleaned or 'fn'}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _is_graph_tensor(value: Any) -> bool:
    import tensorflow as tf
    from tensorflow.python.framework import ops

    return isinstance(value, tf.Tensor) and not isinstance(value, ops.EagerTensor)


def _is_variable(value: Any) -> bool:
    import tensorflow as tf

    return isinstance(value, tf.Variable) or hasattr(value, "_should_act_as_resource_variable")


def _differentiable(dtype: Any) -> bool:
    return bool(dtype.is_floating or dtype.is_complex)


def _as_output(value: Any) -> Any:
    import tensorflow as tf

    if value is None or isinstance(value, tf.Tensor):
        return value
    if _is_variable(value):
        return tf.convert_to_tensor(value)
    return value


def _unique(variables: Sequence[Any]) -> list[Any]:
    seen: set[int] = set()
    kept = []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            kept.append(v)
    return kept


_EAGER_TENSOR: Any = None


def _eager_tensor() -> Any:
    """TF's `EagerTensor` class (imported at first use)."""
    global _EAGER_TENSOR
    if _EAGER_TENSOR is None:
        from tensorflow.python.framework import ops

        _EAGER_TENSOR = ops.EagerTensor
    return _EAGER_TENSOR

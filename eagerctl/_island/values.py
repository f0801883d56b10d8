"""Trace-time stand-ins: `.numpy()` on a graph tensor while an island's body is traced once.

The scratch trace that learns an island's outputs (see `build.py`) must not fail
on the `.numpy()` calls that are the point of an eager island. Stands on
`plumbing` only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from .plumbing import _not_converted

_STAND_IN_TEXT = "<value unknown: eagerctl is tracing an eager island once to learn its outputs>"


class _TraceValues:
    """`.numpy()` for symbolic tensors, only while this thread traces an island.

    The scratch trace must not fail on the `.numpy()` calls that are the point
    of an eager island. While it runs, `.numpy()` on a graph tensor returns
    zeros of its static shape (unknown dimensions as 1) that print as a note
    saying the value is unknown. Other threads see no such attribute.
    """

    lock = threading.Lock()
    users = 0
    threads: ClassVar[dict[int, int]] = {}
    made: ClassVar[dict[int, int]] = {}  # stand-ins handed out, per thread (tells a body read values)
    patched: type | None = None
    array_class: type | None = None


def _numpy_property(graph_tensor_class: type) -> property:
    def numpy(self: Any) -> Callable[[], Any]:
        if threading.get_ident() not in _TraceValues.threads:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'numpy'")

        @_not_converted
        def value() -> Any:
            return _placeholder_value(self)

        return value

    return property(numpy)


@_not_converted
def _placeholder_value(tensor: Any) -> Any:
    import numpy as np

    ident = threading.get_ident()
    _TraceValues.made[ident] = _TraceValues.made.get(ident, 0) + 1

    if _TraceValues.array_class is None:

        class TraceTimeValue(np.ndarray):
            """Zeros standing in for a value that only exists when the island runs."""

            def __repr__(self) -> str:
                return _STAND_IN_TEXT

            __str__ = __repr__

        _TraceValues.array_class = TraceTimeValue
    shape = [] if tensor.shape.rank is None else [1 if d is None else d for d in tensor.shape]
    return np.zeros(shape, dtype=tensor.dtype.as_numpy_dtype).view(_TraceValues.array_class)


@contextlib.contextmanager
def numpy_stand_ins() -> Any:
    """While active, `.numpy()` on a graph tensor in this thread returns a stand-in (see `_TraceValues`)."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    # The graph tensor class: SymbolicTensor in recent TF; in TF 2.13 it is
    # tf.Tensor itself (EagerTensor's own numpy() comes first in its MRO).
    graph_class: type = ops.SymbolicTensor
    if not issubclass(graph_class, tf.Tensor):
        graph_class = tf.Tensor
    ident = threading.get_ident()
    with _TraceValues.lock:
        if _TraceValues.users == 0 and "numpy" not in graph_class.__dict__:
            setattr(graph_class, "numpy", _numpy_property(graph_class))  # noqa: B010
            _TraceValues.patched = graph_class
        _TraceValues.users += 1
        _TraceValues.threads[ident] = _TraceValues.threads.get(ident, 0) + 1
    try:
        yield
    finally:
        with _TraceValues.lock:
            left = _TraceValues.threads[ident] - 1
            if left:
                _TraceValues.threads[ident] = left
            else:
                del _TraceValues.threads[ident]
                _TraceValues.made.pop(ident, None)
            _TraceValues.users -= 1
            if _TraceValues.users == 0 and _TraceValues.patched is not None:
                delattr(_TraceValues.patched, "numpy")
                _TraceValues.patched = None


_EAGER_FUNC: type | None = None

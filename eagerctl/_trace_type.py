"""The `@debuggable` proxy's own type for TensorFlow's tracing cache.

A `tf.function` keys its traces on the types of its arguments
(`trace_type.from_value`). A `wrapt` proxy forwards `__wrapped__`, equality
and hashing to the function it wraps, so TF would give the proxy the type of
that function: `train_step(model, opt, loss_fn, x, y)` called with the
`@debuggable` loss after the plain one (or the other way round) would reuse the
graph traced for the other, with or without the island. The proxy implements
TF's tracing protocol (`__tf_tracing_type__`) with `DebuggableType`: equal only
to the type of the same proxy (for a method: the same decorated method bound to
the same object), never to the wrapped function's. The type holds weak
references, as TF's own `Weakref` type does, so a traced graph never keeps a
model alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

_TYPE_CLASS: type | None = None


def _ref(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:  # no weak references (e.g. `__slots__` without `__weakref__`)
        return lambda: obj


def proxy_type(parent: Any, instance: Any = None, owner: Any = None) -> Any:
    """The trace type of the `@debuggable` proxy `parent`, bound to `instance` (of `owner`) if given."""
    cls = _TYPE_CLASS or _type_class()
    return cls(parent, instance, owner)


def _type_class() -> type:
    global _TYPE_CLASS
    from tensorflow.python.types import trace

    class DebuggableType(trace.TraceType):  # type: ignore[misc]
        """One `@debuggable` proxy (bound to one object, for a method) as a tf.function argument."""

        def __init__(self, parent: Any, instance: Any, owner: Any) -> None:
            self._parent = _ref(parent)
            self._bound = instance is not None or owner is not None
            self._instance = _ref(instance) if instance is not None else None
            self._owner = _ref(owner) if owner is not None else None
            self._hash = hash(("eagerctl.debuggable", id(parent), id(instance), id(owner)))

        def _objects(self) -> tuple[Any, Any, Any] | None:
            parent = self._parent()
            instance = self._instance() if self._instance is not None else None
            owner = self._owner() if self._owner is not None else None
            if parent is None or (self._instance is not None and instance is None):
                return None  # collected: equal to nothing, as TF's Weakref type
            return parent, instance, owner

        def is_subtype_of(self, other: Any) -> bool:
            return bool(self == other)

        def most_specific_common_supertype(self, types: Any) -> Any:
            return self if all(self == other for other in types) else None

        def placeholder_value(self, placeholder_context: Any = None) -> Any:
            objects = self._objects()
            if objects is None:
                raise ValueError(f"{self!r}: the @debuggable function or its object was garbage collected")
            parent, instance, owner = objects
            if not self._bound:
                return parent
            return parent.__get__(instance, owner)  # a fresh binding, like the one passed in

        def cast(self, value: Any, cast_context: Any = None) -> Any:
            return value  # the proxy itself: equal types already matched it

        _cast = cast  # TF 2.13 name

        def __eq__(self, other: object) -> bool:
            if not isinstance(other, DebuggableType):
                return NotImplemented if not isinstance(other, trace.TraceType) else False
            mine, theirs = self._objects(), other._objects()
            if mine is None or theirs is None or self._bound != other._bound:
                return False
            return all(a is b for a, b in zip(mine, theirs, strict=True))

        def __hash__(self) -> int:
            return self._hash

        def __repr__(self) -> str:
            parent = self._parent()
            name = getattr(parent, "__qualname__", None) or getattr(parent, "__name__", "?")
            return f"DebuggableType[{name}{', bound' if self._bound else ''}]"

    _TYPE_CLASS = DebuggableType
    return DebuggableType

"""`eagerctl run --bisect MODULE:QUALNAME`: the first call of a function is bisected, then runs as usual."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .api import bisect


def bisect_first_call(target: Any, label: str) -> Any:
    """`target` wrapped so that its first call is bisected (report on stderr), then runs as usual.

    For `eagerctl run --bisect MODULE:QUALNAME`. The call itself then runs
    unchanged (bisect restores every state it touched, and what its runs
    print goes into the report on stderr, not onto the program's stdout),
    and later calls go straight through. A first call made while TensorFlow
    traces a graph cannot be bisected (bisect runs the function): a warning
    says so.
    """
    from .._debuggable import _build_into_graph

    if _FIRST_CALL is not None and isinstance(target, _FIRST_CALL):
        return target  # wrapped already (the program bound the same object twice)
    done = [False]

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import tensorflow as tf

        if not tf.executing_eagerly():
            if not done[0]:
                done[0] = True
                graph = getattr(tf.compat.v1.get_default_graph(), "name", "a graph")
                print(f"eagerctl run: warning: --bisect {label}: its first call came while TensorFlow traced "
                      f"{graph!r}, where it cannot be run and bisected; name the function that is called "
                      "eagerly (the tf.function, train step or model the program calls)", file=sys.stderr)
            return _build_into_graph(wrapped, args, kwargs)
        if not done[0]:
            done[0] = True
            try:
                report = bisect(wrapped, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the program goes on whatever bisect finds
                print(f"eagerctl run: --bisect {label}: could not bisect its first call: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)
            else:
                print(f"eagerctl run: --bisect {label}: its first call, bisected:\n{report}", file=sys.stderr)
        return wrapped(*args, **kwargs)

    return _FirstCall(target, wrapper)


def _first_call_classes() -> tuple[type, type]:
    import wrapt

    class _BoundFirstCall(wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]
        autograph_info__: dict[str, Any] = {}  # noqa: RUF012 - AutoGraph calls it as it is

    class FirstCall(wrapt.FunctionWrapper):  # type: ignore[type-arg]
        __bound_function_wrapper__ = _BoundFirstCall
        autograph_info__: dict[str, Any] = {}  # noqa: RUF012

    return FirstCall, _BoundFirstCall


def _FirstCall(target: Any, wrapper: Callable[..., Any]) -> Any:
    global _FIRST_CALL
    if _FIRST_CALL is None:
        _FIRST_CALL = _first_call_classes()[0]
    return _FIRST_CALL(target, wrapper)


_FIRST_CALL: type | None = None

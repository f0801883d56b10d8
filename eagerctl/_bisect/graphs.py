"""Reading traced graphs: constants that differ between two traces, and ops only one of them has.

A Python value frozen at trace time shows as a constant that a fresh trace
builds with another value; a branch taken differently shows as ops only the
fresh trace has. Graphs are matched by op name, nested function graphs
included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _strip_suffix(name: str) -> str:
    head, _, tail = name.rpartition("_")
    return head if tail.isdigit() and head else name


def graphs(graph: Any, key: str = "", seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    """`graph` and the graphs of the functions nested in it, keyed by a path of function names."""
    seen = set() if seen is None else seen
    if id(graph) in seen:
        return
    seen.add(id(graph))
    yield key, graph
    for fname, function in sorted(getattr(graph, "_functions", {}).items()):
        inner = getattr(function, "graph", None)
        if inner is not None:
            yield from graphs(inner, f"{key}/{_strip_suffix(fname)}", seen)


def const_diffs(tf: Any, np: Any, old: Any, new: Any) -> list[tuple[Any, Any, Any]]:
    """(op in the fresh graph, old value, new value) for constants that differ between two traces."""
    old_consts: dict[tuple[str, str], Any] = {}
    for key, graph in graphs(old):
        for op in graph.get_operations():
            if op.type == "Const":
                old_consts[(key, op.name)] = op
    diffs = []
    for key, graph in graphs(new):
        for op in graph.get_operations():
            other = old_consts.get((key, op.name))
            if op.type != "Const" or other is None:
                continue
            try:
                a = tf.make_ndarray(other.get_attr("value"))
                b = tf.make_ndarray(op.get_attr("value"))
            except Exception:  # noqa: BLE001 - an unreadable constant is not evidence
                continue
            if a.shape != b.shape or not np.array_equal(a, b):
                diffs.append((op, a, b))
    return diffs


def new_ops(old: Any, new: Any) -> list[Any]:
    """Ops of a fresh trace that the graph traced earlier does not have (by graph and name), in order."""
    old_names = {(key, op.name) for key, graph in graphs(old) for op in graph.get_operations()}
    return [op for key, graph in graphs(new) for op in graph.get_operations()
            if (key, op.name) not in old_names and op.type not in ("NoOp", "Identity", "Placeholder")]


def short(value: Any) -> str:
    text = repr(value.item() if getattr(value, "size", 2) == 1 else value)
    return text if len(text) <= 60 else text[:57] + "..."

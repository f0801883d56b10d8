"""The Keras loss lists an island's body may add to (`add_loss` in its layers), and what it can reach.

Stands on nothing in the package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any


class _LossLists:
    """The Keras loss lists the body may add to: `add_loss` in its layers.

    Keras 3 keeps a layer's call losses in `layer._losses`; Keras 2 in
    `layer._eager_losses` (per thread) when called in a tf.function, and in
    `layer._losses` otherwise. The layers are those reachable from the body:
    its `self`, its arguments, its closure and the globals it names.
    """

    def __init__(self, objects: Sequence[Any]) -> None:
        layers: dict[int, Any] = {}
        for obj in objects:
            if hasattr(obj, "_flatten_layers") and hasattr(obj, "_losses"):
                try:
                    found = obj._flatten_layers()
                except Exception:  # noqa: BLE001 (a half-built layer: nothing to collect from)
                    continue
                for layer in found:
                    layers.setdefault(id(layer), layer)
        self.slots: list[tuple[Any, str]] = []
        for layer in layers.values():
            attrs = ("_eager_losses", "_losses") if hasattr(type(layer), "_eager_losses") else ("_losses",)
            self.slots.extend((layer, attr) for attr in attrs)

    def snapshot(self) -> list[tuple[Any, list[Any]]]:
        """Each list and a copy of its entries (call before the body)."""
        taken = []
        for layer, attr in self.slots:
            current = getattr(layer, attr, None)
            taken.append((current, list(current) if isinstance(current, list) else []))
        return taken

    def added(self, before: list[tuple[Any, list[Any]]], restore: bool) -> list[list[Any]]:
        """Per slot, the entries the body added; with `restore`, put the lists back as they were."""
        added = []
        for (layer, attr), (old, entries) in zip(self.slots, before, strict=True):
            current = getattr(layer, attr, None)
            ids = {id(t) for t in entries} if current is old else set()
            added.append([t for t in (current or ()) if id(t) not in ids])
            if restore and isinstance(old, list):
                if current is not old:
                    setattr(layer, attr, old)  # Keras 2 replaced the (per-thread) list
                old[:] = entries
        return added

    def label(self, slot: int) -> str:
        layer, _ = self.slots[slot]
        return f"layer {getattr(layer, 'name', type(layer).__name__)!r}"


def _reachable(fn: Callable[..., Any], leaves: Sequence[Any]) -> list[Any]:
    """Objects the body can reach without a lookup we cannot follow: self, arguments, closure, globals."""
    found: list[Any] = list(leaves)
    owner = getattr(fn, "__self__", None)
    if owner is not None:
        found.append(owner)
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    for cell in getattr(func, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            found.append(cell.cell_contents)
    if code is not None:
        namespace = getattr(func, "__globals__", {})
        found.extend(namespace[n] for n in code.co_names if n in namespace)
    return found


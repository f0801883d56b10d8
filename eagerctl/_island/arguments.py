"""An island call's arguments: the graph tensors fed to its op, and everything else closed over.

Stands on `plumbing` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .plumbing import _is_graph_tensor, _is_variable


class _Arguments:
    """`(args, kwargs)` split into the op's inputs (graph tensors, composites of them) and the rest."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import tensorflow as tf
        from tensorflow.python.framework import composite_tensor

        self.structure = (args, kwargs)
        leaves = tf.nest.flatten(self.structure)
        self.leaves = leaves
        self.slots: list[tuple[int, Any]] = []  # (leaf index, composite or None)
        inputs: list[Any] = []
        for i, leaf in enumerate(leaves):
            if _is_graph_tensor(leaf):
                self.slots.append((i, None))
                inputs.append(leaf)
            elif isinstance(leaf, composite_tensor.CompositeTensor) and not _is_variable(leaf):
                parts = tf.nest.flatten(leaf, expand_composites=True)
                if any(_is_graph_tensor(p) for p in parts):
                    self.slots.append((i, leaf))
                    inputs.extend(tf.convert_to_tensor(p) for p in parts)
        self.inputs = inputs
        # Every argument a leaf, and kwargs in the sorted order nest flattens them in.
        self.flat_call = (not any(tf.nest.is_nested(a) for a in (*args, *kwargs.values()))
                          and list(kwargs) == sorted(kwargs)
                          and all(composite is None for _, composite in self.slots))
        # Every argument positional and a graph tensor (a loss's `(y, y_pred)`): the op's inputs are the args.
        self.direct = (self.flat_call and not kwargs and len(self.slots) == len(args)
                       and [i for i, _ in self.slots] == list(range(len(args))))

    def rebuild(self, tensors: Sequence[Any]) -> tuple[Any, Any]:
        """The call's (args, kwargs) with the op inputs replaced by `tensors`."""
        if self.direct:
            return tuple(tensors), {}
        import tensorflow as tf

        if self.flat_call:
            # Every argument is a leaf: no nest round trip (it costs more than
            # a small island body) on each run.
            leaves = list(self.leaves)
            for (i, _), tensor in zip(self.slots, tensors, strict=False):
                leaves[i] = tensor
            args, kwargs = self.structure
            return tuple(leaves[: len(args)]), dict(zip(kwargs, leaves[len(args):], strict=True))
        leaves = list(self.leaves)
        pos = 0
        for i, composite in self.slots:
            if composite is None:
                leaves[i] = tensors[pos]
                pos += 1
            else:
                n = len(tf.nest.flatten(composite, expand_composites=True))
                parts = list(tensors[pos:pos + n])
                leaves[i] = tf.nest.pack_sequence_as(composite, parts, expand_composites=True)
                pos += n
        return tf.nest.pack_sequence_as(self.structure, leaves)  # type: ignore[no-any-return]

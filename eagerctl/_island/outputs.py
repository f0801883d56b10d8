"""What an island op outputs: learned from the scratch trace, packed at trace time, checked each run.

`_Outputs` holds, per tensor output (`_Output`), where it comes from, its dtype
and static shape; the losses the body added with `add_loss` are outputs too,
put where the traced body would have put them. Stands on `errors`, `losses` and
`plumbing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import IslandError
from .losses import _LossLists
from .plumbing import _eager_tensor, _short


class _Output:
    """One tensor output of the island op: where it comes from, dtype, static shape."""

    __slots__ = ("dims", "dtype", "index", "is_value", "path", "shape")

    def __init__(self, index: int, dtype: Any, shape: Any, path: str, is_value: bool) -> None:
        self.index = index  # leaf index in the flattened output structure
        self.dtype = dtype
        self.shape = shape
        self.dims: tuple[int | None, ...] | None = shape._dims  # None: unknown rank
        self.path = path
        self.is_value = is_value  # a NumPy or Python number in the trace: its value each run


def _paths(out: Any, count: int) -> list[str]:
    """How messages name each flattened output: `outputs['loss']`, or `output 0` when nest cannot say."""
    from tensorflow.python.util import nest

    try:
        paths = ["outputs" + "".join(f"[{p!r}]" for p in path)
                 for path, _ in nest.flatten_with_tuple_paths(out, expand_composites=True)]
    except Exception:  # noqa: BLE001 (structures nest cannot name: use positions)
        paths = []
    if len(paths) != count:
        paths = [f"output {i}" for i in range(count)]
    return paths


def _fits(shape: tuple[int, ...], dims: tuple[int | None, ...] | None) -> bool:
    """Whether an eager tensor's shape is compatible with a traced static shape (`dims`)."""
    if dims is None or shape == dims:
        return True
    if len(shape) != len(dims):
        return False
    return all(d is None or d == n for n, d in zip(shape, dims, strict=True))


def _spec(name: str, i: int, leaf: Any, path: str, read_values: bool) -> _Output | None:
    """The tensor output a leaf of the traced outputs makes (None for a leaf that is not one)."""
    import numpy as np
    import tensorflow as tf

    if isinstance(leaf, tf.Tensor):
        return _Output(i, leaf.dtype, leaf.shape, path, False)
    if isinstance(leaf, (bool, int, float, complex, np.ndarray, np.generic)):
        # A value computed in Python (maybe from `.numpy()`): a tensor output
        # with each run's value. Its dimensions may depend on values: unknown.
        value = np.asarray(leaf)
        dtype = tf.convert_to_tensor(leaf).dtype if not isinstance(leaf, np.ndarray) else \
            tf.as_dtype(value.dtype)
        return _Output(i, dtype, tf.TensorShape([None] * value.ndim), path, True)
    if isinstance(leaf, (str, bytes)) and read_values:
        raise IslandError(
            f"eager island {name!r} returns a string at {path} and reads `.numpy()` "
            "values: a string made from them would be the trace-time stand-in forever in the "
            "graph. Return a tensor instead (tf.constant(text), or "
            "tf.strings.as_string(tensor)), which carries each run's value"
        )
    return None


class _Outputs:
    """The island's outputs and losses as its scratch trace made them, and each run's checks."""

    def __init__(self, name: str, out: Any, scratch_losses: list[list[Any]], losses: _LossLists,
                 read_values: bool) -> None:
        import tensorflow as tf

        self.name = name
        self.losses = losses
        self.out_structure = out
        flat = tf.nest.flatten(out, expand_composites=True)
        self.paths = paths = _paths(out, len(flat))
        self.specs: list[_Output] = []
        for i, leaf in enumerate(flat):
            spec = _spec(name, i, leaf, paths[i], read_values)
            if spec is not None:
                self.specs.append(spec)
        self.flat_out_static = flat
        self.none_outputs = [i for i, leaf in enumerate(flat) if leaf is None]
        self.loss_counts = [len(added) for added in scratch_losses]
        self.loss_specs = [_Output(-1, t.dtype, t.shape, f"loss {k} added to {losses.label(s)}", False)
                           for s, added in enumerate(scratch_losses) for k, t in enumerate(added)]
        self.tout = [s.dtype for s in self.specs] + [s.dtype for s in self.loss_specs] + [tf.int64]

    @property
    def static(self) -> bool:
        """Every output's and loss's shape is fully known in the trace."""
        return all(s.shape.is_fully_defined() for s in (*self.specs, *self.loss_specs))

    def place_losses(self, scratch_losses: list[list[Any]], outputs: list[Any]) -> None:
        """Put the op's loss outputs where the scratch trace left its losses (as a traced body would)."""
        replace = {}
        pos = 0
        for added in scratch_losses:
            for t in added:
                replace[id(t)] = outputs[pos]
                pos += 1
        if not replace:
            return
        for layer, attr in self.losses.slots:
            current = getattr(layer, attr, None)
            if isinstance(current, list):
                current[:] = [replace.get(id(t), t) for t in current]

    def pack(self, results: Sequence[Any]) -> Any:
        import tensorflow as tf

        flat = list(self.flat_out_static)
        for spec, tensor in zip(self.specs, results, strict=True):
            flat[spec.index] = tensor
        return tf.nest.pack_sequence_as(self.out_structure, flat, expand_composites=True)

    # -- run time -----------------------------------------------------------------
    def check(self, out: Any) -> list[Any]:
        """This run's outputs as the op's tensors, in the traced structure, dtypes and shapes."""
        import tensorflow as tf

        if not self.none_outputs and len(self.specs) == 1 and isinstance(out, tf.Tensor) and isinstance(
                self.out_structure, tf.Tensor):
            return [self._check_leaf(self.specs[0], out)]  # one tensor, as traced: the usual loss
        try:
            if not (isinstance(out, tf.Tensor) and isinstance(self.out_structure, tf.Tensor)):
                tf.nest.assert_same_structure(out, self.out_structure, expand_composites=True)
        except (ValueError, TypeError) as exc:
            raise IslandError(
                f"eager island {self.name!r} returned {_short(out)}, whose structure differs from the "
                f"one traced in the graph ({_short(self.out_structure)}): an island must return the "
                "same structure on every call; return the same nest of tensors on every path"
            ) from exc
        flat_list = [out] if isinstance(out, tf.Tensor) else tf.nest.flatten(out, expand_composites=True)
        for i in self.none_outputs:
            if flat_list[i] is not None:
                raise IslandError(
                    f"eager island {self.name!r} returned {_short(flat_list[i])} at {self.paths[i]}, "
                    "where its trace returned None, so the graph has no place for it: return it on "
                    "every path, also when `tf.executing_eagerly()` is False"
                )
        return [self._check_leaf(spec, flat_list[spec.index]) for spec in self.specs]

    def _check_leaf(self, spec: _Output, leaf: Any) -> Any:
        if not spec.is_value and leaf.__class__ is _eager_tensor() and leaf.dtype is spec.dtype and _fits(
                leaf._shape_tuple(), spec.dims):
            return leaf  # as traced (the usual case): no conversion, no TensorShape built
        import numpy as np
        import tensorflow as tf

        if leaf is None:
            raise IslandError(
                f"eager island {self.name!r} returned None at {spec.path}, where its trace "
                f"returned a {spec.dtype.name} tensor: return a tensor there on every path "
                "(a branch without `return`?)"
            )
        if spec.is_value:
            array = np.asarray(leaf.numpy() if hasattr(leaf, "numpy") else leaf)
            if array.ndim != spec.shape.rank:
                raise IslandError(
                    f"eager island {self.name!r} returned a value of rank {array.ndim} at "
                    f"{spec.path}, where its trace returned rank {spec.shape.rank}: return values "
                    "of the same rank on every call"
                )
            return tf.convert_to_tensor(array, dtype=spec.dtype)
        value = tf.convert_to_tensor(leaf)
        if value.dtype != spec.dtype or not spec.shape.is_compatible_with(value.shape):
            raise IslandError(
                f"eager island {self.name!r} returned a {value.dtype.name} tensor of shape "
                f"{value.shape} at {spec.path}, but its traced output there is {spec.dtype.name} "
                f"with shape {spec.shape}: an island must return the dtypes and shapes it was "
                "traced with. If that shape depends on values (it was learned from a trace where "
                "`.numpy()` returns a stand-in, unknown dimensions as 1), compute the output with "
                "TF ops from the tensor arguments (e.g. tf.boolean_mask, not NumPy), or return it "
                "as a NumPy array, whose dimensions an island leaves unknown"
            )
        return value

    def check_losses(self, added: list[list[Any]]) -> list[Any]:
        """This run's `add_loss` losses as the op's tensors: as many, and shaped, as in the trace."""
        import tensorflow as tf

        counts = [len(a) for a in added]
        if counts != self.loss_counts:
            slot = next(k for k, (got, want) in enumerate(zip(counts, self.loss_counts, strict=True))
                        if got != want)
            raise IslandError(
                f"eager island {self.name!r} added {counts[slot]} loss(es) to "
                f"{self.losses.label(slot)} with add_loss in this run, but {self.loss_counts[slot]} in "
                "the trace that built the graph: the graph has a place for each loss the trace "
                "added. Call add_loss the same number of times on every call (add a zero loss on "
                "the other path)"
            )
        losses = []
        for spec, loss in zip(self.loss_specs, [t for a in added for t in a], strict=True):
            value = tf.convert_to_tensor(loss, dtype=spec.dtype)
            if not spec.shape.is_compatible_with(value.shape):
                raise IslandError(
                    f"eager island {self.name!r}: {spec.path} has shape {value.shape} in this run "
                    f"but {spec.shape} in its trace: add losses of the same shape on every call"
                )
            losses.append(value)
        return losses

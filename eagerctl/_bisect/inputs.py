"""What `bisect` is given: the function to bisect, and the arguments each run must see alike.

A Keras model with an optimizer is bisected as one `train_step` on the
batch, as `fit` runs it; when `fit` has already cached its train function,
that cached function is what the program runs, so it is the compiled
reference (`FitStep`). A model's `train_function` itself is refused: it
takes an iterator and hides the batch.

A `tf.data` iterator among the arguments is rewound before each run (its
state saved with TensorFlow's iterator checkpointing), so every run reads
the batch the program's own call would read, and at the end the iterator is
where it was: bisect consumes no batch. An iterator that cannot be saved (a
dataset from a Python generator) gives one batch, which every run reads
again; that iterator then stays one batch further on.
"""

from __future__ import annotations

from typing import Any

from .. import _compare
from .code import is_model, is_tf_function


class FitStep:
    """Calls a fitted model's cached train function on one batch, as `fit` would."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.function = model.train_function
        self.__name__ = self.__qualname__ = f"{type(model).__name__}.train_function"

    def __call__(self, *data: Any) -> Any:
        import tensorflow as tf

        batch = _as_batch(data)
        if is_tf_function(self.function):  # Keras 2: a tf.function of an iterator
            size = int(tf.nest.flatten(batch)[0].shape[0])
            return self.function(iter(tf.data.Dataset.from_tensor_slices(batch).batch(size)))
        return self.function([batch])  # Keras 3: it takes any iterable of batches

    def adapt(self, data: tuple[Any, ...]) -> tuple[tuple[Any, ...] | None, str]:
        """The data as fit's cached trace takes it (without tracing again) and a note; None if none fits.

        Calling the cached function with a batch of another shape would trace it
        again: that trace would be a fresh one (not what fit runs), and it would
        stay in the program's cache.
        """
        import tensorflow as tf

        leaves = [tf.convert_to_tensor(v) for v in tf.nest.flatten(data)]
        for specs in self._signatures():
            if len(specs) != len(leaves):
                continue
            if all(s.is_compatible_with(v) for s, v in zip(specs, leaves, strict=True)):
                return data, ""
            rows = specs[0].shape[0] if specs[0].shape.rank else None
            if rows is None or any(v.shape.rank == 0 or v.shape[0] < rows for v in leaves):
                continue
            sliced = tf.nest.map_structure(lambda v, n=rows: v[:n], data)
            if all(s.is_compatible_with(tf.convert_to_tensor(v))
                   for s, v in zip(specs, tf.nest.flatten(sliced), strict=True)):
                return sliced, (f"fit traced its train function for batches of {rows}: bisect used the first "
                                f"{rows} rows of the data, the batch fit runs first")
        return None, (f"{self.__name__} (cached by fit) has no trace for data of these shapes, and calling "
                      "it would trace it again: bisect compared a fresh trace of train_step instead (pass "
                      "one "
                      "batch of the size fit used to compare with what fit runs)")

    def _signatures(self) -> list[list[Any]]:
        import tensorflow as tf

        found = []
        for fn in [self.function, *_closure_functions(self.function)]:
            if not is_tf_function(fn):
                continue
            for concrete in fn._list_all_concrete_functions():
                args = concrete.structured_input_signature[0]
                if len(args) != 1:
                    continue
                spec = args[0]
                spec = getattr(spec, "element_spec", spec)  # Keras 2 takes an iterator
                found.append(tf.nest.flatten(spec))
        return found

    def tracing_count(self) -> int:
        """How often the compiled functions inside were traced (a change means the cache was not used)."""
        count = 0
        for fn in [self.function, *_closure_functions(self.function)]:
            if is_tf_function(fn):
                count += fn.experimental_get_tracing_count()
        return count


def _closure_functions(fn: Any, depth: int = 0) -> list[Any]:
    found = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if is_tf_function(value):
            found.append(value)
        elif callable(value) and hasattr(value, "__closure__") and depth < 2:
            found += _closure_functions(value, depth + 1)
    return found


def _as_batch(data: tuple[Any, ...]) -> Any:
    """`fit` hands train_step tensors, never NumPy arrays (Keras 2 needs them)."""
    import tensorflow as tf

    data = tf.nest.map_structure(
        lambda v: tf.convert_to_tensor(v) if type(v).__module__ == "numpy" else v, data)
    return data[0] if len(data) == 1 else tuple(data)


def resolve(fn: Any) -> tuple[Any, str, FitStep | None]:
    """(the callable to bisect, its name, the fitted model's cached train function or None)."""
    target = _compare._unwrap(fn)
    _refuse_train_function(target)
    if not is_model(target):
        return target, _compare._function_name(target), None
    model = target
    if getattr(model, "optimizer", None) is None:
        def call(*args: Any, **kwargs: Any) -> Any:
            # A function that calls the model, not the model itself: AutoGraph would convert all of Keras's
            # call machinery for a tf.function made of the model object.
            return model(*args, **kwargs)

        call.model = model  # type: ignore[attr-defined]
        call.method = "call"  # type: ignore[attr-defined]
        return call, f"{type(model).__name__}.call", None

    def train_step(*data: Any) -> Any:
        return model.train_step(_as_batch(data))

    train_step.model = model  # type: ignore[attr-defined]  # where reports point: the model's code
    train_step.method = "train_step"  # type: ignore[attr-defined]

    fitted = getattr(model, "train_function", None) is not None and not getattr(model, "run_eagerly", False)
    return train_step, f"{type(model).__name__}.train_step", FitStep(model) if fitted else None


def where_of_model(model: Any, method: str) -> str:
    """The model's own `method` (`train_step`, `call`) if it defines one, else where its class is defined."""
    import inspect

    from .code import code_of, is_user_code, where

    code = code_of(getattr(type(model), method, None))
    if code is not None and is_user_code(code):
        return where(code)
    try:
        return f"{inspect.getsourcefile(type(model))}:{inspect.getsourcelines(type(model))[1]}"
    except (OSError, TypeError):
        return "?"


def _refuse_train_function(target: Any) -> None:
    python_fn = getattr(target, "python_function", target)
    owner = next((cell.cell_contents for cell in getattr(python_fn, "__closure__", None) or ()
                  if _cell_is_model(cell)), None)
    if owner is None or all(getattr(owner, name, None) is not target
                            for name in ("train_function", "test_function", "predict_function")):
        return
    which = next(name for name in ("train_function", "test_function", "predict_function")
                 if getattr(owner, name, None) is target)
    raise TypeError(
        f"bisect() cannot bisect {type(owner).__name__}.{which}: Keras's cached step function takes an "
        f"iterator and hides the batch; pass the model and one batch instead, bisect(model, x, y), which "
        f"bisects the train function fit runs")


def _cell_is_model(cell: Any) -> bool:
    try:
        return is_model(cell.cell_contents)
    except ValueError:
        return False


class Iterators:
    """The `tf.data` iterators among the arguments: rewound before each run and at the end."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import tensorflow as tf

        self.saved: list[tuple[Any, Any]] = []
        self.replayed = 0
        flat = tf.nest.flatten((args, kwargs))
        self.args, self.kwargs = args, kwargs
        replacements: dict[int, Any] = {}
        for leaf in flat:
            if not isinstance(leaf, tf.data.Iterator) or not hasattr(leaf, "_iterator_resource"):
                continue
            state = _save_iterator(leaf)
            if state is not None:
                self.saved.append((leaf, state))
            else:
                replacements[id(leaf)] = _replay(tf, leaf)
                self.replayed += 1
        if replacements:
            self.args, self.kwargs = tf.nest.map_structure(
                lambda v: replacements.get(id(v), v), (args, kwargs))

    def rewind(self) -> None:
        from tensorflow.python.ops import gen_dataset_ops

        for iterator, state in self.saved:
            gen_dataset_ops.deserialize_iterator(iterator._iterator_resource, state)

    def note(self) -> str | None:
        if self.saved:
            return ("every run read the same batch from the iterator argument; it was rewound after each "
                    "(it is where it was: bisect consumed no batch)")
        if self.replayed:
            return ("the iterator argument cannot be saved (a dataset from a Python generator?): bisect read "
                    "one batch from it and every run read that batch again; the iterator is one batch "
                    "further on, as after one call")
        return None


def _save_iterator(iterator: Any) -> Any:
    from tensorflow.python.ops import gen_dataset_ops

    try:
        return gen_dataset_ops.serialize_iterator(iterator._iterator_resource, external_state_policy=2)
    except Exception:  # noqa: BLE001 - not checkpointable: replayed instead
        return None


def _replay(tf: Any, iterator: Any) -> Any:
    """An endless iterator of the next batch of `iterator`, with its element spec."""
    batch = next(iterator)
    spec = iterator.element_spec
    first = tf.nest.flatten(batch)[0]
    rows = int(first.shape[0]) if first.shape.rank else 1
    for dataset in (tf.data.Dataset.from_tensors(batch),
                    tf.data.Dataset.from_tensor_slices(batch).batch(rows)):
        if dataset.element_spec == spec:
            return iter(dataset.repeat())
    return iter(tf.data.Dataset.from_tensors(batch).repeat())


__all__ = ["FitStep", "Iterators", "resolve"]

"""Everything a bisection may advance, saved when it starts and put back when it ends.

`bisect` runs the function many times; afterwards the program must go on
exactly as if it had not: the same variable values (weights, optimizer
slots and iterations, metrics, generators' states, variables touched only
eagerly), the same contents of mutable lookup tables, the same random
streams (Python's, NumPy's, every `random.Random`, `RandomState` and NumPy
`Generator` alive, TensorFlow's global seed and op-seed sequence), and the
same stdout: what bisect's runs print is captured (`captured_stdout`) and
shown in its report.

Live objects are found once per bisection with the garbage collector, so
state the function reaches in any way (a class attribute holding a
`tf.Variable`, a table in a closure) is covered, not only what its trace
records.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any


class ProgramState:
    """TensorFlow and random-number state of the whole process, restorable."""

    def __init__(self) -> None:
        import numpy as np
        import tensorflow as tf

        self.tf, self.np = tf, np
        self.variables: list[tuple[Any, Any]] = []
        self.tables: list[tuple[Any, Any]] = []
        self.generators: list[tuple[Any, Any]] = []
        self.created: list[tuple[Any, Any]] = []  # variables made during the bisection, first values
        self.pending: list[Any] = []  # made while tracing: read at the next `settle()`
        self.reset_kernels = False  # clear TF's kernel cache on restore (see Bisector.restore_all)
        self._find()
        self.tf_seed = _tf_seed_state()

    def _find(self) -> None:
        from tensorflow.python.ops import lookup_ops

        np, tf = self.np, self.tf
        kinds: dict[type, str] = {}

        def kind_of(t: type) -> str:
            if issubclass(t, tf.Variable):
                return "variable"
            if issubclass(t, (lookup_ops.MutableHashTable, lookup_ops.DenseHashTable)):
                return "table"
            if issubclass(t, (random.Random, np.random.RandomState, np.random.Generator)):
                return "generator"
            return ""

        for obj in gc.get_objects():
            t = type(obj)
            kind = kinds.get(t)
            if kind is None:
                kind = kinds[t] = kind_of(t)
            if kind == "variable":
                self._save(self.variables, obj, _read_variable)
            elif kind == "table":
                self._save(self.tables, obj, lambda table: tuple(part.numpy() for part in table.export()))
            elif kind == "generator":
                self._save(self.generators, obj, _generator_state)

    @staticmethod
    def _save(into: list[tuple[Any, Any]], obj: Any, read: Callable[[Any], Any]) -> None:
        try:
            into.append((obj, read(obj)))
        except Exception:  # noqa: BLE001 - uninitialized, graph-only or unreadable: nothing to keep
            pass

    def creator(self, next_creator: Callable[..., Any], **kwargs: Any) -> Any:
        """A variable creator: variables made during the bisection go back to their first value.

        One made while a trace runs (or not initialized yet) is read at the first `settle()` after.
        """
        var = next_creator(**kwargs)
        if self.tf.executing_eagerly():
            self._save(self.created, var, _read_variable)
        if not self.created or self.created[-1][0] is not var:
            self.pending.append(var)
        return var

    def settle(self) -> None:
        """Read the first value of the variables made while tracing that can be read now."""
        still = []
        for var in self.pending:
            before = len(self.created)
            self._save(self.created, var, _read_variable)
            if len(self.created) == before:
                still.append(var)
        self.pending = still

    def generator_states(self) -> list[Any]:
        return [_generator_state(g) for g, _ in self.generators]

    def restore(self, generators: list[Any] | None = None) -> None:
        """Put everything back; `generators` (from `generator_states`) instead of the first states."""
        for var, value in [*self.variables, *self.created]:
            with contextlib.suppress(Exception):  # a variable gone read-only or deleted meanwhile
                var.assign(value)
        for table, (keys, values) in self.tables:
            with contextlib.suppress(Exception):
                _restore_table(self.tf, table, keys, values)
        moved = _tf_seed_state() != self.tf_seed  # before the generators: TF's `_rng` is one of them
        states = generators if generators is not None else [s for _, s in self.generators]
        for (generator, _), state in zip(self.generators, states, strict=True):
            with contextlib.suppress(Exception):
                _set_generator_state(generator, state)
        _set_tf_seed_state(self.tf_seed, moved or self.reset_kernels)


def _read_variable(var: Any) -> Any:
    import numpy as np

    return np.array(var.numpy(), copy=True)


def _generator_state(generator: Any) -> Any:
    if isinstance(generator, random.Random):
        return generator.getstate()
    bit_generator = getattr(generator, "bit_generator", None)
    if bit_generator is not None:
        return bit_generator.state
    return generator.get_state()


def _set_generator_state(generator: Any, state: Any) -> None:
    if isinstance(generator, random.Random):
        generator.setstate(state)
    elif getattr(generator, "bit_generator", None) is not None:
        generator.bit_generator.state = state
    else:
        generator.set_state(state)


def _restore_table(tf: Any, table: Any, keys: Any, values: Any) -> None:
    from tensorflow.python.ops import gen_lookup_ops, lookup_ops

    if isinstance(table, lookup_ops.DenseHashTable):
        # Importing into a dense table keeps the keys it has: remove them first (not the empty and
        # deleted markers).
        current = table.export()[0].numpy()
        markers = [table._empty_key, table._deleted_key]
        valid = ~_isin(current, markers)
        if valid.any():
            table.erase(tf.constant(current[valid]))
        keep = ~_isin(keys, markers)
        table.insert(tf.constant(keys[keep]), tf.constant(values[keep]))
        return
    gen_lookup_ops.lookup_table_import_v2(table.resource_handle, keys, values)


def _isin(keys: Any, markers: list[Any]) -> Any:
    import numpy as np

    flat = keys.reshape(len(keys), -1)
    found = np.zeros(len(keys), dtype=bool)
    for marker in markers:
        value = np.asarray(marker.numpy() if hasattr(marker, "numpy") else marker).reshape(-1)
        found |= np.all(flat == value, axis=1)
    return found


def _tf_seed_state() -> tuple[Any, Any]:
    from tensorflow.python.eager import context

    ctx = context.context()
    rng = getattr(ctx, "_rng", None)
    return getattr(ctx, "_seed", None), rng.getstate() if rng is not None else None


def _set_tf_seed_state(state: tuple[Any, Any], moved: bool) -> None:
    from tensorflow.python.eager import context

    ctx = context.context()
    seed, rng_state = state
    if getattr(ctx, "_seed", None) != seed:
        ctx._set_global_seed(seed)  # the program's seed again (bisect's function changed it)
    rng = getattr(ctx, "_rng", None)
    if rng is not None and rng_state is not None and moved:
        rng.setstate(rng_state)  # the op-seed sequence: eager random ops take their seeds from it
    if moved:
        # Bisect's eager runs drew with the seeds the program draws with next, and TensorFlow keeps one
        # kernel (with its random state) per seed pair: without clearing them the program would get their
        # second draws. (This also restarts kernels of eager random ops given an explicit op seed.)
        from tensorflow.python import pywrap_tfe

        if getattr(ctx, "_context_handle", None) is not None:
            pywrap_tfe.TFE_ContextClearCaches(ctx._context_handle)  # as tf.random.set_seed does


class Printed:
    """What was captured: `text` once the block has exited."""

    text = ""


@contextlib.contextmanager
def captured_stdout() -> Iterator[Printed]:
    """Capture stdout, Python's and the C-level file descriptor's (`tf.print(output_stream=sys.stdout)`)."""
    printed = Printed()
    buffer = io.StringIO()
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(tempfile.TemporaryFile(mode="w+b"))
        saved_fd = _redirect_fd(1, raw.fileno())
        try:
            with contextlib.redirect_stdout(buffer):
                yield printed
        finally:
            if saved_fd is not None:
                _restore_fd(1, saved_fd)
            raw.seek(0)
            printed.text = buffer.getvalue() + raw.read().decode(errors="replace")


def _redirect_fd(fd: int, target: int) -> int | None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    try:
        saved = os.dup(fd)
    except OSError:
        return None  # no such descriptor (a GUI process): Python's stdout is captured anyway
    os.dup2(target, fd)
    return saved


def _restore_fd(fd: int, saved: int) -> None:
    with contextlib.suppress(Exception):
        sys.__stdout__.flush() if sys.__stdout__ is not None else None
    os.dup2(saved, fd)
    os.close(saved)

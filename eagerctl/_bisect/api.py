"""`bisect(fn, *args, **kwargs)`: the entry point, its checks, and what it guarantees around a bisection.

One bisection at a time in the process: a second `bisect` from another
thread waits for the first to finish (the hooks patch TensorFlow globally);
one called from inside a bisection in the same thread is refused. Whatever
happens, including `KeyboardInterrupt`, the hooks are removed and the
program's state is put back (`state.py`, `values.py`, `inputs.py`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .. import _compare
from .._errors import EagerctlError
from .bisector import Bisector
from .inputs import resolve
from .report import Bisection
from .state import Printed, captured_stdout
from .steps import Procedure

_LOCK = threading.Lock()
_owner: int | None = None


@contextlib.contextmanager
def _exclusive(name: str) -> Iterator[None]:
    global _owner
    if _owner == threading.get_ident():
        raise EagerctlError(f"bisect({name}) was called while bisect runs in this thread (from inside the "
                            "function it bisects); call bisect from the program, outside the bisected "
                            "function")
    with _LOCK:
        _owner = threading.get_ident()
        try:
            yield
        finally:
            _owner = None


def check_options(rtol: object, atol: object) -> None:
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"bisect({name}={value!r}): {name} must be a number, not {type(value).__name__}")
        if not math.isfinite(value) or value < 0:
            raise EagerctlError(f"bisect({name}={value!r}): {name} must be 0 or more, and finite (the "
                                f"default is {1e-5 if name == 'rtol' else 1e-6:g})")


def bisect(fn: Callable[..., Any], /, *args: Any, rtol: float = 1e-5, atol: float = 1e-6,
           **kwargs: Any) -> Bisection:
    """Find the nested functions, layers and `tf.function`s that make `fn`'s graph and eager runs differ.

    `fn` is a `tf.function`, a Python function (bisected as `tf.function(fn)`,
    like a train step), a Keras model (with an optimizer: one `train_step` on
    the data `args`, as `fit` runs it, against the train function `fit` has
    cached if it ran; without: its forward call) or a model's `train_step`.
    Returns a `Bisection`: `culprits` (each with `qualname`, `where`, `kind`,
    `outputs`, `max_abs_diff` and a likely `cause`), `runs`, `seconds`;
    `str()` of it is a readable report. Nothing advances: afterwards the
    program goes on as if `bisect` had not run (variables, optimizer and
    metric state, random streams, Python values, a `tf.data` iterator
    argument's position); what its runs print is in the report, not on
    stdout. Keyword arguments named `rtol` or `atol` are bisect's own.

    Example:
        ```python
        report = eagerctl.bisect(train_step, x, y)
        print(report)                        # the culprit first, then how it was found
        culprit = report.culprits[0]
        print(culprit.qualname, culprit.where, culprit.cause.kind)
        ```
    """
    started = time.perf_counter()
    check_options(rtol, atol)
    target, name, fit_step = resolve(fn)
    is_tf_function, graph_fn = _compare.checked_target(
        "bisect", "a tf.function, a Keras model or a Python callable", fn, target, name)
    python_fn = target.python_function if is_tf_function else target
    fit_note = ""
    if fit_step is not None:
        adapted, fit_note = fit_step.adapt(args)
        args, fit_step = (adapted, fit_step) if adapted is not None else (args, None)
    with _exclusive(name):
        first_call = is_tf_function and graph_fn is target and _trace_as_the_program(graph_fn, args, kwargs)
        b = Bisector(target, python_fn=python_fn, graph_fn=graph_fn, name=name, args=args,
                     kwargs=dict(kwargs), rtol=float(rtol), atol=float(atol), fit_step=fit_step)
        b.first_call = first_call
        if fit_note:
            b.steps.append(fit_note)
        printed = Printed()
        try:
            with captured_stdout() as printed, b.tf.variable_creator_scope(b.program.creator):
                b.hooks.install()
                report = Procedure(b, started).run()
        finally:
            b.hooks.uninstall()
            b.restore_all()
        report.printed = printed.text
        report.seconds = time.perf_counter() - started
        return report


def _trace_as_the_program(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Trace the program's own tf.function as its call would: that trace, and its prints, are the program's.

    A first call traces (twice when it makes variables, such as optimizer slots); after bisect the
    call finds that trace and runs it, as it would have run its own. What the trace printed goes to
    stdout now, where the call would have printed it. Bisect works from the state it leaves.
    """
    import sys

    from .._scope import graph_scope
    from .._status import is_eager

    if is_eager():
        return False  # the program's call runs the Python body: it traces nothing
    count = fn.experimental_get_tracing_count()
    with captured_stdout() as printed:
        try:
            with graph_scope():
                fn.get_concrete_function(*args, **kwargs)
        except Exception:  # noqa: BLE001 - it fails compiled: bisect's own trace finds why
            pass
    sys.stdout.write(printed.text)
    sys.stdout.flush()
    return bool(fn.experimental_get_tracing_count() != count)

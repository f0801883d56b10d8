"""One monitored call of a compiled `tf.function` inside `replay()`.

The fast path, taken while nothing fails: keep the written variables (one
compiled read, see `state`), keep the state of any `tf.data` iterator argument,
run the call compiled exactly as TF would, then one compiled, fused finiteness
check of its float outputs (and, with `check_variables`, of the variables it
wrote) whose one boolean is all that reaches the host.

On failure: keep what the failed call left, put back what it started from,
run it again eagerly (`rerun`), put back what the failed call left, raise
`ReplayError` naming the place.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import rerun, state
from .report import ReplayError

if TYPE_CHECKING:
    from .scope import Activation

__tracebackhide__ = True  # pytest shows the user's frames, not these

# eagerctl's own tf.functions (the checks): never monitored.
OWN: set[int] = set()

# OpErrors that are not a failure of the step: the end of an iterator (Keras ends an
# epoch on it), a cancelled or aborted run, memory or a device gone (an eager replay
# would not help).
_NOT_FAILURES = ("OutOfRangeError", "CancelledError", "AbortedError", "ResourceExhaustedError",
                 "UnavailableError", "DeadlineExceededError")

STATE_NOTE = "The variables and iterators are as the failed compiled call left them."


def _checker(plan: state.Plan, check_variables: bool) -> Any:
    fn = plan.checkers.get(check_variables)
    if fn is None:
        import tensorflow as tf
        from tensorflow.python.ops import gen_resource_variable_ops

        handles = plan.handles if check_variables else []

        def all_finite(tensors: list[Any]) -> Any:
            flags = [tf.reduce_all(tf.math.is_finite(t)) for t in tensors]
            flags += [tf.reduce_all(tf.math.is_finite(gen_resource_variable_ops.read_variable_op(h, d)))
                      for h, d in handles if d.is_floating]
            return tf.reduce_all(tf.stack(flags)) if flags else tf.constant(True)

        fn = tf.function(all_finite, autograph=False, reduce_retracing=True)
        OWN.add(id(fn))
        # Its id goes with it: a user's tf.function created later at the same address is monitored.
        weakref.finalize(fn, OWN.discard, id(fn))
        plan.checkers[check_variables] = fn
    return fn


def _all_finite(plan: state.Plan, check_variables: bool, outputs: list[Any]) -> bool:
    """The fused check, one boolean to the host: a compiled call, or for one or two outputs eager ops."""
    if not check_variables and len(outputs) <= _EAGER_CHECKS:
        return all(_finite(tensor) for tensor in outputs)
    key = (check_variables, *((t.dtype, tuple(t.shape)) for t in outputs))
    concrete = plan.concrete_checks.get(key)
    if concrete is None:
        checker = _checker(plan, check_variables)
        if len(plan.concrete_checks) >= _MAX_SIGNATURES:  # shapes that keep changing: TF's own cache
            return bool(checker(outputs))
        concrete = state.flat_caller(checker.get_concrete_function(outputs))
        plan.concrete_checks[key] = concrete
    return bool(concrete(outputs)[0])  # the graph function itself: no tf.function dispatch per call


def _finite(tensor: Any) -> bool:
    """`reduce_all(is_finite(tensor))` in TF's kernels, without `tf.reduce_all`'s Python."""
    from tensorflow.python.ops import gen_math_ops

    flags = gen_math_ops.is_finite(tensor)
    rank = len(tensor.shape)
    if rank:
        axes = _AXES.get(rank)
        if axes is None:
            import tensorflow as tf

            axes = _AXES[rank] = tf.range(rank)
        flags = gen_math_ops._all(flags, axes)
    return bool(flags)


_AXES: dict[int, Any] = {}  # rank -> the int32 tensor of all its axes (a host tensor: reduction axes are)
_MAX_SIGNATURES = 16
_EAGER_CHECKS = 2  # outputs checked with eager ops: cheaper than a function call up to here


def _float_outputs(result: Any) -> list[Any]:
    import tensorflow as tf
    from tensorflow.python.util import nest

    Optional, Tensor = tf.experimental.Optional, tf.Tensor
    if isinstance(result, Tensor):  # a train step's loss: the usual case, without nest
        return [result] if result.dtype.is_floating else []
    out = []
    for leaf in nest.flatten(result):
        if isinstance(leaf, Optional):
            # Keras 3's train function returns its logs in an Optional.
            if bool(leaf.has_value()):
                out += _float_outputs(leaf.get_value())
        elif isinstance(leaf, Tensor) and leaf.dtype.is_floating:
            out.append(leaf)
    return out


def _nonfinite_outputs(result: Any) -> str:
    """Which outputs hold NaN or Inf (read on the host: only after the fused check failed)."""
    import numpy as np
    import tensorflow as tf

    bad = []
    from tensorflow.python.util import nest

    for path, leaf in nest.flatten_with_joined_string_paths(result):
        if isinstance(leaf, tf.experimental.Optional):
            if bool(leaf.has_value()):
                inner = _nonfinite_outputs(leaf.get_value())
                if inner:
                    bad.append(inner)
            continue
        if isinstance(leaf, tf.Tensor) and leaf.dtype.is_floating:
            value = np.asarray(leaf.numpy())
            if not np.isfinite(value).all():
                kind = "NaN" if np.isnan(value).any() else "Inf"
                bad.append(f"{kind} in output {path!r}" if path else f"{kind} in the result")
    return ", ".join(bad)


@dataclass
class Kept:
    """One call, and the state it started from."""

    act: Activation
    fn: Any
    args: tuple[Any, ...]
    kwds: dict[str, Any]
    step: int
    plan: state.Plan
    before: list[Any]
    iterators: list[Any]
    iter_before: list[Any]

    @property
    def name(self) -> str:
        return str(getattr(self.fn, "__name__", None) or getattr(self.fn, "_name", None) or self.fn)


def call(act: Activation, original: Any, fn: Any, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
    step = act.count(fn)
    try:
        plan = state.plan_for(fn, args, kwds)
    except Exception:  # noqa: BLE001 - a trace that fails: the plain call raises it as TF would
        return original(fn, *args, **kwds)
    iterators = state.iterators_in(args, kwds)
    kept = Kept(act, fn, args, kwds, step, plan, state.snapshot(plan), iterators,
                state.save_iterators(iterators) if iterators else [])
    if iterators and id(fn) not in act.warned:
        _warn_unsaved(kept)
    try:
        result = original(fn, *args, **kwds)
    except Exception as exc:
        if type(exc).__name__ in _NOT_FAILURES or not _is_op_error(exc):
            raise
        _replay(kept, f"raised {type(exc).__name__}", exc, stop_at_nonfinite=False)
        raise  # not reached: _replay raises
    if _all_finite(plan, act.check_variables, _float_outputs(result)):
        return result
    outputs = _nonfinite_outputs(result)
    if outputs:
        reason = f"returned non-finite values ({outputs})"
    else:
        reason = "left non-finite values in the variables it wrote"
    _replay(kept, reason, None, stop_at_nonfinite=True)
    return result  # not reached


def _warn_unsaved(kept: Kept) -> None:
    """Say at its first call, not hours later at a failure, that this function's calls cannot be replayed."""
    unsaved = [s for s in kept.iter_before if isinstance(s, str)]
    if not unsaved:
        return
    import warnings

    from .._errors import EagerctlWarning

    kept.act.warned.add(id(kept.fn))
    warnings.warn(f"eagerctl.replay(): calls of tf.function {kept.name!r} cannot be replayed: {unsaved[0]}. "
                  "They run compiled as usual, and a failing one is still reported (which call, what "
                  "failed), without a replay.", EagerctlWarning, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """`warnings.warn` stacklevel of the nearest frame outside eagerctl, TF and Keras (the user's call)."""
    import os

    skip = [os.path.dirname(os.path.dirname(__file__))]
    for name in ("tensorflow", "keras", "tf_keras"):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            skip.append(os.path.dirname(path))
    frame, level = sys._getframe(2), 2  # getframe(k) is stacklevel k: 1 warns, 2 is call()
    while frame is not None and frame.f_code.co_filename.startswith(tuple(skip)):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level if frame is not None else 2


def _is_op_error(exc: BaseException) -> bool:
    from tensorflow.python.framework import errors

    return isinstance(exc, errors.OpError)


def _replay(kept: Kept, reason: str, compiled_error: BaseException | None, *,
            stop_at_nonfinite: bool) -> None:
    act, fn, args, kwds, step, plan = kept.act, kept.fn, kept.args, kept.kwds, kept.step, kept.plan
    before, iterators, iter_before, name = kept.before, kept.iterators, kept.iter_before, kept.name
    unsaved = [s for s in iter_before if isinstance(s, str)]
    if unsaved:
        raise ReplayError(function=name, step=step, reason=reason, site=None, compiled_error=compiled_error,
                          detail=f"not replayed: the batch could not be kept: {unsaved[0]}.",
                          state=STATE_NOTE) from compiled_error
    after = state.read_now(plan)
    iter_after = state.save_iterators(iterators) if iterators else []
    state.restore(plan, before)
    state.restore_iterators(iterators, iter_before)
    act.replaying = True
    finder: rerun.Finder | None = None
    try:
        site, exc, finder = rerun.run_eagerly(fn, args, kwds, stop_at_nonfinite=stop_at_nonfinite)
        if act.post_mortem and exc is not None:
            _post_mortem(exc, site, name, step, reason)
    finally:
        act.replaying = False
        if finder is not None:
            finder.clear()
        state.restore(plan, after)
        state.restore_iterators(iterators, iter_after)
    detail = ""
    if exc is not None and not isinstance(exc, rerun.Found):
        detail = f"{type(exc).__name__}: {str(exc).strip()}"
    elif site is None and finder.first is not None:  # raised compiled; eagerly not, but NaN or Inf
        site = finder.first
        detail = ("the eager replay did not raise (compiled and eager runs of this call differ); above: the "
                  "first NaN or Inf it met")
    elif site is None:
        detail = ("replayed eagerly from the state it started from, it ran through without a NaN or Inf and "
                  "without an error: compiled and eager runs of this call differ; eagerctl.compare() and "
                  "eagerctl.bisect() find where")
    error = ReplayError(function=name, step=step, reason=reason, site=site, detail=detail,
                        compiled_error=compiled_error, state=STATE_NOTE)
    cause = compiled_error if compiled_error is not None else (None if isinstance(exc, rerun.Found) else exc)
    raise error from cause


def _post_mortem(exc: BaseException, site: Any, name: str, step: int, reason: str) -> None:
    import pdb

    target = exc.frame if isinstance(exc, rerun.Found) else None
    tb = exc.__traceback__
    if target is None and site is not None:
        probe = tb
        while probe is not None:
            if probe.tb_frame.f_code.co_filename == site.filename and probe.tb_lineno == site.lineno:
                target = probe.tb_frame
            probe = probe.tb_next

    class _Pdb(pdb.Pdb):
        def setup(self, f: Any, tb: Any) -> None:
            super().setup(f, tb)
            for index, (frame, _) in enumerate(self.stack):
                if frame is target:
                    self.curindex = index
                    self.curframe = frame
                    self.curframe_locals = frame.f_locals

    op = f"op {site.op_type} " if site is not None and site.op_type else ""
    where = f" at {site.where()}: {op}{site.problem}" if site is not None else ""
    print(f"eagerctl replay: tf.function {name!r}, call {step}: the compiled call {reason}; "
          f"the eager replay stopped{where}", file=sys.stdout, flush=True)
    debugger = _Pdb()
    debugger.reset()
    debugger.interaction(None, tb)

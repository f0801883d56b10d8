"""An island's run-time trips: its body run eagerly for the forward op, its tapes for the gradient op.

Both run in whatever thread TF's executor picked, called through the island's
callbacks (see `callbacks.py`). Stands on `callbacks`, `errors`, `gradients`,
`plumbing` and `tapes` (and `.._scope` for the eager override).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from .._scope import Scope
from .callbacks import NO_CALL
from .errors import IslandError
from .gradients import gradient_parts
from .plumbing import _differentiable, _unique
from .tapes import _Entry, _Tapes, next_call_id

_tf: Any = None  # what the trips use of TensorFlow, looked up once (see `_load`)


class _TF:
    """The TensorFlow names each trip uses, imported once rather than on every run."""

    def __init__(self) -> None:
        from tensorflow.python.eager import backprop, imperative_grad, record, tape
        from tensorflow.python.framework import ops

        self.GradientTape = backprop.GradientTape
        self.VariableWatcher = record.VariableWatcher
        self.watch = tape.watch
        self.imperative_grad = imperative_grad.imperative_grad
        self.EagerTensor = ops.EagerTensor
        self.handle_or_self = backprop._handle_or_self


def _load() -> Any:
    global _tf
    if _tf is None:
        _tf = _TF()
    return _tf


class _Runs:
    """Runs one island's body (recording tapes when a gradient was built) and its gradients."""

    def __init__(self, island: Any) -> None:
        self.island = island

    def forward(self, records: bool, eager_inputs: Sequence[Any]) -> list[Any]:
        """One run of the forward op: the body's outputs and losses, then the call id of its tapes."""
        tf = _tf or _load()
        island = self.island
        sources = island.sources
        tensors = list(eager_inputs[: len(island.arguments.inputs)])
        context = (eager_inputs[sources.context_pos:sources.context_pos + len(island.carry.tensors)]
                   if island.carry.tensors else ())
        # One tape per gradient order some graph has built for this op; none
        # when this graph never differentiates it (nothing is kept alive).
        order = island.order if records else 0
        if not order:
            if not sources.check_reads:
                return [*self._call(tensors, context), NO_CALL]
            with tf.VariableWatcher() as watcher:
                results = self._call(tensors, context)
                watched = watcher.watched_variables()
            self.refuse_unseen([v for v in _unique(watched) if v.trainable and _differentiable(v.dtype)])
            return [*results, NO_CALL]
        diff = [tensors[k] for k in sources.diff_input_pos]
        tapes, results, watched = self._recorded(tf, order, diff, tensors, context)
        call_id = next_call_id()
        known = sources.variable_ids
        unseen = [v for v in _unique(watched)
                  if v.trainable and _differentiable(v.dtype) and id(v) not in known] if watched else []
        nbytes = island.size.estimate(tensors, results, island.static)
        targets = [results[k] for k in sources.diff_out_pos]
        self.tapes.keep(call_id, _Entry(tapes, diff + sources.variables, targets, unseen, nbytes))
        return [*results, call_id]

    def _recorded(self, tf: Any, order: int, diff: list[Any], tensors: list[Any],
                  context: Sequence[Any]) -> tuple[list[Any], list[Any], Sequence[Any]]:
        """The body run under `order` persistent tapes watching `diff`: the tapes, outputs, variables read."""
        watch = tf.watch
        tapes = [tf.GradientTape(persistent=True) for _ in range(order)]
        if order == 1:  # the usual case: one tape, no ExitStack
            tape = tapes[0]
            with tape:
                for t in diff:  # float eager tensors: what GradientTape.watch checks holds
                    watch(tape._tape, t)
                with tf.VariableWatcher() as watcher:
                    results = self._call(tensors, context)
                    watched = watcher.watched_variables()
            return tapes, results, watched
        with contextlib.ExitStack() as stack:
            for tape in reversed(tapes):  # outermost first
                stack.enter_context(tape)
                for t in diff:
                    watch(tape._tape, t)
            watcher = stack.enter_context(tf.VariableWatcher())
            results = self._call(tensors, context)
            watched = watcher.watched_variables()
        return tapes, results, watched

    @property
    def tapes(self) -> _Tapes:
        return self.island.tapes  # type: ignore[no-any-return]

    def _call(self, tensors: list[Any], context: Sequence[Any]) -> list[Any]:
        """The body called with this run's tensors, in the carried context; its checked outputs."""
        island = self.island
        args, kwargs = island.arguments.rebuild(tensors)
        losses = island.losses
        carry = island.carry
        saved = carry.enter(context) if carry.carries else None
        try:
            before = losses.snapshot() if losses.slots else None
            try:
                if island.override:
                    # The override lives in a ContextVar, and this may be a TF executor
                    # thread: enter it here, so tf.functions the body calls run eagerly.
                    # A fresh Scope per run: replicas may run this island concurrently.
                    with Scope(True, False, f"eager island {island.name}"):
                        out = island.fn(*args, **kwargs)
                else:
                    out = island.fn(*args, **kwargs)
            finally:
                added = losses.added(before, restore=True) if before is not None else None
        finally:
            if saved is not None:
                carry.leave(saved)
        outputs = island.outputs
        checked: list[Any] = outputs.check(out)
        if added is not None:
            checked += outputs.check_losses(added)
        return checked

    def refuse_unseen(self, missing: list[Any]) -> None:
        if missing:
            names = ", ".join(repr(v.name) for v in missing)
            raise IslandError(
                f"eager island {self.island.name!r} read the trainable variable(s) {names} in this run, "
                "but not in the trace that built the graph (a Python branch on a `.numpy()` value "
                "took another path there), so the graph has no gradient for them: they would "
                "silently get None. Read them on every path of the body (e.g. `w = "
                "tf.identity(self.kernel)` before the branch), or branch with tf.cond"
            )

    def gradient(self, order: int, call_id: int, dys: list[Any], specs: list[Any]) -> list[Any]:
        """One run of a gradient op: the kept run's tapes differentiated, then the call id of outer tapes."""
        island = self.island
        entry = self.tapes.take(call_id)
        if entry is None:
            raise IslandError(f"eager island {island.name!r}: the order-{order} gradient of one of its "
                              f"calls is not available: {self.tapes.why_missing()}")
        # The variables' components depend on the replica context (tf.distribute).
        carry = island.carry
        if carry.thread_mode is None:
            return self._differentiate(entry, dys, specs)
        saved = carry.enter()
        try:
            return self._differentiate(entry, dys, specs)
        finally:
            carry.leave(saved)

    def _differentiate(self, entry: _Entry, dys: list[Any], specs: list[Any]) -> list[Any]:
        tf = _tf or _load()
        inner, outer = entry.tapes[0], entry.tapes[1:]
        if entry.unseen:
            self.refuse_unseen([v for v, g in zip(entry.unseen, inner.gradient(
                entry.targets, entry.unseen, output_gradients=dys), strict=True) if g is not None])
        name = self.island.name
        if not outer:
            grads = _gradient(tf, inner, entry, dys)
            parts = [part for source, grad, spec in zip(entry.sources, grads, specs, strict=True)
                     for part in gradient_parts(name, source, grad, spec)]
            return [*parts, NO_CALL]
        with contextlib.ExitStack() as stack:
            # The outer tapes recorded the forward; let them record this
            # gradient too, so it can be differentiated again.
            for tape in reversed(outer):
                stack.enter_context(tape._ensure_recording())
                tape.watch(dys)
            grads = inner.gradient(entry.targets, entry.sources, output_gradients=dys)
            parts = [part for source, grad, spec in zip(entry.sources, grads, specs, strict=True)
                     for part in gradient_parts(name, source, grad, spec)]
        next_id = next_call_id()
        targets = [p for p in parts if _differentiable(p.dtype)]  # as gradient_gradient picks them
        self.tapes.keep(next_id, _Entry(outer, entry.sources + dys, targets, [], entry.nbytes))
        return [*parts, next_id]


def _gradient(tf: Any, tape: Any, entry: _Entry, dys: list[Any]) -> list[Any]:
    """`tape.gradient(entry.targets, entry.sources, output_gradients=dys)`, without its Python wrapping.

    Every target and output gradient is an eager tensor and every source a
    tensor or a variable (its handle, as `GradientTape.gradient` maps it):
    nothing there for that method's nest and composite handling to do.
    """
    eager = tf.EagerTensor
    if tape._tape is None or not all(d.__class__ is eager for d in dys):
        return tape.gradient(entry.targets, entry.sources, output_gradients=dys)  # type: ignore[no-any-return]
    sources = [tf.handle_or_self(s) for s in entry.sources]
    return tf.imperative_grad(tape._tape, entry.targets, sources, output_gradients=dys,  # type: ignore[no-any-return]
                              sources_raw=sources)

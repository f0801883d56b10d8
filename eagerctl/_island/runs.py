"""An island's run-time trips: its body run eagerly for the forward op, its tapes for the gradient op.

Both run in whatever thread TF's executor picked, called through the island's
callbacks (see `callbacks.py`). Stands on `callbacks`, `errors`, `gradients`,
`plumbing` and `tapes` (and `.._scope` for the eager override).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from .callbacks import no_call
from .errors import IslandError
from .gradients import gradient_parts
from .plumbing import _differentiable, _unique
from .tapes import _Entry, _Tapes, next_call_id


class _Runs:
    """Runs one island's body (recording tapes when a gradient was built) and its gradients."""

    def __init__(self, island: Any) -> None:
        self.island = island

    def forward(self, records: bool, eager_inputs: Sequence[Any]) -> list[Any]:
        """One run of the forward op: the body's outputs and losses, then the call id of its tapes."""
        import numpy as np
        import tensorflow as tf
        from tensorflow.python.eager import record

        island = self.island
        sources = island.sources
        tensors = list(eager_inputs[: len(island.arguments.inputs)])
        # One tape per gradient order some graph has built for this op; none
        # when this graph never differentiates it (nothing is kept alive).
        tapes = [tf.GradientTape(persistent=True) for _ in range(island.order)] if records else []
        watched: list[Any] = []
        with contextlib.ExitStack() as stack:
            for tape in reversed(tapes):  # outermost first
                stack.enter_context(tape)
                tape.watch([tensors[k] for k in sources.diff_input_pos])
            if tapes or sources.check_reads:
                watcher = stack.enter_context(record.VariableWatcher())
            context = eager_inputs[sources.context_pos:sources.context_pos + len(island.carry.tensors)]
            results = self._call(tensors, context)
            if tapes or sources.check_reads:
                watched = watcher.watched_variables()
        if not tapes:
            if sources.check_reads:
                self.refuse_unseen([v for v in _unique(watched) if v.trainable and _differentiable(v.dtype)])
            return [*results, no_call()]
        call_id = next_call_id()
        unseen = [v for v in _unique(watched)
                  if v.trainable and _differentiable(v.dtype) and id(v) not in sources.variable_ids]
        kept = [tensors[k] for k in sources.diff_input_pos] + list(sources.variables)
        nbytes = island.size.estimate(tensors, results, island.static)
        self.tapes.keep(call_id, _Entry(tapes, kept, [results[k] for k in sources.diff_out_pos], unseen,
                                        nbytes))
        return [*results, np.asarray(call_id, np.int64)]

    @property
    def tapes(self) -> _Tapes:
        return self.island.tapes  # type: ignore[no-any-return]

    def _call(self, tensors: list[Any], context: Sequence[Any]) -> list[Any]:
        """The body called with this run's tensors, in the carried context; its checked outputs."""
        from .._scope import Scope

        island = self.island
        args, kwargs = island.arguments.rebuild(tensors)
        losses = island.losses
        with contextlib.nullcontext() if island.carry.empty else island.carry.entered(context):
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
                added = losses.added(before, restore=True) if before is not None else []
        return island.outputs.check(out) + island.outputs.check_losses(added)  # type: ignore[no-any-return]

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
        with contextlib.nullcontext() if island.carry.thread_mode is None else island.carry.entered():
            return self._differentiate(entry, dys, specs)

    def _differentiate(self, entry: _Entry, dys: list[Any], specs: list[Any]) -> list[Any]:
        import numpy as np

        inner, outer = entry.tapes[0], entry.tapes[1:]
        if entry.unseen:
            self.refuse_unseen([v for v, g in zip(entry.unseen, inner.gradient(
                entry.targets, entry.unseen, output_gradients=dys), strict=True) if g is not None])
        with contextlib.ExitStack() as stack:
            # The outer tapes recorded the forward; let them record this
            # gradient too, so it can be differentiated again.
            for tape in reversed(outer):
                stack.enter_context(tape._ensure_recording())
                tape.watch(dys)
            grads = inner.gradient(entry.targets, entry.sources, output_gradients=dys)
            parts = [part for source, grad, spec in zip(entry.sources, grads, specs, strict=True)
                     for part in gradient_parts(self.island.name, source, grad, spec)]
        if not outer:
            return [*parts, no_call()]
        next_id = next_call_id()
        targets = [p for p in parts if _differentiable(p.dtype)]  # as gradient_gradient picks them
        self.tapes.keep(next_id, _Entry(outer, entry.sources + dys, targets, [], entry.nbytes))
        return [*parts, np.asarray(next_id, np.int64)]

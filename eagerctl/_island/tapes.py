"""Keeping the tapes of an island's runs until their gradient asks, bounded by runs and by bytes.

Each run that records tapes keeps them (`_Entry`) under a call id the forward
op returns; the gradient op finds them by that id. `_Tapes` bounds what waits
per island (`KEEP_PENDING`, `KEEP_BYTES`, oldest dropped first, the newest
always kept) and keeps the last `KEEP_DONE` differentiated runs for persistent
tapes that ask again; `_TapeSize` estimates a run's bytes from the traced body.
Raise the limits here (`eagerctl._island.tapes.KEEP_BYTES`): they are read at
each run. Stands on nothing in the package.
"""

from __future__ import annotations

import collections
import itertools
import threading
from typing import Any

KEEP_PENDING = 2**16
"""Runs per island whose tapes wait for their first gradient (oldest dropped first).

High: a `tf.while_loop` runs its body's island once per iteration, and its
gradient asks for the runs newest first, after all of them ran (a loop of
1,500 iterations failed under the bound of 1,024 this once had). `KEEP_BYTES`
is what bounds memory (each run counts at least `RUN_BYTES`)."""
KEEP_DONE = 4
"""Runs per island whose gradient was computed, kept for persistent tapes that ask again."""
KEEP_BYTES = 256 * 2**20
"""Estimated bytes of kept tapes per island (oldest dropped first; the newest run is always kept)."""
RUN_BYTES = 4096
"""Bytes a kept run counts at least: its tapes' own records, whatever its tensors (measured: 3 to 8 KB)."""

_call_ids = itertools.count(1)


def next_call_id() -> int:
    """A new id for a run (or a gradient run) that keeps tapes; 0 means none kept."""
    return next(_call_ids)


class _Entry:
    """What one run of an island op keeps for the gradient op after it."""

    __slots__ = ("nbytes", "sources", "tapes", "targets", "unseen")

    def __init__(self, tapes: list[Any], sources: list[Any], targets: list[Any], unseen: list[Any],
                 nbytes: int) -> None:
        self.tapes = tapes  # innermost first; tapes[0] differentiates targets
        self.sources = sources
        self.targets = targets
        self.unseen = unseen  # trainable variables read by this run but not by the trace
        self.nbytes = nbytes


class _Tapes:
    """The runs of one island whose tapes are kept: waiting for a gradient, or differentiated."""

    def __init__(self) -> None:
        self.pending: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self.done: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self.pending_bytes = 0
        self.lock = threading.Lock()

    def keep(self, call_id: int, entry: _Entry) -> None:
        with self.lock:
            self.pending[call_id] = entry
            self.pending_bytes += entry.nbytes
            while len(self.pending) > 1 and (len(self.pending) > KEEP_PENDING
                                             or self.pending_bytes > KEEP_BYTES):
                _, dropped = self.pending.popitem(last=False)
                self.pending_bytes -= dropped.nbytes

    def take(self, call_id: int) -> _Entry | None:
        """The run's entry for its gradient (moved to the differentiated runs), or None if not kept."""
        with self.lock:
            entry = self.pending.pop(call_id, None)
            if entry is not None:
                self.pending_bytes -= entry.nbytes
            else:
                entry = self.done.pop(call_id, None)
            if entry is not None:
                self.done[call_id] = entry
                while len(self.done) > KEEP_DONE:
                    self.done.popitem(last=False)
        return entry

    @staticmethod
    def why_missing() -> str:
        return (f"eagerctl keeps the tapes of the last {KEEP_PENDING} runs of an island that wait "
                f"for a gradient (at most {KEEP_BYTES} bytes, estimated) and of the last "
                f"{KEEP_DONE} whose gradient was computed, and this run is older, or it recorded no "
                "tape for this order of gradient because no graph had built that gradient when it "
                "ran; compute gradients sooner after the run, in the tf.function that calls the "
                "island (or raise eagerctl._island.tapes.KEEP_PENDING / KEEP_BYTES)")


class _TapeSize:
    """What a kept run's tapes hold, estimated from the traced body: every op's output."""

    def __init__(self, scratch: Any) -> None:
        import tensorflow as tf

        self.fixed_bytes = self.batch_bytes = 0
        self.static_estimate: int | None = None
        for graph_op in scratch.get_operations():
            for t in graph_op.outputs:
                if t.dtype == tf.resource or t.shape.rank is None:
                    continue
                known = t.dtype.size
                for d in t.shape:
                    known *= 1 if d is None else d
                if t.shape.is_fully_defined():
                    self.fixed_bytes += known
                else:
                    self.batch_bytes += known

    def estimate(self, tensors: list[Any], results: list[Any], static: bool) -> int:
        """Bytes a run's tapes keep, at this run's batch size; `static`: every traced shape is known."""
        known = self.static_estimate
        if known is not None:  # every input and output shape static in the trace: the same each run
            return known
        batch = next((int(t.shape[0]) for t in tensors if t.shape.rank and t.shape[0] is not None), 1)
        size = sum(int(t.shape.num_elements() or 0) * t.dtype.size for t in (*tensors, *results))
        estimate = int(RUN_BYTES + self.fixed_bytes + self.batch_bytes * batch + size)
        if static:
            self.static_estimate = estimate
        return estimate

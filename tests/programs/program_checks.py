"""What every program in tests/programs/ checks, against the same program compiled without eagerctl.

Each program is written the way the public Keras and TensorFlow tutorials
write it (synthetic data, a few batches), once with `@eagerctl.debuggable` on
the function a user would suspect and once without, both from the same seed.
The checks:

- the decorated body ran eagerly on every step (`tf.executing_eagerly()`
  recorded inside it), after one scratch trace;
- losses and final weights agree within `RTOL`/`ATOL`;
- memory stays flat: process RSS over `MEMORY_STEPS` more steps, after a
  warm-up, grows less than `MEMORY_BUDGET` bytes.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

keras = tf.keras
KERAS_3 = int(tf.__version__.split(".")[1]) >= 16  # tf.keras is Keras 3 from TF 2.16

# float32, and the compiled program runs through Grappler and oneDNN rewrites
# (fused and reordered ops) that the island's op-by-op run does not: agreement
# to about 1e-6 per step, which a few training steps can grow tenfold.
RTOL = 1e-4
ATOL = 1e-5

MEMORY_STEPS = 30
# RSS is coarse (allocator arenas, TF's caches): a leak of the size islands
# used to have (a kept tape per run) shows as megabytes over 30 steps of these
# programs; a flat program stays well under this.
MEMORY_BUDGET = 24 * 2**20


def identity(fn: Any) -> Any:
    return fn


def maybe_debuggable(debug: bool, **options: Any) -> Callable[[Any], Any]:
    """`@eagerctl.debuggable(**options)` in the debugged program, nothing in the reference one."""
    if not debug:
        return identity
    import eagerctl

    return eagerctl.debuggable(**options)  # type: ignore[no-any-return]


def assert_ran_eagerly_every_step(record: Sequence[bool], steps: int, per_step: int = 1) -> None:
    """One scratch trace (False) at most per island, then `per_step` eager runs per step."""
    eager = [r for r in record if r]
    assert len(eager) == steps * per_step, f"the body ran eagerly {len(eager)} times in {steps} steps: " \
                                           f"{record}"
    assert record[-steps * per_step:] == [True] * (steps * per_step), record


def assert_close(got: Any, want: Any, what: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    got_flat = [np.asarray(g) for g in tf.nest.flatten(got)]
    want_flat = [np.asarray(w) for w in tf.nest.flatten(want)]
    assert len(got_flat) == len(want_flat), f"{what}: {len(got_flat)} values against {len(want_flat)}"
    for i, (g, w) in enumerate(zip(got_flat, want_flat, strict=True)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what} [{i}]")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def assert_memory_flat(step: Callable[[], Any], warmup: int = 5, steps: int = MEMORY_STEPS) -> int:
    """Run `step` `warmup` times, then `steps` times; RSS must grow less than MEMORY_BUDGET."""
    for _ in range(warmup):
        step()
    gc.collect()
    before = rss_bytes()
    for _ in range(steps):
        step()
    gc.collect()
    grown = rss_bytes() - before
    assert grown < MEMORY_BUDGET, f"RSS grew {grown / 2**20:.1f} MiB over {steps} steps"
    return grown

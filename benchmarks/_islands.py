"""Island memory figures: bytes retained per island call, and RSS over thousands of train steps.

Heap bytes are glibc's `mallinfo2` (bytes in use, mmap'd blocks included),
where TF's CPU tensors and its C++ caches live: a tape kept per call, or a
constant TF caches per call, shows there. RSS is what a user watches: over
5,000 train steps (500 in `--quick`) with the loss as an eager island against
the same step compiled, both after a warm-up.
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable
from typing import Any

from benchmarks._figures import Config, Row, fmt_bytes


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def heap_bytes() -> int:
    """Bytes malloc has handed out and not had back (glibc); RSS elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)
    except (OSError, AttributeError):
        return rss_bytes()


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _retained(step: Callable[[], Any], calls: int, measure: Callable[[], int]) -> int:
    for _ in range(max(50, calls // 20)):
        step()
    gc.collect()
    before = measure()
    for _ in range(calls):
        step()
    gc.collect()
    return measure() - before


def _workload(island: bool) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """A 512-wide train step whose loss head is an island (or compiled), and its inference."""
    import numpy as np
    import tensorflow as tf

    from eagerctl._island import call_as_island

    rng = np.random.default_rng(0)
    w1 = tf.Variable(rng.normal(scale=0.05, size=(512, 512)).astype("float32"))
    w2 = tf.Variable(rng.normal(scale=0.05, size=(512, 1)).astype("float32"))
    x = tf.constant(rng.normal(size=(256, 512)).astype("float32"))  # a 512 KiB activation
    y = tf.constant(rng.normal(size=(256, 1)).astype("float32"))

    def head(h: Any, y: Any) -> Any:
        return tf.reduce_mean(tf.square(tf.matmul(h, w2) - y))

    def loss(h: Any, y: Any) -> Any:
        return call_as_island(head, (h, y), {}, name="head") if island else head(h, y)

    @tf.function
    def train() -> Any:
        with tf.GradientTape() as tape:
            value = loss(tf.nn.relu(tf.matmul(x, w1)), y)
        g1, g2 = tape.gradient(value, [w1, w2])
        w1.assign_sub(1e-4 * g1)
        w2.assign_sub(1e-4 * g2)
        return value

    @tf.function
    def infer() -> Any:
        return loss(tf.nn.relu(tf.matmul(x, w1)), y)

    return train, infer


def island_memory(cfg: Config) -> list[Row]:
    calls = 500 if cfg.quick else 3000
    steps = 500 if cfg.quick else 5000
    train, infer = _workload(island=True)
    rows = []
    for kind, step in (("inference", infer), ("training", train)):
        per_call = _retained(step, calls, heap_bytes) / calls
        rows.append(Row(
            f"island_bytes_{kind}", f"heap retained per island call ({kind}, 512 KiB activation)",
            f"{fmt_bytes(per_call)} per call", "one kept tape: ~1 MiB per call", per_call / 256,
            "under 256 B per call", 1.0,
            note=f"ratio = bytes per call / 256 B; {calls:,} calls after a warm-up, glibc heap",
            data={"calls": calls, "bytes_per_call": per_call}).judge())
    compiled_train, _ = _workload(island=False)
    island_growth = _retained(train, steps, rss_bytes)
    compiled_growth = _retained(compiled_train, steps, rss_bytes)
    slack = 8 * 2**20
    rows.append(Row(
        "island_rss_steps", f"RSS growth over {steps:,} train steps, loss as an island",
        fmt_bytes(island_growth), f"compiled step: {fmt_bytes(compiled_growth)}",
        (island_growth - compiled_growth) / slack, "within 8 MiB of the compiled step", 1.0,
        note="ratio = (island growth - compiled growth) / 8 MiB; RSS after a warm-up",
        data={"steps": steps, "island_growth": island_growth, "compiled_growth": compiled_growth}).judge())
    return rows

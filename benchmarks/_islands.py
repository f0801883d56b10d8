"""Island figures: speed against `tf.py_function`, the crossover with eager, and memory.

Speed: the same compiled train step with its loss as an eager island
(`@debuggable`) and with the loss through `tf.py_function` (TF's own way to
run a Python body eagerly in a graph, with gradients), side by side.
Crossover: a step of tiny island bodies against the whole function eager.
Memory: bytes retained per island call, and RSS over thousands of train steps.

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

from benchmarks import _workloads
from benchmarks._figures import Config, Row, _raw, _step_runner, fmt_bytes, fmt_time
from benchmarks._harness import interleave


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

    @tf.function  # type: ignore[untyped-decorator]
    def train() -> Any:
        with tf.GradientTape() as tape:
            value = loss(tf.nn.relu(tf.matmul(x, w1)), y)
        g1, g2 = tape.gradient(value, [w1, w2])
        w1.assign_sub(1e-4 * g1)
        w2.assign_sub(1e-4 * g2)
        return value

    @tf.function  # type: ignore[untyped-decorator]
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


# -- speed: an island against tf.py_function -------------------------------------------
def island_speed(cfg: Config) -> list[Row]:
    """Per workload: the step with its loss an island over the step with it through `tf.py_function`."""
    import eagerctl
    from eagerctl import eager_scope

    rows = []
    for build in (_workloads.article, _workloads.mlp, _workloads.conv, _workloads.distill):
        variants = {"compiled": build(), "island": build(wrap_loss=eagerctl.debuggable),
                    "py_function": build(wrap_loss=_workloads.py_function)}
        runners = {}
        runs = {}
        for name, w in variants.items():
            _step_runner(w.step, w.args, eager_scope)(1)  # the optimizer's variables, created eagerly
            _step_runner(w.step, w.args, None)(1)  # traces the step
            before = len(w.loss_calls)
            _step_runner(w.step, w.args, None)(2)
            runs[name] = (len(w.loss_calls) - before) / 2  # loss body runs per compiled call
            runners[name] = _step_runner(w.step, w.args, None)
        res = interleave(runners, "py_function", rounds=cfg.workload_rounds, seconds=cfg.workload_seconds)
        per = {k: s.per_op for k, s in res.sides.items()}
        ok = runs["island"] == 1 and runs["py_function"] == 1
        short = variants["compiled"].name.split(" (")[0]
        rows.append(Row(
            f"island_speed_{variants['compiled'].key}", f"{short}, loss as an eager island",
            fmt_time(per["island"]), f"loss through `tf.py_function`: {fmt_time(per['py_function'])}",
            res.ratios["island"], "at most 1.0", 1.0,
            note=(f"compiled without either: {fmt_time(per['compiled'])} "
                  f"(island {res.ratios['island'] / res.ratios['compiled']:.2f}x of it); "
                  f"loss body runs per step: island {runs['island']:g}, py_function {runs['py_function']:g}"),
            data={**_raw(res), "loss_body_runs_per_step": runs}).judge(ok))
    return rows


# -- crossover: tiny islands against the whole function eager ----------------------------
CROSSOVER_ISLANDS = (0, 1, 2, 4, 8, 16)
CROSSOVER_OPS = 32  # compiled ops per step outside the islands


def _chain(islands: int, wrap: Any) -> Any:
    """A gradient step: a chain of CROSSOVER_OPS small compiled ops with `islands` tiny bodies in it."""
    import tensorflow as tf

    w = tf.Variable(tf.random.stateless_normal((16, 16), seed=(1, 2)) * 0.1)

    def tiny(h: Any) -> Any:
        return h * 0.5 + 0.1

    body = wrap(tiny) if wrap is not None else tiny
    every = CROSSOVER_OPS // islands if islands else 0

    @tf.function  # type: ignore[untyped-decorator]
    def step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            h = x
            for i in range(CROSSOVER_OPS // 2):
                h = tf.tanh(tf.matmul(h, w))  # two ops
                if islands and (2 * i) % every == 0 and (2 * i) // every < islands:
                    h = body(h)
            loss = tf.reduce_sum(h)
        return tape.gradient(loss, w)

    return step


def crossover(cfg: Config) -> list[Row]:
    """Per number of tiny islands in a step: its time with islands over the whole function eager."""
    import tensorflow as tf

    import eagerctl
    from eagerctl import eager_scope

    x = tf.random.stateless_normal((8, 16), seed=(3, 4))
    rows = []
    for k in CROSSOVER_ISLANDS:
        island_step = _chain(k, eagerctl.debuggable)
        plain = _chain(k, None)
        runners = {"islands": _step_runner(island_step, (x,), None),
                   "eager": _step_runner(plain, (x,), eager_scope),
                   "compiled": _step_runner(plain, (x,), None)}
        res = interleave(runners, "eager", rounds=cfg.workload_rounds, seconds=cfg.workload_seconds / 2)
        per = {name: side.per_op for name, side in res.sides.items()}
        rows.append(Row(
            f"crossover_{k}", f"  {k} tiny island(s) in a {CROSSOVER_OPS}-op gradient step",
            fmt_time(per["islands"]), f"whole function eager: {fmt_time(per['eager'])}",
            res.ratios["islands"], "(reference: below 1, islands are cheaper)",
            note=f"compiled, no island: {fmt_time(per['compiled'])}",
            data={**_raw(res), "islands": k, "ops": CROSSOVER_OPS}))
    return rows

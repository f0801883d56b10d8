"""The measured figures: eagerctl against its anchor, one function per row.

Every function returns `Row`s. Ratios are eagerctl over the anchor (lower is
better) except the thread row, a throughput ratio (higher is better). Nothing
here asserts: a missed target is reported, not raised.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks import _workloads
from benchmarks._harness import Result, Runner, calibrate, interleave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIB = 1024

# Single-threaded Python work (the hook, scopes, @debuggable) is timed in CPU
# time of this process: on a machine shared with other processes, wall time
# also counts the time this one waits for a core, which drowns a 1 % figure.
# Quiet, the two agree. Threads, imports and train steps use wall time, which
# is what their figures are about.
cpu_clock = time.process_time


@dataclass
class Config:
    quick: bool
    rounds: int  # rounds for the micro figures
    seconds: float  # target length of one round of one side
    workload_rounds: int
    workload_seconds: float
    import_rounds: int
    memory_cycles: int
    exit_active: int = 10_000


QUICK = Config(quick=True, rounds=7, seconds=0.01, workload_rounds=3, workload_seconds=0.06,
               import_rounds=4, memory_cycles=64_000)
# Many short rounds rather than a few long ones: the sides of one round run
# close together in time, so a change in the machine's load mostly hits both.
FULL = Config(quick=False, rounds=61, seconds=0.015, workload_rounds=15, workload_seconds=0.25,
              import_rounds=25, memory_cycles=1_000_000)


@dataclass
class Row:
    key: str
    figure: str
    ours: str
    anchor: str
    ratio: float | None
    target: str
    bound: float | None = None  # the target's number, for the plot
    kind: str = "max"  # "max": ratio <= bound passes; "min": ratio >= bound passes
    met: bool | None = None
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def judge(self, extra: bool = True) -> Row:
        if self.ratio is not None and self.bound is not None:
            ok = self.ratio <= self.bound if self.kind == "max" else self.ratio >= self.bound
            self.met = ok and extra
        return self


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e9:.0f} ns"


def fmt_bytes(n: float) -> str:
    if abs(n) >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n:.0f} B"


def _raw(result: Result) -> dict[str, Any]:
    return {
        "per_op_seconds": {k: s.per_op for k, s in result.sides.items()},
        "ratios": result.ratios,
        "ops_per_round": result.number,
        "rounds": result.rounds,
        "round_seconds_per_op": {k: s.rounds for k, s in result.sides.items()},
    }


def _micro(cfg: Config, runners: dict[str, Runner], anchor: str, **kw: Any) -> Result:
    return interleave(runners, anchor, rounds=cfg.rounds, seconds=cfg.seconds, **kw)


# -- the hook on a compiled call ------------------------------------------------
def hook_call(cfg: Config) -> list[Row]:
    import tensorflow as tf

    import eagerctl

    def plus_one(x: Any) -> Any:
        return x + 1.0

    add_one = tf.function(plus_one)

    x = tf.constant(1.0)
    add_one(x)

    def calls(n: int) -> float:
        start = cpu_clock()
        for _ in range(n):
            add_one(x)
        return cpu_clock() - start

    try:
        # The smallest difference to resolve: more, shorter rounds, so that
        # drift between the two sides of a round is smaller.
        res = interleave({"hook": calls, "original": calls}, "original", rounds=cfg.rounds * 3,
                         seconds=cfg.seconds / 2,
                         before={"hook": eagerctl.install_hook, "original": eagerctl.uninstall_hook})
    finally:
        eagerctl.install_hook()
    return [Row(
        "hook_call", "compiled `tf.function` call, hook installed",
        fmt_time(res.sides["hook"].per_op), f"TF's own property: {fmt_time(res.sides['original'].per_op)}",
        res.ratios["hook"], "at most 1.01", 1.01, data=_raw(res),
    ).judge()]


# -- scope enter+exit --------------------------------------------------------------
class _MinimalScope:
    """The least a Python-level scope can do: a new object per `with`, a ContextVar set and reset.

    No checks (thread, task, tracing, misuse), no location, no registry: what
    any pure-Python context manager with a contextvars override costs.
    """

    __slots__ = ("token", "value", "var")

    def __init__(self, var: Any, value: bool) -> None:
        self.var = var
        self.value = value

    def __enter__(self) -> None:
        self.token = self.var.set(self.value)

    def __exit__(self, *exc: object) -> None:
        self.var.reset(self.token)


def scope_enter_exit(cfg: Config) -> list[Row]:
    import contextvars

    import tensorflow as tf
    from tensorflow.python.framework import test_util

    from eagerctl import eager_scope

    tf_cm = test_util.run_functions_eagerly
    var: contextvars.ContextVar[bool | None] = contextvars.ContextVar("bench", default=None)

    def local(n: int) -> float:
        start = cpu_clock()
        for _ in range(n):
            with eager_scope():
                pass
        return cpu_clock() - start

    def process(n: int) -> float:
        start = cpu_clock()
        for _ in range(n):
            with eager_scope(process=True):
                pass
        return cpu_clock() - start

    def tf_context_manager(n: int) -> float:
        start = cpu_clock()
        for _ in range(n):
            with tf_cm(True):
                pass
        return cpu_clock() - start

    def raw_flag(n: int) -> float:
        set_flag = tf.config.run_functions_eagerly  # TF's own, bound by `before`
        start = cpu_clock()
        for _ in range(n):
            set_flag(True)
            set_flag(False)
        return cpu_clock() - start

    def minimal_scope(n: int) -> float:
        start = cpu_clock()
        for _ in range(n):
            with _MinimalScope(var, True):
                pass
        return cpu_clock() - start

    def bare_contextvar(n: int) -> float:
        start = cpu_clock()
        for _ in range(n):
            token = var.set(True)
            var.reset(token)
        return cpu_clock() - start

    # TF's helper and the raw toggle run as without eagerctl: with TF's own
    # `run_functions_eagerly`, not the hook's (which routes writes to the registry).
    from eagerctl import _hook

    def tf_writer() -> None:
        _hook._uninstall_writer()

    def hook_writer() -> None:
        _hook._install_writer_again()

    runners: dict[str, Runner] = {"local": local, "process": process, "tf": tf_context_manager,
               "flag": raw_flag, "contextvar": bare_contextvar, "minimal": minimal_scope}
    try:
        res = _micro(cfg, runners, "tf",
                     before={name: tf_writer if name in ("tf", "flag") else hook_writer for name in runners})
    finally:
        hook_writer()
    tf_text = f"`test_util.run_functions_eagerly`: {fmt_time(res.sides['tf'].per_op)}"
    raw = _raw(res)
    return [
        # Issue 10's target: no slower than before its checks (0.93 in the README's run).
        Row("scope_local", "`eager_scope()` enter+exit", fmt_time(res.sides["local"].per_op), tf_text,
            res.ratios["local"], "at most 0.93", 0.93, data=raw).judge(),
        Row("floor_flag", "  floor: raw flag toggle (True, False)", fmt_time(res.sides["flag"].per_op),
            tf_text, res.ratios["flag"], "(reference)", data={}),
        Row("floor_contextvar", "  floor: bare `ContextVar` set+reset",
            fmt_time(res.sides["contextvar"].per_op), tf_text, res.ratios["contextvar"], "(reference)",
            data={}),
        Row("floor_minimal_scope", "  floor: minimal Python scope (new object, `with`, ContextVar set+reset)",
            fmt_time(res.sides["minimal"].per_op), tf_text, res.ratios["minimal"], "(reference)", data={}),
        Row("scope_process", "`eager_scope(process=True)` enter+exit", fmt_time(res.sides["process"].per_op),
            tf_text, res.ratios["process"], "at most 1.0", 1.0, data=raw).judge(),
    ]


# -- @debuggable --------------------------------------------------------------------
def debuggable_calls(cfg: Config) -> list[Row]:
    import eagerctl

    deco = getattr(eagerctl, "debuggable", None)
    if deco is None:
        return [
            Row("debuggable_call", "`@debuggable` call", "not available", "-", None, "at most 1.05",
                note="eagerctl.debuggable does not exist in this checkout"),
            Row("debuggable_disabled", "`@debuggable(enabled=False)` call", "not available", "-", None,
                "at most 1.02", note="eagerctl.debuggable does not exist in this checkout"),
        ]
    import tensorflow as tf

    def body(x: Any) -> Any:
        return tf.reduce_sum(x * x)

    fn = tf.function(body)
    on = deco(fn)
    off = deco(enabled=False)(fn)
    x = tf.ones((4,))
    fn(x)

    def calls(f: Callable[[Any], Any]) -> Runner:
        def run(n: int) -> float:
            start = cpu_clock()
            for _ in range(n):
                f(x)
            return cpu_clock() - start

        return run

    def global_on() -> None:
        tf.config.run_functions_eagerly(True)

    def global_off() -> None:
        tf.config.run_functions_eagerly(False)

    try:
        eager = _micro(cfg, {"debuggable": calls(on), "global": calls(fn)}, "global",
                       before={"debuggable": global_off, "global": global_on})
    finally:
        tf.config.run_functions_eagerly(False)
    compiled = _micro(cfg, {"disabled": calls(off), "bare": calls(fn)}, "bare")
    return [
        Row("debuggable_call", "`@debuggable` call", fmt_time(eager.sides["debuggable"].per_op),
            f"same `tf.function`, global eager flag: {fmt_time(eager.sides['global'].per_op)}",
            eager.ratios["debuggable"], "at most 1.05", 1.05, data=_raw(eager)).judge(),
        Row("debuggable_disabled", "`@debuggable(enabled=False)` call",
            fmt_time(compiled.sides["disabled"].per_op),
            f"bare `tf.function`: {fmt_time(compiled.sides['bare'].per_op)}",
            compiled.ratios["disabled"], "at most 1.02", 1.02, data=_raw(compiled)).judge(),
    ]


# -- process-scope exit with many scopes active -----------------------------------------
def process_exit(cfg: Config) -> list[Row]:
    from eagerctl import _registry, eager_scope

    queue: deque[Any] = deque()

    def fill(size: int) -> Callable[[], None]:
        def setup() -> None:
            while queue:
                queue.popleft().__exit__(None, None, None)
            for i in range(size):
                scope = eager_scope(i % 2 == 0, process=True)
                scope.__enter__()
                queue.append(scope)

        return setup

    # Each op exits the *oldest* active scope (the deepest, the worst case for a
    # stack) and enters a fresh one, so the number active stays constant. Only
    # the exit is timed.
    def exits(n: int) -> float:
        clock = time.perf_counter
        total = 0.0
        for i in range(n):
            oldest = queue.popleft()
            start = clock()
            oldest.__exit__(None, None, None)
            total += clock() - start
            scope = eager_scope(i % 2 == 0, process=True)
            scope.__enter__()
            queue.append(scope)
        return total

    big, small = cfg.exit_active, 10
    try:
        res = _micro(cfg, {"many": exits, "few": exits}, "few",
                     before={"many": fill(big), "few": fill(small)})
    finally:
        fill(0)()
    left = _registry.REGISTRY.active_count()
    return [Row(
        "process_exit", f"process-scope exit, {big:,} scopes active", fmt_time(res.sides["many"].per_op),
        f"{small} active: {fmt_time(res.sides['few'].per_op)}", res.ratios["many"], "at most 1.5", 1.5,
        note=f"oldest scope exited each time; {left} left active after", data=_raw(res),
    ).judge(left == 0)]


# -- threads --------------------------------------------------------------------------
def threads(cfg: Config, count: int = 8) -> list[Row]:
    from eagerctl import _scope, eager_scope

    errors: list[BaseException] = []

    def cycles(k: int) -> None:
        try:
            for _ in range(k):
                with eager_scope():
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported in the row
            errors.append(exc)

    cpu: dict[int, list[float]] = {}  # workers -> CPU seconds per cycle, each round

    # Wall time is the figure (throughput is what a collapse would hurt); the
    # process's CPU time per cycle is kept as a cross-check that load on a
    # shared machine cannot skew: the OS gives 8 runnable threads a bigger
    # share of a busy machine than 1.
    def in_threads(workers: int) -> Runner:
        def run(n: int) -> float:
            per = n // workers
            gate = threading.Barrier(workers + 1)

            def work() -> None:
                gate.wait()
                cycles(per)

            pool = [threading.Thread(target=work) for _ in range(workers)]
            for t in pool:
                t.start()
            gate.wait()
            start, start_cpu = time.perf_counter(), cpu_clock()
            for t in pool:
                t.join()
            took = time.perf_counter() - start
            cpu.setdefault(workers, []).append((cpu_clock() - start_cpu) / n)
            return took

        return run

    one = in_threads(1)
    n = calibrate(one, cfg.seconds)
    n = max(count, n - n % count)
    res = _micro(cfg, {"many": in_threads(count), "one": one}, "one", number={"many": n, "one": n})
    throughput = 1 / res.ratios["many"]  # per-op time ratio inverted
    leaked = len(_scope.LIVE_LOCAL)
    # Same rounds, same order: the last `rounds` entries of each side pair up.
    cpu_ratio = statistics.median(
        one / many for one, many in zip(cpu[1][-cfg.rounds:], cpu[count][-cfg.rounds:], strict=True))
    return [Row(
        "threads", f"local scopes, {count} threads entering+exiting",
        f"{1 / res.sides['many'].per_op / 1e3:,.0f} k cycles/s",
        f"one thread: {1 / res.sides['one'].per_op / 1e3:,.0f} k cycles/s",
        throughput, "at least 0.8 (throughput)", 0.8, kind="min",
        note=(f"{len(errors)} errors, {leaked} local scopes left; in CPU time per cycle, "
              f"{count} threads run at {cpu_ratio:.2f} of one thread's throughput"),
        data={**_raw(res), "cpu_throughput_ratio": cpu_ratio},
    ).judge(not errors and leaked == 0)]


# -- memory ---------------------------------------------------------------------------
def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the traced figure still stands
        return 0


def memory(cfg: Config) -> list[Row]:
    import tracemalloc

    import tensorflow as tf

    from eagerctl import _local, _registry, _scope, eager_scope, graph_scope

    @eager_scope()
    def decorated() -> None:
        pass

    @graph_scope(process=True)
    def decorated_process() -> None:
        pass

    def generator() -> Any:
        yield 1

    scoped_generator = eager_scope()(generator)
    reused = eager_scope()
    per_iteration = 8  # enter/exit cycles per iteration of `batch`

    def batch(n: int) -> None:
        for _ in range(n):
            with eager_scope():
                with graph_scope():
                    pass
            with eager_scope(process=True):
                pass
            with graph_scope(process=True):
                pass
            decorated()
            decorated_process()
            for _ in scoped_generator():  # entered and exited around the body's one step
                pass
            with reused:
                pass

    flag_before = tf.config.functions_run_eagerly()
    batch(2000)  # warm up: first-use caches are not retention
    gc.collect()
    rss_before = _rss()
    blocks_before = sys.getallocatedblocks()
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    iterations = cfg.memory_cycles // per_iteration
    batch(iterations)
    took = time.perf_counter() - start
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    gc.collect()
    blocks_after = sys.getallocatedblocks()
    rss_after = _rss()
    retained = traced_after - traced_before
    left = (_registry.REGISTRY.active_count(), len(_scope.LIVE_LOCAL), _local.STACK.get() is not None)
    clean = left == (0, 0, False) and tf.config.functions_run_eagerly() == flag_before
    cycles = iterations * per_iteration
    return [Row(
        "memory", f"{cycles:,} scope enter/exit cycles", f"{fmt_bytes(retained)} retained",
        f"before: RSS {fmt_bytes(rss_before)}", retained / (64 * KIB), "under 64 KiB, no scope left", 1.0,
        note=(f"ratio = retained / 64 KiB; RSS {rss_after - rss_before:+,} B, allocated blocks "
              f"{blocks_after - blocks_before:+,}; registry/live/stack left: {left}"),
        data={"cycles": cycles, "retained_bytes": retained, "rss_before": rss_before, "rss_after": rss_after,
              "blocks_delta": blocks_after - blocks_before, "left": list(left), "seconds": took,
              "mix": ("local eager with nested local graph, process eager, process graph, decorated "
                      "function (local and process), decorated generator, one reused scope object")},
    ).judge(clean)]


# -- import time ------------------------------------------------------------------------
_IMPORT_PROBE = (
    "import sys, time\n"
    "start = time.perf_counter()\n"
    "import {module}\n"
    "took = time.perf_counter() - start\n"
    "print(took, 'tensorflow' in sys.modules)\n"
)


def import_time(cfg: Config) -> list[Row]:
    import shutil
    import tempfile

    tf_seen: list[bool] = []
    # Both imports read cached bytecode, as after `pip install` (which compiles
    # it): a checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile
    # eagerctl's source on every import while wrapt's wheel has its .pyc. The
    # cache goes to a temporary prefix, never into the checkout; the warm-up
    # round fills it.
    cache = tempfile.mkdtemp(prefix="eagerctl-bench-pyc-")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache

    def fresh(module: str) -> Runner:
        def run(n: int) -> float:
            total = 0.0
            for _ in range(n):
                out = subprocess.run(
                    [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
                    cwd=ROOT, env=env, capture_output=True, text=True, check=True,
                ).stdout.split()
                total += float(out[0])
                if module == "eagerctl":
                    tf_seen.append(out[1] == "True")
            return total

        return run

    try:
        res = interleave({"eagerctl": fresh("eagerctl"), "wrapt": fresh("wrapt")}, "wrapt",
                         rounds=cfg.import_rounds, seconds=0, number={"eagerctl": 1, "wrapt": 1})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    imported_tf = any(tf_seen)
    return [Row(
        "import", "`import eagerctl`, fresh interpreter", fmt_time(res.sides["eagerctl"].per_op),
        f"`import wrapt`: {fmt_time(res.sides['wrapt'].per_op)}", res.ratios["eagerctl"],
        "at most 1.3, TF not imported", 1.3,
        note=("TensorFlow imported!" if imported_tf else "TensorFlow not imported")
        + "; bytecode cached for both, as after pip install",
        data=_raw(res),
    ).judge(not imported_tf)]


# -- train steps: compiled against eager ---------------------------------------------------
@dataclass
class StepResult:
    key: str
    name: str
    compiled: float  # seconds per call
    eager: float
    slowdown: float  # median over rounds of eager / compiled
    loss_debuggable: float | None = None  # compiled step, only its loss `@debuggable`
    loss_slowdown: float | None = None  # median over rounds of that / compiled
    loss_mode: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _step_runner(step: Any, args: tuple[Any, ...], scope: Callable[[], Any] | None) -> Runner:
    def run(n: int) -> float:
        import contextlib

        with scope() if scope is not None else contextlib.nullcontext():
            start = time.perf_counter()
            for _ in range(n):
                out = step(*args)
            out.numpy()  # CPU ops are synchronous; this is a guard, not a wait
            return time.perf_counter() - start

    return run


def train_steps(cfg: Config) -> tuple[list[StepResult], str]:
    """Per call: compiled, eager, and compiled with only the loss `@debuggable`.

    Returns the results and, when `@debuggable` is absent, why its column is empty.
    """
    import eagerctl
    from eagerctl import eager_scope

    deco = getattr(eagerctl, "debuggable", None)
    absent = "" if deco is not None else "not available: eagerctl.debuggable does not exist in this checkout"
    results = []
    for build in (_workloads.article, _workloads.mlp, _workloads.conv):
        w = build()
        runners = {"compiled": _step_runner(w.step, w.args, None),
                   "eager": _step_runner(w.step, w.args, eager_scope)}
        runners["eager"](1)  # creates the optimizer's variables eagerly, before tracing
        runners["compiled"](1)
        extra: dict[str, Any] = {}
        mode = ""
        if deco is not None:
            d = build(wrap_loss=deco)
            _step_runner(d.step, d.args, eager_scope)(1)  # the optimizer's variables, created eagerly
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                _step_runner(d.step, d.args, None)(1)  # traces the step
            before = len(d.loss_calls)
            _step_runner(d.step, d.args, None)(3)
            runs = (len(d.loss_calls) - before) / 3
            mode = "island" if runs >= 1 else "traced"
            extra = {"loss_body_runs_per_compiled_call": runs,
                     "loss_mode": ("island: the loss body runs eagerly on every call of the compiled step"
                                   if runs >= 1 else
                                   "traced: the loss body ran only while tracing (no eager island)"),
                     "warnings_at_trace": [str(c.message) for c in caught]}
            runners["loss_debuggable"] = _step_runner(d.step, d.args, None)
        res = interleave(runners, "compiled", rounds=cfg.workload_rounds, seconds=cfg.workload_seconds)
        result = StepResult(w.key, w.name, res.sides["compiled"].per_op, res.sides["eager"].per_op,
                            res.ratios["eager"], loss_mode=mode, extra={**extra, "raw": _raw(res)})
        if "loss_debuggable" in res.sides:
            result.loss_debuggable = res.sides["loss_debuggable"].per_op
            result.loss_slowdown = res.ratios["loss_debuggable"]
        results.append(result)
    return results, absent

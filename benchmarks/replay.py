"""What `eagerctl.replay()` costs while nothing fails, and what it keeps.

`python -m benchmarks.replay [--quick] [--json FILE]`

For the 512-wide MLP and the small conv train steps of `_workloads`, side by
side in one process (alternating rounds, the median of per-round ratios, see
`_harness`), per step:

- compiled: the plain `tf.function` step, the anchor of every ratio;
- replay(): the same step inside `eagerctl.replay()` (one compiled read of the
  written variables before the call, one fused finiteness check after it);
- replay(check_variables=True): the check also covers the variables written;
- tf.debugging.enable_check_numerics(): TF's own tool, on a copy of the same
  step traced while it is enabled (it instruments graphs when they are traced;
  it is disabled again after that trace, and the graph keeps its checks);
- eager: the same step run eagerly (`eager_scope()`), what one replay costs;
- copy floor: the plain step while a read of the variables it writes is held
  across it, as replay() holds its snapshot: TF's variables are copy-on-write,
  so the step's first write of each copies it (fresh memory, then the copy).
  That copy is the whole of what keeping the state costs; replay() minus this
  is eagerctl's own cost per call.

Target: replay() at most 1.10x compiled. Memory: the bytes of one copy of the
variables the step writes (what replay keeps per call), next to all the
model's and optimizer's variables. Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/replay.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import _harness, _workloads

TARGET = 1.10


def _in(block: Callable[[], Any], step: Any, args: tuple[Any, ...]) -> _harness.Runner:
    """A runner timing `n` steps inside a fresh `block()` (entered and exited untimed)."""

    def run(n: int) -> float:
        with block():
            start = time.perf_counter()
            for _ in range(n):
                step(*args)
            return time.perf_counter() - start

    return run


def _written_bytes(step: Any, args: tuple[Any, ...]) -> tuple[int, int, int]:
    """(bytes of the variables the step writes, their count, bytes of all the variables it captures)."""
    from eagerctl._replay import state

    plan = state.plan_for(step, args, {})
    written = sum(int(v.numpy().nbytes) for v in state.snapshot(plan))
    concrete = step.get_concrete_function(*args)
    captured = sum(int(v.numpy().nbytes) for v in concrete.variables)
    return written, len(plan.handles), captured


SIDES = ("compiled", "replay", "replay_vars", "check_numerics", "eager", "copy_floor")


def _holding_a_read(step: Any, args: tuple[Any, ...]) -> _harness.Runner:
    """The plain step with replay's read of the variables it writes held across each call, nothing else."""
    from eagerctl._replay import state

    plan = state.plan_for(step, args, {})

    def one() -> None:
        kept = state.snapshot(plan)
        step(*args)
        del kept

    return _harness.loop(one)


def measure(key: str, builder: Callable[[], _workloads.Workload], *, rounds: int,
            seconds: float, sides: Sequence[str] = SIDES) -> dict[str, Any]:
    import tensorflow as tf

    import eagerctl

    work = builder()
    step, args = work.step, work.args
    step(*args)
    tf.debugging.enable_check_numerics()
    try:
        checked = builder()  # the same step, traced (and so instrumented) while check numerics is on
        checked.step(*checked.args)
    finally:
        tf.debugging.disable_check_numerics()
    runners = {
        "compiled": _harness.loop(lambda: step(*args)),
        "replay": _in(eagerctl.replay, step, args),
        "replay_vars": _in(lambda: eagerctl.replay(check_variables=True), step, args),
        "check_numerics": _harness.loop(lambda: checked.step(*checked.args)),
        "eager": _in(eagerctl.eager_scope, step, args),
        "copy_floor": _holding_a_read(step, args),
    }
    runners = {name: runner for name, runner in runners.items() if name in sides}
    result = _harness.interleave(runners, "compiled", rounds=rounds, seconds=seconds)
    written, count, captured = _written_bytes(step, args)
    return {
        "key": key,
        "name": work.name,
        "per_step_s": {name: side.per_op for name, side in result.sides.items()},
        "ratio": dict(result.ratios),
        "replay_vs_check_numerics": (result.ratios["replay"] / result.ratios["check_numerics"]
                                     if "check_numerics" in result.ratios else None),
        "written_variables": count,
        "written_bytes": written,
        "captured_bytes": captured,
        "rounds": rounds,
    }


def tiny() -> _workloads.Workload:
    """A step that does almost nothing (one variable, one add): what replay adds per call, fixed."""
    import tensorflow as tf

    v = tf.Variable(0.0)

    def step(x: Any) -> Any:
        v.assign_add(x)
        return v * 2.0

    name = "tiny step (one assign_add): the fixed cost per call"
    return _workloads.Workload("tiny", name, tf.function(step), (tf.constant(1.0),), [])


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| train step | compiled | replay() | replay(check_variables) | enable_check_numerics | eager | "
        f"copy floor | target (replay <= {TARGET:.2f}x) | kept per step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        t, r = row["per_step_s"], row["ratio"]
        met = "met" if r["replay"] <= TARGET else "MISSED"
        if row["key"] == "tiny":
            met = f"+{(t['replay'] - t['compiled']) * 1e6:.0f} us per call (no target)"
        lines.append(
            f"| {row['name']} | {_ms(t['compiled'])} | {_ms(t['replay'])} ({r['replay']:.3f}x) | "
            f"{_ms(t['replay_vars'])} ({r['replay_vars']:.3f}x) | {_ms(t['check_numerics'])} "
            f"({r['check_numerics']:.2f}x) | {_ms(t['eager'])} ({r['eager']:.1f}x) | "
            f"{_ms(t['copy_floor'])} ({r['copy_floor']:.3f}x) | {met} | "
            f"{row['written_bytes'] / 2**20:.2f} MiB ({row['written_variables']} variables; all captured: "
            f"{row['captured_bytes'] / 2**20:.2f} MiB) |"
        )
    return "\n".join(lines)


def rows(cfg: Any) -> list[Any]:
    """The rows of `python -m benchmarks` (its `replay` group): one per train step, and the fixed cost.

    The runner's train steps report the eager step already; here, per step:
    replay() against the plain compiled step (the target), with
    `enable_check_numerics()` (the anchor to beat) and `check_variables=True`
    beside it in the same rounds. `--quick` measures the MLP only.
    """
    from benchmarks._figures import Row, fmt_bytes, fmt_time

    sides = ("compiled", "replay", "replay_vars", "check_numerics", "copy_floor")
    steps = [("mlp", _workloads.mlp), ("conv", _workloads.conv)]
    out = []
    for key, builder in steps[:1] if cfg.quick else steps:  # --quick: the MLP (its traces take seconds)
        m = measure(key, builder, rounds=cfg.workload_rounds, seconds=cfg.workload_seconds, sides=sides)
        t, r = m["per_step_s"], m["ratio"]
        out.append(Row(
            f"replay_{key}", f"`replay()` on the {m['name'].split(' (')[0]}",
            fmt_time(t["replay"]),
            f"compiled: {fmt_time(t['compiled'])}; `enable_check_numerics()`: "
            f"{fmt_time(t['check_numerics'])} ({r['check_numerics']:.2f}x)",
            r["replay"], f"at most {TARGET:.2f}", bound=TARGET,
            note=(f"with `check_variables=True` {r['replay_vars']:.3f}x; kept per step: one copy of the "
                  f"{m['written_variables']} variables it writes, {fmt_bytes(m['written_bytes'])}; "
                  f"that copy alone (the plain step with the same read of them held across it): "
                  f"{r['copy_floor']:.3f}x"),
            data={"replay": m}).judge())
    m = measure("tiny", tiny, rounds=cfg.workload_rounds, seconds=cfg.workload_seconds,
                sides=("compiled", "replay"))
    t = m["per_step_s"]
    out.append(Row(
        "replay_fixed", "`replay()`, fixed cost per call (a one-`assign_add` step)",
        f"+{fmt_time(t['replay'] - t['compiled'])} per call", f"compiled: {fmt_time(t['compiled'])}",
        m["ratio"]["replay"], "none (what a fast step pays)", data={"replay": m}))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds: checks the runner")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    args = parser.parse_args(argv)
    rounds, seconds = (3, 0.05) if args.quick else (15, 0.3)
    started = time.perf_counter()
    rows = [measure(key, builder, rounds=rounds, seconds=seconds)
            for key, builder in (("mlp", _workloads.mlp), ("conv", _workloads.conv), ("tiny", tiny))]
    print(table(rows))
    _harness.report_standalone(rows, started, args.quick, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What breakpoint islands cost a compiled call when no breakpoint is in traced code.

`python -m benchmarks.breakpoints [--quick] [--json FILE]`

For a one-op `tf.function` (the call where a per-call cost shows most) and the
512-wide MLP train step of `_workloads`, side by side in one process
(alternating rounds, the median of per-round ratios, see `_harness`), per call:

- tf: TF's own `Function._run_functions_eagerly` (eagerctl's hook uninstalled),
  the anchor;
- hook: eagerctl's hook installed with breakpoint islands on and no debugger:
  the property pays one attribute read (`WATCH.on`). Target: at most 1.01x tf.
- watch: as when a debugger's module is loaded (debugpy, PyCharm, a pdb session
  with breakpoints), the watch is on: every call compares the debuggers' change
  counters with the last ones seen. No breakpoint is in traced code, so nothing
  is retraced. Target: at most 1.02x hook (what eagerctl adds to a program
  under a debugger; the debugger's own tracing costs the same either way and is
  left out, which makes this ratio the strictest one).

Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/breakpoints.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import _harness, _workloads

HOOK_TARGET = 1.01
WATCH_TARGET = 1.02


def _tiny() -> tuple[str, Any, tuple[Any, ...]]:
    import tensorflow as tf

    add_one = tf.function(lambda x: x + 1.0)
    return "one-op tf.function", add_one, (tf.constant(1.0),)


def _mlp() -> tuple[str, Any, tuple[Any, ...]]:
    work = _workloads.mlp()
    return work.name, work.step, work.args


def measure(key: str, build: Any, *, rounds: int, seconds: float) -> dict[str, Any]:
    import eagerctl
    from eagerctl import _hook

    name, step, args = build()
    step(*args)

    def calls(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            step(*args)
        return time.perf_counter() - start

    def tf_own() -> None:
        _hook.WATCH.on = False
        eagerctl.uninstall_hook()

    def hook() -> None:
        eagerctl.install_hook()
        _hook.WATCH.on = False

    def watch() -> None:
        eagerctl.install_hook()
        _hook.WATCH.on = True

    assert eagerctl.breakpoints(), "breakpoint islands are off (EAGERCTL_BREAKPOINTS=0?)"
    try:
        result = _harness.interleave({"tf": calls, "hook": calls, "watch": calls}, "tf", rounds=rounds,
                                     seconds=seconds, before={"tf": tf_own, "hook": hook, "watch": watch})
    finally:
        eagerctl.install_hook()
        from eagerctl._breakpoints import _update_watch

        _update_watch()
    sides = {side: result.sides[side].per_op for side in ("tf", "hook", "watch")}
    watch_over_hook = [w / h for w, h in zip(result.sides["watch"].rounds, result.sides["hook"].rounds,
                                               strict=True)]
    return {
        "key": key,
        "name": name,
        "per_call_s": sides,
        "hook_vs_tf": result.ratios["hook"],
        "watch_vs_hook": sorted(watch_over_hook)[len(watch_over_hook) // 2],
        "rounds": rounds,
    }


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"| compiled call | TF's property | hook, no debugger (target <= {HOOK_TARGET}x) | "
        f"watch on, no breakpoint in traced code (target <= {WATCH_TARGET}x hook) |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        t = row["per_call_s"]
        hook_met = "met" if row["hook_vs_tf"] <= HOOK_TARGET else "MISSED"
        watch_met = "met" if row["watch_vs_hook"] <= WATCH_TARGET else "MISSED"
        lines.append(f"| {row['name']} | {_us(t['tf'])} | {_us(t['hook'])} ({row['hook_vs_tf']:.3f}x, "
                     f"{hook_met}) | {_us(t['watch'])} ({row['watch_vs_hook']:.3f}x, {watch_met}) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.breakpoints",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds: checks the runner")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    args = parser.parse_args(argv)
    rounds, seconds = (3, 0.05) if args.quick else (21, 0.3)
    started = time.perf_counter()
    rows = [measure(key, build, rounds=rounds, seconds=seconds)
            for key, build in (("tiny", _tiny), ("mlp", _mlp))]
    print(table(rows))
    _harness.report_standalone(rows, started, args.quick, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

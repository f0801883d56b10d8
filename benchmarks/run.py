"""Run eagerctl's benchmarks: `python -m benchmarks [--quick] [--json FILE] [--plot FILE.png]`.

Every figure is measured in this one process against its anchor, side by side:
alternating rounds, the median of the per-round ratios. Prints the machine,
then a Markdown table of figure, eagerctl, anchor, ratio and target, then the
compiled and eager cost of real train steps. Targets are reported, never
asserted: `--quick` is a smoke test of the runner, not of the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import _figures, _islands, _report, bisect_runs, replay


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="few short rounds: checks the runner, under a minute")
    parser.add_argument("--json", metavar="FILE", help="write every figure, round by round, to FILE")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the figures (bars) and targets (marks)")
    parser.add_argument("--docs", metavar="FILE.md",
                        help="write the tables, the machine and the commit measured into FILE.md "
                             "(between its benchmarks:begin/end markers): docs/performance.md")
    parser.add_argument("--readme", metavar="FILE.md",
                        help="write the figures that have a target as one table into FILE.md (between its "
                             "benchmarks:readme:begin/end markers): README.md")
    parser.add_argument("--only", metavar="KEY", action="append",
                        help="run only these groups: " + ", ".join(GROUPS))
    return parser


GROUPS = ("hook", "scopes", "debuggable", "exit", "threads", "memory", "islands", "island_speed", "crossover",
          "replay", "bisect", "import", "steps")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = set(args.only or GROUPS)
    unknown = only - set(GROUPS)
    if unknown:
        _parser().error(f"unknown group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _parser().error("--plot needs matplotlib: pip install matplotlib (or eagerctl[plot])")
    cfg = _figures.QUICK if args.quick else _figures.FULL
    mode = "quick" if args.quick else "full"
    started = time.perf_counter()

    import tensorflow as tf

    import eagerctl

    eagerctl.install_hook()
    m = _report.machine()
    print(f"eagerctl benchmarks ({mode}): {_report.describe(m)}", flush=True)

    steps_of = {
        "hook": _figures.hook_call, "scopes": _figures.scope_enter_exit,
        "debuggable": _figures.debuggable_calls,
        "exit": _figures.process_exit, "threads": _figures.threads, "memory": _figures.memory,
        "islands": _islands.island_memory,
        "island_speed": _islands.island_speed,
        "crossover": _islands.crossover,
        "replay": replay.rows,
        "bisect": bisect_runs.rows,
        "import": _figures.import_time,
    }
    rows: list[_figures.Row] = []
    for group, measure in steps_of.items():
        if group not in only:
            continue
        t0 = time.perf_counter()
        new = measure(cfg)
        rows.extend(new)
        for row in new:
            ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
            print(f"  {row.figure.strip()}: {row.ours} vs {row.anchor}; ratio {ratio} ({row.target})"
                  f" [{time.perf_counter() - t0:.1f} s]", file=sys.stderr, flush=True)

    steps: list[_figures.StepResult] = []
    absent = ""
    if "steps" in only:
        steps, absent = _figures.train_steps(cfg)
    m["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    tf.config.run_functions_eagerly(False)

    if rows:
        print()
        print(_report.figures_table(rows))
    text = _report.notes(rows)
    if text:
        print()
        print(text)
    if steps:
        print()
        print(_report.steps_table(steps, absent))
    took = time.perf_counter() - started
    print(f"\n{mode} run, {took:.0f} s; load average at end {m['load_average_end']}")
    missed = [r.figure.strip() for r in rows if r.met is False]
    absent_rows = [r.figure.strip() for r in rows if r.ours == "not available"]
    if absent:
        absent_rows.append("train steps with only the loss @debuggable")
    if missed:
        print("targets missed: " + "; ".join(missed))
    if absent_rows:
        print("not available: " + "; ".join(absent_rows))

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(_report.to_json(m, mode, took, rows, steps, absent=absent), fh, indent=1)
            fh.write("\n")
    if args.plot:
        _report.plot(args.plot, m, rows, steps)
    if args.docs:
        _report.write_docs(args.docs, m, mode, took, rows=rows, steps=steps, absent=absent)
    if args.readme:
        _report.write_readme(args.readme, m, mode, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

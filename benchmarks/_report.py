"""The machine description, the Markdown tables, the JSON and the plot."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from benchmarks._figures import Row, StepResult, fmt_time


def machine() -> dict[str, Any]:
    import tensorflow as tf

    import eagerctl

    try:
        import keras

        keras_version = str(keras.__version__)
    except ImportError:  # TF 2.13-2.15 without a separate keras package
        keras_version = str(getattr(tf.keras, "__version__", "unknown"))
    memory = cpu = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    memory = round(int(line.split()[1]) / 1024 / 1024, 1)
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # not Linux
        pass
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "eagerctl"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        commit, dirty = None, None
    return {
        "git_commit": commit,
        "eagerctl_modified_since_commit": dirty,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory,
        "cpu": cpu or platform.processor() or "unknown",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "tensorflow": tf.__version__,
        "keras": keras_version,
        "eagerctl": eagerctl.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def describe(m: dict[str, Any]) -> str:
    load = m.get("load_average")
    load_text = f", load average {load[0]:.2f} at start" if load else ""
    return (f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['platform']}, "
            f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
            f"eagerctl {m['eagerctl']}" + (f" at {m['git_commit']}" if m.get("git_commit") else "")
            + (" (+ uncommitted changes)" if m.get("eagerctl_modified_since_commit") else "") + load_text)


def _ratio_text(row: Row) -> str:
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.3f}" if row.ratio < 10 else f"{row.ratio:.1f}"


def _met_text(row: Row) -> str:
    if row.met is None:
        return "" if row.bound is None and row.ratio is not None else "n/a"
    return "yes" if row.met else "**no**"


def figures_table(rows: list[Row]) -> str:
    lines = ["| figure | eagerctl | anchor | ratio | target | met |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row.figure} | {row.ours} | {row.anchor} | {_ratio_text(row)} | {row.target} | "
                     f"{_met_text(row)} |")
    return "\n".join(lines)


def steps_table(steps: list[StepResult], absent: str) -> str:
    lines = ["| train step | compiled, per call | eager, per call | eager slowdown | "
             "compiled, only the loss `@debuggable` | its slowdown |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in steps:
        if s.loss_debuggable is not None and s.loss_slowdown is not None:
            loss = f"{fmt_time(s.loss_debuggable)} ({s.loss_mode}) | {s.loss_slowdown:.1f}x"
        else:
            loss = f"{absent or 'not measured'} | -"
        lines.append(f"| {s.name} | {fmt_time(s.compiled)} | {fmt_time(s.eager)} | {s.slowdown:.1f}x | "
                     f"{loss} |")
    return "\n".join(lines)


DOCS_BEGIN = "<!-- benchmarks:begin (python -m benchmarks --docs FILE rewrites this part) -->"
DOCS_END = "<!-- benchmarks:end -->"


def write_docs(path: str, m: dict[str, Any], mode: str, seconds: float, *, rows: list[Row],
               steps: list[StepResult], absent: str) -> None:
    """Put this run's tables, and the commit they measured, between the markers in the page at `path`."""
    with open(path) as fh:
        text = fh.read()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise SystemExit(f"python -m benchmarks: error: --docs {path}: the page has no {DOCS_BEGIN} ... "
                         f"{DOCS_END} markers to put the tables between")
    parts = [f"Measured on: {describe(m)}. {mode.capitalize()} run, {seconds:.0f} s. Raw numbers, round by "
             "round: `benchmarks/results/bench.json`."]
    if rows:
        parts += ["**What eagerctl costs.** Ratio = eagerctl over the anchor (lower is better), except in "
                  "the threads row, a throughput ratio (higher is better), in the memory rows, the "
                  "retained bytes over their limit, and in the crossover rows, the step with tiny islands "
                  "over the whole function run eagerly (below 1: the islands are cheaper).",
                  figures_table(rows)]
        if notes(rows):
            parts.append(notes(rows))
    if steps:
        parts += ["**What eager execution costs.** Time per call of each train step compiled, run "
                  "eagerly (inside `eager_scope()`), and compiled with only its loss `@debuggable` (an eager "
                  "island).", steps_table(steps, absent)]
    head, rest = text.split(DOCS_BEGIN, 1)
    tail = rest.split(DOCS_END, 1)[1]
    with open(path, "w") as fh:
        fh.write(head + DOCS_BEGIN + "\n\n" + "\n\n".join(parts) + "\n\n" + DOCS_END + tail)


def notes(rows: list[Row]) -> str:
    return "\n".join(f"- {row.figure.strip()}: {row.note}" for row in rows if row.note)


def to_json(m: dict[str, Any], mode: str, seconds: float, rows: list[Row], steps: list[StepResult], *,
            absent: str) -> dict[str, Any]:
    def step_json(s: StepResult) -> dict[str, Any]:
        return {"key": s.key, "name": s.name, "compiled_seconds": s.compiled, "eager_seconds": s.eager,
                "slowdown": s.slowdown, "loss_debuggable_seconds": s.loss_debuggable,
                "loss_debuggable_slowdown": s.loss_slowdown, **s.extra}

    return {
        "machine": m,
        "mode": mode,
        "python_executable": sys.executable,
        "duration_seconds": seconds,
        "figures": [
            {"key": r.key, "figure": r.figure.strip(), "eagerctl": r.ours, "anchor": r.anchor,
             "ratio": r.ratio, "target": r.target, "bound": r.bound, "kind": r.kind, "met": r.met,
             "note": r.note, **r.data}
            for r in rows
        ],
        "train_steps": [step_json(s) for s in steps],
        "loss_debuggable_not_measured": absent or None,
    }


def plot(path: str, m: dict[str, Any], rows: list[Row], steps: list[StepResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targeted = [r for r in rows if r.bound is not None and r.ratio is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.25, 1]})

    suffix = {"threads": "\n(throughput ratio)", "memory": "\n(retained / 64 KiB)"}
    labels = [r.figure.replace("`", "") + suffix.get(r.key, "") for r in targeted][::-1]
    values = [r.ratio for r in targeted][::-1]
    colors = ["#2b8a3e" if r.met else "#c92a2a" for r in targeted][::-1]
    ys = range(len(targeted))
    left.barh(ys, values, color=colors, height=0.6)
    for y, r in zip(ys, targeted[::-1], strict=True):
        marker = "<" if r.kind == "max" else ">"
        left.plot([r.bound], [y], marker=marker, color="black", markersize=9, linestyle="none")
        left.plot([r.bound, r.bound], [y - 0.38, y + 0.38], color="black", linewidth=1.5)
        left.text(max(r.ratio or 0, r.bound or 0) + 0.06, y, f"{r.ratio:.2f}", va="center", fontsize=8)
    left.set_yticks(list(ys), labels, fontsize=8)
    left.set_xlabel("ratio to the anchor (bar); target (black mark: < at most, > at least)")
    left.set_title("eagerctl against its anchors (green: target met)", fontsize=10)
    left.set_xlim(0, max([1.0, *(r.ratio or 0 for r in targeted), *(r.bound or 0 for r in targeted)]) * 1.2)

    names = [s.name.split(" (")[0].replace("'s train step", "") for s in steps]
    xs = list(range(len(steps)))
    width = 0.27
    right.bar([x - width for x in xs], [s.compiled * 1e3 for s in steps], width, label="compiled",
              color="#1c7ed6")
    right.bar(xs, [s.eager * 1e3 for s in steps], width, label="eager", color="#f08c00")
    loss = [(x, s.loss_debuggable) for x, s in zip(xs, steps, strict=True) if s.loss_debuggable is not None]
    if loss:
        right.bar([x + width for x, _ in loss], [t * 1e3 for _, t in loss], width,
                  label="compiled, only the loss @debuggable", color="#7048e8")
    for x, s in zip(xs, steps, strict=True):
        right.text(x, s.eager * 1e3 * 1.08, f"{s.slowdown:.1f}x", ha="center", fontsize=8)
        if s.loss_debuggable is not None and s.loss_slowdown is not None:
            right.text(x + width, s.loss_debuggable * 1e3 * 1.08, f"{s.loss_slowdown:.1f}x", ha="center",
                       fontsize=8)
    right.set_yscale("log")
    if steps:  # room above the tallest bar for the legend
        right.set_ylim(top=max(s.eager for s in steps) * 1e3 * 8)
    right.set_xticks(xs, names, fontsize=8, rotation=12)
    right.set_ylabel("milliseconds per call (log)")
    right.set_title("train steps: compiled against eager", fontsize=10)
    right.legend(fontsize=8, loc="upper left")

    fig.suptitle(describe(m), fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


README_BEGIN = "<!-- benchmarks:readme:begin (python -m benchmarks --readme FILE rewrites this part) -->"
README_END = "<!-- benchmarks:readme:end -->"


def write_readme(path: str, m: dict[str, Any], mode: str, rows: list[Row]) -> None:
    """The figures that have a target, as one table between the README markers in the page at `path`."""
    with open(path) as fh:
        text = fh.read()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"python -m benchmarks: error: --readme {path}: the page has no {README_BEGIN} ... "
                         f"{README_END} markers to put the table between")
    load = m.get("load_average")
    table = figures_table([r for r in rows if r.bound is not None])
    commit = m.get("git_commit") or "an unknown commit"
    intro = (f"{mode.capitalize()} run of `python -m benchmarks` at {commit} ({m.get('cores')} cores, "
             f"Python {m.get('python')}, TensorFlow {m.get('tensorflow')}"
             + (f", load average {load[0]:.1f} at start" if load else "") + "); every figure side by "
             "side with its anchor in that one run. Ratio = eagerctl over the anchor (lower is better; "
             "the threads row is a throughput ratio).")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    with open(path, "w") as fh:
        fh.write(head + README_BEGIN + "\n\n" + intro + "\n\n" + table + "\n\n" + README_END + tail)

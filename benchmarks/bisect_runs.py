"""How `eagerctl.bisect` scales: runs and seconds against the number of candidates.

The workload is a Keras model of N layers (tanh Dense layers with one custom
layer, a third of the way in, that counts its calls in Python: the culprit),
compiled with SGD and trained for one batch by `fit` first, then bisected as
`eagerctl.bisect(model, x, y)`: one train step as `fit` runs it. For each N it
prints the candidates found, the runs and traces of the train step, the bound
the issue sets (2*log2(N) + 2 runs for one culprit), the seconds, and whether
the culprit was named.

    python -m benchmarks.bisect_runs                 # N = 8, 16, 32, 50
    python -m benchmarks.bisect_runs --sizes 8 64 --plot bisect.png
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _keras() -> Any:
    try:
        import keras

        if hasattr(keras, "ops"):
            return keras
    except ImportError:  # pragma: no cover - no standalone Keras
        pass
    import tensorflow as tf

    return tf.keras


def measure(n_layers: int) -> dict[str, Any]:
    """Bisect one train step of an `n_layers`-layer model with one culprit layer."""
    import numpy as np

    import eagerctl

    keras = _keras()

    class Counted(keras.layers.Layer):  # type: ignore[misc,name-defined]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.calls = 0

        def call(self, x: Any) -> Any:
            self.calls += 1
            return x * (1.0 + 0.5 * self.calls)

    keras.utils.set_random_seed(0)
    layers: list[Any] = [keras.layers.Dense(16, activation="tanh") for _ in range(n_layers - 2)]
    layers.insert(n_layers // 3, Counted(name="counted"))
    model = keras.Sequential([keras.Input((16,)), *layers, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.RandomState(0)
    x = rng.normal(size=(64, 16)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    start = time.perf_counter()
    report = eagerctl.bisect(model, x, y)
    seconds = time.perf_counter() - start
    return {
        "layers": n_layers,
        "candidates": len(report.candidates),
        "runs": report.runs,
        "traces": report.traces,
        "bound": 2 * math.log2(len(report.candidates)) + 2,
        "seconds": seconds,
        # fit cached its train function when `calls` was 1: the report names that stale function and,
        # as the reason, the counting layer.
        "found": "counted" in [c.name for c in report.culprits],
    }


TARGET_SECONDS = 10.0  # issue 20: a 50-layer bisect under 10 s on this machine


def rows(cfg: Any) -> list[Any]:
    """The runner's `bisect` group: one row, the 50-layer model (8 layers with `--quick`)."""
    from benchmarks._figures import Row, fmt_time

    m = measure(8 if cfg.quick else 50)
    within = m["runs"] <= m["bound"]
    return [Row(
        f"bisect_{m['layers']}", f"`bisect` on a {m['layers']}-layer Keras train step (one culprit layer)",
        f"{fmt_time(m['seconds'])}, {m['runs']} runs", f"{TARGET_SECONDS:.0f} s; runs at most "
        f"2*log2(N)+2 = {m['bound']:.1f} for {m['candidates']} candidates",
        m["seconds"] / TARGET_SECONDS, f"under {TARGET_SECONDS:.0f} s, runs within the bound, culprit named",
        1.0, note=(f"{m['candidates']} candidates, {m['runs']} runs ({'within' if within else 'over'} the "
                   f"bound), {m['traces']} traces; culprit named: {'yes' if m['found'] else 'no'}"),
        data={"bisect": m}).judge(within and m["found"])]


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| layers | candidates | runs | traces | bound 2*log2(N)+2 | seconds | culprit named |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in rows:
        lines.append(f"| {r['layers']} | {r['candidates']} | {r['runs']} | {r['traces']} | "
                     f"{r['bound']:.1f} | {r['seconds']:.1f} | {'yes' if r['found'] else 'NO'} |")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["candidates"] for r in rows]
    fig, left = plt.subplots(figsize=(6, 3.5))
    left.plot(n, [r["runs"] for r in rows], "o-", label="runs of the train step")
    left.plot(n, [r["bound"] for r in rows], "--", label="2*log2(N)+2")
    left.set_xlabel("candidates N")
    left.set_ylabel("runs")
    left.set_xscale("log", base=2)
    right = left.twinx()
    right.plot(n, [r["seconds"] for r in rows], "s:", color="tab:red", label="seconds")
    right.set_ylabel("seconds")
    fig.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bisect_runs",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 50],
                        help="model sizes in layers (default: 8 16 32 50)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw runs and seconds against N (matplotlib)")
    ns = parser.parse_args(argv)
    rows = []
    for size in ns.sizes:
        rows.append(measure(size))
        print(table(rows[-1:]).splitlines()[-1] if rows[:-1] else table(rows), flush=True)
    if ns.plot:
        plot(rows, ns.plot)
    return 0 if all(r["found"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

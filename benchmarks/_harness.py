"""Side-by-side timing: alternating rounds, the median of per-round ratios.

A shared machine drifts (other processes, CPU frequency, caches). Timing the
candidate and its anchor in adjacent rounds, in an order that rotates every
round, and taking the median of the per-round ratios cancels most of that
drift; the median of each side's own per-op times is reported next to it.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# A runner executes `n` operations and returns the seconds they took. Most
# runners time their own loop, so a runner may also time only the part of each
# operation the figure is about (an exit without its enter, for example).
Runner = Callable[[int], float]


def loop(op: Callable[[], object]) -> Runner:
    """A runner that calls `op` `n` times (for ops far slower than a call)."""

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            op()
        return time.perf_counter() - start

    return run


@dataclass
class Side:
    per_op: float  # median seconds per operation over the rounds
    rounds: list[float] = field(default_factory=list)  # seconds per op, each round


@dataclass
class Result:
    sides: dict[str, Side]
    ratios: dict[str, float]  # name -> median over rounds of (name / anchor)
    anchor: str
    number: dict[str, int]  # operations per round, per side
    rounds: int


def calibrate(run: Runner, seconds: float, cap: int = 10_000_000) -> int:
    """Operations per round so that one round takes about `seconds`."""
    n = 1
    while True:
        took = run(n)
        if took >= seconds / 10 or n >= cap:
            break
        n *= 10
    return max(1, min(cap, round(n * seconds / max(took, 1e-9))))


def interleave(
    runners: Mapping[str, Runner],
    anchor: str,
    *,
    rounds: int,
    seconds: float,
    before: Mapping[str, Callable[[], None]] | None = None,
    number: Mapping[str, int] | None = None,
) -> Result:
    """Time every runner once per round, rotating the order; ratios against `anchor`.

    `before[name]` runs untimed before each of that runner's rounds (install a
    hook, set a flag, build a queue). The garbage collector stays on, as in
    real use: what an operation costs includes collecting the reference cycles
    it leaves (with the collector off they would pile up and slow the later
    rounds down instead).
    """
    names = list(runners)
    before = dict(before or {})
    counts: dict[str, int] = {}
    for name in names:
        if name in before:
            before[name]()
        runners[name](1)  # warm up: first-call caches, lazy imports
        counts[name] = number[name] if number and name in number else calibrate(runners[name], seconds)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    for r in range(rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            if name in before:
                before[name]()
            per_round[name].append(runners[name](counts[name]) / counts[name])
    sides = {name: Side(statistics.median(values), values) for name, values in per_round.items()}
    base = per_round[anchor]
    ratios = {
        name: statistics.median(v / a for v, a in zip(values, base, strict=True))
        for name, values in per_round.items()
    }
    return Result(sides, ratios, anchor, counts, rounds)


def report_standalone(rows: list[Any], started: float, quick: bool, json_path: str | None) -> None:
    """The end of a standalone benchmark script's run: the load it ran under, and its JSON if asked."""
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(f"\n{'quick' if quick else 'full'} run, {time.perf_counter() - started:.0f} s; "
          f"load average at end {load}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"rows": rows, "load_average_end": load, "quick": quick}, fh, indent=1)

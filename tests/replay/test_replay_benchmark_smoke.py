"""benchmarks/replay.py runs, and what it says replay keeps is right (no timing is asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import tensorflow as tf  # noqa: F401 - imported at collection, as the other tests do (TF sets env vars)

ROOT = Path(__file__).resolve().parents[2]


def test_replay_benchmark_runs_and_counts_the_kept_bytes() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import replay as bench

    row = bench.measure("tiny", bench.tiny, rounds=1, seconds=0.002)
    assert row["written_variables"] == 1 and row["written_bytes"] == 4  # one float32 variable
    assert set(row["ratio"]) == {"compiled", "replay", "replay_vars", "check_numerics", "eager"}
    assert row["ratio"]["compiled"] == 1.0
    text = bench.table([row])
    assert text.splitlines()[0].startswith("| train step | compiled | replay() |")
    assert "tiny step (one assign_add)" in text and "us per call (no target)" in text

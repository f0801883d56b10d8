"""benchmarks/replay.py runs, and what it says replay keeps is right (no timing is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import tensorflow as tf  # noqa: F401 - imported at collection, as the other tests do (TF sets env vars)

ROOT = Path(__file__).resolve().parents[2]


def test_replay_benchmark_runs_and_counts_the_kept_bytes() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import replay as bench

    row = bench.measure("tiny", bench.tiny, rounds=1, seconds=0.002)
    assert row["written_variables"] == 1 and row["written_bytes"] == 4  # one float32 variable
    assert set(row["ratio"]) == {"compiled", "replay", "replay_vars", "check_numerics", "eager", "copy_floor"}
    assert row["ratio"]["compiled"] == 1.0
    text = bench.table([row])
    assert text.splitlines()[0].startswith("| train step | compiled | replay() |")
    assert "tiny step (one assign_add)" in text and "us per call (no target)" in text


def test_the_runner_has_the_replay_rows(tmp_path: Path, capsys: Any) -> None:
    """`python -m benchmarks --quick --only replay`: the MLP row with its anchors, and the fixed cost."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import run

    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "replay", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| `replay()` on the 512-wide MLP train step | " in printed
    figures = {f["key"]: f for f in json.loads(out.read_text())["figures"]}
    assert set(figures) == {"replay_mlp", "replay_fixed"}  # --quick: the conv step only in a full run
    mlp = figures["replay_mlp"]
    assert mlp["bound"] == 1.10 and isinstance(mlp["met"], bool) and mlp["ratio"] > 0
    assert "`enable_check_numerics()`: " in mlp["anchor"]
    sides = mlp["replay"]["ratio"]
    assert set(sides) == {"compiled", "replay", "replay_vars", "check_numerics", "copy_floor"}
    assert sides["compiled"] == 1.0
    assert "that copy alone (the plain step with the same read of them held across it): " in mlp["note"]
    assert mlp["replay"]["written_variables"] == 19  # 3 kernels + 3 biases, Adam's two slots each, iterations
    assert figures["replay_fixed"]["bound"] is None

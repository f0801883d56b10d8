"""`python -m benchmarks.breakpoints --quick` runs, prints its table, writes its JSON (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_the_rows(tmp_path: Path) -> None:
    out = tmp_path / "breakpoints.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.breakpoints", "--quick", "--json", str(out)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hook, no debugger (target <= 1.01x)" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [row["key"] for row in rows] == ["tiny", "mlp"]
    for row in rows:
        assert set(row["per_call_s"]) == {"tf", "hook", "watch"}
        assert all(seconds > 0 for seconds in row["per_call_s"].values())
        assert row["hook_vs_tf"] > 0 and row["watch_vs_hook"] > 0

"""The benchmark runner works: its harness, its output files, both ways to start it.

No timing is asserted anywhere: the figures depend on the machine. CI also runs
`python -m benchmarks --quick` as a whole.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks/` is a top-level folder, not part of the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import run  # noqa: E402
from benchmarks._harness import interleave  # noqa: E402


def _fixed(cost: float, calls: list[tuple[str, int]], name: str):  # type: ignore[no-untyped-def]
    def runner(n: int) -> float:
        calls.append((name, n))
        return n * cost

    return runner


def test_interleave_rotates_rounds_and_takes_the_median_of_ratios() -> None:
    calls: list[tuple[str, int]] = []
    befores: list[str] = []
    result = interleave(
        {"ours": _fixed(3e-6, calls, "ours"), "anchor": _fixed(2e-6, calls, "anchor")},
        "anchor",
        rounds=4,
        seconds=0.0,
        number={"ours": 7, "anchor": 5},
        before={"ours": lambda: befores.append("ours")},
    )
    assert result.ratios == {"ours": pytest.approx(1.5), "anchor": pytest.approx(1.0)}
    assert result.sides["ours"].per_op == pytest.approx(3e-6)
    assert result.number == {"ours": 7, "anchor": 5}
    # one warm-up call each, then the order rotates round by round
    assert calls[:2] == [("ours", 1), ("anchor", 1)]
    assert [name for name, _ in calls[2:]] == ["ours", "anchor", "anchor", "ours"] * 2
    assert befores == ["ours"] * 5  # warm-up plus 4 rounds


def test_help_works_both_ways() -> None:
    for argv in (["-m", "benchmarks", "--help"], ["benchmarks/run.py", "--help"]):
        out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, check=True)
        assert "--quick" in out.stdout and "--json FILE" in out.stdout and "--plot FILE.png" in out.stdout


def test_unknown_group_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(["--only", "nope"])
    assert exc.value.code == 2
    assert "unknown group(s) ['nope']" in capsys.readouterr().err


def test_quick_run_writes_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import eagerctl

    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    try:  # the plot is optional (the `plot` extra): skip it where matplotlib is missing
        import matplotlib  # noqa: F401
    except ImportError:
        plot: list[str] = []
    else:
        plot = ["--plot", str(out_png)]
    code = run.main(["--quick", "--only", "scopes", "--only", "exit", "--only", "debuggable",
                     "--json", str(out_json), *plot])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| figure | eagerctl | anchor | ratio | target | met |" in printed
    assert "TensorFlow 2." in printed and "Python 3." in printed

    data = json.loads(out_json.read_text())
    assert data["mode"] == "quick"
    assert {"cores", "memory_gib", "python", "tensorflow", "keras"} <= set(data["machine"])
    figures = {f["key"]: f for f in data["figures"]}
    assert {"scope_local", "scope_process", "floor_flag", "floor_contextvar", "process_exit"} <= set(figures)
    for key in ("scope_local", "scope_process", "process_exit"):
        assert isinstance(figures[key]["ratio"], float) and figures[key]["ratio"] > 0
        assert isinstance(figures[key]["met"], bool)
    if hasattr(eagerctl, "debuggable"):
        assert isinstance(figures["debuggable_call"]["ratio"], float)
    else:
        assert figures["debuggable_call"]["eagerctl"] == "not available"
    if plot:
        assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_runner_has_the_bisect_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--only bisect`: the seconds and runs of one bisect, judged on time, run bound and culprit."""
    out_json = tmp_path / "bench.json"
    assert run.main(["--quick", "--only", "bisect", "--json", str(out_json)]) == 0
    assert "| `bisect` on a 8-layer Keras train step (one culprit layer) | " in capsys.readouterr().out
    (row,) = json.loads(out_json.read_text())["figures"]
    measured = row["bisect"]
    assert row["key"] == "bisect_8" and row["bound"] == 1.0
    assert row["ratio"] == pytest.approx(measured["seconds"] / 10.0)
    assert measured["found"] is True and measured["candidates"] == 9
    assert row["met"] is (measured["runs"] <= measured["bound"] and row["ratio"] <= 1.0)

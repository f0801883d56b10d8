"""`python -m benchmarks --docs FILE` rewrites only the generated part of the page, naming the commit."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks/` is a top-level folder, not part of the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402
from benchmarks._figures import Row, StepResult  # noqa: E402

MACHINE = {"cores": 2, "cpu": "Test CPU", "memory_gib": 23.5, "platform": "Linux", "python": "3.11.7",
           "tensorflow": "2.21.0", "keras": "3.15.1", "eagerctl": "0.1.0", "git_commit": "abc1234",
           "eagerctl_modified_since_commit": False, "load_average": [0.25, 0.2, 0.1]}


def test_write_docs_replaces_only_the_part_between_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\nprose before\n\n{_report.DOCS_BEGIN}\n\nold table\n\n"
                    f"{_report.DOCS_END}\n\nprose after\n")
    rows = [Row("hook", "compiled call", "1.00 µs", "TF: 1.00 µs", 1.004, "at most 1.01", bound=1.01).judge()]
    steps = [StepResult("mlp", "512-wide MLP", 0.004, 0.026, 6.4, 0.007, 1.7, "island")]
    _report.write_docs(str(page), MACHINE, "full", 78.2, rows=rows, steps=steps, absent="")
    text = page.read_text()
    assert text.startswith("# Performance\n\nprose before\n\n" + _report.DOCS_BEGIN + "\n\nMeasured on: ")
    assert text.endswith(_report.DOCS_END + "\n\nprose after\n")
    assert "old table" not in text
    assert "eagerctl 0.1.0 at abc1234, load average 0.25 at start. Full run, 78 s." in text
    assert "| compiled call | 1.00 µs | TF: 1.00 µs | 1.004 | at most 1.01 | yes |" in text
    assert "| 512-wide MLP | 4.00 ms | 26.00 ms | 6.4x | 7.00 ms (island) | 1.7x |" in text


def test_a_page_without_markers_is_refused_and_left_alone(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n")
    with pytest.raises(SystemExit, match="has no <!-- benchmarks:begin"):
        _report.write_docs(str(page), MACHINE, "full", 1.0, rows=[], steps=[], absent="")
    assert page.read_text() == "# Performance\n"


def test_the_performance_page_has_the_markers_and_names_a_commit() -> None:
    text = (ROOT / "docs" / "performance.md").read_text()
    generated = text.split(_report.DOCS_BEGIN, 1)[1].split(_report.DOCS_END, 1)[0]
    assert re.search(r"^Measured on: .*, eagerctl \S+ at [0-9a-f]{7,}", generated, re.M), generated[:400]
    assert "| figure | eagerctl | anchor | ratio | target | met |" in generated
    assert "| train step | compiled, per call |" in generated


def test_write_readme_puts_the_rows_with_a_target_between_its_markers(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(f"# eagerctl\n\n{_report.README_BEGIN}\n\nold\n\n{_report.README_END}\n\nafter\n")
    rows = [Row("hook", "compiled call", "1.00 µs", "TF: 1.00 µs", 1.004, "at most 1.01", bound=1.01).judge(),
            Row("floor", "  floor: raw flag", "99 ns", "TF: 1.00 µs", 0.1, "(reference)")]
    _report.write_readme(str(page), MACHINE, "full", rows)
    text = page.read_text()
    assert text.startswith(f"# eagerctl\n\n{_report.README_BEGIN}\n\nFull run of `python -m benchmarks` at "
                           "abc1234 (2 cores, Python 3.11.7, TensorFlow 2.21.0, load average 0.2 at start)")
    assert text.endswith(f"{_report.README_END}\n\nafter\n")
    assert "| compiled call | 1.00 µs | TF: 1.00 µs | 1.004 | at most 1.01 | yes |" in text
    assert "floor" not in text and "old" not in text
    page.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="no <!-- benchmarks:readme:begin"):
        _report.write_readme(str(page), MACHINE, "full", rows)
    assert page.read_text() == "# no markers\n"

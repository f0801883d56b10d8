"""Shared by the breakpoint tests: the programs, their marked lines, and their results run plainly."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

PROGRAMS = Path(__file__).resolve().parent / "programs"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def marked_lines(program: Path) -> dict[str, int]:
    """`# BP name` markers -> line numbers (1-based), as a person would click in the gutter."""
    lines = program.read_text().splitlines()
    return {m.group(1): number for number, text in enumerate(lines, 1)
            if (m := re.search(r"# BP (\w+)", text))}


def result_of(output: str) -> dict[str, Any]:
    """The `RESULT {...}` line a program prints last."""
    found = re.findall(r"^(?:\(Pdb\) )*RESULT (.*)$", output, re.MULTILINE)  # after pdb's prompt, too
    assert found, f"the program printed no RESULT line:\n{output[-4000:]}"
    return dict(json.loads(found[-1]))


@functools.cache
def plain_result(name: str, *args: str) -> dict[str, Any]:
    """The program's result without any debugger (run once per session); `breakpoint()` does nothing."""
    proc = subprocess.run([sys.executable, str(PROGRAMS / name), *args], env={**ENV, "PYTHONBREAKPOINT": "0"},
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False, timeout=600, cwd=str(PROGRAMS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return result_of(proc.stdout)


def after_breakpoint_call(line: int) -> int:
    """Where pdb stops for a `breakpoint()` on the line before `line`: the next line, or from Python 3.13
    on (pdb's own change) the `breakpoint()` line itself."""
    return line - 1 if sys.version_info >= (3, 13) else line

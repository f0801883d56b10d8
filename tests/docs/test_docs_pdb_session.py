"""The post_mortem session shown in docs/debuggable.md is what pdb really does (issue 21).

pytest-examples cannot run a program that stops in pdb (the block is fenced
`test="skip"`), and the page showed pdb stopping at line 13 where it stops at 10.
Here the page's `normalize.py` runs in a pseudo-terminal (pdb needs one), the
commands typed in the page's session are typed into it, and what pdb prints is
compared with the page, line by line: the place it stops (file:line, function),
the source line, and each command's answer; then the exception propagates.
"""

from __future__ import annotations

import os
import re
import select
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "debuggable.md"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal (pty)")


def _page_program_and_session() -> tuple[str, list[str]]:
    text = PAGE.read_text()
    program = re.search(r'```\{\.py title="normalize\.py" test="skip"\}\n(.*?)\n *```', text, re.S)
    session = re.search(r"```console\n *\$ python normalize\.py\n(.*?)\n *```", text, re.S)
    assert program and session, "docs/debuggable.md no longer shows the normalize.py post-mortem session"
    dedent = lambda block: "\n".join(line[2:] for line in block.splitlines())  # noqa: E731 (indented in a list)
    return dedent(program.group(1)) + "\n", dedent(session.group(1)).splitlines()


def _read_until_prompt(fd: int, seconds: float) -> str:
    out = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child exited
            break
        if not chunk:
            break
        out += chunk
        if out.rstrip().endswith(b"(Pdb)"):
            break
    return out.decode(errors="replace").replace("\r\n", "\n")


def test_the_pages_post_mortem_session_is_what_pdb_shows(tmp_path: Path) -> None:
    import pty

    program, session = _page_program_and_session()
    script = tmp_path / "normalize.py"
    script.write_text(program)
    commands = [line.removeprefix("(Pdb) ") for line in session if line.startswith("(Pdb) ")]
    assert commands == ["p x", "p total.numpy()", "q"]

    pid, fd = pty.fork()
    if pid == 0:  # the child: the page's program, in the pseudo-terminal
        os.chdir(tmp_path)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
        os.execve(sys.executable, [sys.executable, str(script)], env)
    transcript = _read_until_prompt(fd, 240)
    for command in commands:
        os.write(fd, (command + "\n").encode())
        transcript += _read_until_prompt(fd, 60)
    transcript += _read_until_prompt(fd, 30)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1  # the ValueError propagated

    got = [line for line in transcript.splitlines() if not re.match(r"[IWE]\d{4} |WARNING: All log", line)]
    got = [line.replace(str(script), "/home/me/normalize.py") for line in got]
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":  # NumPy 1 (TF 2.13) prints a scalar without its type
        shown_scalar = re.compile(r"^np\.float32\((.*)\)$")
        session = [shown_scalar.sub(r"\1", line) for line in session]
    shown = session[: session.index("Traceback (most recent call last):")]
    start = got.index(shown[0])
    assert got[start: start + len(shown)] == shown
    assert got[-1] == session[-1] == "ValueError: cannot normalize a zero vector"

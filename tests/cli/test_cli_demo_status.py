"""`eagerctl demo`, `eagerctl status` and the top-level command line."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

import eagerctl
from eagerctl._cli import main
from eagerctl._demo import PLOT_MISSING

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_demo_shows_what_really_happens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One run (it takes seconds): with the plot where matplotlib is installed.
    png = tmp_path / "times.png"
    args = ["demo", "--plot", str(png)] if HAVE_MATPLOTLIB else ["demo"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"eagerctl demo: TensorFlow {tf.__version__}, Keras ")
    expected = [
        # Example 1: plain ops are eager whatever the flag.
        "  what happens   flag off: c = 5 at once (EagerTensor), tf.executing_eagerly() = True",
        "                 flag on:  c = 5 at once (EagerTensor), tf.executing_eagerly() = True",
        # Example 2: same values; the body runs to trace once, or on every call.
        "  what happens   flag off: y = 9, dy/dx = 6; in 3 calls the Python body ran 1x (only to trace)",
        "                 flag on:  y = 9, dy/dx = 6; in 3 calls the Python body ran 3x (on every call)",
        "                 twin without @tf.function, flag off: y = 9, dy/dx = 6, executing eagerly: True",
        # Example 3: the undecorated train step is eager both ways.
        "                 train_step is not a tf.function, so the flag changes nothing: both runs were eager",
        # What compare() saw inside the bodies (2 compared calls per mode, then the timed ones).
        "  ran eagerly    graph: 52 calls ran the compiled graph; the Python body ran 1x, only to trace",
        "  ran eagerly    graph: 52 calls ran the compiled graph; the Python body did not run",
        "                 eager: the Python body ran on 52 of 52 calls, eagerly",
        "                 eager: the Python body ran on 22 of 22 calls, eagerly",
        "  ran eagerly    graph: 12 calls ran the compiled graph; the Python body ran 2x, only to trace",
        "                 eager: the Python body ran on 12 of 12 calls, eagerly",
    ]
    for line in expected:
        assert line in lines, line
    assert re.search(r"^  what happens   flag off: loss = \d+\.\d{4}, and inside train_step "
                     r"tf\.executing_eagerly\(\) = True$", out, re.M)
    agree = [line for line in lines if line.startswith("  agree?         ")]
    assert agree[0] == "  agree?         yes: 1 output checked, max |graph - eager| 0"
    assert agree[1] == "  agree?         yes: 2 outputs checked, max |graph - eager| 0"
    checked = r"  agree\?         yes: 1 output and {} variables checked, max \|graph - eager\| \S+"
    assert re.fullmatch(checked.format(8), agree[2])
    assert re.fullmatch(checked.format(20), agree[3])
    times = [line for line in lines if line.startswith("  time per call  ")]
    assert len(times) == 4
    timing = r"  time per call  graph \S+ ms   eager \S+ ms   (slowdown \S+x|eager \S+x faster)"
    assert all(re.fullmatch(timing, t) for t in times)
    assert "FAILED" not in out
    if HAVE_MATPLOTLIB:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert lines[-1] == f"plot written to {png}"
    assert eagerctl.status().scopes == ()


def test_demo_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an absent package looks like to find_spec
    png = tmp_path / "x.png"
    assert main(["demo", "--plot", str(png)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"eagerctl: {PLOT_MISSING}\n"
    assert PLOT_MISSING == ("eagerctl demo --plot needs matplotlib, which is not installed; install it with: "
                            "pip install matplotlib")  # eagerctl[plot] is not on the package index
    assert not png.exists()


def test_demo_plot_into_a_missing_folder_is_refused_at_once(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "no" / "such" / "x.png"
    assert main(["demo", "--plot", str(png)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"eagerctl: demo --plot {str(png)!r}: the folder {str(png.parent)!r} "
                            "does not exist\n")


def test_status_reports_versions_hook_flag_and_active_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    installed = "yes" if eagerctl.status().hook_installed else "no"  # at first use: order-dependent here
    assert main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"eagerctl         {eagerctl.__version__} (Python {platform.python_version()})"
    assert lines[1].startswith("keras            ") and lines[1] != "keras            not installed"
    assert lines[2:] == [
        f"tensorflow       {tf.__version__}",
        f"hook installed   {installed}",
        "process flag     graph",
        "baseline         graph",
        "local override   -",
        "effective here   graph",
        "active scopes    none",
    ]
    with eagerctl.eager_scope(process=True), eagerctl.graph_scope():
        assert main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[4:9] == [
        "process flag     eager",
        "baseline         graph",
        "local override   graph",
        "effective here   graph",
        "active scopes    2",
    ]
    here = re.escape(__file__)
    assert re.fullmatch(rf"  local    graph  graph_scope\(\)\s+thread 'MainThread' at {here}:\d+", lines[9])
    assert re.fullmatch(rf"  process  eager  eager_scope\(True, process=True\)\s+thread 'MainThread' at "
                        rf"{here}:\d+", lines[10])


def test_status_shows_the_debuggable_switch(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EAGERCTL_DEBUGGABLE", "0")
    assert main(["status"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "EAGERCTL_DEBUGGABLE='0'  (@debuggable is off)"


def test_top_level_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    # (`[--version]` where the command has that option: another change adds it.)
    assert re.match(r"usage: eagerctl \[-h\]( \[--version\])? COMMAND \.\.\.\n", capsys.readouterr().err)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "run", "status"):
        assert re.search(rf"^    {command}\s", out, re.M), command
    assert main(["demo", "--bogus"]) == 2
    assert capsys.readouterr().err.endswith("eagerctl: error: unrecognized arguments: --bogus\n")
    assert main(["run", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: eagerctl run [--eager | --graph] [--process] ")


def test_python_dash_m_eagerctl_status_is_quiet() -> None:
    """A real `python -m eagerctl status`: TF's start-up log noise stays out of the terminal."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "eagerctl", "status"], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # Inert unless asked: importing TF installs nothing; the hook installs at first use.
    assert f"tensorflow       {tf.__version__}\nhook installed   no\n" in done.stdout


def test_without_tensorflow_status_and_demo_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from eagerctl._hook import INSTALL_COMMAND

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # what a missing TensorFlow looks like to import
    assert main(["status"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("tensorflow       not importable (import of tensorflow halted; None in sys.modules); "
                        f"install it with: {INSTALL_COMMAND}")
    assert main(["demo"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("eagerctl: the demo needs TensorFlow, which cannot be imported (import of "
                            f"tensorflow halted; None in sys.modules); install it with: {INSTALL_COMMAND}\n")

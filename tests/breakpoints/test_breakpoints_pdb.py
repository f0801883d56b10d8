"""pdb breakpoints stop inside compiled TF code with values: `break file:line`, and `breakpoint()`.

Commands are typed on pdb's stdin as a person would. Each case asserts the
number of stops, the user's file and line pdb shows, the values `p` prints, and
the program's result against the same program without a debugger.
"""

from __future__ import annotations

import re
import subprocess
import sys

from bp_programs import ENV, PROGRAMS, after_breakpoint_call, marked_lines, plain_result, result_of


def _pdb_session(args: list[str], commands: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, *args], input="\n".join(commands) + "\n", text=True,
                          capture_output=True, env={**ENV, **(env or {})}, cwd=str(PROGRAMS), timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _stops(output: str, program: str) -> list[tuple[int, str]]:
    """(line, function) of every place pdb stopped in `program`."""
    where = re.compile(rf"^(?:\(Pdb\) )*> .*{re.escape(program)}\((\d+)\)(\w+)\(\)$", re.MULTILINE)
    return [(int(m.group(1)), m.group(2)) for m in where.finditer(output)]


def test_break_command_in_a_helper_of_a_tf_function() -> None:
    line = marked_lines(PROGRAMS / "bp_functions.py")["inner"]
    commands = [f"b bp_functions.py:{line}", "c", "p [round(v, 4) for v in y.numpy().tolist()]", "c",
                "p [round(v, 4) for v in y.numpy().tolist()]", "c", "q"]
    output = _pdb_session(["-m", "pdb", "bp_functions.py"], commands)
    assert _stops(output, "bp_functions.py") == [(line, "inner")] * 2
    assert "[1.4142, 1.7321, 2.0]" in output  # sqrt(x + 1) for x = [1, 2, 3], a value, not a symbol
    assert "[1.7321, 2.2361, 2.6458]" in output  # the second call, x = [2, 4, 6]
    result = result_of(output)
    plain = plain_result("bp_functions.py")
    assert result["results"] == plain["results"]
    assert result["islands"] == ["inner"] and result["traces"] == plain["traces"]


def test_breakpoint_call_in_a_tf_function_body() -> None:
    line = after_breakpoint_call(marked_lines(PROGRAMS / "bp_set_trace.py")["after"])
    commands = ["p float(y)", "c", "p float(y)", "c", "p float(y)", "c"]
    output = _pdb_session(["bp_set_trace.py"], commands)
    # Every call stops in the user's file (not AutoGraph's generated one), with y = 3 * x.
    assert _stops(output, "bp_set_trace.py") == [(line, "step")] * 3
    places = re.findall(r"^(?:\(Pdb\) )*> (\S+?)\(\d", output, re.MULTILINE)
    assert places and all(where.endswith("bp_set_trace.py") for where in places)
    assert re.findall(r"^\(Pdb\) (\d+\.\d+)$", output, re.MULTILINE) == ["0.0", "3.0", "6.0"]
    plain = plain_result("bp_set_trace.py")  # with PYTHONBREAKPOINT=0: breakpoint() does nothing
    assert result_of(output)["results"] == plain["results"] == [1.0, 4.0, 7.0]


def test_ipdb_set_trace_imported_inside_a_tf_function_body() -> None:
    # The body imports ipdb itself, so ipdb arrives during the trace that learns the island's
    # outputs. That trace must not stop (it would show symbolic tensors in AutoGraph's file).
    line = marked_lines(PROGRAMS / "bp_ipdb.py")["after"]
    commands = ["p float(y)", "c", "p float(y)", "c", "p float(y)", "c"]
    output = re.sub(r"\x1b\[[0-9;]*m", "", _pdb_session(["bp_ipdb.py"], commands))  # ipdb's colours
    places = re.findall(r"^(?:ipdb> )*> (\S+?)\((\d+)\)(\w+)\(\)$", output, re.MULTILINE)
    assert [(where.rsplit("/", 1)[-1], int(at), name) for where, at, name in places] == [
        ("bp_ipdb.py", line, "step")] * 3
    assert re.findall(r"^ipdb> (\d+\.\d+)$", output, re.MULTILINE) == ["0.0", "3.0", "6.0"]
    # The same step as bp_set_trace.py's, whose plain run (no debugger) gives 3 * x + 1.
    assert result_of(output.replace("ipdb> ", ""))["results"] == plain_result("bp_set_trace.py")["results"]

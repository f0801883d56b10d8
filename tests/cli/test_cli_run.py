"""`eagerctl run`: a program run unchanged, with tf.functions eager or compiled.

In-process through `main([...])` (TF is imported once); one subprocess covers
`python -m eagerctl` and `--data-debug`, which is global and irreversible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf

import eagerctl
from eagerctl._cli import RUN_USAGE, main

# A program that reports, as JSON on stdout, how its tf.function calls ran.
PROGRAM = """\
import json, sys, threading
import tensorflow as tf

seen = {}

@tf.function
def probe(x):
    seen.setdefault(threading.current_thread().name, []).append(tf.executing_eagerly())
    return x + 1

probe(tf.constant(1)); probe(tf.constant(2))
worker = threading.Thread(target=lambda: (probe(tf.constant(1)), probe(tf.constant(2))), name="worker")
worker.start(); worker.join()
print(json.dumps({
    "argv": sys.argv, "name": __name__, "path0": sys.path[0],
    "flag": tf.config.functions_run_eagerly(),
    "main": seen.get("MainThread", []), "worker": seen.get("worker", []),
}))
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def report(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    out = capsys.readouterr().out
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture
def program(tmp_path: Path) -> Path:
    return write(tmp_path / "prog.py", PROGRAM)


def test_runs_like_python_without_options(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved_argv, saved_path0 = list(sys.argv), sys.path[0]
    assert main(["run", str(program), "a", "--flag", "-m", "x"]) == 0
    seen = report(capsys)
    assert seen["argv"] == [str(program), "a", "--flag", "-m", "x"]
    assert seen["name"] == "__main__"
    assert seen["path0"] == str(program.parent)
    assert seen["main"] == [False] and seen["worker"] == []  # traced once, then compiled everywhere
    assert (sys.argv, sys.path[0]) == (saved_argv, saved_path0)


def test_eager_is_local_to_the_main_thread_by_default(program: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--eager", str(program)]) == 0
    seen = report(capsys)
    assert seen["main"] == [True, True]
    assert seen["worker"] == [False]  # the program's own thread keeps the compiled graph
    assert seen["flag"] is False


def test_eager_process_drives_the_flag_for_every_thread(program: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--eager", "--process", str(program)]) == 0
    seen = report(capsys)
    assert seen["main"] == [True, True]
    assert seen["worker"] == [True, True]
    assert seen["flag"] is True
    assert tf.config.functions_run_eagerly() is False  # restored when the program ended


def test_process_scope_lasts_until_the_programs_threads_end(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "late.py", """\
        import threading, time
        import tensorflow as tf
        f = tf.function(lambda x: print("late worker eager:", tf.executing_eagerly()) or x)
        def late():
            time.sleep(0.2)  # usually still running when the program's main code has ended
            f(tf.constant(1))
        threading.Thread(target=late).start()
        """)
    assert main(["run", "--eager", "--process", str(script)]) == 0
    assert capsys.readouterr().out == "late worker eager: True\n"
    assert tf.config.functions_run_eagerly() is False


def test_graph_wins_over_the_programs_own_global_flag(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "sets_flag.py", """\
        import tensorflow as tf
        tf.config.run_functions_eagerly(True)
        seen = []
        f = tf.function(lambda x: seen.append(tf.executing_eagerly()) or x)
        f(tf.constant(1)); f(tf.constant(2))
        tf.config.run_functions_eagerly(False)
        print(seen)
        """)
    assert main(["run", "--graph", str(script)]) == 0
    assert capsys.readouterr().out == "[False]\n"


def test_exit_status_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(write(tmp_path / "three.py", "import sys; sys.exit(3)"))]) == 3
    assert main(["run", str(write(tmp_path / "none.py", "raise SystemExit"))]) == 0
    assert main(["run", str(write(tmp_path / "text.py", "raise SystemExit('bye now')"))]) == 1
    assert capsys.readouterr().err == "bye now\n"


def test_an_uncaught_exception_is_reported_like_python_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "boom.py", "def fail():\n    raise ValueError('boom')\nfail()\n")
    assert main(["run", "--eager", str(script)]) == 1
    err = capsys.readouterr().err
    assert err == (
        "Traceback (most recent call last):\n"
        f'  File "{script}", line 3, in <module>\n'
        "    fail()\n"
        f'  File "{script}", line 2, in fail\n'
        "    raise ValueError('boom')\n"
        "ValueError: boom\n"
    )


def test_keyboard_interrupt_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(write(tmp_path / "intr.py", "raise KeyboardInterrupt"))]) == 130
    assert capsys.readouterr().err.endswith("KeyboardInterrupt\n")


def test_keyboard_interrupt_under_a_mode_leaves_nothing_active(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "intr_eager.py", """\
        import tensorflow as tf
        f = tf.function(lambda x: print("eager:", tf.executing_eagerly()) or x)
        f(tf.constant(1))
        raise KeyboardInterrupt
        """)
    for mode in ("--eager", "--graph"):
        assert main(["run", mode, str(script)]) == 130
        captured = capsys.readouterr()
        assert captured.out == f"eager: {mode == '--eager'}\n"
        assert captured.err.endswith("KeyboardInterrupt\n")
        assert eagerctl.status().scopes == () and tf.config.functions_run_eagerly() is False


def test_dash_m_runs_a_module_from_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    name = f"climod_{uuid.uuid4().hex[:8]}"
    module = write(tmp_path / f"{name}.py", PROGRAM)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--eager", "-m", name, "--x", "1"]) == 0
    seen = report(capsys)
    assert seen["argv"] == [str(module), "--x", "1"]
    assert seen["name"] == "__main__"
    assert seen["path0"] == str(tmp_path)
    assert seen["main"] == [True, True]


def test_double_dash_ends_eagerctls_options(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--eager", "--", str(program), "--graph"]) == 0
    seen = report(capsys)
    assert seen["argv"] == [str(program), "--graph"]
    assert seen["main"] == [True, True]


@pytest.fixture
def helper(tmp_path: Path) -> str:
    """A module (unique name: sys.modules keeps it) with functions and methods that record their mode."""
    name = f"clihelper_{uuid.uuid4().hex[:8]}"
    write(tmp_path / f"{name}.py", """\
        import tensorflow as tf
        seen = {}

        def _note(key):
            seen.setdefault(key, []).append(tf.executing_eagerly())

        @tf.function
        def step(x):
            _note("step")
            return x + 1

        @tf.function
        def other(x):
            _note("other")
            return x + 1

        class Model:
            limit = 3

            @tf.function
            def train_step(self, x):
                _note("train_step")
                return x * 2

            @classmethod
            def build(cls, x):
                _note("build")
                return x
        """)
    return name


def debug_program(tmp_path: Path, helper: str) -> Path:
    return write(tmp_path / "main_prog.py", f"""\
        import json
        import tensorflow as tf
        import {helper} as h
        print("imported")
        for _ in range(2):
            h.step(tf.constant(1)); h.other(tf.constant(1)); h.Model().train_step(tf.constant(1))
        h.Model.build(tf.constant(1))
        print(json.dumps(h.seen))
        """)


def test_debug_makes_named_functions_and_methods_debuggable_on_import(
        tmp_path: Path, helper: str, capsys: pytest.CaptureFixture[str]) -> None:
    script = debug_program(tmp_path, helper)
    status = main(["run", "--debug", f"{helper}:step", "--debug", f"{helper}:Model.train_step",
                   "--debug", f"{helper}:Model.build", str(script)])
    assert status == 0
    seen = report(capsys)
    assert seen["step"] == [True, True]            # debuggable: its body on every call, no trace
    assert seen["train_step"] == [True, True]
    assert seen["build"] == [True]
    assert seen["other"] == [False]                # untouched: traced once, compiled


@pytest.fixture
def no_tracer() -> Iterator[None]:
    """`--debug __main__:...` needs sys.settrace; lend it these tests under a coverage tool too."""
    saved = sys.gettrace()
    sys.settrace(None)
    yield
    sys.settrace(saved)


MAIN_PROGRAM = """\
import json, sys
import tensorflow as tf
seen = {}
limit = 3

@tf.function
def step(x):
    seen.setdefault("step", []).append(tf.executing_eagerly())
    return x + 1

@tf.function
def other(x):
    seen.setdefault("other", []).append(tf.executing_eagerly())
    return x + 1

class Model:
    @tf.function
    def train_step(self, x):
        seen.setdefault("train_step", []).append(tf.executing_eagerly())
        return x * 2

def main():
    model = Model()
    for _ in range(2):
        step(tf.constant(1)); other(tf.constant(1)); model.train_step(tf.constant(1))
    print(json.dumps(seen))

if __name__ == "__main__":
    main()
"""


def test_debug_main_wraps_the_programs_own_functions_as_it_defines_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "train.py", MAIN_PROGRAM)
    assert main(["run", "--debug", "__main__:step", "--debug", "__main__:Model.train_step", str(script)]) == 0
    captured = capsys.readouterr()
    seen = json.loads(captured.out)
    assert seen["step"] == [True, True]
    assert seen["train_step"] == [True, True]
    assert seen["other"] == [False]
    assert captured.err == (
        f"eagerctl run: --debug __main__:step wrapped 1 definition: {script}:6\n"
        f"eagerctl run: --debug __main__:Model.train_step wrapped 1 definition: {script}:17\n")
    assert sys.gettrace() is None


def test_debug_main_name_never_defined_or_not_callable_exits_2(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "train.py", MAIN_PROGRAM)
    assert main(["run", "--debug", "__main__:nope", str(script)]) == 2
    captured = capsys.readouterr()
    assert '"other": [false]' in captured.out  # the program ran to its end
    assert captured.err == ("eagerctl run: error: --debug __main__:nope: the program never defined 'nope' "
                            "at module level\n")
    assert main(["run", "--debug", "__main__:limit", str(script)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # stopped right after `limit = 3`
    assert captured.err == ("eagerctl run: error: --debug __main__:limit: __main__.limit is not callable "
                            "(it is a int); name a function or method\n")
    assert sys.gettrace() is None


def test_debug_main_works_under_a_debugger_or_coverage_tracer(no_tracer: None, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "train.py", MAIN_PROGRAM)

    def other_tracer(frame: Any, event: str, arg: Any) -> None:
        return None

    sys.settrace(other_tracer)  # what a debugger or coverage.py would have installed
    try:
        status = main(["run", "--debug", "__main__:step", str(script)])
        tracer_after = sys.gettrace()
    finally:
        sys.settrace(None)
    assert status == 0
    assert tracer_after is other_tracer  # left alone: eagerctl does not trace
    assert report(capsys)["step"] == [True, True]


@pytest.mark.parametrize("option", ["--debug", "--bisect"])
@pytest.mark.parametrize("how", ["script", "script from elsewhere", "-m"])
def test_a_spec_naming_the_program_itself_is_refused_before_it_runs(
        option: str, how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # `eagerctl run --bisect train:step train.py`: Python runs train.py as __main__, never as
    # `train`, so the spec cannot apply. Said before the program runs (which may be a long
    # training), with a nonzero exit, in the option the user wrote.
    name = f"train_{uuid.uuid4().hex[:8]}"  # unique: sys.modules must not know it
    script = write(tmp_path / f"{name}.py", MAIN_PROGRAM)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere if how == "script from elsewhere" else tmp_path)
    program = {"script": [script.name], "script from elsewhere": [str(script)], "-m": ["-m", name]}[how]
    shown = {"script": script.name, "script from elsewhere": str(script), "-m": f"-m {name}"}[how]
    assert main(["run", option, f"{name}:step", *program]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # the program never started
    assert captured.err == (
        f"eagerctl run: error: {option} {name}:step: {name} is the program itself ({shown}), which Python "
        f"runs as __main__, not as {name!r}, so this would never apply; use {option} __main__:step\n")
    assert name not in sys.modules


def test_debug_spec_that_is_never_imported_is_reported(program: Path, helper: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--debug", f"{helper}:step", str(program)]) == 0
    assert capsys.readouterr().err == (
        f"eagerctl run: warning: --debug {helper}:step was never applied: "
        f"the program did not import {helper}\n"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{h}:nope", "--debug {h}:nope: {h} has no attribute 'nope'"),
        ("{h}:Nope.step", "--debug {h}:Nope.step: {h} has no attribute 'Nope'"),
        ("{h}:Model.nope", "--debug {h}:Model.nope: {h}.Model has no attribute 'nope'"),
        ("{h}:Model.limit",
         "--debug {h}:Model.limit: {h}.Model.limit is not callable (it is a int); name a function or method"),
    ],
)
def test_debug_target_missing_when_imported_exits_2(tmp_path: Path, helper: str, target: str, message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    script = debug_program(tmp_path, helper)
    assert main(["run", "--debug", target.format(h=helper), str(script)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # stopped at the import, before the program went on
    assert captured.err == f"eagerctl run: error: {message.format(h=helper)}\n"


def test_debug_target_in_an_already_imported_module_is_checked_at_once(
        program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "json" in sys.modules
    assert main(["run", "--debug", "json:no_such_function", str(program)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "eagerctl run: error: --debug json:no_such_function: json has no attribute " \
                           "'no_such_function'\n"


def test_debug_spec_check_does_not_import_the_package(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    package = f"clipkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    write(tmp_path / package / "__init__.py", "print('package code ran')\n")
    write(tmp_path / package / "train.py", "def step():\n    pass\n")
    script = write(tmp_path / "noimport.py", "print('program ran')\n")
    assert main(["run", "--debug", f"{package}.train:step", str(script)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "program ran\n"  # found on disk, never imported: its code did not run
    assert package not in sys.modules
    assert main(["run", "--debug", f"{package}.nope:step", str(script)]) == 2
    assert capsys.readouterr().err.startswith(f"eagerctl run: error: --debug {package}.nope:step: no module "
                                              f"named '{package}.nope'")


def test_debug_module_that_does_not_exist_exits_2_before_the_program_runs(
        program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--debug", "no_such_mod_xq.sub:f", str(program)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "eagerctl run: error: --debug no_such_mod_xq.sub:f: no module named 'no_such_mod_xq.sub' "
        "(searched sys.path, which starts with the program's directory)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--debug", "train_step"], "--debug 'train_step': expected MODULE:QUALNAME, a module and a function "
         "in it, such as mypkg.train:train_step or mypkg.models:MyModel.train_step"),
        (["--debug", "pkg.mod:"], "--debug 'pkg.mod:': expected MODULE:QUALNAME, a module and a function "
         "in it, such as mypkg.train:train_step or mypkg.models:MyModel.train_step"),
        (["--process"], "--process applies --eager or --graph to the whole process; give one of them"),
    ],
)
def test_bad_command_lines_exit_2(program: Path, args: list[str], message: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *args, str(program)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"usage: {RUN_USAGE}\neagerctl run: error: {message}\n"


def test_no_program_and_bad_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--eager"]) == 2
    assert capsys.readouterr().err == (
        f"usage: {RUN_USAGE}\neagerctl run: error: give the program to run: a SCRIPT path or -m MODULE\n")
    missing = tmp_path / "missing.py"
    assert main(["run", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"eagerctl run: can't open file '{missing}': [Errno 2] No such file or directory\n")
    assert main(["run", "-m", "no_such_module_zz"]) == 1
    assert capsys.readouterr().err == "eagerctl run: no module named 'no_such_module_zz'\n"
    assert main(["run", "--eager", "--graph", str(missing)]) == 2
    assert "argument --graph: not allowed with argument --eager" in capsys.readouterr().err
    # No abbreviations: `--deb x` would otherwise take x as the program.
    assert main(["run", "--deb", "mod:fn", str(missing)]) == 2
    assert capsys.readouterr().err.endswith("eagerctl run: error: unrecognized arguments: --deb\n")


def test_python_dash_m_eagerctl_with_data_debug(tmp_path: Path) -> None:
    """One real process: `python -m eagerctl`; TensorFlow is set up when the program imports it."""
    script = write(tmp_path / "data.py", """\
        import sys
        print("tensorflow imported before the program:", "tensorflow" in sys.modules)
        import tensorflow as tf
        seen = []
        def double(x):
            seen.append(tf.executing_eagerly())
            return x * 2
        values = [int(v) for v in tf.data.Dataset.range(3).map(double)]
        print(values, seen)
        step = tf.function(lambda x: print("tf.function body eager:", tf.executing_eagerly()) or x)
        step(tf.constant(1))
        sys.exit(5)
        """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "eagerctl", "run", "--eager", "--data-debug", str(script)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 5, done.stderr
    assert done.stdout == (
        # eagerctl did not import TensorFlow ahead of the program (its own settings still apply)...
        "tensorflow imported before the program: False\n"
        # ...tf.data's map function: traced once to build the dataset, then eager on each element...
        "[0, 2, 4] [False, True, True, True]\n"
        # ...and --eager is in force from the program's import on.
        "tf.function body eager: True\n"
    )


# -- every definition of a --debug target (issue 14) ------------------------------------

REDEFINING_PROGRAM = """\
import json
import tensorflow as tf
seen = []

@tf.function
def train_step(x):
    seen.append(("first", tf.executing_eagerly()))
    return x + 1

train_step(tf.constant(1))

@tf.function
def train_step(x):
    seen.append(("second", tf.executing_eagerly()))
    return x + 2

train_step(tf.constant(1))
train_step = tf.function(lambda x: seen.append(("lambda", tf.executing_eagerly())) or x)
train_step(tf.constant(1))

class Model:
    def fit_step(self, x):
        seen.append(("Model 1", tf.executing_eagerly()))
        return x

tf.function(Model().fit_step)(tf.constant(1))

class Model:
    def fit_step(self, x):
        seen.append(("Model 2", tf.executing_eagerly()))
        return x

tf.function(Model().fit_step)(tf.constant(1))
print(json.dumps(seen))
"""


def test_debug_main_wraps_every_definition_of_a_redefined_name(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "redefine.py", REDEFINING_PROGRAM)
    assert main(["run", "--debug", "__main__:train_step", "--debug", "__main__:Model.fit_step",
                 str(script)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [
        ["first", True], ["second", True], ["lambda", True],
        # Called inside a traced tf.function: an eager island, its body eager at each run.
        ["Model 1", False], ["Model 1", True], ["Model 2", False], ["Model 2", True],
    ]
    assert captured.err == (
        f"eagerctl run: --debug __main__:train_step wrapped 3 definitions: {script}:5, {script}:12, "
        f"{script}:18\n"
        f"eagerctl run: --debug __main__:Model.fit_step wrapped 2 definitions: {script}:22, {script}:29\n"
    )
    # Without --debug, the same program: every body ran only while tracing.
    assert main(["run", str(script)]) == 0
    assert [eager for _, eager in json.loads(capsys.readouterr().out)] == [False] * 5


def test_debug_module_wraps_every_definition_made_while_it_is_imported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"cliredef_{uuid.uuid4().hex[:8]}"
    write(tmp_path / f"{name}.py", """\
        import tensorflow as tf
        seen = []

        def loss(x):
            seen.append(("first", tf.executing_eagerly()))
            return x

        warm_up = tf.function(lambda x: loss(x))(tf.constant(1.0))  # the module uses the first one

        def loss(x):
            seen.append(("second", tf.executing_eagerly()))
            return x * 2
        """)
    script = write(tmp_path / "uses.py", f"""\
        import json
        import tensorflow as tf
        import {name} as m
        m.loss(tf.constant(1.0))
        print(json.dumps(m.seen))
        """)
    assert main(["run", "--debug", f"{name}:loss", str(script)]) == 0
    captured = capsys.readouterr()
    # The first body became an eager island in the module's traced lambda; the second ran eagerly.
    assert json.loads(captured.out) == [["first", False], ["first", True], ["second", True]]
    module_file = tmp_path / f"{name}.py"
    assert captured.err == (f"eagerctl run: --debug {name}:loss wrapped 2 definitions: {module_file}:4, "
                            f"{module_file}:10\n")


def test_debug_patching_a_traced_tf_function_warns_with_the_remedy(
        tmp_path: Path, helper: str, capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(helper)
    finally:
        sys.path.remove(str(tmp_path))
    module.step(tf.constant(1))  # traced before eagerctl patches it
    script = write(tmp_path / "late.py", f"import {helper}\n")
    assert main(["run", "--debug", f"{helper}:step", str(script)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        f"eagerctl run: warning: --debug {helper}:step: @debuggable step was applied after the tf.function "
        "was traced (1 trace): calls through the decorated object run its body eagerly, but graphs traced "
        "before (of tf.functions that call it) keep its compiled body until they retrace; apply "
        "@eagerctl.debuggable where step is defined")
    site = f"{tmp_path / helper}.py:7"
    assert err.endswith(f"eagerctl run: --debug {helper}:step wrapped 1 definition: {site}\n")


def test_debug_on_a_function_the_program_decorated_itself_is_reported_as_such(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "decorated.py", """\
        import tensorflow as tf
        import eagerctl

        @eagerctl.debuggable
        @tf.function
        def step(x):
            print("eager:", tf.executing_eagerly())
            return x

        step(tf.constant(1))
        """)
    assert main(["run", "--debug", "__main__:step", str(script)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "eager: True\n"
    assert captured.err == (f"eagerctl run: --debug __main__:step wrapped 1 definition: {script}:4 "
                            "(already @debuggable)\n")

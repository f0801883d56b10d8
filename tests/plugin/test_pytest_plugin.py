"""The pytest plugin, run through `pytester` against real TensorFlow.

Inner sessions run in this process (`runpytest`), which is fast because TF is
imported once; only the "never imports TensorFlow" check needs a fresh
process. Each inner test asserts how its own `tf.function` calls ran.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
import tensorflow as tf

pytest_plugins = ["pytester"]


def _entry_point_registered() -> bool:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    return any(ep.value == "eagerctl._pytest_plugin" for ep in entry_points)


# Where eagerctl is not installed (the TF 2.13 environment) the entry point is
# not registered: load the plugin by its module name, as a user would there.
PLUGIN = [] if _entry_point_registered() else ["-p", "eagerctl._pytest_plugin"]
ARGS = ["-p", "no:cacheprovider", *PLUGIN]

# `mode()` calls a fresh tf.function and reports how that call ran: "eager"
# when its Python body ran, "graph" when it ran the traced graph.
PROBE = """
import threading

import pytest
import tensorflow as tf


def make_probe():
    seen = []

    @tf.function
    def f(x):
        seen.append(tf.executing_eagerly())
        return x * 2

    def mode():
        before = len(seen)
        assert int(f(tf.constant(3))) == 6
        return "eager" if len(seen) > before and seen[-1] else "graph"

    mode.f = f
    return mode


@pytest.fixture
def probe():
    return make_probe()


@pytest.fixture(name="make_probe")
def make_probe_fixture():
    return make_probe


def _mode_in_thread(probe):
    out = []
    t = threading.Thread(target=lambda: out.append(probe()))
    t.start()
    t.join()
    return out[0]


@pytest.fixture
def mode_in_thread():
    return _mode_in_thread
"""


@pytest.fixture(autouse=True)
def _summary_as_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under CI (`CI` or `BUILD_NUMBER` set) pytest prints each short summary line in
    # full, so the inner runs' messages would appear twice: count them as a user sees them.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


@pytest.fixture
def tfdir(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(PROBE)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = pytester.runpytest(*ARGS, *args)
    assert not tf.config.functions_run_eagerly(), "an inner session left the flag changed"
    return result


def test_markers_force_the_mode_of_every_call(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        """
        import pytest
        import tensorflow as tf

        @pytest.mark.tf_eager
        def test_eager(probe, tf_mode, mode_in_thread):
            assert (probe(), probe(), tf_mode) == ("eager", "eager", "eager")
            assert tf.config.functions_run_eagerly()
            assert mode_in_thread(probe) == "eager"   # threads the test starts too

        @pytest.mark.tf_graph
        def test_graph(probe, tf_mode):
            tf.config.run_functions_eagerly(True)
            try:
                # The marker's process scope keeps deciding: the write becomes the
                # baseline, in force once the last process scope exits.
                assert (probe(), tf_mode) == ("graph", "graph")
            finally:
                tf.config.run_functions_eagerly(False)
            assert probe() == "graph"

        def test_unmarked(probe, tf_mode):
            assert (probe(), tf_mode) == ("graph", "graph")

        @pytest.mark.tf_eager
        class TestClass:
            def test_inherits(self, probe):
                assert probe() == "eager"

            @pytest.mark.tf_graph
            def test_nearest_wins(self, probe, tf_mode):
                assert (probe(), tf_mode) == ("graph", "graph")
        """
    )
    run(tfdir).assert_outcomes(passed=5)


def test_marker_scope_covers_fixture_setup_and_teardown(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        """
        import pytest

        seen = []

        @pytest.fixture
        def trained(make_probe):
            probe = make_probe()
            seen.append(("setup", probe()))
            yield probe
            seen.append(("teardown", probe()))

        @pytest.mark.tf_eager
        def test_marked(trained):
            seen.append(("call", trained()))

        def test_after():
            assert seen == [("setup", "eager"), ("call", "eager"), ("teardown", "eager")]
        """
    )
    run(tfdir).assert_outcomes(passed=2)


def test_marker_scope_exits_when_setup_fails_or_the_test_is_skipped(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        """
        import pytest
        import eagerctl

        @pytest.fixture
        def broken():
            raise ValueError("setup broke")

        @pytest.mark.tf_eager
        def test_setup_fails(broken):
            pass

        @pytest.mark.tf_eager
        @pytest.mark.skip(reason="skipped")
        def test_skipped():
            pass

        def test_after(probe):
            assert probe() == "graph"
            assert eagerctl.status().scopes == ()
        """
    )
    run(tfdir).assert_outcomes(passed=1, errors=1, skipped=1)


def test_both_modes_runs_twice_with_ids(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        """
        import pytest
        import tensorflow as tf

        runs = []

        @pytest.mark.tf_both_modes
        def test_step(probe, tf_mode):
            runs.append((tf_mode, probe(), probe(), probe.f.experimental_get_tracing_count()))

        @pytest.mark.tf_both_modes
        def test_without_fixture(probe):
            runs.append(probe())

        @pytest.mark.tf_both_modes
        @pytest.mark.parametrize("n", [1, 2])
        def test_with_params(n, tf_mode):
            pass

        @pytest.mark.tf_both_modes
        class TestBoth:
            def test_method(self, tf_mode):
                assert tf.config.functions_run_eagerly() == (tf_mode == "eager")

        def test_after():
            assert runs == [("eager", "eager", "eager", 0), ("graph", "graph", "graph", 1), "eager", "graph"]
        """
    )
    result = run(tfdir, "-v")
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines_random([
        "*::test_step[[]tf-eager[]] PASSED*",
        "*::test_step[[]tf-graph[]] PASSED*",
        "*::test_without_fixture[[]tf-eager[]] PASSED*",
        "*::test_without_fixture[[]tf-graph[]] PASSED*",
        "*::test_with_params[[]1-tf-eager[]] PASSED*",
        "*::test_with_params[[]2-tf-graph[]] PASSED*",
        "*::TestBoth::test_method[[]tf-eager[]] PASSED*",
        "*::TestBoth::test_method[[]tf-graph[]] PASSED*",
    ])


def test_session_option_eager(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        """
        import pytest
        import tensorflow as tf
        from conftest import make_probe

        AT_COLLECTION = make_probe()()  # module-level code runs at collection

        def test_everything_eager(probe, tf_mode, mode_in_thread):
            assert (probe(), tf_mode, tf.config.functions_run_eagerly()) == ("eager", "eager", True)
            assert mode_in_thread(probe) == "eager"
            assert AT_COLLECTION == "eager"

        @pytest.mark.tf_graph
        def test_marker_wins(probe, tf_mode, mode_in_thread):
            assert (probe(), tf_mode) == ("graph", "graph")
            assert mode_in_thread(probe) == "graph"

        def test_back_to_session_mode(probe):
            assert probe() == "eager"

        def test_resets_everything(probe):
            import eagerctl

            eagerctl.reset()
            assert probe() == "graph"

        def test_session_mode_back_after_a_reset(probe):
            assert probe() == "eager"
        """
    )
    result = run(tfdir, "--tf-eager")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["eagerctl: every tf.function runs eager (--tf-eager)"])


def test_session_option_graph_wins_over_a_global_flag(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        """
        def test_graph(probe, tf_mode):
            assert (probe(), tf_mode) == ("graph", "graph")
        """
    )
    tf.config.run_functions_eagerly(True)
    try:
        result = tfdir.runpytest(*ARGS, "--tf-graph")
        assert tf.config.functions_run_eagerly()  # the baseline is back after the session
    finally:
        tf.config.run_functions_eagerly(False)
    result.assert_outcomes(passed=1)


def test_both_session_options_is_a_usage_error(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile("def test_x(): pass")
    result = run(tfdir, "--tf-eager", "--tf-graph")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --tf-eager and --tf-graph exclude each other: give one of them"])


def test_conflicting_markers_error_naming_the_test(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        """
        import unittest

        import pytest

        @pytest.mark.tf_eager
        @pytest.mark.tf_graph
        def test_both():
            pass

        @pytest.mark.tf_both_modes
        class TestCase(unittest.TestCase):
            def test_method(self):
                pass

        @pytest.mark.parametrize("x", [pytest.param(1, marks=pytest.mark.tf_both_modes)])
        def test_late_mark(x):
            pass
        """
    )
    result = run(tfdir)
    result.assert_outcomes(errors=3)
    name = "test_conflicting_markers_error_naming_the_test.py"
    both = ("tf_both_modes cannot run this test in both modes: pytest does not parametrize it "
            "(unittest.TestCase methods, marks on a pytest.param and marks added after collection are "
            "not parametrized); mark it tf_eager or tf_graph, or write it as a test function marked "
            "tf_both_modes")
    for line in [
        f"{name}::test_both: markers tf_eager, tf_graph exclude each other (both on '{name}::test_both'); "
        "keep one of them",
        f"{name}::TestCase::test_method: {both}",
        f"{name}::test_late_mark[1]: {both}",
    ]:
        assert line in result.stdout.lines


SCOPE_FIX = "Exit every scope you enter: a `with` block or the decorator form does it for you"
FLAG_FIX = "Restore it in a finally block or fixture teardown, or use `with eagerctl.eager_scope():` instead"
WARN_HINT = "--tf-flag-guard=error makes this an error, --tf-flag-guard=off turns the check off"
ERROR_HINT = "(--tf-flag-guard=warn makes this a warning)"


def _flag_message(who: str, leaked: bool, start: bool, restored: bool) -> str:
    return (
        f"{who} set tf.config.run_functions_eagerly({leaked}) and did not restore it "
        f"(it was {start} when the test started); "
        + ("eagerctl has restored it" if restored else "later tests run with it")
        + f". {FLAG_FIX}"
    )


def _warnings(result: pytest.RunResult) -> str:
    """The warnings summary of an inner session ("" if there is none)."""
    out = result.stdout.str()
    return out[out.index("warnings summary"):] if "warnings summary" in out else ""


GUARDED = """
import pytest
import tensorflow as tf

@pytest.fixture
def eager_flag():
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)

def test_leaks():
    tf.config.run_functions_eagerly(True)

def test_flag_was_restored():
    assert not tf.config.functions_run_eagerly()

def test_restored_by_fixture_teardown(eager_flag):
    assert tf.config.functions_run_eagerly()

@pytest.mark.tf_graph
def test_leaks_under_marker():
    tf.config.run_functions_eagerly(True)

def test_still_restored():
    assert not tf.config.functions_run_eagerly()
"""


@pytest.mark.parametrize("how", [["--tf-flag-guard=error"], ["-o", "tf_flag_guard=error"]])
def test_guard_error_mode_fails_a_test_that_leaks_the_flag(tfdir: pytest.Pytester, how: list[str]) -> None:
    tfdir.makepyfile(test_guard=GUARDED)
    result = run(tfdir, *how)
    result.assert_outcomes(passed=5, errors=2)
    lines = result.stdout.lines
    for name in ["test_leaks", "test_leaks_under_marker"]:
        assert _flag_message(f"test_guard.py::{name}", True, False, restored=True) in lines
    assert ERROR_HINT in lines
    result.stdout.fnmatch_lines(["ERROR test_guard.py::test_leaks - Failed: test_guard.py::test_leaks set *"])


def test_guard_error_mode_under_session_scope_and_marker(tfdir: pytest.Pytester) -> None:
    # The write happens inside two process scopes: the registry would adopt it
    # as its baseline and hand it back when the session ends.
    tfdir.makepyfile(
        test_guard="""
        import pytest
        import tensorflow as tf

        @pytest.mark.tf_graph
        def test_leaks_under_marker():
            tf.config.run_functions_eagerly(True)

        def test_leaks_false():
            tf.config.run_functions_eagerly(False)

        def test_session_mode_intact(probe):
            assert probe() == "eager"
            assert tf.config.functions_run_eagerly()
        """
    )
    result = run(tfdir, "--tf-eager", "--tf-flag-guard=error")
    result.assert_outcomes(passed=3, errors=1)
    lines = result.stdout.lines
    assert _flag_message("test_guard.py::test_leaks_under_marker", True, False, restored=True) in lines
    # Writing False under --tf-eager sets the baseline (the flag once the last
    # process scope exits) to what it was: nothing leaked, the session scope
    # keeps deciding, and the next test runs eagerly.
    assert "test_leaks_false set" not in result.stdout.str()


def test_guard_default_warns_naming_the_test_and_changes_nothing(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        test_guard="""
        import tensorflow as tf

        def test_leaks():
            tf.config.run_functions_eagerly(True)

        def test_sees_the_leak_as_without_the_plugin(probe):
            assert tf.config.functions_run_eagerly()
            assert probe() == "eager"
            tf.config.run_functions_eagerly(False)
        """
    )
    result = run(tfdir)
    result.assert_outcomes(passed=2, warnings=1)
    warned = _warnings(result)
    assert "test_guard.py::test_leaks\n" in warned
    message = _flag_message("test_guard.py::test_leaks", True, False, restored=False)
    assert f"EagerctlWarning: {message}. {WARN_HINT}" in warned
    # The second test restored what the first leaked: it is not blamed.
    assert "test_sees_the_leak_as_without_the_plugin set" not in warned


@pytest.mark.parametrize(
    "how", [["--tf-flag-guard=off"], ["-o", "tf_flag_guard=off"], ["-o", "tf_flag_guard=false"]]
)
def test_guard_off(tfdir: pytest.Pytester, how: list[str]) -> None:
    tfdir.makepyfile(
        """
        import tensorflow as tf
        import eagerctl

        def test_leaks():
            tf.config.run_functions_eagerly(True)
            eagerctl.eager_scope(False).__enter__()

        def test_sees_leak(probe):
            assert tf.config.functions_run_eagerly()
            assert probe() == "graph"
            eagerctl.reset()
            tf.config.run_functions_eagerly(False)
        """
    )
    result = run(tfdir, *how)
    result.assert_outcomes(passed=2)
    assert "EagerctlWarning" not in result.stdout.str()


def test_guard_bad_ini_value_is_a_usage_error(tfdir: pytest.Pytester) -> None:
    tfdir.makeini("[pytest]\ntf_flag_guard = loud\n")
    tfdir.makepyfile("def test_x(): pass")
    result = run(tfdir)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: tf_flag_guard = 'loud' in the pytest ini options: expected one of warn, error, off "
        "(warn is the default)"
    ])


def test_guard_does_not_hide_a_teardown_error(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(
        """
        import pytest
        import tensorflow as tf

        @pytest.fixture
        def broken():
            yield
            tf.config.run_functions_eagerly(True)
            raise ValueError("teardown broke")

        def test_x(broken):
            pass

        def test_restored():
            assert not tf.config.functions_run_eagerly()
        """
    )
    result = run(tfdir, "--tf-flag-guard=error")
    result.assert_outcomes(passed=2, errors=1, warnings=1)
    result.stdout.fnmatch_lines(["E       ValueError: teardown broke"])
    # The leak is restored, and shown as a warning next to the teardown's error.
    who = "test_guard_does_not_hide_a_teardown_error.py::test_x"
    message = _flag_message(who, True, False, restored=True)
    assert f"EagerctlWarning: {message}. {WARN_HINT}" in _warnings(result)


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*ARGS, "--markers")
    result.stdout.fnmatch_lines_random([
        "@pytest.mark.tf_eager: run this test's tf.functions eagerly (eagerctl)",
        "@pytest.mark.tf_graph: run this test's tf.functions compiled (eagerctl)",
        "@pytest.mark.tf_both_modes: run this test twice, ids [[]tf-eager[]] and [[]tf-graph[]] (eagerctl)",
    ])
    pytester.makepyfile("def test_x(): pass")
    selected = pytester.runpytest(*ARGS, "--strict-markers", "-m", "tf_eager")
    assert selected.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_loading_the_plugin_does_not_import_tensorflow(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            imported = "tensorflow" in sys.modules
            plugin = "eagerctl._pytest_plugin" in sys.modules
            with open("result.txt", "w") as f:
                f.write(f"{plugin} {imported}")
        """
    )
    pytester.makepyfile(
        """
        import sys

        import pytest

        @pytest.fixture(scope="module")
        def wide():  # the guard watches what wider fixtures enter
            yield

        def test_plain(wide):
            assert "tensorflow" not in sys.modules

        def test_leaves_nothing(wide):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*ARGS, "--tf-flag-guard=error")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "result.txt").read_text() == "True False"


def test_session_option_without_tensorflow_is_a_usage_error(pytester: pytest.Pytester) -> None:
    # A plugin loaded before eagerctl's makes `import tensorflow` fail, as on
    # a machine without it.
    pytester.makepyfile(notf="import sys\nsys.modules['tensorflow'] = None\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "notf", *ARGS, "--tf-eager")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --tf-eager: eagerctl needs TensorFlow, which cannot be imported here (import of "
        "tensorflow halted; None in sys.modules); install it with: pip install tensorflow  "
        "(or tensorflow-cpu on a machine without a GPU)"
    ])


# -- leaked scopes ------------------------------------------------------------------


def _scope_message(who: str, scope: str, where: str) -> str:
    where = f"entered at {where} in thread 'MainThread'"
    return f"{who} left {scope} active ({where}); eagerctl has exited it. {SCOPE_FIX}"


LEAKS = """
import pytest
import tensorflow as tf
import eagerctl

def test_leaks_local(probe):
    eagerctl.eager_scope().__enter__()  # leak-local
    assert probe() == "eager"

def test_innocent_after_local(probe):
    assert probe() == "graph"
    assert eagerctl.status().scopes == ()

def test_leaks_process(probe):
    eagerctl.eager_scope(process=True).__enter__()  # leak-process

@pytest.mark.tf_graph
def test_innocent_marked(probe):
    assert probe() == "graph"

def test_innocent_after_process(probe):
    assert (probe(), tf.config.functions_run_eagerly()) == ("graph", False)
    assert eagerctl.status().scopes == ()

@eagerctl.graph_scope()
def helper():
    eagerctl.eager_scope(process=True).__enter__()  # leak-in-helper

def test_leaks_both_kinds():
    scope = eagerctl.graph_scope()
    scope.__enter__()  # leak-graph
    helper()

def test_innocent_last(probe):
    assert probe() == "graph"
    assert eagerctl.status().scopes == ()
"""


def _line_of(path: Path, text: str) -> int:
    """The number of the line of `path` that contains `text`."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize("guard", ["warn", "error"])
def test_leaked_scopes_are_reported_as_scopes_exited_and_nobody_else_is_blamed(
    tfdir: pytest.Pytester, guard: str
) -> None:
    path = tfdir.makepyfile(test_leaks=LEAKS)
    result = run(tfdir, f"--tf-flag-guard={guard}")
    out = result.stdout.str()

    def at(text: str) -> str:
        return f"{path}:{_line_of(path, text)}"

    expected = [
        _scope_message("test_leaks.py::test_leaks_local", "eager_scope(True)", at("# leak-local")),
        _scope_message("test_leaks.py::test_leaks_process", "eager_scope(True, process=True)",
                       at("# leak-process")),
        _scope_message("test_leaks.py::test_leaks_both_kinds", "graph_scope()", at("# leak-graph")),
        _scope_message("test_leaks.py::test_leaks_both_kinds", "eager_scope(True, process=True)",
                       at("# leak-in-helper")),
    ]
    if guard == "warn":
        result.assert_outcomes(passed=7, warnings=4)
        for message in expected:
            assert f"EagerctlWarning: {message}. {WARN_HINT}" in _warnings(result)
    else:
        result.assert_outcomes(passed=7, errors=3)
        lines = result.stdout.lines
        for message in expected:
            assert message in lines
        assert lines.count(ERROR_HINT) == 3
    # Reported as scopes, once each, at the test that leaked them.
    assert "set tf.config.run_functions_eagerly" not in out
    assert "innocent" not in out.split("short test summary")[-1]
    assert out.count(" left ") == 4


THREADS = """
import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import eagerctl

worker = ThreadPoolExecutor(1, thread_name_prefix="worker")
held = []


def test_leaks_in_a_finished_thread():
    thread = threading.Thread(target=lambda: eagerctl.eager_scope().__enter__())  # leak-thread
    thread.start()
    thread.join()


def test_leaks_in_an_asyncio_task():
    async def main():
        eagerctl.eager_scope().__enter__()  # leak-task

    asyncio.run(main())


def test_nothing_left_behind(probe):
    assert probe() == "graph"
    assert eagerctl.status().scopes == ()


def test_leaks_in_a_live_worker_thread(probe):
    def enter():
        scope = eagerctl.eager_scope()
        scope.__enter__()  # leak-worker
        held.append(scope)

    worker.submit(enter).result()


def test_worker_keeps_it_until_it_exits_it(probe):
    assert (worker.submit(probe).result(), probe()) == ("eager", "graph")
    worker.submit(held[0].__exit__, None, None, None).result()
    assert worker.submit(probe).result() == "graph"
    worker.shutdown()


copied = contextvars.copy_context()


def test_leaks_in_a_copied_context(probe):
    def enter():
        scope = eagerctl.eager_scope()
        scope.__enter__()  # leak-context
        held.append(scope)

    copied.run(enter)
    assert probe() == "graph"


def test_copied_context_keeps_it(probe):
    assert (copied.run(probe), probe()) == ("eager", "graph")
    copied.run(held[1].__exit__, None, None, None)
    assert eagerctl.status().scopes == ()
"""


def test_leaks_in_other_threads_and_tasks(tfdir: pytest.Pytester) -> None:
    path = tfdir.makepyfile(test_leaks_elsewhere=THREADS)
    result = run(tfdir)
    result.assert_outcomes(passed=7, warnings=4)
    warned = _warnings(result)
    who = "test_leaks_elsewhere.py::test_leaks_in"
    dropped = "so it is in force nowhere and eagerctl has dropped it"
    assert re.search(
        re.escape(f"{who}_a_finished_thread left eager_scope(True) active (entered at "
                  f"{path}:{_line_of(path, '# leak-thread')} in thread 'thread ")
        + r"\d+ \(finished\)'\); "
        + re.escape(f"its thread has finished, {dropped}. {SCOPE_FIX}. {WARN_HINT}"),
        warned,
    )
    assert re.search(  # asyncio numbers tasks per process: other tests may have made some
        re.escape(f"{who}_an_asyncio_task left eager_scope(True) active (entered at {path}:"
                  f"{_line_of(path, '# leak-task')} in thread 'MainThread', asyncio task 'Task-")
        + r"\d+'\); "
        + re.escape(f"its asyncio task has finished, {dropped}. {SCOPE_FIX}. {WARN_HINT}"),
        warned,
    )
    assert (
        f"{who}_a_live_worker_thread left eager_scope(True) active (entered at {path}:"
        f"{_line_of(path, '# leak-worker')} in thread 'worker_0'); a local scope can only be exited "
        f"where it was entered, so it stays in force in that thread until code there exits it. "
        f"{SCOPE_FIX}. {WARN_HINT}"
    ) in warned
    assert (
        f"{who}_a_copied_context left eager_scope(True) active (entered at {path}:"
        f"{_line_of(path, '# leak-context')} in thread 'MainThread'); a local scope can only be exited "
        f"where it was entered, so it stays in force in that context until code there exits it. "
        f"{SCOPE_FIX}. {WARN_HINT}"
    ) in warned
    for innocent in ["test_worker_keeps_it", "test_nothing_left", "test_copied_context_keeps_it"]:
        assert innocent not in warned


FIXTURES = """
import pytest
import tensorflow as tf

import eagerctl


@pytest.fixture(scope="session", autouse=True)
def run_eagerly():
    # Seen in the wild: set for the whole session, never restored.
    tf.config.run_functions_eagerly(True)


@pytest.fixture(scope="module")
def graph_for_the_module():
    with eagerctl.graph_scope():
        yield


@pytest.fixture(scope="class")
def leaky():
    eagerctl.graph_scope(process=True).__enter__()  # leak-fixture


class TestLeakyFixture:
    def test_one(self, leaky, probe):
        assert probe() == "graph"

    def test_two(self, leaky):
        assert eagerctl.status().scopes[-1].scope == "graph_scope(process=True)"


def test_session_fixture_decides(probe):
    assert probe() == "eager"


def test_module_fixture(graph_for_the_module, probe):
    assert probe() == "graph"


def test_module_fixture_still_set_up(graph_for_the_module, probe):
    assert probe() == "graph"


def test_after_the_class(probe):
    assert eagerctl.status().scopes[-1].scope == "graph_scope()"  # the module fixture's, still set up
    assert probe() == "graph"
"""


def test_wider_fixtures_own_what_they_enter_and_are_named_not_a_test(tfdir: pytest.Pytester) -> None:
    path = tfdir.makepyfile(test_fixtures=FIXTURES)
    try:
        result = tfdir.runpytest(*ARGS)
        assert tf.config.functions_run_eagerly()  # `warn` left the session fixture's write in place
    finally:
        tf.config.run_functions_eagerly(False)
    result.assert_outcomes(passed=6, warnings=2)
    warned = _warnings(result)
    assert (
        f"fixture 'leaky' (class scope) left graph_scope(process=True) active (entered at "
        f"{path}:{_line_of(path, '# leak-fixture')} in thread 'MainThread'); eagerctl has exited it. "
        f"{SCOPE_FIX}. {WARN_HINT}"
    ) in warned
    assert (
        "fixture 'run_eagerly' (session scope) set tf.config.run_functions_eagerly(True) and did not "
        f"restore it (it was False before it was set up); later tests run with it. {FLAG_FIX}. {WARN_HINT}"
    ) in warned
    assert "test_fixtures.py::test_after_the_class\n" in warned  # where the session fixture ended
    assert not re.search(r"test_\w+ (left|set) ", warned)  # no test is blamed
    # In error mode the same two are errors, and everything is restored.
    errors = run(tfdir, "--tf-flag-guard=error")
    errors.assert_outcomes(passed=6, errors=2)
    assert errors.stdout.lines.count(ERROR_HINT) == 2


# -- a project that never asked for the plugin ------------------------------------------

# TensorFlow's own tests (tf_function_test and others) follow this pattern: a
# test sets the flag, and every test's setUp resets it.
TF_PATTERN = """
import unittest

import tensorflow as tf


class FunctionTest(unittest.TestCase):
    def setUp(self):
        super().setUp()
        tf.config.run_functions_eagerly(False)

    def _double(self):
        bodies = []

        @tf.function
        def double(x):
            bodies.append(tf.executing_eagerly())
            return x * 2

        return double, bodies

    def test_a_runs_eagerly_when_asked(self):
        double, bodies = self._double()
        tf.config.run_functions_eagerly(True)
        self.assertEqual([int(double(tf.constant(v))) for v in (1, 2)], [2, 4])
        self.assertEqual(bodies, [True, True])  # the Python body ran on every call

    def test_b_compiled_by_default(self):
        double, bodies = self._double()
        self.assertEqual([int(double(tf.constant(v))) for v in (1, 2)], [2, 4])
        self.assertEqual((bodies, double.experimental_get_tracing_count()), ([False], 1))
"""


def test_tf_pattern_unchanged_by_the_default_guard(tfdir: pytest.Pytester) -> None:
    tfdir.makepyfile(test_tf_pattern=TF_PATTERN)
    no_plugin = ["-p", "no:eagerctl"] if not PLUGIN else []  # the entry point's name

    def results(*args: str) -> list[str]:
        result = tfdir.runpytest("-p", "no:cacheprovider", "-v", *args)
        assert not tf.config.functions_run_eagerly()
        pattern = re.compile(r"(test_tf_pattern\.py::\S+ (PASSED|FAILED|ERROR))")
        outcomes = [pattern.match(line) for line in result.stdout.lines]
        return [m.group(1) for m in outcomes if m] + [f"exit {int(result.ret)}"]

    without = results(*no_plugin)
    assert without == [
        "test_tf_pattern.py::FunctionTest::test_a_runs_eagerly_when_asked PASSED",
        "test_tf_pattern.py::FunctionTest::test_b_compiled_by_default PASSED",
        "exit 0",
    ]
    assert results(*PLUGIN) == without
    # ... also where warnings are errors: the guard's warning never fails a test.
    tfdir.makeini("[pytest]\nfilterwarnings =\n    error\n")
    assert results(*PLUGIN) == without
    strict = run(tfdir, "-W", "error")
    strict.assert_outcomes(passed=2, warnings=1)
    message = _flag_message(
        "test_tf_pattern.py::FunctionTest::test_a_runs_eagerly_when_asked", True, False, restored=False
    )
    assert f"EagerctlWarning: {message}. {WARN_HINT}" in _warnings(strict)
    run(tfdir, "-W", "ignore::eagerctl.EagerctlWarning").assert_outcomes(passed=2, warnings=0)
    # Asked for, the error names the test, and the flag is restored at once.
    errors = run(tfdir, "--tf-flag-guard=error")
    errors.assert_outcomes(passed=2, errors=1)
    assert _flag_message(
        "test_tf_pattern.py::FunctionTest::test_a_runs_eagerly_when_asked", True, False, restored=True
    ) in errors.stdout.lines


# -- the docs page's example ------------------------------------------------------


def test_docs_example_shows_what_pytest_prints(pytester: pytest.Pytester) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "pytest-plugin.md").read_text()
    code = re.search(r"```python\n(# test_step\.py\n.*?)```", page, re.DOTALL)
    console = re.search(r"```console\n(.*?)```", page, re.DOTALL)
    assert code is not None and console is not None
    pytester.makepyfile(test_step=code.group(1))
    shown = re.split(r"^\$ pytest (.*)$", console.group(1), flags=re.MULTILINE)[1:]

    def normal(lines: list[str]) -> list[str]:
        """Without what changes from run to run: the time taken (and the width of the rule around it)."""
        return [re.sub(r"^=+ | =+$| in \d+\.\d+s", "", line.replace("/tmp/demo/", f"{pytester.path}/"))
                for line in lines if line not in ("", "...")]

    assert len(shown) == 4  # two commands, each with its output
    for command, expected in zip(shown[::2], shown[1::2], strict=True):
        try:
            result = pytester.runpytest(*ARGS, *command.split()[:-1])
        finally:
            tf.config.run_functions_eagerly(False)  # `warn` leaves test_leaky_flag's write in place
        lines = normal(result.stdout.lines)
        at = 0
        for line in normal(expected.splitlines()):
            assert line in lines[at:], f"{command}: not printed (in this order): {line!r}"
            at = lines.index(line, at) + 1


def test_interrupted_session_leaves_nothing_behind(tfdir: pytest.Pytester) -> None:
    # Ctrl-C in a test: pytest skips its teardown and ends the session.
    tfdir.makepyfile(
        """
        import pytest

        import eagerctl

        @pytest.mark.tf_eager
        def test_interrupted(probe):
            eagerctl.graph_scope().__enter__()
            assert probe() == "graph"
            raise KeyboardInterrupt
        """
    )
    result = tfdir.runpytest(*ARGS, no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    import eagerctl

    left = eagerctl.status()
    eagerctl.reset()
    assert (left.scopes, left.process_flag) == ((), False)


def test_with_this_repos_own_idle_fixture_a_leak_fails_one_test_only(pytester: pytest.Pytester) -> None:
    # tests/conftest.py fails a test that leaves a scope active, and exits
    # nothing; the plugin exits it (and says so), so the next test is not failed too.
    conftest = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()
    pytester.makeconftest(conftest + PROBE)
    pytester.makepyfile(
        """
        import eagerctl

        def test_leaks(probe):
            eagerctl.eager_scope().__enter__()

        def test_innocent(probe):
            assert probe() == "graph"
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1, warnings=1)
    result.stdout.fnmatch_lines(["E       AssertionError: test left scopes active*"])
    assert "::test_innocent" not in result.stdout.str().split("short test summary")[-1]


def test_a_marker_a_local_scope_overrides_is_a_warning(tfdir: pytest.Pytester) -> None:
    path = tfdir.makepyfile(
        """
        import pytest

        import eagerctl

        @pytest.fixture(scope="module")
        def compiled():
            with eagerctl.graph_scope():  # module-scope
                yield

        @pytest.mark.tf_both_modes
        def test_step(compiled, probe, tf_mode):
            assert probe() == "graph"  # in both variants: the local scope wins

        @pytest.mark.tf_graph
        def test_agrees(compiled, probe):
            assert probe() == "graph"
        """
    )
    result = run(tfdir)
    result.assert_outcomes(passed=3, warnings=1)
    assert (
        f"{path.name}::test_step[tf-eager] is marked to run eagerly, but graph_scope() (entered at "
        f"{path}:{_line_of(path, '# module-scope')} in thread 'MainThread') is a local scope in force "
        "in its thread, and a local scope wins over the marker: its tf.functions run compiled. Exit "
        "that scope before this test, or mark the test to match it"
    ) in _warnings(result)

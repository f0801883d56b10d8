"""The pytest plugin, registered through the `pytest11` entry point.

What it adds:

- `--tf-eager` / `--tf-graph`: run every `tf.function` of the session eagerly
  (or compiled). A *process* scope, entered when pytest is configured (before
  collection) and exited when it unconfigures, so threads that tests start and
  `tf.distribute` replica threads are covered too, and coverage tools see the
  lines inside `tf.function`s.
- Markers `tf_eager`, `tf_graph` and `tf_both_modes` (the test runs twice, with
  ids ending `[tf-eager]` and `[tf-graph]`). A marked test runs inside a
  process scope entered before its fixtures are set up and exited after they
  are torn down. The nearest marker wins (function over class over module).
- Fixture `tf_mode`: `"eager"` or `"graph"`, the mode this test runs in.
- A guard: a test that changes `tf.config.run_functions_eagerly` and does not
  restore it (by the end of its teardown) errors at teardown with a message
  naming it, and the flag is put back. Turn it off with the ini option
  `tf_flag_guard = false`.

Loading the plugin never imports TensorFlow: only `--tf-eager`/`--tf-graph`,
a marker, or the `tf_mode` fixture of an unmarked test do, and the guard reads
the flag only when TensorFlow is already imported.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Literal

import pytest

from . import _hook
from ._errors import EagerctlError
from ._scope import Scope, eager_scope

Mode = Literal["eager", "graph"]

MARKERS: dict[str, Mode | None] = {"tf_eager": "eager", "tf_graph": "graph", "tf_both_modes": None}
PARAM = "_eagerctl_tf_mode"  # private fixture parametrized by `tf_both_modes`
IDS = {"eager": "tf-eager", "graph": "tf-graph"}
GUARD_INI = "tf_flag_guard"

_session_scope = pytest.StashKey[Scope]()
_session_mode = pytest.StashKey[Mode]()
_item_scope = pytest.StashKey[Scope]()
_item_mode = pytest.StashKey[Mode | None]()
_flag_before = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eagerctl", "eagerctl: how TensorFlow runs tf.functions")
    group.addoption(
        "--tf-eager", action="store_const", const="eager", dest="eagerctl_mode", default=None,
        help="run every tf.function of the session eagerly (a process scope: all threads)",
    )
    group.addoption(
        "--tf-graph", action="store_const", const="graph", dest="eagerctl_mode_graph", default=None,
        help="run every tf.function of the session compiled (a process scope: all threads)",
    )
    parser.addini(
        GUARD_INI, type="bool", default=True,
        help="fail a test that changes tf.config.run_functions_eagerly without restoring it "
             "(default: true)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tf_eager: run this test's tf.functions eagerly (eagerctl)")
    config.addinivalue_line("markers", "tf_graph: run this test's tf.functions compiled (eagerctl)")
    config.addinivalue_line(
        "markers", "tf_both_modes: run this test twice, ids [tf-eager] and [tf-graph] (eagerctl)"
    )
    eager = config.getoption("eagerctl_mode", None)
    graph = config.getoption("eagerctl_mode_graph", None)
    if eager and graph:
        raise pytest.UsageError("--tf-eager and --tf-graph exclude each other: give one of them")
    if eager or graph:
        mode: Mode = "eager" if eager else "graph"
        scope = eager_scope(mode == "eager", process=True)
        try:
            scope.__enter__()
        except EagerctlError as exc:  # no TensorFlow here: a usage error, not a crash
            raise pytest.UsageError(f"--tf-{mode}: {exc}") from exc
        config.stash[_session_mode] = mode
        config.stash[_session_scope] = scope


def pytest_unconfigure(config: pytest.Config) -> None:
    scope = config.stash.get(_session_scope, None)
    if scope is not None and scope.active:
        scope.__exit__(None, None, None)
        del config.stash[_session_scope]


def pytest_report_header(config: pytest.Config) -> str | None:
    mode = config.stash.get(_session_mode, None)
    return None if mode is None else f"eagerctl: every tf.function runs {mode} (--tf-{mode})"


# -- markers -------------------------------------------------------------------


def _nearest_markers(item: pytest.Item) -> tuple[str, list[str]]:
    """The nearest node (function, then class, then module...) with eagerctl markers: (its id, names)."""
    for level in reversed(item.listchain()):
        names = sorted({m.name for m in level.own_markers if m.name in MARKERS})
        if names:
            return level.nodeid or level.name, names
    return "", []


def _marker_mode(item: pytest.Item) -> Mode | None:
    """The mode the nearest eagerctl marker forces; None for tf_both_modes or no marker."""
    where, names = _nearest_markers(item)
    if len(names) > 1:
        pytest.fail(
            f"{item.nodeid}: markers {', '.join(names)} exclude each other "
            f"(both on {where!r}); keep one of them",
            pytrace=False,
        )
    return MARKERS[names[0]] if names else None


# Last, so that `[tf-eager]`/`[tf-graph]` ends the test id after the test's
# own parameters.
@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    _, names = _nearest_markers(metafunc.definition)
    if names != ["tf_both_modes"]:
        return  # a conflict is reported when the test is set up
    # The private fixture carries the mode, so a test need not ask for
    # `tf_mode` to be run twice (the pattern of pytest-repeat).
    if PARAM not in metafunc.fixturenames:
        metafunc.fixturenames.append(PARAM)
    metafunc.parametrize(PARAM, ["eager", "graph"], indirect=True, ids=[IDS["eager"], IDS["graph"]])


@pytest.fixture
def _eagerctl_tf_mode(request: pytest.FixtureRequest) -> Mode:
    mode: Mode = request.param
    return mode


def _forced_mode(item: pytest.Item) -> Mode | None:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and PARAM in callspec.params:
        mode: Mode = callspec.params[PARAM]
        return mode
    return _marker_mode(item)


@pytest.fixture
def tf_mode(request: pytest.FixtureRequest) -> Mode:
    """The mode this test's `tf.function`s run in: ``"eager"`` or ``"graph"``.

    Set by a marker (`tf_eager`, `tf_graph`, `tf_both_modes`) or by
    `--tf-eager`/`--tf-graph`; otherwise TensorFlow's flag as the test starts.

    Example::

        @pytest.mark.tf_both_modes
        def test_step(tf_mode):
            assert train_step(x).numpy() == 3.0      # runs as test_step[tf-eager] and [tf-graph]
    """
    forced: Mode | None = request.node.stash.get(_item_mode, None)
    if forced is not None:
        return forced
    from ._status import is_eager

    return "eager" if is_eager() else "graph"


# -- the per-test scope and the guard ---------------------------------------------


def _read_flag() -> bool | None:
    """TF's process flag, or None when TensorFlow is not imported (never imports it)."""
    module = sys.modules.get(_hook.FLAG_MODULE)
    return None if module is None else bool(getattr(module, "RUN_FUNCTIONS_EAGERLY", False))


# Innermost wrappers (trylast): the scope spans exactly the fixtures' setup,
# the call and the fixtures' teardown, and our errors reach pytest's capture
# and logging wrappers like any setup or teardown error.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    if item.config.getini(GUARD_INI):
        before = _read_flag()
        # TF imported by the test itself starts with its default, False.
        item.stash[_flag_before] = False if before is None else before
    mode = _forced_mode(item)
    if mode is None:
        session_mode = item.config.stash.get(_session_mode, None)
        mode = session_mode
    else:
        scope = eager_scope(mode == "eager", process=True)
        scope.__enter__()
        item.stash[_item_scope] = scope
    item.stash[_item_mode] = mode
    return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    guard = bool(item.config.getini(GUARD_INI))
    try:
        result = yield
    except BaseException:
        _end_test(item, guard)  # the teardown's own error is the one to report
        raise
    problem = _end_test(item, guard)
    if problem:
        pytest.fail(problem, pytrace=False)
    return result


def _end_test(item: pytest.Item, guard: bool) -> str | None:
    """Exit the test's scope and restore a flag the test left changed; describe the leak."""
    leaked: bool | None = None
    start = item.stash.get(_flag_before, None)
    scope = item.stash.get(_item_scope, None)
    if scope is not None and scope.active:
        start = scope.enabled
        now = _read_flag()
        if guard and now is not None and now != scope.enabled:
            # Undo the test's write before the scope exits: the registry would
            # otherwise adopt it as the new baseline, hidden behind any
            # session scope, and leak it past the session.
            leaked = now
            _hook.write_flag(scope.enabled)
        scope.__exit__(None, None, None)
    if guard:
        before = item.stash.get(_flag_before, None)
        after = _read_flag()
        if before is not None and after is not None and after != before:
            leaked = after if leaked is None else leaked
            start = before if scope is None else start
            _hook.write_flag(before)
    if leaked is None:
        return None
    return (
        f"{item.nodeid} set tf.config.run_functions_eagerly({leaked}) and did not restore it "
        f"(it was {start} when the test started); eagerctl has restored it. Use `with "
        f"eagerctl.eager_scope():`, or restore the flag in a finally block or fixture teardown; "
        f"`{GUARD_INI} = false` in the pytest ini options turns this check off"
    )

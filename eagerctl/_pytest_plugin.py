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
  A local scope already in force in the test's thread (a wider fixture's)
  wins over a marker; the plugin warns when it contradicts one.
- Fixture `tf_mode`: `"eager"` or `"graph"`, the mode this test runs in.
- A guard (`--tf-flag-guard` / ini `tf_flag_guard`: `warn`, the default,
  `error` or `off`). After each test's teardown it looks for what the test left
  behind:
  - eagerctl scopes still active: reported as what they are (the scope, where
    it was entered) and exited, so the next test runs as it would alone;
  - TensorFlow's flag (`tf.config.run_functions_eagerly`) changed and not
    restored: `warn` reports it and changes nothing (the plugin is active in
    every session of an environment where eagerctl is installed, and must not
    change the results of a project that did not ask for it, such as
    TensorFlow's own tests, which set the flag in one test and reset it in the
    next `setUp`); `error` fails the test's teardown and restores the flag.
  What a fixture wider than a function (class, module, package, session)
  enters or sets belongs to that fixture: it is checked when the fixture is
  torn down and reported under the fixture's name, never blamed on a test.

Inert unless asked: the plugin is loaded in every pytest session of an
environment where eagerctl is installed. Loading it never imports TensorFlow,
and installs nothing in it: `--tf-eager`/`--tf-graph` and the markers enter
eagerctl's scopes (which install its hook), the `tf_mode` fixture of an
unmarked test imports TF to read the mode, and test code may use eagerctl
itself; nothing else does. The guard reads TF's flag only when
TensorFlow is already imported, from TF's module as TF would, and calls into
eagerctl's registry only while a process scope is active: a session that uses
no eagerctl feature runs TensorFlow untouched.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from . import _hook, _local
from ._errors import EagerctlError, EagerctlWarning
from ._scope import Scope, eager_scope

Mode = Literal["eager", "graph"]
# A scope's activation, as eagerctl's stack and registry hold it: read here
# through `scope`, `value`, `thread`, `task`, `describe()` and `exit()`.
Activation = Any
Guard = Literal["warn", "error", "off"]

MARKERS: dict[str, Mode | None] = {"tf_eager": "eager", "tf_graph": "graph", "tf_both_modes": None}
PARAM = "_eagerctl_tf_mode"  # private fixture parametrized by `tf_both_modes`
IDS = {"eager": "tf-eager", "graph": "tf-graph"}
GUARD_INI = "tf_flag_guard"
GUARD_OPTION = "--tf-flag-guard"
GUARD_MODES: tuple[Guard, ...] = ("warn", "error", "off")

_session_scope = pytest.StashKey[Scope]()
_session_mode = pytest.StashKey[Mode]()
_guard = pytest.StashKey[Guard]()
_marker_scope = pytest.StashKey[Scope]()  # the running test's, until its teardown ends
_item_mode = pytest.StashKey[Mode | None]()


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
    group.addoption(
        GUARD_OPTION, choices=GUARD_MODES, dest="eagerctl_guard", default=None,
        help="a test that leaves an eagerctl scope active or tf.config.run_functions_eagerly "
             "changed: warn (default; scopes are exited, the flag is left as it is), error "
             "(fail its teardown and restore everything) or off (ini: tf_flag_guard)",
    )
    group.addoption(
        "--tf-replay", action="store_true", dest="eagerctl_replay", default=False,
        help="run each test inside eagerctl.replay(): a compiled tf.function call that raises or "
             "returns NaN/Inf is replayed eagerly and the failure names the line, op and step",
    )
    parser.addini(
        GUARD_INI, type="string", default="warn",
        help="warn (default), error or off: what to do with a test that leaves an eagerctl "
             "scope active or tf.config.run_functions_eagerly changed (see --tf-flag-guard)",
    )


def _guard_mode(config: pytest.Config) -> Guard:
    option: Guard | None = config.getoption("eagerctl_guard", None)
    if option is not None:
        return option
    value = str(config.getini(GUARD_INI)).strip().lower()
    if value == "false":  # the option's earlier, boolean spelling
        return "off"
    for mode in GUARD_MODES:
        if value == mode:
            return mode
    raise pytest.UsageError(
        f"{GUARD_INI} = {config.getini(GUARD_INI)!r} in the pytest ini options: expected one of "
        f"{', '.join(GUARD_MODES)} (warn is the default)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tf_eager: run this test's tf.functions eagerly (eagerctl)")
    config.addinivalue_line("markers", "tf_graph: run this test's tf.functions compiled (eagerctl)")
    config.addinivalue_line(
        "markers", "tf_both_modes: run this test twice, ids [tf-eager] and [tf-graph] (eagerctl)"
    )
    config.stash[_guard] = _guard_mode(config)
    config.stash[_owned] = {}
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
    # A test interrupted (Ctrl-C) never reached its teardown: clean up after it.
    _finish(config)
    scope = config.stash.get(_session_scope, None)
    if scope is not None and scope.active:
        scope.__exit__(None, None, None)
        del config.stash[_session_scope]


def _keep_session_scope(config: pytest.Config) -> None:
    """Enter `--tf-eager`/`--tf-graph`'s scope again if a test ended it (`eagerctl.reset()`)."""
    scope = config.stash.get(_session_scope, None)
    if scope is None or any(act.scope is scope for act in _state().process):
        return
    try:
        scope.__exit__(None, None, None)  # a scope `reset()` removed exits quietly
    except EagerctlError:
        pass
    scope.__enter__()


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
    """The mode the nearest eagerctl marker forces; None for no marker."""
    where, names = _nearest_markers(item)
    if len(names) > 1:
        pytest.fail(
            f"{item.nodeid}: markers {', '.join(names)} exclude each other "
            f"(both on {where!r}); keep one of them",
            pytrace=False,
        )
    if names == ["tf_both_modes"]:
        # Parametrized items take their mode from the parameter (`_forced_mode`),
        # so this one was never parametrized: running it once, in whatever mode,
        # would pass off one mode as both.
        pytest.fail(
            f"{item.nodeid}: tf_both_modes cannot run this test in both modes: pytest does not "
            f"parametrize it (unittest.TestCase methods, marks on a pytest.param and marks added "
            f"after collection are not parametrized); mark it tf_eager or tf_graph, or write it "
            f"as a test function marked tf_both_modes",
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
    `--tf-eager`/`--tf-graph`; otherwise the effective mode as the test starts.

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


# -- what eagerctl's core holds, read without importing TensorFlow ----------------------


@dataclass(frozen=True)
class _State:
    """Which scopes are active, and TF's flag as eagerctl's scopes leave it."""

    baseline: bool | None  # the flag with no process scope active; None: TF not imported
    here: tuple[Activation, ...]  # local scopes in force in this context (the test's), innermost first
    local: frozenset[Activation]  # local scopes active in any thread, task or context
    process: tuple[Activation, ...]  # process scopes, oldest first

    def all(self) -> frozenset[Activation]:
        return self.local | frozenset(self.process)


def _tf_flags() -> Any:
    """TF's module holding its flag, if TF is imported (by anyone); None otherwise. Imports nothing."""
    return sys.modules.get(_hook.FLAG_MODULE)


def _is_scope(entry: Any) -> bool:
    """A scope's activation still in force (not TF's own internal frames, not exited or reset)."""
    return getattr(entry, "scope", None) is not None and entry.value is not None


def _state() -> _State:
    here: list[Activation] = []
    entry: Any = _local.STACK.get()
    while entry is not None:
        if _is_scope(entry):
            here.append(entry)
        entry = entry.below
    # `_local.LIVE` itself, not `_local.live()`, which drops the scopes of
    # finished threads and tasks unseen: the guard reports them first.
    local = frozenset(a for a in _local.LIVE.copy() if _is_scope(a))
    flags = _tf_flags()
    if flags is None:
        return _State(None, tuple(here), local, ())
    from ._registry import REGISTRY

    if not REGISTRY.active_count():
        # No process scope: the flag is the baseline. Read as TF would, touching
        # nothing: a session that uses no eagerctl feature runs TF untouched.
        return _State(bool(flags.RUN_FUNCTIONS_EAGERLY), tuple(here), local, ())
    # The registry notices a write that bypassed it (an assignment to TF's
    # module global) and adopts it as the baseline before answering.
    baseline, process = REGISTRY.snapshot()
    acts = tuple(a for a in process if _is_scope(a))
    return _State(baseline if acts else _hook.read_flag(), tuple(here), local, acts)


def _set_baseline(value: bool) -> None:
    """Put TF's flag back to `value` as the test's own write would: the baseline, under any process scopes."""
    import tensorflow as tf

    from ._registry import REGISTRY

    tf.config.run_functions_eagerly(value)
    REGISTRY.sync()  # where the hook was uninstalled the write reached the flag itself


def _thread_alive(ident: int) -> bool:
    return any(t.ident == ident for t in threading.enumerate())


def _task_done(task: object) -> bool:
    done = getattr(task, "done", None)
    return bool(done()) if done is not None else False


def _exit(act: Activation) -> None:
    scope = act.scope
    if scope._activation is act:
        scope.__exit__(None, None, None)  # the object is reusable afterwards
    else:
        act.exit()  # a decorated call's activation


# -- the per-test scope and the guard ---------------------------------------------


@dataclass
class _Watch:
    """What the guard compares a test (or a wider fixture) against."""

    who: str  # "tests/test_x.py::test_y" or "fixture 'model' (session scope)"
    start: _State
    expected: bool  # the flag the test should leave: as at its start, moved by wider fixtures
    since: str = "when the test started"
    problems: list[str] = field(default_factory=list)


@dataclass
class _Owned:
    """What a fixture wider than a function entered or set while it was set up."""

    acts: frozenset[Activation]
    flag: tuple[bool, bool] | None  # (before, after) its setup, when its setup changed it


_current = pytest.StashKey[_Watch]()
# The flag's value before a leak the guard reported and left in place (`warn`):
# the test that puts it back (TensorFlow's tests do, in the next setUp) is not blamed.
_clean = pytest.StashKey[bool]()
_owned = pytest.StashKey[dict[Any, _Owned]]()


def _exempt(config: pytest.Config) -> frozenset[Activation]:
    owned = config.stash.get(_owned, {})
    return frozenset().union(*(o.acts for o in owned.values()))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """--tf-replay: the test's call phase (in its thread) runs inside eagerctl.replay()."""
    if not item.config.getoption("eagerctl_replay", False):
        return (yield)
    from ._replay import replay

    with replay():
        return (yield)


# Innermost wrappers (trylast): the scope spans exactly the fixtures' setup,
# the call and the fixtures' teardown, and our errors reach pytest's capture
# and logging wrappers like any setup or teardown error.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    _keep_session_scope(item.config)
    if item.config.stash[_guard] != "off":
        start = _state()
        # TF imported by the test itself starts with its default, False.
        expected = False if start.baseline is None else start.baseline
        item.config.stash[_current] = _Watch(item.nodeid, start, expected)
    mode = _forced_mode(item)
    if mode is None:
        session_mode = item.config.stash.get(_session_mode, None)
        mode = session_mode
    else:
        scope = eager_scope(mode == "eager", process=True)
        scope.__enter__()
        item.config.stash[_marker_scope] = scope
    item.stash[_item_mode] = mode
    result = yield
    if item.config.stash.get(_marker_scope, None) is not None:
        _warn_if_overridden(item, mode == "eager")
    return result


def _warn_if_overridden(item: pytest.Item, eager: bool) -> None:
    """A local scope in force in the test's thread (a wider fixture's, say) wins over its marker: say so."""
    top: Any = _local.innermost()
    if top is None or top.value is eager or not _is_scope(top):
        return
    # `tf_both_modes` would run one mode twice, under both ids: never silently.
    _warn(item, f"{item.nodeid} is marked to run {'eagerly' if eager else 'compiled'}, but "
                f"{top.scope!r} ({top.describe()}) is a local scope in force in its thread, and a "
                f"local scope wins over the marker: its tf.functions run "
                f"{'compiled' if eager else 'eagerly'}. Exit that scope before this test, or "
                f"mark the test to match it")


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    try:
        result = yield
    except BaseException:
        # The teardown's own error is the error to report; what the guard
        # found is cleaned up all the same, and shown as warnings next to it.
        for problem in _finish(item.config):
            _warn(item, f"{problem}. {WARN_HINT}")
        raise
    problems = _finish(item.config)
    if problems:
        _report(item, item.config.stash[_guard], problems)
    return result


def _finish(config: pytest.Config) -> list[str]:
    """Exit the running test's marker scope, then check and clean what the test left behind."""
    scope = config.stash.get(_marker_scope, None)
    if scope is not None:
        del config.stash[_marker_scope]
        try:
            scope.__exit__(None, None, None)
        except EagerctlError:
            pass  # already gone: the test ended every scope (eagerctl.reset())
    watch = config.stash.get(_current, None)
    if watch is None:
        return []
    del config.stash[_current]
    _check(config, watch, restore_flag=config.stash[_guard] == "error")
    return watch.problems


def _check(config: pytest.Config, watch: _Watch, restore_flag: bool) -> None:
    """Find what was left active or changed since `watch.start`; clean it; add to `watch.problems`."""
    now = _state()
    left = now.all() - watch.start.all() - _exempt(config)
    here = [a for a in now.here if a in left]  # innermost first: exits in order
    # The test's own context, then process scopes (exitable from any thread).
    for act in [*here, *(a for a in now.process if a in left)]:
        text = f"{watch.who} left {act.scope!r} active ({act.describe()})"
        try:
            _exit(act)
        except EagerctlError as exc:
            watch.problems.append(f"{text}; eagerctl could not exit it: {exc}")
        else:
            watch.problems.append(f"{text}; eagerctl has exited it. {SCOPE_FIX}")
    for act in [a for a in now.local if a in left and a not in here]:
        watch.problems.append(_left_elsewhere(watch.who, act))
    end = _state()
    leaked: tuple[bool | None, bool] | None = None
    clean = config.stash.get(_clean, None)
    if clean is not None and end.baseline == clean:
        del config.stash[_clean]  # put back: by this test, or by a fixture
    elif end.baseline is not None and end.baseline != watch.expected:
        leaked = (end.baseline, watch.expected)
        if not restore_flag:
            config.stash[_clean] = watch.expected
    if leaked is not None:
        watch.problems.append(
            f"{watch.who} set tf.config.run_functions_eagerly({leaked[0]}) and did not restore it "
            f"(it was {leaked[1]} {watch.since}); "
            + ("eagerctl has restored it" if restore_flag else "later tests run with it")
            + f". {FLAG_FIX}"
        )
        if restore_flag:
            _set_baseline(watch.expected)


def _left_elsewhere(who: str, act: Activation) -> str:
    """A local scope left active in another thread, task or context: report it; drop it if it is gone."""
    text = f"{who} left {act.scope!r} active ({act.describe()})"
    gone = "its asyncio task has finished" if act.task is not None and _task_done(act.task) else (
        "its thread has finished" if not _thread_alive(act.thread) else None)
    if gone is not None:
        # Nothing can ever exit it: retire it, so it is dead in any context copied from
        # there too, and stop counting it.
        act.retire()
        return f"{text}; {gone}, so it is in force nowhere and eagerctl has dropped it. {SCOPE_FIX}"
    where = "that thread" if act.thread != threading.get_ident() else "that context"
    return (f"{text}; a local scope can only be exited where it was entered, so it stays in force "
            f"in {where} until code there exits it. {SCOPE_FIX}")


SCOPE_FIX = "Exit every scope you enter: a `with` block or the decorator form does it for you"
FLAG_FIX = "Restore it in a finally block or fixture teardown, or use `with eagerctl.eager_scope():` instead"
WARN_HINT = f"{GUARD_OPTION}=error makes this an error, {GUARD_OPTION}=off turns the check off"
ERROR_HINT = f"({GUARD_OPTION}=warn makes this a warning)"


def _report(item: pytest.Item, guard: Guard, problems: Iterable[str]) -> None:
    if guard == "error":
        pytest.fail("\n".join([*problems, ERROR_HINT]), pytrace=False)
    for problem in problems:
        _warn(item, f"{problem}. {WARN_HINT}")


def _warn(item: pytest.Item | None, text: str) -> None:
    """Warn, located at the test; never an error, even where warnings filters make warnings errors."""
    if item is not None:
        path, lineno, _ = item.reportinfo()
        filename, line = str(path), (lineno or 0) + 1
    else:
        filename, line = __file__, 1
    try:
        warnings.warn_explicit(text, EagerctlWarning, filename, line, module="eagerctl")
    except EagerctlWarning as exc:
        # `-W error` or `filterwarnings = error` of a project that never asked for
        # this plugin must not turn its tests into errors: show it as a warning.
        if item is None:
            sys.stderr.write(f"{filename}:{line}: EagerctlWarning: {text}\n")
            return
        item.ihook.pytest_warning_recorded.call_historic(kwargs={
            "warning_message": warnings.WarningMessage(exc, EagerctlWarning, filename, line),
            "nodeid": item.nodeid, "when": "runtest", "location": None,
        })


# -- fixtures wider than a function own what they enter --------------------------


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, object, object]:
    config = request.config
    if fixturedef.scope == "function" or config.stash[_guard] == "off":
        return (yield)
    before = _state()
    try:
        return (yield)
    finally:
        after = _state()
        acts = after.all() - before.all()
        flag = None
        if after.baseline is not None and after.baseline != (before.baseline or False):
            flag = (before.baseline or False, after.baseline)
            watch = config.stash.get(_current, None)
            if watch is not None:
                watch.expected = after.baseline
        if acts or flag:
            config.stash[_owned][fixturedef] = _Owned(acts, flag)


def pytest_fixture_post_finalizer(fixturedef: Any, request: pytest.FixtureRequest) -> None:
    config = request.config
    owned = config.stash.get(_owned, {}).pop(fixturedef, None)
    if owned is None:
        return
    guard = config.stash[_guard]
    now = _state()
    # Compare with the state just before its teardown, less what it entered:
    # only its own scopes count, and the flag only if its setup changed it.
    left_set = owned.flag is not None and now.baseline == owned.flag[1]
    expected = owned.flag[0] if left_set and owned.flag else bool(now.baseline)
    start = _State(None, (), now.all() - owned.acts, ())
    check = _Watch(f"fixture {fixturedef.argname!r} ({fixturedef.scope} scope)", start, expected,
                   since="before it was set up")
    _check(config, check, restore_flag=guard == "error")
    watch = config.stash.get(_current, None)
    if watch is not None:
        if owned.flag is not None:
            watch.expected = bool(_state().baseline)  # what the test's end is compared with
        watch.problems.extend(check.problems)
    else:  # torn down outside any test (the session ended early)
        for problem in check.problems:
            _warn(None, f"{problem}. {WARN_HINT}")

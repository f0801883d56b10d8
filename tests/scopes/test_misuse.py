"""Bad input and misuse: exact errors, and the state left exactly as it was."""

from __future__ import annotations

import re
import sys
import threading
import warnings

import pytest
import tensorflow as tf

import eagerctl
from eagerctl import EagerctlError, EagerctlWarning


def next_line() -> str:
    """file:line of the line after the caller's, where the test enters a scope."""
    frame = sys._getframe(1)
    return f"{frame.f_code.co_filename}:{frame.f_lineno + 1}"


def snapshot() -> tuple[object, ...]:
    st = eagerctl.status()
    return st.process_flag, st.baseline, st.override, tuple(repr(i) for i in st.scopes)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: eagerctl.eager_scope(1),  # type: ignore[arg-type]
         "eager_scope(enabled=1): enabled must be a bool (True or False), not int"),
        (lambda: eagerctl.eager_scope("yes"),  # type: ignore[arg-type]
         "eager_scope(enabled='yes'): enabled must be a bool (True or False), not str"),
        (lambda: eagerctl.eager_scope(True, process=None),  # type: ignore[arg-type]
         "eager_scope(process=None): process must be a bool (True or False), not NoneType"),
        (lambda: eagerctl.graph_scope(process=0),  # type: ignore[arg-type]
         "graph_scope(process=0): process must be a bool (True or False), not int"),
    ],
)
def test_non_bool_arguments_raise_type_error(call: object, message: str) -> None:
    before = snapshot()
    with pytest.raises(TypeError) as info:
        call()  # type: ignore[operator]
    assert str(info.value) == message
    assert snapshot() == before


@pytest.mark.parametrize("process", [False, True])
def test_entering_an_active_scope_again_is_an_error(process: bool) -> None:
    scope = eagerctl.eager_scope(process=process)
    where = next_line()
    with scope:
        before = snapshot()
        with pytest.raises(EagerctlError) as info:
            scope.__enter__()
        assert isinstance(info.value, RuntimeError)
        assert str(info.value) == (
            f"{scope!r} is already active (entered at {where} in thread 'MainThread'); a scope object "
            "is active at most once at a time: create a new eager_scope() for a nested block"
        )
        assert snapshot() == before
        assert eagerctl.is_eager()


@pytest.mark.parametrize("process", [False, True])
def test_exiting_a_scope_never_entered_is_an_error(process: bool) -> None:
    scope = eagerctl.graph_scope(process=process)
    before = snapshot()
    with pytest.raises(EagerctlError) as info:
        scope.__exit__(None, None, None)
    assert str(info.value) == (
        f"{scope!r} cannot exit: it is not active (it was never entered); exit a scope only after entering it"
    )
    assert snapshot() == before


@pytest.mark.parametrize("process", [False, True])
def test_exiting_twice_is_an_error_naming_where_it_was_entered(process: bool) -> None:
    scope = eagerctl.eager_scope(process=process)
    where = next_line()
    scope.__enter__()
    scope.__exit__(None, None, None)
    before = snapshot()
    with pytest.raises(EagerctlError) as info:
        scope.__exit__(None, None, None)
    assert str(info.value) == (
        f"{scope!r} cannot exit: it is not active (it was entered at {where} in thread 'MainThread' "
        "and has already exited); exit a scope once per entry"
    )
    assert snapshot() == before


def test_exiting_a_local_scope_in_another_thread_is_an_error_and_changes_nothing() -> None:
    scope = eagerctl.eager_scope()
    where = next_line()
    scope.__enter__()
    try:
        before = snapshot()
        errors: list[BaseException] = []

        def other() -> None:
            try:
                scope.__exit__(None, None, None)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=other, name="worker-1")
        t.start()
        t.join()
        assert len(errors) == 1 and isinstance(errors[0], EagerctlError)
        assert str(errors[0]) == (
            f"eager_scope(True) cannot exit in thread 'worker-1': it was entered at {where} in thread "
            "'MainThread', and a local scope can only be exited by the thread and asyncio task that "
            "entered it; exit it there, or use eager_scope(process=True) for a scope shared by threads"
        )
        assert snapshot() == before
        assert scope.active and eagerctl.is_eager()
    finally:
        scope.__exit__(None, None, None)
    assert not eagerctl.is_eager()


def test_a_process_scope_may_be_exited_from_another_thread() -> None:
    scope = eagerctl.eager_scope(process=True)
    scope.__enter__()
    assert tf.config.functions_run_eagerly()
    t = threading.Thread(target=scope.__exit__, args=(None, None, None))
    t.start()
    t.join()
    assert not scope.active
    assert tf.config.functions_run_eagerly() is False


def test_out_of_order_local_exits_never_restore_a_stale_value() -> None:
    a, b, c = eagerctl.eager_scope(), eagerctl.graph_scope(), eagerctl.eager_scope()
    a.__enter__()
    b.__enter__()
    c.__enter__()
    b.__exit__(None, None, None)  # out of order: c stays innermost
    assert eagerctl.is_eager() is True
    c.__exit__(None, None, None)
    assert eagerctl.is_eager() is True  # a, not a stale value from before b
    a.__exit__(None, None, None)
    assert eagerctl.is_eager() is False


@pytest.mark.parametrize("process", [False, True])
@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt])
def test_exceptions_propagate_unchanged_and_restore(process: bool, exc_type: type[BaseException]) -> None:
    before = snapshot()
    raised = exc_type("boom")
    with pytest.raises(exc_type) as info:
        with eagerctl.eager_scope(process=process):
            assert eagerctl.is_eager()
            raise raised
    assert info.value is raised
    assert snapshot() == before
    assert eagerctl.is_eager() is False


def test_decorator_restores_on_keyboard_interrupt() -> None:
    @eagerctl.eager_scope(process=True)
    def interrupted() -> None:
        assert tf.config.functions_run_eagerly()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert tf.config.functions_run_eagerly() is False


@pytest.mark.parametrize("process", [False, True])
def test_entering_while_tracing_warns(process: bool) -> None:
    scope = eagerctl.eager_scope(process=process)

    @tf.function(autograph=False)  # autograph would report its generated file as the place
    def traced(x: tf.Tensor) -> tf.Tensor:
        with scope:
            return x + 1

    with pytest.warns(EagerctlWarning) as record:
        assert int(traced(tf.constant(1))) == 2
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{scope!r} was entered while TensorFlow is tracing a graph (")
    assert message.endswith(
        "it cannot change the graph being built. Enter it outside the tf.function, "
        "or decorate the function you want eager with @eagerctl.debuggable"
    )
    assert record[0].filename == __file__


def test_a_warning_turned_into_an_error_leaves_no_scope_active() -> None:
    @tf.function(autograph=False)
    def traced(x: tf.Tensor) -> tf.Tensor:
        with eagerctl.eager_scope(process=True):
            return x + 1

    before = snapshot()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerctlWarning)
        with pytest.raises(EagerctlWarning):
            traced(tf.constant(1))
    assert snapshot() == before


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (42, "eager_scope(True) cannot decorate 42: it decorates functions, methods, tf.functions, "
             "coroutine functions, generator functions and async generator functions; wrap other code "
             "in a block instead: with eager_scope(True): ..."),
        (int, "eager_scope(True) cannot decorate <class 'int'>: it decorates functions, methods, "
              "tf.functions, coroutine functions, generator functions and async generator functions; "
              "wrap other code in a block instead: with eager_scope(True): ..."),
    ],
)
def test_decorating_something_else_is_a_type_error(target: object, message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        eagerctl.eager_scope()(target)


def test_decorating_a_classmethod_object_says_where_to_put_the_decorator() -> None:
    cm = classmethod(lambda cls: None)
    with pytest.raises(TypeError) as info:
        eagerctl.graph_scope()(cm)
    assert str(info.value) == (
        f"graph_scope() cannot decorate {cm!r} directly: put @graph_scope(...) below @classmethod, "
        "next to the function"
    )


def test_errors_raised_in_autograph_converted_code_keep_their_type() -> None:
    scope = eagerctl.eager_scope()

    @tf.function  # autograph on: it would re-raise other errors as a StagingError
    def misuses(x: tf.Tensor) -> tf.Tensor:
        scope.__exit__(None, None, None)
        return x

    with pytest.raises(EagerctlError, match=re.escape("(it was never entered)")):
        misuses(tf.constant(1))

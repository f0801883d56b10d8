"""`eager_scope()` / `graph_scope()`: the settings object and its activations.

A `Scope` is the settings (value, local or process). Every `__enter__` and
every call of a decorated function creates a fresh `Activation`, which is what
is pushed on the context's local stack or registered with the process
registry. All entry points (with, async with, the function, coroutine,
generator and async generator wrappers, `@debuggable`'s calls) go through the
same two steps: creating an `Activation` enters it, `Activation.exit()` leaves.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import warnings
from collections.abc import AsyncGenerator, Callable, Generator
from types import CodeType, FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _hook, _local
from ._errors import EagerctlError, EagerctlWarning
from ._registry import REGISTRY

if TYPE_CHECKING:
    from typing_extensions import Self

F = TypeVar("F", bound=Callable[..., Any])

_get_ident = threading.get_ident
_modules = sys.modules
_getframe = sys._getframe
_STACK_get = _local.STACK.get
_STACK_set = _local.STACK.set

# Local activations currently active in any thread or task, for `status()` and
# for refusing to uninstall the hook under them. Single dict operations are
# atomic, so no lock is taken on this path.
LIVE_LOCAL: dict[Activation, None] = {}


def active_local_count() -> int:
    return len(LIVE_LOCAL)


def _current_task() -> object | None:
    aio = _modules.get("asyncio")
    # `_get_running_loop` is a cheap C call; `current_task` without a loop raises.
    if aio is None or aio._get_running_loop() is None:
        return None
    return aio.current_task()  # type: ignore[no-any-return]


def thread_name(ident: int) -> str:
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return thread.name if thread is not None else f"thread {ident} (finished)"


def _line_of(code: CodeType, lasti: int) -> int:
    for start, end, line in code.co_lines():
        if start <= lasti < end and line is not None:
            return line
    return code.co_firstlineno


# (code, instruction, thread ident, asyncio task): where an activation was entered.
Place = tuple[CodeType, int, int, object]


def _describe(place: Place) -> str:
    code, lasti, thread, task = place
    text = f"entered at {code.co_filename}:{_line_of(code, lasti)} in thread {thread_name(thread)!r}"
    if task is not None:
        text += f", asyncio task {_task_name(task)!r}"
    return text


class Activation:
    """One entry of a scope: what the local stack and the registry hold.

    Creating one enters it (one call on the hot path); `exit()` leaves it. A
    local activation is itself the top frame of its context's stack (`value`,
    `below`, `activation`), so entering allocates one object. Where it was
    entered is kept as (code, instruction) and turned into a line number only
    when a message or `status()` needs it.
    """

    __slots__ = ("below", "code", "lasti", "newer", "older", "registered", "retired", "scope", "task", "thread",
                 "value")
    # Set by the registry for process activations only: their place in its list.
    older: Activation | None
    newer: Activation | None
    registered: bool

    def __init__(self, scope: Scope, frame: FrameType, stacklevel: int) -> None:
        """Enter `scope` for the code running in `frame`; warnings point `stacklevel` frames up."""
        self.scope = scope
        self.value = scope.enabled
        self.thread = _get_ident()
        self.code = frame.f_code
        self.lasti = frame.f_lasti
        self.task: object | None = None
        self.retired = False
        if not _hook.installed:
            if scope.process:
                _hook.load()
            else:
                _hook.require_local()
        # Warn before changing anything: a warnings filter may turn it into an error.
        if _hook.graph_stack.stack and not _hook.eager_state.is_eager:
            self._warn_tracing(stacklevel + 1)
        if scope.process:
            self.below: _local.Entry | None = None
            REGISTRY.enter(self)  # sets older, newer, registered
            return
        if _hook.running_loop() is not None:
            self.task = _current_task()
        self.below = _STACK_get()
        LIVE_LOCAL[self] = None
        _STACK_set(self)  # last: the override takes effect once the bookkeeping is done

    @property
    def activation(self) -> Activation:
        """As a stack entry, an activation stands for itself."""
        return self

    def _warn_tracing(self, stacklevel: int) -> None:
        warnings.warn(
            f"{self.scope!r} was entered while TensorFlow is tracing a graph ({self.where}); "
            "it cannot change the graph being built. Enter it outside the tf.function, "
            "or decorate the function you want eager with @eagerctl.debuggable",
            EagerctlWarning,
            stacklevel=stacklevel + 1,
        )

    @property
    def where(self) -> str:
        return f"{self.code.co_filename}:{_line_of(self.code, self.lasti)}"

    def describe(self) -> str:
        return _describe((self.code, self.lasti, self.thread, self.task))

    def exit(self) -> None:
        if self.retired:
            return  # `reset()` already took it off: its exit has nothing left to do
        if self.scope.process:
            if not REGISTRY.exit(self):
                raise EagerctlError(
                    f"{self.scope!r} cannot exit: it is not active (it was {self.describe()} "
                    "and has already exited); exit a scope once per entry"
                )
            return
        if self.thread != _get_ident() or (self.task is not None and self.task is not _current_task()):
            here = f"thread {thread_name(_get_ident())!r}"
            task = _current_task()
            if task is not None:
                here += f", asyncio task {_task_name(task)!r}"
            raise EagerctlError(
                f"{self.scope!r} cannot exit in {here}: it was {self.describe()}, and a local "
                f"scope can only be exited by the thread and asyncio task that entered it; exit "
                f"it there, or use {self.scope.factory}(process=True) for a scope shared by threads"
            )
        if _STACK_get() is self:
            _STACK_set(self.below)
        elif not _local.remove(self):
            raise EagerctlError(
                f"{self.scope!r} cannot exit: it is not active in this context (it was "
                f"{self.describe()}); exit a scope once per entry, in the context that entered it"
            )
        LIVE_LOCAL.pop(self, None)


def _task_name(task: object) -> str:
    get_name = getattr(task, "get_name", None)
    return str(get_name()) if get_name is not None else repr(task)


class Scope:
    """Forces `tf.function` calls eager (or compiled) in a block or a function.

    Create one with `eager_scope()` or `graph_scope()`. Use it as `with`,
    `async with`, or a decorator. One object is active at most once at a time;
    as a decorator it enters a fresh activation on every call.
    """

    __slots__ = ("_activation", "_last", "enabled", "factory", "process")

    def __init__(self, enabled: bool, process: bool, factory: str) -> None:
        self.enabled = enabled
        self.process = process
        self.factory = factory
        self._activation: Activation | None = None
        # Not the last activation itself: it points back here, and that cycle would
        # leave every `with eager_scope():` object to the garbage collector.
        self._last: Place | None = None

    def __repr__(self) -> str:
        process = ", process=True" if self.process else ""
        if self.factory == "graph_scope":
            return f"graph_scope({process[2:]})"
        if self.factory == "eager_scope":
            return f"eager_scope({self.enabled}{process})"
        return self.factory  # an internal user's own description, e.g. "@debuggable loss"

    @property
    def active(self) -> bool:
        """Whether this object is currently entered (decorated calls not counted)."""
        return self._activation is not None

    # -- context manager ----------------------------------------------------
    def _already_active(self) -> EagerctlError:
        assert self._activation is not None
        return EagerctlError(
            f"{self!r} is already active ({self._activation.describe()}); a scope object is active "
            f"at most once at a time: create a new {self.factory}() for a nested block"
        )

    def _not_active(self) -> EagerctlError:
        if self._last is None:
            return EagerctlError(f"{self!r} cannot exit: it is not active (it was never entered); "
                                 "exit a scope only after entering it")
        return EagerctlError(
            f"{self!r} cannot exit: it is not active (it was {_describe(self._last)} and has "
            "already exited); exit a scope once per entry"
        )

    def __enter__(self) -> Self:
        if self._activation is not None and not self._activation.retired:
            raise self._already_active()
        self._activation = Activation(self, _getframe(1), 2)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        act = self._activation
        if act is None:
            raise self._not_active()
        act.exit()
        self._activation = None
        self._last = (act.code, act.lasti, act.thread, act.task)

    async def __aenter__(self) -> Self:
        if self._activation is not None and not self._activation.retired:
            raise self._already_active()
        self._activation = Activation(self, _getframe(1), 2)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator ------------------------------------------------------------
    @overload
    def __call__(self, fn: F) -> F: ...
    @overload
    def __call__(self, fn: object) -> Any: ...
    def __call__(self, fn: Any) -> Any:
        if isinstance(fn, (classmethod, staticmethod)):
            raise TypeError(
                f"{self!r} cannot decorate {fn!r} directly: put @{self.factory}(...) below "
                f"@{type(fn).__name__}, next to the function"
            )
        if isinstance(fn, type) or not (
            inspect.isroutine(fn) or isinstance(fn, functools.partial) or hasattr(fn, "python_function")
        ):
            raise TypeError(
                f"{self!r} cannot decorate {fn!r}: it decorates functions, methods, tf.functions, "
                "coroutine functions, generator functions and async generator functions; wrap "
                f"other code in a block instead: with {self!r}: ..."
            )
        if inspect.isasyncgenfunction(fn):
            return self._wrap_async_generator(fn)
        if inspect.iscoroutinefunction(fn):
            return self._wrap_coroutine(fn)
        if inspect.isgeneratorfunction(fn):
            return self._wrap_generator(fn)
        return self._wrap_function(fn)

    def _wrap_function(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def scoped(*args: Any, **kwargs: Any) -> Any:
            act = Activation(self, _getframe(1), 2)
            try:
                return fn(*args, **kwargs)
            finally:
                act.exit()

        return scoped

    def _wrap_coroutine(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def scoped(*args: Any, **kwargs: Any) -> Any:
            act = Activation(self, _getframe(1), 2)
            try:
                return await fn(*args, **kwargs)
            finally:
                act.exit()

        return scoped

    def _wrap_generator(self, fn: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        # The scope is active only while the generator body runs: around each
        # send/throw/close, never while it is suspended at a yield.
        @functools.wraps(fn)
        def scoped(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            gen = fn(*args, **kwargs)
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                act = Activation(self, _getframe(1), 2)
                try:
                    item = gen.send(to_send) if to_throw is None else gen.throw(to_throw)
                except StopIteration as stop:
                    return stop.value
                finally:
                    to_throw = None
                    act.exit()
                try:
                    to_send = yield item
                except GeneratorExit:
                    act = Activation(self, _getframe(1), 2)
                    try:
                        gen.close()
                    finally:
                        act.exit()
                    raise
                except BaseException as exc:  # noqa: BLE001 - forwarded into the body
                    to_throw = exc

        return scoped

    def _wrap_async_generator(self, fn: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def scoped(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            agen = fn(*args, **kwargs)
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                act = Activation(self, _getframe(1), 2)
                try:
                    if to_throw is None:
                        item = await agen.asend(to_send)
                    else:
                        item = await agen.athrow(to_throw)
                except StopAsyncIteration:
                    return
                finally:
                    to_throw = None
                    act.exit()
                try:
                    to_send = yield item
                except GeneratorExit:
                    act = Activation(self, _getframe(1), 2)
                    try:
                        await agen.aclose()
                    finally:
                        act.exit()
                    raise
                except BaseException as exc:  # noqa: BLE001 - forwarded into the body
                    to_throw = exc

        return scoped


def reset() -> None:
    """The way back from any state: no local override here, no process scope, the flag at its baseline.

    Removes this context's local overrides (every `eager_scope()`, `graph_scope()`
    and `@debuggable` call active in this thread or asyncio task) and every
    process scope of every thread, and sets TensorFlow's flag to its baseline.
    The scopes it removes exit quietly later. Local scopes of other threads and
    tasks are theirs, and are left alone. Example::

        eagerctl.reset()   # after an interrupted cell, say
    """
    top = _STACK_get()
    while top is not None:
        act = top.activation
        act.retired = True
        LIVE_LOCAL.pop(act, None)
        top = top.below
    _STACK_set(None)
    if REGISTRY.active_count() or _hook.flag_module is not None:
        for act in REGISTRY.reset():
            act.retired = True


def _check_bool(factory: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(
            f"{factory}({name}={value!r}): {name} must be a bool (True or False), "
            f"not {type(value).__name__}"
        )


def eager_scope(enabled: bool = True, *, process: bool = False) -> Scope:
    """Run `tf.function` calls eagerly (their Python body) in a block or function.

    Local by default: only this thread or asyncio task is affected, and other
    threads keep their compiled graphs. `process=True` drives TensorFlow's
    global flag through eagerctl's registry, restored safely whatever the
    order of exits. `enabled=False` forces compiled graphs (see `graph_scope`).

    Example::

        with eagerctl.eager_scope():
            loss = train_step(x, y)   # body runs line by line: print, pdb, .numpy()
    """
    if enabled.__class__ is not bool or process.__class__ is not bool:
        _check_bool("eager_scope", "enabled", enabled)
        _check_bool("eager_scope", "process", process)
    return Scope(enabled, process, "eager_scope")


def graph_scope(*, process: bool = False) -> Scope:
    """Force `tf.function` calls to run their compiled graphs in a block or function.

    Wins over an outer `eager_scope()` and over a global
    `tf.config.run_functions_eagerly(True)` for this thread or task.

    Example::

        tf.config.run_functions_eagerly(True)     # debugging everything...
        with eagerctl.graph_scope():
            evaluate(model)                       # ...but this part stays fast
    """
    _check_bool("graph_scope", "process", process)
    return Scope(False, process, "graph_scope")


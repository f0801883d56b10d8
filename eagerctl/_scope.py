"""`eager_scope()` / `graph_scope()`: the settings object and its activations.

The scope layer, above the hook and the data (`_local`, `_registry`). A
`Scope` is the settings (value, local or process). Every `__enter__` and every
call of a decorated function creates a fresh `Activation`, which is what is
pushed on the context's local stack or registered with the process registry.
All entry points (with, async with, the function, coroutine, generator and
async generator wrappers, `@debuggable`'s calls) go through the same two
steps: `Activation.enter()` and `Activation.exit()`.

Interrupts. A KeyboardInterrupt can land between any two bytecodes. Each
operation has one commit (one C-level operation: the `ContextVar.set`, the
registry's dict insertion, `value = None` on exit), and every caller runs
`enter()` and `exit()` inside one `try` whose handler completes the exit in
its own frame (`finish_exit`); `exit()` is safe in any state. What no `try`
can cover is the `with` statement's own instructions around its `__exit__`
call and the first instruction of `__exit__`: a scope interrupted there is
noticed at the next scope operation (its `with` block is over, `_orphaned`)
and taken off. A scope entered by hand (`s.__enter__()`) and lost has no such
witness: `eagerctl.reset()` is the way back from anything.
"""

from __future__ import annotations

import dis
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
from ._errors import hide_from_pytest as __tracebackhide__  # noqa: F401 (pytest reads it from the globals)
from ._registry import REGISTRY

if TYPE_CHECKING:
    from typing_extensions import Self

F = TypeVar("F", bound=Callable[..., Any])

_get_ident = threading.get_ident
_modules = sys.modules
_getframe = sys._getframe
_new = object.__new__
_STACK_get = _local.STACK.get
_STACK_set = _local.STACK.set
_STACK_reset = _local.STACK.reset

# Local activations currently active in any thread or task (`_local.LIVE`), for
# `status()` and for refusing to uninstall the hook under them.
LIVE_LOCAL = _local.LIVE

# What `Activation.token` holds once it is no longer active (a local one holds its
# `ContextVar` token while active; a process one None, as before entering).
EXITED = "exited"
RESET = "reset"


def active_local_count() -> int:
    """Local scopes active in any thread or task (phantoms, which can never exit, not counted)."""
    return len(_local.live())


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


def _here() -> str:
    text = f"thread {thread_name(_get_ident())!r}"
    task = _current_task()
    if task is not None:
        text += f", asyncio task {_task_name(task)!r}"
    return text


class Activation:
    """One entry of a scope: what the local stack and the registry hold.

    `Activation(scope, frame)` only records where; `enter()`, called inside
    the `try` whose handler calls `exit()`, enters it. A local activation is itself the
    top entry of its context's stack (`value`, `below`), so entering allocates
    one object. `value` is the override while it is active and None before
    and after: that one field is what every context holding it reads. Where it
    was entered is kept as (code, instruction) and turned into a line number
    only when a message or `status()` needs it.
    """

    __slots__ = ("below", "code", "frame", "lasti", "scope", "task", "thread", "token", "value")

    def __init__(self, scope: Scope, frame: FrameType) -> None:
        """Record where `scope` is entered: the code running in `frame`."""
        self.scope = scope
        self.code = frame.f_code
        self.lasti = frame.f_lasti
        self.thread = _get_ident()
        self.task: object | None = None
        self.value: bool | None = None
        self.token: Any = None
        self.frame: FrameType | None = None  # a `with` statement's frame, while its block runs

    def enter(self, stacklevel: int = 1) -> None:
        """Enter: the override takes effect (one commit, last). Misuse raises with nothing changed."""
        scope = self.scope
        hook = _hook
        if not hook.installed:
            if scope.process:
                hook.install(strict=False)  # a TF it cannot hook: process scopes work all the same
            else:
                hook.require_local()
        # Warn before changing anything: a warnings filter may turn it into an error.
        if hook.graph_stack.stack and hook.tracing():
            self._warn_tracing(stacklevel + 1)
        if scope.process:
            self.value = scope.enabled
            below = REGISTRY.enter(self)  # the commit
            # The scope entered before this one, if its block is over (an interrupt hit its
            # exit), is taken off now: after the commit, in the same registry operation.
            if (below is not None and isinstance(below, Activation) and below.frame is not None
                    and _orphaned(below)):
                _repair(below)
            return
        if hook.running_loop() is not None:
            self.task = _current_task()
        below = _STACK_get()
        if below is not None and isinstance(below, Activation) and below.frame is not None:
            if _orphaned(below):  # its block is over: an interrupt hit its exit
                _repair(below)
                below = _STACK_get()
        self.below = below
        self.value = scope.enabled
        LIVE_LOCAL[self] = None
        self.token = _STACK_set(self)  # the commit: the override is in force from here
        if not hook.installed:  # `uninstall_hook()` ran meanwhile in another thread
            hook.require_local()

    @property
    def ended(self) -> str | None:
        """`EXITED` or `RESET` once no longer active; None before and while."""
        token = self.token
        return token if token.__class__ is str else None

    def _warn_tracing(self, stacklevel: int) -> None:
        warnings.warn(
            f"{self.scope!r} was entered while TensorFlow is tracing a graph ({self.where}); "
            "it cannot change the graph being built. Enter it outside the tf.function, "
            "or decorate the function you want eager with @eagerctl.debuggable",
            EagerctlWarning,
            stacklevel=stacklevel + 1,
        )

    @property
    def activation(self) -> Activation:
        """As a stack entry, an activation stands for itself."""
        return self

    @property
    def where(self) -> str:
        return f"{self.code.co_filename}:{_line_of(self.code, self.lasti)}"

    def describe(self) -> str:
        return _describe((self.code, self.lasti, self.thread, self.task))

    def exit(self) -> None:
        """Leave: safe whatever state an interrupt left this in; misuse raises with nothing changed."""
        if self.value is None:
            if self.token is EXITED:
                raise EagerctlError(
                    f"{self.scope!r} cannot exit: it is not active (it was {self.describe()} "
                    "and has already exited); exit a scope once per entry"
                )
            return  # never entered, or `reset()` took it off: nothing left to do
        token = self.token
        if token is None:
            if self.scope.process:
                try:
                    REGISTRY.exit(self)  # False: `reset()` took it off meanwhile
                except BaseException:  # an interrupt inside: finish, and publish the flag again
                    REGISTRY.exit(self)
                    REGISTRY.sync()
                    self.value = None
                    self.token = EXITED
                    raise
                self.value = None
                self.token = EXITED
            else:
                self._abort_local()  # entered up to its commit, or just past it
            return
        top = _STACK_get()
        try:
            _STACK_reset(token)  # refused in another context, as Python refuses it for any token
            if top is not self:
                _STACK_set(top)  # out of order: keep the entries above; this one is retired in place
            self.value = None  # every context that holds this entry now skips it
            self.token = EXITED
            LIVE_LOCAL.pop(self, None)
        except ValueError:
            raise self._wrong_context() from None
        except BaseException:  # an interrupt: finish leaving, then let it propagate
            self._finish_local(top)
            raise

    def _finish_local(self, top: _local.Entry | None) -> None:
        self.value = None
        self.token = EXITED
        _STACK_set(top if top is not self else self.below)
        LIVE_LOCAL.pop(self, None)

    def _abort_local(self) -> None:
        self.value = None
        if _STACK_get() is self:
            _STACK_set(self.below)
        LIVE_LOCAL.pop(self, None)

    def retire(self) -> None:
        """Taken off by `reset()`: dead in every context; its own exit will do nothing."""
        self.value = None
        self.token = RESET
        LIVE_LOCAL.pop(self, None)

    def _wrong_context(self) -> EagerctlError:
        if self.thread != _get_ident() or self.task is not _current_task():
            return EagerctlError(
                f"{self.scope!r} cannot exit in {_here()}: it was {self.describe()}, and a local "
                f"scope can only be exited by the thread and asyncio task that entered it; exit "
                f"it there, or use {self.scope.factory}(process=True) for a scope shared by threads"
            )
        return EagerctlError(
            f"{self.scope!r} cannot exit in a context copied from the one that entered it "
            f"(contextvars.copy_context().run, asyncio.run, asyncio.create_task, asyncio.to_thread): "
            f"it was {self.describe()}; exit it in the context that entered it, after the copy's "
            "code returns"
        )


_SUSPENDABLE = (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
                | inspect.CO_ITERABLE_COROUTINE)
# (code, offset of BEFORE_WITH) -> the span of that `with` statement's block, or None.
_WITH_SPANS: dict[tuple[CodeType, int], tuple[int, int] | None] = {}


def _with_span(code: CodeType, lasti: int) -> tuple[int, int] | None:
    key = (code, lasti)
    try:
        return _WITH_SPANS[key]
    except KeyError:
        pass
    span = None
    entries = list(dis._parse_exception_table(code))  # type: ignore[attr-defined]
    # The block is what the statement's exit handler covers, from the instruction
    # after BEFORE_WITH (nested try statements inside it included).
    target = next((e.target for e in entries if e.start == lasti + 2), None)
    if target is not None and code.co_code[lasti] == dis.opmap.get("BEFORE_WITH"):
        covered = [(e.start, e.end) for e in entries if e.target == target]
        span = (min(c[0] for c in covered), max(c[1] for c in covered))
    _WITH_SPANS[key] = span
    return span


def _orphaned(act: Activation) -> bool:
    """Whether `act`, entered by a `with` statement of this thread, outlived its block.

    The one window Python leaves open: an interrupt at the first instruction of
    `__exit__`, before any of it runs. The `with` statement's frame has left the
    block then, and the scope is still active.
    """
    frame = act.frame
    if frame is None or act.thread != _get_ident() or act.value is None:
        return False
    span = _with_span(act.code, act.lasti)
    if span is None:
        return False  # not a `with` statement (say, `__enter__` called by hand): cannot tell
    if not span[0] <= frame.f_lasti < span[1]:
        return True
    if frame.f_code.co_flags & _SUSPENDABLE:
        return False  # a generator or coroutine suspended inside its block
    # Inside the block: still there if the frame is still running, on this thread's stack.
    running: FrameType | None = _getframe(1)
    while running is not None:
        if running is frame:
            return False
        running = running.f_back
    return True  # it left by an exception raised between two exits of a nested `with`


def _repair(act: Activation) -> None:
    """Take off `act`, whose block is over: as `reset()` does, for this one scope."""
    if act.scope.process:
        REGISTRY.exit(act)
    elif _STACK_get() is act:
        _STACK_set(act.below)
    act.retire()
    act.frame = None
    try:
        act.scope._claims.remove(act)
    except ValueError:
        pass


def repair_orphans() -> None:
    """Take off this thread's scopes whose `with` block is over (see `_orphaned`)."""
    me = _get_ident()
    for act in [*LIVE_LOCAL.copy(), *REGISTRY.snapshot()[1]]:
        if isinstance(act, Activation) and act.thread == me and _orphaned(act):
            _repair(act)


# Helpers for the wrappers: a `try` nested in the `try` that guards an activation
# leaves its own first instruction unguarded (CPython 3.11), so none is nested there.
def _step(gen: Generator[Any, Any, Any], value: Any, throw: BaseException | None) -> tuple[bool, Any]:
    try:
        return False, (gen.send(value) if throw is None else gen.throw(throw))
    except StopIteration as stop:
        return True, stop.value


async def _astep(agen: AsyncGenerator[Any, Any], value: Any, throw: BaseException | None) -> tuple[bool, Any]:
    try:
        return False, await (agen.asend(value) if throw is None else agen.athrow(throw))
    except StopAsyncIteration:
        return True, None


def _unclaim(claims: list[Activation], act: Activation) -> None:
    try:
        claims.remove(act)
    except ValueError:
        pass


def finish_exit(act: Activation) -> None:
    """Complete `act.exit()` after an interrupt cut it short (misuse, which changed nothing, stays so).

    Callers run it in the handler of the `try` around `act.exit()`, in their own
    frame: an interrupt can land at the first instruction of any function,
    `exit()` included, before it does anything.
    """
    try:
        act.exit()
    except EagerctlError:
        pass


def _task_name(task: object) -> str:
    get_name = getattr(task, "get_name", None)
    return str(get_name()) if get_name is not None else repr(task)


class Scope:
    """Forces `tf.function` calls eager (or compiled) in a block or a function.

    Create one with `eager_scope()` or `graph_scope()`. Use it as `with`,
    `async with`, or a decorator. One object is active at most once at a time;
    as a decorator it enters a fresh activation on every call.
    """

    __slots__ = ("_claims", "enabled", "factory", "process")

    def __init__(self, enabled: bool, process: bool, factory: str) -> None:
        self.enabled = enabled
        self.process = process
        self.factory = factory
        # Activations that asked to be this object's one active entry. The
        # first decides: `append` and `[0]` are each atomic, so of two threads
        # entering the same object at once exactly one wins. After an exit the
        # ended activation stays first (for "already exited" messages) until
        # the next entry; it no longer points back here, so no cycle keeps a
        # `with eagerctl.eager_scope():` object from being freed at once.
        self._claims: list[Activation] = []

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

    @property
    def _activation(self) -> Activation | None:
        """The activation of this object's `with` block, while it is active."""
        claims = self._claims
        act = claims[0] if claims else None
        return act if act is not None and act.value is not None else None

    # -- context manager ----------------------------------------------------
    def _already_active(self, act: Activation) -> EagerctlError:
        return EagerctlError(
            f"{self!r} is already active ({act.describe()}); a scope object is active "
            f"at most once at a time: create a new {self.factory}() for a nested block"
        )

    def _not_active(self, last: Activation | None) -> EagerctlError:
        if last is None or last.token is None:
            return EagerctlError(f"{self!r} cannot exit: it is not active (it was never entered); "
                                 "exit a scope only after entering it")
        return EagerctlError(
            f"{self!r} cannot exit: it is not active (it was {last.describe()} and has "
            "already exited); exit a scope once per entry"
        )

    def __enter__(self, _depth: int = 1) -> Self:
        frame = _getframe(_depth)
        act = Activation(self, frame)
        claims = self._claims
        try:
            claims.append(act)
            first = claims[0]
            if first is not act and first.ended is not None:
                # Taken off by `reset()`, or its exit cut short by an interrupt: not active.
                _unclaim(claims, first)  # unless another thread entering removed it first
                first = claims[0]
            if first is not act:
                raise self._already_active(first)
            act.frame = frame
            act.enter(_depth + 1)
            return self  # inside the try: an interrupt even here undoes the entry
        except BaseException:
            finish_exit(act)  # undoes a partial entry (an interrupt, a warning turned into an error)
            _unclaim(claims, act)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:  # first: an interrupt at any later instruction lands here
            claims = self._claims
            act = claims[0] if claims else None
            if act is None or (act.value is None and act.token is not RESET):  # exited, or still entering
                raise self._not_active(act)
            act.exit()  # misuse (another thread's local scope) raises here, nothing changed
            act.frame = None
            act.scope = None  # type: ignore[assignment]  # ended: it stays first, without a cycle back here
        except EagerctlError:
            raise
        except BaseException:
            self._finish_exit()  # an interrupt cut the exit short: complete it, then let it propagate
            raise

    def _finish_exit(self) -> None:
        claims = self._claims
        act = claims[0] if claims else None
        if act is None:
            return
        finish_exit(act)
        if act.value is None:
            act.frame = None
            act.scope = None  # type: ignore[assignment]

    async def __aenter__(self) -> Self:
        return self.__enter__(2)

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

    # Every wrapper exits inside the `try` that entered, and completes the exit in
    # the handler: an interrupt at any instruction of the normal path lands in the
    # `try`, and the handler runs in the wrapper's own frame (see `finish_exit`).
    def _wrap_function(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def scoped(*args: Any, **kwargs: Any) -> Any:
            act = Activation(self, _getframe(1))
            try:
                act.enter(2)
                result = fn(*args, **kwargs)
                act.exit()
            except BaseException:
                finish_exit(act)
                raise
            return result

        return scoped

    def _wrap_coroutine(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def scoped(*args: Any, **kwargs: Any) -> Any:
            act = Activation(self, _getframe(1))
            try:
                act.enter(2)
                result = await fn(*args, **kwargs)
                act.exit()
            except BaseException:
                finish_exit(act)
                raise
            return result

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
                act = Activation(self, _getframe(1))
                try:
                    act.enter(2)
                    throw, to_throw = to_throw, None
                    done, item = _step(gen, to_send, throw)
                    act.exit()
                except BaseException:
                    finish_exit(act)
                    raise
                if done:
                    return item
                try:
                    to_send = yield item
                except GeneratorExit:
                    act = Activation(self, _getframe(1))
                    try:
                        act.enter(2)
                        gen.close()
                        act.exit()
                    except BaseException:
                        finish_exit(act)
                        raise
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
                act = Activation(self, _getframe(1))
                try:
                    act.enter(2)
                    throw, to_throw = to_throw, None
                    done, item = await _astep(agen, to_send, throw)
                    act.exit()
                except BaseException:
                    finish_exit(act)
                    raise
                if done:
                    return
                try:
                    to_send = yield item
                except GeneratorExit:
                    act = Activation(self, _getframe(1))
                    try:
                        act.enter(2)
                        await agen.aclose()
                        act.exit()
                    except BaseException:
                        finish_exit(act)
                        raise
                    raise
                except BaseException as exc:  # noqa: BLE001 - forwarded into the body
                    to_throw = exc

        return scoped


# Called by `reset()` after the scopes: each ends what a tool above this module keeps active in this
# context (`replay()` registers one when imported); so this module imports nothing from above.
RESET_HOOKS: list[Callable[[], object]] = []


def reset() -> None:
    """The way back from any state: no local override here, no process scope, the flag at its baseline.

    Removes this context's local overrides (every `eager_scope()`, `graph_scope()`
    and `@debuggable` call active in this thread or asyncio task) and every
    process scope of every thread, and sets TensorFlow's flag to its baseline.
    It ends this context's `replay()` blocks too, with those of threads that
    ended without leaving theirs; with no replay left anywhere, TensorFlow's
    `Function.__call__` is its own again. The scopes and replays it removes
    are no longer active anywhere (contexts copied from this one included),
    and their own exits later do nothing. Local scopes and replays of other
    live threads and tasks are theirs, and are left alone. Does not import
    TensorFlow.

    Example:
        ```python
        eagerctl.reset()   # after an interrupted notebook cell, say
        ```
    """
    top = _STACK_get()
    while top is not None:
        if isinstance(top, Activation):
            top.retire()
        top = top.below
    _STACK_set(None)
    if REGISTRY.flags is not None:
        for node in REGISTRY.reset():
            if isinstance(node, Activation):
                node.value = None
                node.token = RESET
    for end in RESET_HOOKS:  # the tools above (replay) end what they keep for this context
        end()


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

    Example:
        ```python
        with eagerctl.eager_scope():
            loss = train_step(x, y)   # body runs line by line: print, pdb, .numpy()
        ```
    """
    if enabled.__class__ is not bool or process.__class__ is not bool:
        _check_bool("eager_scope", "enabled", enabled)
        _check_bool("eager_scope", "process", process)
    scope = _new(Scope)  # `Scope(...)` without its `__init__` call: a tenth of an entry's cost
    scope.enabled = enabled
    scope.process = process
    scope.factory = "eager_scope"
    scope._claims = []
    return scope


def graph_scope(*, process: bool = False) -> Scope:
    """Force `tf.function` calls to run their compiled graphs in a block or function.

    Wins over an outer `eager_scope()` and over a global
    `tf.config.run_functions_eagerly(True)` for this thread or task.

    Example:
        ```python
        tf.config.run_functions_eagerly(True)     # debugging everything...
        with eagerctl.graph_scope():
            evaluate(model)                       # ...but this part stays fast
        ```
    """
    _check_bool("graph_scope", "process", process)
    return Scope(False, process, "graph_scope")


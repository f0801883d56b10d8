"""`replay()`: the settings object, its activations, and the patch that exists only while one is active.

While no replay is active anywhere, eagerctl patches nothing for it. The
first activation (in any thread) replaces `Function.__call__` with a wrapper;
the last one to exit puts TF's own function back, the same object
(`eagerctl.reset()` ends this context's replays, and those of threads that
ended without leaving theirs: see `reset_replays`). The
wrapper sends a call to `call.call` only when this context has an active
replay and the call would run compiled from eager code (not while a graph is
traced, not under an eager scope, not during a replay); every other call, in
every other thread, goes straight to TF's `__call__`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
import threading
from collections.abc import Callable
from types import CodeType, TracebackType
from typing import Any, TypeVar, overload

from .. import _scope
from .._errors import EagerctlError
from . import call as _call

F = TypeVar("F", bound=Callable[..., Any])

CURRENT: contextvars.ContextVar[Activation | None] = contextvars.ContextVar("eagerctl_replay", default=None)

_lock = threading.Lock()
_active = 0
_original: Any = None  # TF's own Function.__call__, while patched
_function_class: Any = None
LIVE: dict[Activation, None] = {}  # the activations in force, in every thread, oldest first (for status())


class Activation:
    """One entry of a `replay()`: its options, its call counts, and where and by which thread it was entered.

    `ended` turns True once it is over (exited, or ended by `eagerctl.reset()`):
    every context holding it (copies of the one that entered it included)
    then skips it, and its own exit after a reset does nothing.
    """

    __slots__ = ("below", "check_variables", "code", "counts", "ended", "lasti", "post_mortem", "replay",
                 "replaying", "thread", "token", "warned")

    def __init__(self, post_mortem: bool, check_variables: bool, below: Activation | None, *,
                 replay: Replay | None = None, code: CodeType | None = None, lasti: int = -1) -> None:
        self.post_mortem = post_mortem
        self.check_variables = check_variables
        self.below = below
        self.replay = replay
        self.counts: dict[int, int] = {}
        self.warned: set[int] = set()  # the functions already warned about (a batch that cannot be kept)
        self.replaying = False
        self.ended = False
        self.token: contextvars.Token[Activation | None] | None = None
        self.thread = threading.current_thread()  # the object, not its ident: idents are reused
        self.code = code  # with `lasti`, where it was entered (a decorated function: its decorator)
        self.lasti = lasti

    @property
    def where(self) -> str:
        """Where it was entered, `file:line` (computed only when asked)."""
        code = self.code
        if code is None:
            return "?"
        line = code.co_firstlineno
        for start, _end, lineno in code.co_lines():
            if start > self.lasti:
                break
            if lineno is not None:
                line = lineno
        return f"{code.co_filename}:{line}"

    def count(self, fn: Any) -> int:
        key = id(getattr(fn, "_python_function", fn))  # a method's bound Function: one count per method
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        return n


def _make_wrapper(original: Any) -> Any:
    from tensorflow.python.eager import context

    executing_eagerly = context.executing_eagerly
    get = CURRENT.get
    own = _call.OWN
    monitored = _call.call

    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwds: Any) -> Any:
        act = get()
        if (act is None or act.replaying or act.ended or id(self) in own or not executing_eagerly()
                or self._run_functions_eagerly or type(self).__name__ == "RestoredFunction"):
            return original(self, *args, **kwds)
        return monitored(act, original, self, args, kwds)

    __call__.__eagerctl_replay__ = True  # type: ignore[attr-defined]
    return __call__


_waiting = False  # a post-import hook is registered to patch TF when it is imported


def _start() -> None:
    """Count an activation in; patch TF now if it is imported, else when the program imports it."""
    global _active, _waiting
    if "tensorflow" in sys.modules:
        from .. import _hook

        _hook.require_local()  # the replay runs under eager_scope(): needs the hook, raises if TF cannot
    with _lock:
        _active += 1
        if _active == 1 and "tensorflow" in sys.modules:
            _patch()
        elif _original is None and not _waiting:
            _waiting = True
            import wrapt

            wrapt.register_post_import_hook(_on_tf_import, "tensorflow")


def _on_tf_import(_module: object) -> None:
    global _waiting
    with _lock:
        _waiting = False
        if _active > 0 and _original is None:
            _patch()


def _patch() -> None:
    global _original, _function_class
    from .. import _hook

    _hook.load()
    cls: Any = _hook.function_class
    if cls is None or "__call__" not in cls.__dict__:
        return  # a TF eagerctl cannot hook: the replay's eager_scope() raises the reason
    original = cls.__dict__["__call__"]
    setattr(cls, "__call__", _make_wrapper(original))  # noqa: B010 - TF's class
    _original, _function_class = original, cls


def _stop(ended: Activation | None = None) -> None:
    """Count an activation out (`ended`, marked over; with the lock, so a reset cannot count it twice)."""
    with _lock:
        if ended is not None:
            if ended.ended:
                return  # `reset()` ended it already, and counted it out
            ended.ended = True
            LIVE.pop(ended, None)
        _count_out(1)


def _count_out(n: int) -> None:
    """With the lock held: `n` activations fewer; the last one out puts TF's `__call__` back."""
    global _active, _original, _function_class
    if n:
        _active -= n
        if _active == 0 and _original is not None:
            cls: Any = _function_class
            if getattr(cls.__dict__.get("__call__"), "__eagerctl_replay__", False):
                setattr(cls, "__call__", _original)  # noqa: B010 - TF's own function, put back
            # else: someone patched over the wrapper since; theirs stays, and ours under it passes through
            _original = _function_class = None


def reset_replays() -> int:
    """End this context's replays, and those entered by threads that have ended; return how many.

    Called by `eagerctl.reset()`. A replay is a local setting, like a local
    scope: other live threads' replays are theirs and stay. A thread that
    ended without leaving its replay can never leave it, so its replays end
    here too. When none remain anywhere, TF's own `Function.__call__` is back.
    The ended activations' own exits later do nothing.
    """
    with _lock:
        mine: list[Activation] = []
        top = CURRENT.get()
        while top is not None:
            mine.append(top)
            top = top.below
        ended = [act for act in dict.fromkeys([*mine, *LIVE])
                 if not act.ended and (act in mine or not act.thread.is_alive())]
        for act in ended:
            act.ended = True
            LIVE.pop(act, None)
        _count_out(len(ended))
    CURRENT.set(None)
    return len(ended)


_scope.RESET_HOOKS.append(reset_replays)


def active() -> list[Activation]:
    """The replay activations in force, in every thread, oldest first (for `status()`)."""
    return [act for act in list(LIVE) if not act.ended]


def active_count() -> int:
    """How many replay activations are in force, in all threads (0: nothing is patched)."""
    return _active


class Replay:
    """Compiled calls inside run compiled; one that fails is replayed eagerly and reported.

    Create one with `eagerctl.replay()`; use it as `with` or as a decorator.
    """

    __slots__ = ("_entries", "check_variables", "post_mortem")

    def __init__(self, post_mortem: bool, check_variables: bool) -> None:
        self.post_mortem = post_mortem
        self.check_variables = check_variables
        self._entries: list[Activation] = []

    def __repr__(self) -> str:
        return f"replay(post_mortem={self.post_mortem}, check_variables={self.check_variables})"

    def _enter(self, code: CodeType | None, lasti: int = -1) -> Activation:
        act = Activation(self.post_mortem, self.check_variables, CURRENT.get(), replay=self, code=code,
                         lasti=lasti)
        _start()
        try:
            LIVE[act] = None
            act.token = CURRENT.set(act)
        except BaseException:
            _stop(act)
            raise
        return act

    @staticmethod
    def _exit(act: Activation) -> None:
        if act.ended:  # `eagerctl.reset()` ended it: nothing left to undo (this context's var included)
            return
        token, act.token = act.token, None
        try:
            if token is not None:
                CURRENT.reset(token)
        finally:
            _stop(act)

    def __enter__(self) -> Replay:
        self._entries = [act for act in self._entries if not act.ended]  # a reset ended them
        if self._entries:
            raise EagerctlError(
                f"{self!r} is already active; create a new eagerctl.replay() for a nested block")
        caller = sys._getframe(1)
        self._entries.append(self._enter(caller.f_code, caller.f_lasti))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._entries:
            raise EagerctlError(f"{self!r} cannot exit: it is not active; exit it once per entry")
        act = self._entries.pop()
        if act.ended:
            return  # `eagerctl.reset()` ended it
        try:
            self._exit(act)
        except ValueError as error:  # another context's token
            self._entries.append(act)
            raise EagerctlError(f"{self!r} must exit in the thread or task that entered it") from error

    @overload
    def __call__(self, fn: F) -> F: ...
    @overload
    def __call__(self, fn: object) -> Any: ...
    def __call__(self, fn: Any) -> Any:
        if (isinstance(fn, type) or not callable(fn) or inspect.isgeneratorfunction(fn)
                or inspect.isasyncgenfunction(fn)):
            raise TypeError(f"{self!r} cannot decorate {fn!r}: it decorates functions, methods and coroutine "
                            f"functions; wrap other code in a block instead: with eagerctl.replay(): ...")
        code = getattr(inspect.unwrap(fn), "__code__", None)  # where: its first line, the decorator
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def replayed_async(*args: Any, **kwargs: Any) -> Any:
                act = self._enter(code)
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self._exit(act)

            return replayed_async

        @functools.wraps(fn)
        def replayed(*args: Any, **kwargs: Any) -> Any:
            act = self._enter(code)
            try:
                return fn(*args, **kwargs)
            finally:
                self._exit(act)

        return replayed


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"eagerctl.replay({name}={value!r}): {name} must be True or False")


def replay(*, post_mortem: bool = False, check_variables: bool = False) -> Replay:
    """Run compiled `tf.function` calls as usual; replay the one that fails eagerly, op by op.

    A call that raises (an assert, a shape or index error) or returns NaN or Inf
    (with ``check_variables=True``: or leaves them in the variables it wrote)
    is run again eagerly from the state it started from, and `ReplayError`
    names the first line of your code where a NaN or Inf appeared or the error
    was raised. ``post_mortem=True`` opens pdb there first. Afterwards the state
    is what the failed compiled call left. See docs/replay.md.

    Args:
        post_mortem: open pdb at the line found, in that frame, with that step's values, before raising.
        check_variables: also check the variables each call wrote (a NaN made only by a gradient).

    Example:
        ```python
        with eagerctl.replay():
            model.fit(dataset, epochs=3)   # a NaN step raises ReplayError naming the line
        ```
    """
    _check_bool("post_mortem", post_mortem)
    _check_bool("check_variables", check_variables)
    return Replay(post_mortem, check_variables)

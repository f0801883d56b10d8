"""`replay()`: the settings object, its activations, and the patch that exists only while one is active.

While no replay is active anywhere, eagerctl patches nothing for it. The
first activation (in any thread) replaces `Function.__call__` with a wrapper;
the last one to exit puts TF's own function back, the same object. The
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
from types import TracebackType
from typing import Any, TypeVar, overload

from .._errors import EagerctlError
from . import call as _call

F = TypeVar("F", bound=Callable[..., Any])

CURRENT: contextvars.ContextVar[Activation | None] = contextvars.ContextVar("eagerctl_replay", default=None)

_lock = threading.Lock()
_active = 0
_original: Any = None  # TF's own Function.__call__, while patched
_function_class: Any = None


class Activation:
    """One entry of a `replay()`: its options and its call counts."""

    __slots__ = ("below", "check_variables", "counts", "post_mortem", "replaying", "token")

    def __init__(self, post_mortem: bool, check_variables: bool, below: Activation | None) -> None:
        self.post_mortem = post_mortem
        self.check_variables = check_variables
        self.below = below
        self.counts: dict[int, int] = {}
        self.replaying = False
        self.token: contextvars.Token[Activation | None] | None = None

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
        if (act is None or act.replaying or id(self) in own or not executing_eagerly()
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


def _stop() -> None:
    global _active, _original, _function_class
    with _lock:
        _active -= 1
        if _active == 0 and _original is not None:
            cls: Any = _function_class
            if getattr(cls.__dict__.get("__call__"), "__eagerctl_replay__", False):
                setattr(cls, "__call__", _original)  # noqa: B010 - TF's own function, put back
            # else: someone patched over the wrapper since; theirs stays, and ours under it passes through
            _original = _function_class = None


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

    def _enter(self) -> Activation:
        act = Activation(self.post_mortem, self.check_variables, CURRENT.get())
        _start()
        try:
            act.token = CURRENT.set(act)
        except BaseException:
            _stop()
            raise
        return act

    @staticmethod
    def _exit(act: Activation) -> None:
        token, act.token = act.token, None
        try:
            if token is not None:
                CURRENT.reset(token)
        finally:
            _stop()

    def __enter__(self) -> Replay:
        if self._entries:
            raise EagerctlError(
                f"{self!r} is already active; create a new eagerctl.replay() for a nested block")
        self._entries.append(self._enter())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._entries:
            raise EagerctlError(f"{self!r} cannot exit: it is not active; exit it once per entry")
        act = self._entries.pop()
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
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def replayed_async(*args: Any, **kwargs: Any) -> Any:
                act = self._enter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self._exit(act)

            return replayed_async

        @functools.wraps(fn)
        def replayed(*args: Any, **kwargs: Any) -> Any:
            act = self._enter()
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

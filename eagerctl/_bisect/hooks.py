"""The three observers bisect puts into TensorFlow for the length of one `bisect` call.

AutoGraph's `converted_call` (every call a converted body makes), Keras's
`Layer.__call__` (every layer and model call) and `Graph._create_op_internal`
(which candidate built each op). They act only in the thread that runs
`bisect`, while it traces (`Session`): they observe (discovery) or redirect
a subset of the candidates into eager islands (a trial). `bisect` holds a
lock for the whole call, so two bisections never patch over each other, and
`Hooks.uninstall` puts back exactly what `install` replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .candidates import Candidate
from .code import layer_classes

_local = threading.local()


class Owner(Protocol):
    """What the hooks call: the bisection running in this thread."""

    def on_call(self, session: Session, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                options: Any, run: Callable[[], Any]) -> Any: ...

    def on_layer_call(self, session: Session, layer: Any, run: Callable[[], Any]) -> Any: ...


class Session:
    """What the hooks do while this thread traces `fn`: observe (discovery) or redirect (a trial)."""

    def __init__(self, owner: Owner, mode: str, root: Candidate,
                 subset: frozenset[Any] = frozenset()) -> None:
        self.owner = owner
        self.mode = mode
        self.subset = subset
        self.stack: list[Candidate] = [root]
        self.passthrough = 0


def installed_session() -> Session | None:
    session: Session | None = getattr(_local, "session", None)
    return session


def set_session(session: Session | None) -> None:
    _local.session = session


def active_session() -> Session | None:
    """The session of this thread when a graph is being traced outside any island, else None."""
    session = installed_session()
    if session is None or session.passthrough:
        return None
    import tensorflow as tf

    if tf.executing_eagerly():  # an island running, or an eager call: nothing to see or redirect
        return None
    return session


_F = TypeVar("_F", bound=Callable[..., Any])


def not_converted(fn: _F) -> _F:
    # What tf.autograph.experimental.do_not_convert marks: AutoGraph calls it as it is.
    fn.autograph_info__ = frozenset()  # type: ignore[attr-defined]
    return fn


class Hooks:
    """Patches installed for the duration of one `bisect` call, and removed after it."""

    def __init__(self) -> None:
        self.patches: list[tuple[Any, str, Any]] = []
        self.converted_call: Any = None

    def install(self) -> None:
        from tensorflow.python.autograph.impl import api
        from tensorflow.python.framework import ops

        ag_module = api._TRANSPILER.get_extra_locals()["ag__"]
        original = self.converted_call = api.converted_call

        @not_converted
        def converted_call(f: Any, args: Any, kwargs: Any, caller_fn_scope: Any = None,
                           options: Any = None) -> Any:
            session = active_session()
            if session is not None:
                return session.owner.on_call(
                    session, f, tuple(args), dict(kwargs or {}), options=options,
                    run=lambda: original(f, args, kwargs, caller_fn_scope, options))
            return original(f, args, kwargs, caller_fn_scope, options)

        self._patch(api, "converted_call", converted_call)
        self._patch(ag_module, "converted_call", converted_call)
        create_op = ops.Graph._create_op_internal

        def _create_op_internal(graph: Any, *args: Any, **kwargs: Any) -> Any:
            op = create_op(graph, *args, **kwargs)
            session = installed_session()
            if session is not None and session.mode == "discover" and not session.passthrough:
                session.stack[-1].ops.append(op)
            return op

        self._patch(ops.Graph, "_create_op_internal", _create_op_internal)
        for layer_class in layer_classes():
            self._patch(layer_class, "__call__", _layer_call(layer_class.__call__))

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        saved = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        self.patches.append((owner, name, saved))
        setattr(owner, name, value)

    def uninstall(self) -> None:
        while self.patches:
            owner, name, value = self.patches.pop()
            setattr(owner, name, value)


def _layer_call(original: Callable[..., Any]) -> Callable[..., Any]:
    """Keras's `Layer.__call__`, seen by bisect; AutoGraph must call it as it is, as it calls Keras's."""

    @not_converted
    def __call__(layer: Any, *args: Any, **kwargs: Any) -> Any:
        session = active_session()
        if session is None:
            return original(layer, *args, **kwargs)
        return session.owner.on_layer_call(session, layer, lambda: original(layer, *args, **kwargs))

    # AutoGraph decides whether to convert a layer called from converted code by the module of its
    # `__call__`: Keras's is never converted, and neither may this one be (converting it converted all of
    # Keras's call machinery, tens of seconds per trace).
    __call__.__module__ = original.__module__
    return __call__


__all__ = ["Hooks", "Session", "active_session", "not_converted"]

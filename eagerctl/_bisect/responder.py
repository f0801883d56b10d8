"""What the hooks do in a bisection: observe while discovering, make a trial's subset eager islands.

Discovery (`mode == "discover"`) links each candidate into the call tree and
notes what it changes while traced; a trial (`mode == "trial"`) replaces the
calls of the candidates in its subset by eager islands, built by
`@debuggable`'s own path, and lets every other call trace as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .candidates import Candidate
from .hooks import Session, not_converted

if TYPE_CHECKING:
    from .bisector import Bisector


class Responder:
    def __init__(self, b: Bisector) -> None:
        self.b = b

    def on_call(self, session: Session, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                options: Any, run: Callable[[], Any]) -> Any:
        candidate = self.b.tree.classify(f)
        if candidate is None:
            return run()
        if session.mode == "discover":
            if candidate.callable is None:
                candidate.callable = f
            return self.b.tree.observe(session.stack, candidate, self.b.watch.items_of_function(f), run)
        if candidate.key in session.subset:
            return self.island(session, candidate, f, args=args, kwargs=kwargs, options=options)
        return run()

    def on_layer_call(self, session: Session, layer: Any, run: Callable[[], Any]) -> Any:
        candidate = self.b.tree.layer_candidate(layer)
        if session.mode == "discover":
            if candidate.callable is None:
                candidate.callable = layer.call
            return self.b.tree.observe(session.stack, candidate, self.b.watch.items_of_object(layer), run)
        if candidate.key not in session.subset:
            return run()
        had = "call" in layer.__dict__
        saved = layer.__dict__.get("call")
        body = layer.call

        @not_converted
        def call(*args: Any, **kwargs: Any) -> Any:
            return self.island(session, candidate, body, args=args, kwargs=kwargs, options=None)

        object.__setattr__(layer, "call", call)
        try:
            return run()
        finally:
            if had:
                object.__setattr__(layer, "call", saved)
            else:
                object.__delattr__(layer, "call")

    def island(self, session: Session, candidate: Candidate, f: Any, *, args: tuple[Any, ...],
               kwargs: dict[str, Any], options: Any) -> Any:
        """`f` called as an eager island (`@debuggable`'s own path) in the graph a trial traces."""
        from .._debuggable import debuggable

        converted_call = self.b.hooks.converted_call
        tf = self.b.tf

        @not_converted
        def body(*call_args: Any, **call_kwargs: Any) -> Any:
            if tf.executing_eagerly():  # the island runs it
                candidate.capture(call_args, call_kwargs)
                return f(*call_args, **call_kwargs)
            from tensorflow.python.autograph.core import ag_ctx, converter

            if ag_ctx.control_status_ctx().status != ag_ctx.Status.DISABLED:
                # As AutoGraph would have converted the call (the caller's options: an empty list
                # literal must stay a list, not become a TensorList).
                return converted_call(f, call_args, call_kwargs,
                                      options=options if options is not None else converter.STANDARD_OPTIONS)
            return f(*call_args, **call_kwargs)

        body.__qualname__ = body.__name__ = candidate.qualname
        proxy = debuggable(body)
        session.passthrough += 1
        try:
            return proxy(*args, **kwargs)
        finally:
            session.passthrough -= 1


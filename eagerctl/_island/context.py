"""The thread-local state a traced body would have seen, carried to TF's executor thread (`_Carry`).

Keras's call context and training flag, autocast and dtype policy, name scope,
`tf.distribute` replica or cross-replica context. Stands on `plumbing` only.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from .plumbing import _is_graph_tensor

# Keras 3 keeps its per-thread state in one `threading.local` (global_state). These
# entries belong to symbolic tracing, not to what a layer computes.
_KERAS3_SKIP = frozenset({"stateless_scope", "symbolic_scope", "in_tf_graph_scope",
                          "uninitialized_variables"})
_KERAS2_PACKAGES = ("keras.src", "keras", "tf_keras.src", "tf_keras")


class _Carry:
    """The thread-local state a traced body would have seen, captured while tracing.

    TF runs the island on one of its executor threads, where Keras and TF find
    their thread-local state empty. What is carried, and why (each read in the
    Keras and TF source of the supported versions):

    - Keras 3 `global_state` (one `threading.local`): the layer call context
      (`training`, and the other call-context arguments), the autocast scope
      (mixed precision), the dtype policy, Keras name scopes, remat scopes;
      not the symbolic or stateless scopes, which belong to tracing.
    - Keras 2 (`tf.keras` 2.13-2.15, `tf_keras`): the layer call context
      (`in_call`, `training`), the autocast-variable dtype (mixed precision)
      and the seed generator set by `set_random_seed`.
    - TF: the name scope, and the `tf.distribute` thread mode (strategy scope,
      replica or cross-replica context).

    Call contexts are copied for each run: Keras writes to them as nested
    layers resolve their arguments, and replicas may run an island at once.
    """

    __slots__ = ("carries", "locals", "name_scope", "scope_name", "tensor_slots", "tensors", "thread_mode")

    def __init__(self, graph: Any) -> None:
        from tensorflow.python.distribute import distribute_lib

        self.locals: list[tuple[Any, dict[str, Any]]] = []
        # Call-context values that are tensors of the graph (a `training` tensor):
        # fed to the island op, and put into each run's copy of the context.
        self.tensors: list[Any] = []
        self.tensor_slots: list[tuple[int, str, str, bool]] = []  # (local, attribute, key, in _state)
        state = _module_attr("keras.src.backend.common.global_state", "GLOBAL_STATE_TRACKER")
        captured = {k: _fresh(v) for k, v in vars(state).items()
                    if k not in _KERAS3_SKIP and v is not None} if state is not None else {}
        if captured:
            ctx = captured.get("current_call_ctx")
            if ctx is not None:
                self._find_tensors(len(self.locals), "current_call_ctx", vars(ctx), False)
            self.locals.append((state, captured))
        seen = set()
        for package in _KERAS2_PACKAGES:
            for module, attr in ((f"{package}.engine.base_layer_utils", "_call_context"),
                                 (f"{package}.mixed_precision.autocast_variable", "_autocast_dtype"),
                                 (f"{package}.backend", "_SEED_GENERATOR")):
                local = _module_attr(module, attr)
                if local is None or not vars(local) or id(local) in seen:
                    continue
                seen.add(id(local))
                ctx = getattr(local, "call_context", None)
                if ctx is not None:
                    self._find_tensors(len(self.locals), "call_context", ctx._state, True)
                # Keras restores a call context's fields in place when the call
                # returns: keep a copy of them as they are now.
                self.locals.append((local, {k: _fresh(v) for k, v in vars(local).items()}))
        self.name_scope = graph.get_name_scope()
        mode = distribute_lib._get_per_thread_mode()
        self.thread_mode = None if isinstance(mode, distribute_lib._DefaultReplicaThreadMode) else mode
        self.scope_name = f"{self.name_scope}/" if self.name_scope else ""
        # Something to carry (not plain TF code outside Keras, scopes and strategies).
        self.carries = bool(self.locals or self.name_scope or self.thread_mode is not None)

    @property
    def empty(self) -> bool:
        """Nothing to carry (plain TF code outside Keras, scopes and strategies)."""
        return not self.carries

    def _find_tensors(self, local: int, attr: str, values: dict[str, Any], in_state: bool) -> None:
        for key, value in values.items():
            if _is_graph_tensor(value) and key != "inputs":
                self.tensor_slots.append((local, attr, key, in_state))
                self.tensors.append(value)

    def enter(self, tensors: Sequence[Any] = ()) -> list[Any]:
        """This thread's state as captured, with `tensors` (this run's values of `self.tensors`).

        Returns what `leave` puts back; call `leave` in a `finally` (see `entered`).
        """
        context, distribute_lib = _TF or _load()
        saved: list[Any] = []
        for local, captured in self.locals:
            mine = vars(local)
            saved.append(dict(mine))
            mine.clear()
            mine.update({k: _fresh(v) for k, v in captured.items()})
        for (index, attr, key, in_state), value in zip(self.tensor_slots, tensors, strict=False):
            ctx_copy = vars(self.locals[index][0])[attr]
            if in_state:
                ctx_copy._state[key] = value
            else:
                setattr(ctx_copy, key, value)
        ctx = context.context()
        scope = ctx.scope_name
        ctx.scope_name = self.scope_name
        saved.append(scope)
        if self.thread_mode is not None:
            distribute_lib._push_per_thread_mode(self.thread_mode)
        return saved

    def leave(self, saved: list[Any]) -> None:
        """Put back what `enter` replaced (`saved`: what it returned)."""
        context, distribute_lib = _TF or _load()
        if self.thread_mode is not None:
            distribute_lib._pop_per_thread_mode()
        context.context().scope_name = saved[-1]
        for (local, _), before in zip(self.locals, saved, strict=False):
            mine = vars(local)
            mine.clear()
            mine.update(before)

    @contextlib.contextmanager
    def entered(self, tensors: Sequence[Any] = ()) -> Iterator[None]:
        """`enter` and `leave` as a `with` block."""
        saved = self.enter(tensors)
        try:
            yield
        finally:
            self.leave(saved)


_TF: tuple[Any, Any] | None = None  # TF's eager context and distribute_lib modules, imported once


def _load() -> tuple[Any, Any]:
    global _TF
    from tensorflow.python.distribute import distribute_lib
    from tensorflow.python.eager import context

    _TF = (context, distribute_lib)
    return _TF


def _module_attr(module: str, attr: str) -> Any:
    # Never imports: what is not loaded yet cannot hold state.
    loaded = sys.modules.get(module)
    return getattr(loaded, attr, None) if loaded is not None else None


def _fresh(value: Any) -> Any:
    """A copy of a carried call context or scope stack for one run; anything else as is."""
    kind = type(value).__name__
    if kind == "CallContext":
        fresh = copy.copy(value)
        state = getattr(fresh, "_state", None)
        if isinstance(state, dict):  # Keras 2: this run is eager, not a graph build
            fresh._state = dict(state, build_graph=False)
            fresh._in_keras_graph = False
        return fresh
    if isinstance(value, list):
        return list(value)
    return value


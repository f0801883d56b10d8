"""Candidates: the user-level callables that run inside the bisected function, as a call tree.

While `fn` is traced with bisect's hooks in place (see `hooks.py`), every
call a converted body makes (nested `tf.function`s and the user's own Python
functions) and every Keras layer or model call becomes a `Candidate`, with
its qualname and file:line, the ops it built and the Python values it
changed while traced. A profiler also notes the user's functions that Keras
or TensorFlow call outside AutoGraph (`Suspect`: they cannot be made eager
alone, but their trace and source can be read).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .code import (
    code_of,
    is_layer,
    is_model,
    is_tf_function,
    is_user_code,
    where,
)

if TYPE_CHECKING:
    from .values import Item, Watch


class Candidate:
    """One user-level callable seen while `fn` was traced."""

    def __init__(self, key: Any, kind: str, *, qualname: str, where: str, name: str, code: Any,
                 obj: Any = None) -> None:
        self.key = key
        self.kind = kind
        self.qualname = qualname
        self.where = where
        self.name = name
        self.code = code
        self.obj = obj  # the layer, for layers
        self.parent: Candidate | None = None
        self.children: list[Candidate] = []
        self.ops: list[Any] = []
        self.state_changes: list[str] = []
        self.watched: list[Item] = []
        self.inputs: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.callable: Any = None  # what evidence calls: the function, tf.function or bound call

    @property
    def path(self) -> list[str]:
        chain: list[str] = []
        node: Candidate | None = self
        while node is not None and node.kind != "root":
            chain.append(node.name)
            node = node.parent
        return chain[::-1]

    def descendants(self) -> Iterator[Candidate]:
        for child in self.children:
            yield child
            yield from child.descendants()

    def capture(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.inputs is None:
            self.inputs = (args, dict(kwargs))

    def note_changes(self, items: list[Item], before: list[Any], after: list[Any]) -> None:
        from .values import describe, same

        for (owner, name), old, new in zip(items, before, after, strict=True):
            change = f"{describe(owner, name)} went from {old!r} to {new!r}"
            if not same(old, new) and change not in self.state_changes:
                self.state_changes.append(change)


class Suspect(Candidate):
    """A user function seen only by the profiler: called outside AutoGraph, it cannot be made eager alone."""

    def __init__(self, code: Any, qualname: str, parent: Candidate) -> None:
        super().__init__(code, "function", qualname=qualname, where=where(code), name=qualname, code=code)
        self.parent = parent



class CallTree:
    """The candidates found while tracing `fn`, who called whom, and what each changed."""

    def __init__(self, name: str, code: Any, excluded: set[Any], watch: Watch) -> None:
        self.root = Candidate(("root",), "root", qualname=name, where=where(code), name=name, code=code)
        self.candidates: dict[Any, Candidate] = {}
        self.suspects: dict[Any, Suspect] = {}
        self.layer_codes: set[Any] = set()
        self.excluded = excluded
        self.watch = watch
        self.error_owner: Candidate | None = None
        self.created: list[tuple[Any, Candidate]] = []  # (variable, the candidate that created it)

    def all(self) -> list[Candidate]:
        return [self.root, *self.candidates.values()]

    def classify(self, f: Any) -> Candidate | None:
        """The candidate a converted call of `f` is, or None when `f` is not the user's."""
        if is_layer(f):
            return None  # its __call__ is hooked
        tf_function = is_tf_function(f)
        code = code_of(f.python_function if tf_function else f)
        if code is None or code in self.excluded or not is_user_code(code):
            return None
        if getattr(f, "__self__", None) is not None and is_layer(f.__self__) and code.co_name == "call":
            return None  # a layer's call, seen as the layer
        candidate = self.candidates.get(code)
        if candidate is None:
            qualname = code.co_qualname if hasattr(code, "co_qualname") else getattr(
                inspect.unwrap(getattr(f, "__func__", f)), "__qualname__", code.co_name)
            candidate = Candidate(code, "tf.function" if tf_function else "function", qualname=qualname,
                                  where=where(code), name=qualname, code=code)
            self.candidates[code] = candidate
        return candidate

    def layer_candidate(self, layer: Any) -> Candidate:
        key = ("layer", id(layer))
        candidate = self.candidates.get(key)
        if candidate is None:
            call = getattr(type(layer), "call", None)
            code = code_of(call) if call is not None else None
            if code is not None:
                self.layer_codes.add(code)
            candidate = Candidate(key, "model" if is_model(layer) else "layer",
                                  qualname=f"{type(layer).__name__}.call", where=where(code),
                                  name=str(getattr(layer, "name", type(layer).__name__)), code=code,
                                  obj=layer)
            self.candidates[key] = candidate
        return candidate

    def observe(self, stack: list[Candidate], candidate: Candidate, items: list[Item],
                run: Callable[[], Any]) -> Any:
        """Run `candidate`'s trace under `stack`: link it to its caller, note what it changes."""
        parent = stack[-1]
        if candidate is not parent:
            if candidate.parent is None:
                candidate.parent = parent  # its path in reports: where it was first called from
            if candidate not in parent.children and parent not in candidate.descendants():
                parent.children.append(candidate)  # a shared helper is narrowed to from every caller
        self.watch.see(items)
        candidate.watched += [item for item in items if item not in candidate.watched]
        before = self.watch.values(items)
        stack.append(candidate)
        try:
            return run()
        except Exception:
            if self.error_owner is None:
                self.error_owner = candidate  # the innermost candidate the error passed through
            raise
        finally:
            stack.pop()
            candidate.note_changes(items, before, self.watch.values(items))

    def profiler(self, stack: list[Candidate],
                 passthrough: Callable[[], bool]) -> Callable[[Any, str, Any], None]:
        """A `sys.setprofile` function that notes the user's functions called outside AutoGraph."""
        user: dict[Any, bool] = {}
        pending: dict[int, tuple[Suspect, list[Item], list[Any]]] = {}
        watch = self.watch

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "call":
                code = frame.f_code
                mine = user.get(code)
                if mine is None:
                    mine = user[code] = (is_user_code(code) and code not in self.excluded
                                         and code not in self.candidates and code not in self.layer_codes)
                if not mine or passthrough():
                    return
                suspect = self.suspects.get(code)
                if suspect is None:
                    qualname = getattr(code, "co_qualname", code.co_name)
                    suspect = self.suspects[code] = Suspect(code, qualname, stack[-1])
                from .values import code_names

                names = code_names(code)
                items = watch.items_of_globals(frame.f_globals, names)
                this = frame.f_locals.get("self")
                if this is not None:
                    items += watch.items_of_object(this, names)
                watch.see(items)
                suspect.watched += [item for item in items if item not in suspect.watched]
                pending[id(frame)] = (suspect, items, watch.values(items))
            elif event == "return":
                entry = pending.pop(id(frame), None)
                if entry is not None:
                    suspect, items, before = entry
                    suspect.note_changes(items, before, watch.values(items))

        return profile

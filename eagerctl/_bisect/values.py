"""The plain Python values the candidates read or write: found, saved when first seen, put back.

Numbers, strings, tuples, lists and dicts of them (nested a few levels:
``STATS["trace"]["calls"]``), held in module globals (of the function's
module or of a module it names: ``counters.n``), closure cells, attributes of
`self` and of classes (``type(self).calls``, ``Counter.calls``) and of
layers. Lists and dicts are restored in place, since the program may hold
them elsewhere. Python's and NumPy's global random states go with them.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import random
import sys
import types
from typing import Any

from .code import is_layer, is_user_code, is_user_file, keras_internal_names

MISSING = object()
_MAX_DEPTH = 4
_MAX_ITEMS = 1000

Item = tuple[Any, str]
"""(owner, name): a dict (the function's globals), a closure cell, a module, a class or an object."""

State = tuple[dict[tuple[int, str], Any], Any, Any]
"""Every saved item's value, Python's random state and NumPy's: what `Watch.restore(to=...)` brings back."""


def is_plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    if depth < _MAX_DEPTH and isinstance(value, (tuple, list)):
        return len(value) <= _MAX_ITEMS and all(is_plain(v, depth + 1) for v in value)
    plain_dict = isinstance(value, dict) and type(value).__module__ in ("builtins", "collections")
    if depth < _MAX_DEPTH and plain_dict:
        return len(value) <= _MAX_ITEMS and all(
            is_plain(k, _MAX_DEPTH) and is_plain(v, depth + 1) for k, v in value.items())
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.generic)


def code_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_names(const)
    return names


def same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001
        return False


def describe(owner: Any, name: str) -> str:
    if isinstance(owner, dict):
        return f"global {name}"
    if isinstance(owner, types.ModuleType):
        return f"{owner.__name__}.{name}"
    if isinstance(owner, types.CellType):
        return f"closure variable {name}"
    if isinstance(owner, type):
        return f"{owner.__name__}.{name}"
    return f"self.{name}"


def _restore_in_place(current: Any, value: Any) -> Any:
    """`value` put into `current` where both are lists or dicts (recursively); else a copy of `value`."""
    if isinstance(value, list) and isinstance(current, list) and type(value) is type(current):
        if len(value) == len(current):
            current[:] = [_restore_in_place(c, v) for c, v in zip(current, value, strict=True)]
        else:
            current[:] = copy.deepcopy(value)
        return current
    if isinstance(value, dict) and isinstance(current, dict) and type(value) is type(current):
        for key in [k for k in current if k not in value]:
            del current[key]
        for key, v in value.items():
            current[key] = _restore_in_place(current[key], v) if key in current else copy.deepcopy(v)
        return current
    return copy.deepcopy(value)


class Watch:
    """Plain Python values the candidates read or write, saved when first seen, restorable."""

    def __init__(self) -> None:
        self.saved: dict[tuple[int, str], tuple[Any, str, Any]] = {}
        self.random_state = random.getstate()
        np = sys.modules.get("numpy")
        self.np_state = np.random.get_state() if np is not None else None

    def items_of_user_modules(self) -> list[Item]:
        """Plain globals of the program's own modules, and plain attributes of the classes they define.

        Seen before anything runs, so that every trace starts from the program's values even for a
        function the hooks see late (a loss Keras calls outside AutoGraph), and all of it goes back.
        """
        items: list[Item] = []
        for module in list(sys.modules.values()):
            if not (isinstance(module, types.ModuleType) and is_user_file(getattr(module, "__file__", None))):
                continue
            names = {n for n in vars(module) if not n.startswith("__")}
            items += [(vars(module), n) for n in sorted(names) if is_plain(vars(module)[n])]
            classes = [v for v in vars(module).values()
                       if isinstance(v, type) and v.__module__ == module.__name__]
            for klass in classes:
                items += [(klass, n) for n, v in vars(klass).items()
                          if not n.startswith("__") and is_plain(v)]
        return items

    def items_of_function(self, fn: Any) -> list[Item]:
        fn = inspect.unwrap(fn, stop=lambda f: hasattr(f, "__code__"))
        instance = getattr(fn, "__self__", None)
        func = getattr(fn, "__func__", fn)
        code = getattr(func, "__code__", None)
        if code is None:
            return []
        names = code_names(code)
        items = self.items_of_globals(getattr(func, "__globals__", None), names)
        for var, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
            with contextlib.suppress(ValueError):
                if is_plain(cell.cell_contents):
                    items.append((cell, var))
        if instance is not None:
            items += self.items_of_object(instance, names)
        return items

    def items_of_globals(self, module_globals: Any, names: set[str]) -> list[Item]:
        """Globals named by the code, and the attributes it names of the modules and classes it names."""
        if not isinstance(module_globals, dict):
            return []
        items: list[Item] = []
        for name in sorted(names):
            value = module_globals.get(name, MISSING)
            if value is MISSING:
                continue
            if is_plain(value):
                items.append((module_globals, name))
            elif isinstance(value, types.ModuleType) and is_user_file(getattr(value, "__file__", None)):
                items += [(value, n) for n in sorted(names) if is_plain(vars(value).get(n, object()))]
            elif isinstance(value, type):
                items += self._class_items(value, names)
        return items

    @staticmethod
    def _class_items(klass: type, names: set[str]) -> list[Item]:
        items: list[Item] = []
        for base in klass.__mro__:
            if base.__module__ == "builtins" or not is_user_file(getattr(sys.modules.get(base.__module__),
                                                                          "__file__", None)):
                continue
            items += [(base, n) for n in sorted(names) if n in vars(base) and is_plain(vars(base)[n])]
        return items

    def items_of_object(self, obj: Any, names: set[str] | None = None) -> list[Item]:
        attrs = getattr(obj, "__dict__", None)
        if not isinstance(attrs, dict):
            return []
        if names is None:  # a layer: the names its class's own (user) methods use
            names = set()
            for klass in type(obj).__mro__:
                for member in vars(klass).values():
                    code = getattr(member, "__code__", None)
                    if code is not None and is_user_code(code):
                        names |= code_names(code)
        if is_layer(obj):
            # Keras's own state (`built`, `trainable`, ...): restoring `built` would build the layer again.
            names = names - keras_internal_names(type(obj))
        items: list[Item] = [(obj, n) for n in sorted(names) if n in attrs and is_plain(attrs[n])]
        return items + self._class_items(type(obj), names)

    def see(self, items: list[Item]) -> None:
        for owner, name in items:
            key = (id(owner), name)
            if key not in self.saved:
                self.saved[key] = (owner, name, copy.deepcopy(self._get(owner, name)))

    @staticmethod
    def _get(owner: Any, name: str) -> Any:
        if isinstance(owner, dict):
            return owner.get(name, MISSING)
        if isinstance(owner, types.CellType):
            return owner.cell_contents
        return vars(owner).get(name, MISSING)

    @staticmethod
    def _set(owner: Any, name: str, value: Any) -> None:
        if isinstance(owner, dict):
            owner[name] = value
        elif isinstance(owner, types.CellType):
            owner.cell_contents = value
        elif isinstance(owner, (type, types.ModuleType)):
            setattr(owner, name, value)
        else:
            owner.__dict__[name] = value

    def current(self) -> State:
        """Every saved item's value now, and the random states: what `restore(to=...)` brings back."""
        np = sys.modules.get("numpy")
        values = {key: copy.deepcopy(self._get(owner, name)) for key, (owner, name, _) in self.saved.items()}
        return values, random.getstate(), np.random.get_state() if np is not None else None

    def values(self, items: list[Item]) -> list[Any]:
        return [copy.deepcopy(self._get(owner, name)) for owner, name in items]

    def restore(self, to: State | None = None) -> None:
        for key, (owner, name, first) in self.saved.items():
            value = first if to is None else to[0].get(key, first)
            if value is MISSING:
                continue
            self._set(owner, name, _restore_in_place(self._get(owner, name), value))
        random.setstate(self.random_state if to is None else to[1])
        np = sys.modules.get("numpy")
        np_state = self.np_state if to is None else to[2]
        if np is not None and np_state is not None:
            np.random.set_state(np_state)

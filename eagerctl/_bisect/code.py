"""What bisect counts as the user's code, and what is a Keras layer or a `tf.function`.

The lowest module of the package: the candidates (`candidates.py`) and the
Python values bisect watches (`values.py`) both ask it, and it asks neither.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import sysconfig
from typing import Any

from .. import _hook

_SKIP_DIRS: tuple[str, ...] | None = None


def _skip_dirs() -> tuple[str, ...]:
    global _SKIP_DIRS
    if _SKIP_DIRS is None:
        dirs = {os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep}
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            path = sysconfig.get_paths().get(key)
            if path:
                dirs.add(os.path.abspath(path) + os.sep)
        for path in sys.path:
            if path.endswith(("site-packages", "dist-packages")):
                dirs.add(os.path.abspath(path) + os.sep)
        _SKIP_DIRS = tuple(sorted(dirs))
    return _SKIP_DIRS


def is_user_file(filename: object) -> bool:
    if not isinstance(filename, str) or not filename or filename.startswith("<"):
        return False
    if "__autograph_generated_file" in filename:
        return False
    if not os.path.isabs(filename) and not os.path.exists(filename):
        return False  # Cython's pseudo-files (numpy/random/mtrand.pyx)
    return not os.path.abspath(filename).startswith(_skip_dirs())


def is_user_code(code: Any) -> bool:
    if getattr(code, "co_name", "<").startswith("<"):
        return False  # lambdas, comprehensions
    return is_user_file(getattr(code, "co_filename", ""))


def code_of(fn: Any) -> Any:
    fn = inspect.unwrap(getattr(fn, "__func__", fn), stop=lambda f: hasattr(f, "__code__"))
    return getattr(getattr(fn, "__func__", fn), "__code__", None)


def where(code: Any) -> str:
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else "?"


def is_tf_function(f: Any) -> bool:
    module = sys.modules.get(_hook.FUNCTION_MODULE)
    return module is not None and isinstance(f, module.Function)


# -- Keras ------------------------------------------------------------------------------


def layer_classes() -> list[type]:
    classes: list[type] = []
    for module_name in ("keras.src.layers.layer", "keras.src.engine.base_layer", "keras.engine.base_layer",
                        "tf_keras.src.engine.base_layer"):
        module = sys.modules.get(module_name)
        layer = getattr(module, "Layer", None) if module is not None else None
        if isinstance(layer, type) and "__call__" in layer.__dict__ and layer not in classes:
            classes.append(layer)
    return classes


_KERAS_NAMES: dict[type, frozenset[str]] = {}


def keras_internal_names(layer_type: type) -> frozenset[str]:
    """Attribute names Keras's base Layer (of this layer's Keras) sets or defines itself."""
    base = next((cls for cls in layer_classes() if issubclass(layer_type, cls)), None)
    if base is None:
        return frozenset()
    names = _KERAS_NAMES.get(base)
    if names is None:
        found = set(dir(base))
        with contextlib.suppress(Exception):  # a Keras whose bare Layer cannot be made: its class names only
            found |= set(vars(base()))
        found |= {"built", "trainable", "name", "dtype", "supports_masking", "input_spec"}
        names = _KERAS_NAMES[base] = frozenset(found)
    return names


def is_layer(obj: Any) -> bool:
    return any(isinstance(obj, cls) for cls in layer_classes())


def is_model(obj: Any) -> bool:
    return is_layer(obj) and hasattr(obj, "train_step") and hasattr(obj, "layers")


# -- the call tree ----------------------------------------------------------------------

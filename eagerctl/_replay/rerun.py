"""The eager replay of one call, with a per-op check that finds where it went wrong.

Only here, and only while the failed call runs again, does eagerctl watch
every op: a TF op callback (the mechanism `tf.debugging.enable_check_numerics`
uses) sees each eagerly executed op with its inputs and outputs. The first op
with a NaN or Inf in a float output stops the replay there; its place in the
user's code is the innermost frame on the Python stack that is not TF, Keras
or eagerctl. An op of a gradient (run by the tape's backward pass) is also
tied to the forward op it differentiates, recorded while the forward ran.
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
from types import FrameType, TracebackType
from typing import Any

from .report import Site

_GRADIENT_FUNCTION = "_gradient_function"
_library_dirs: tuple[str, ...] | None = None


def _library() -> tuple[str, ...]:
    global _library_dirs
    if _library_dirs is None:
        dirs = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep]  # eagerctl
        for name in ("tensorflow", "keras", "tf_keras", "optree", "tree", "numpy", "absl", "wrapt",
                     "google", "ml_dtypes", "tensorflow_probability", "tf_keras", "_pytest", "pluggy"):
            module = sys.modules.get(name)
            for path in getattr(module, "__path__", []) or []:
                dirs.append(os.path.abspath(path) + os.sep)
        stdlib = sysconfig.get_paths().get("stdlib")
        if stdlib:
            dirs.append(os.path.abspath(stdlib) + os.sep)
        _library_dirs = tuple(dirs)
    return _library_dirs


_AUTOGRAPH = "__autograph_generated"


def _origin(frame: FrameType, lineno: int) -> tuple[str, int, str, str] | None:
    """For a frame of AutoGraph's converted code: (file, line, function, source) of the user's line.

    TF runs the converted body of a `tf.function` method eagerly once it has been
    traced (the bound method's `__wrapped__` is swapped for it), so the replay's
    frames can be AutoGraph's; its source map on the converted function leads back.
    """
    import gc

    for ref in gc.get_referrers(frame.f_code):
        source_map = getattr(ref, "ag_source_map", None)
        if not source_map:
            continue
        for loc, origin in source_map.items():
            if loc.lineno == lineno:
                return (origin.loc.filename, origin.loc.lineno, origin.function_name,
                        str(origin.source_code_line).strip())
    return None


def is_user_file(filename: str) -> bool:
    if _AUTOGRAPH in filename:
        return True  # converted user code: `site_of` maps it back to the user's line
    if filename.startswith("<frozen"):
        return False
    if filename.startswith("<"):
        return True  # code run from a string (exec, a notebook cell): the user's
    path = os.path.abspath(filename)
    if os.sep + "site-packages" + os.sep in path and not any(
        path.startswith(d) for d in _library()
    ):
        return True  # another installed package: code the user brought
    return not path.startswith(_library())


def user_frame(frame: FrameType | None) -> FrameType | None:
    while frame is not None and not is_user_file(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def site_of(frame: FrameType, lineno: int | None = None) -> Site:
    code = frame.f_code
    line = lineno if lineno is not None else frame.f_lineno
    if _AUTOGRAPH in code.co_filename:
        origin = _origin(frame, line)
        if origin is not None:
            return Site(filename=origin[0], lineno=origin[1], function=origin[2], source=origin[3])
    return Site(
        filename=code.co_filename,
        lineno=line,
        function=getattr(code, "co_qualname", code.co_name),
        source=linecache.getline(code.co_filename, line, frame.f_globals).strip(),
    )


class Found(BaseException):
    """Raised from the op callback at the first non-finite value.

    A signal, not an error: a BaseException, so that a user's `except Exception`
    on the way out cannot swallow it.
    """

    def __init__(self, site: Site, frame: FrameType) -> None:
        super().__init__(site.where())
        self.site = site
        self.frame = frame


def _describe(tensor: Any, np: Any) -> tuple[bool, str]:
    """(finite, text) for one tensor: "NaN in 3 of 32 values (float32 (32, 1))"."""
    dtype = getattr(tensor, "dtype", None)
    shape = tuple(getattr(tensor, "shape", ()))
    kind = f"({getattr(dtype, 'name', dtype)} {shape})"
    if dtype is None or not (dtype.is_floating or dtype.is_complex):
        return True, kind
    try:
        value = np.asarray(tensor.numpy())
    except Exception:  # noqa: BLE001 - not readable on the host (a resource, a variant)
        return True, kind
    nan = int(np.isnan(value).sum())
    inf = int(np.isinf(value).sum())
    if value.size == 1:
        word = "NaN" if nan else "Inf" if inf else f"finite, value {value.item():.6g}"
        return not (nan or inf), f"{word} {kind}"
    if nan or inf:
        parts = [f"NaN in {nan}"] if nan else []
        parts += [f"Inf in {inf}"] if inf else []
        return False, f"{' and '.join(parts)} of {value.size} values {kind}"
    if value.size:
        return True, f"finite, min {value.min():.6g}, max {value.max():.6g} {kind}"
    return True, f"empty {kind}"


class Finder:
    """The op callback: records forward sites, stops at the first non-finite output."""

    def __init__(self, *, stop: bool) -> None:
        import numpy as np

        self.np = np
        self.stop = stop  # stop at the first non-finite value (else only note it)
        self.first: Site | None = None
        self._forward: dict[int, tuple[Any, Site, str]] = {}

    def __call__(self, op_type: str, inputs: Any, attrs: Any, outputs: Any,  # noqa: PLR0917 - TF's signature
                 op_name: str | None = None, graph: Any = None) -> None:
        if graph is not None or not outputs:
            return None  # a graph being built (tf.data, a trace): not an op that ran
        frame = sys._getframe(1)
        grad = None
        probe: FrameType | None = frame
        while probe is not None:
            if probe.f_code.co_name == _GRADIENT_FUNCTION and "backprop" in probe.f_code.co_filename:
                grad = probe
                break
            probe = probe.f_back
        user = user_frame(frame)
        if user is None:
            return None
        bad = []
        for index, out in enumerate(outputs):
            finite, text = _describe(out, self.np)
            if not finite:
                bad.append(text if len(outputs) == 1 else f"output {index}: {text}")
        if not bad:
            if grad is None:
                for out in outputs:
                    self._forward[id(out)] = (out, site_of(user), op_type)
            return None
        if self.first is not None:
            return None
        site = site_of(user)
        site.op_type = op_type
        site.op_name = op_name or ""
        site.problem = "produced " + "; ".join(bad)
        for index, tensor in enumerate(inputs or ()):
            finite, text = _describe(tensor, self.np)
            site.inputs.append(f"input {index}: {'' if finite else 'already non-finite: '}{text}")
        if grad is not None:
            site.gradient_of = self._forward_site(grad)
        self.first = site
        if self.stop:
            raise Found(site, user)
        return None

    def _forward_site(self, grad: FrameType) -> Site | None:
        local = grad.f_locals
        for out in local.get("outputs", ()) or ():
            hit = self._forward.get(id(out))
            if hit is not None and hit[0] is out:
                site = Site(hit[1].filename, hit[1].lineno, hit[1].function, hit[1].source)
                site.op_type = str(local.get("op_name", hit[2]))
                return site
        op = local.get("op_name")
        return Site("<unknown>", 0, "?", "", op_type=str(op)) if op else None

    def clear(self) -> None:
        self._forward.clear()


def innermost_user(tb: TracebackType | None) -> tuple[FrameType, int] | None:
    found = None
    while tb is not None:
        if is_user_file(tb.tb_frame.f_code.co_filename):
            found = (tb.tb_frame, tb.tb_lineno)
        tb = tb.tb_next
    return found


def run_eagerly(fn: Any, args: tuple[Any, ...], kwds: dict[str, Any], *, stop_at_nonfinite: bool) -> tuple[
        Site | None, BaseException | None, Finder]:
    """Run `fn`'s call again eagerly, op by op. Returns (site, exception, finder).

    `site` is where the first non-finite value appeared (when stopping at it) or
    where the exception was raised; `exception` the exception the replay
    raised (a `Found` for a non-finite value), None if it ran through.
    """
    from tensorflow.python.framework import op_callbacks

    from .._scope import eager_scope

    finder = Finder(stop=stop_at_nonfinite)
    op_callbacks.add_op_callback(finder)
    try:
        with eager_scope():
            fn(*args, **kwds)
    except Found as found:
        return found.site, found, finder
    except Exception as exc:  # noqa: BLE001 - the failure being replayed
        where = innermost_user(exc.__traceback__)
        site = None
        if where is not None:
            site = site_of(where[0], where[1])
            site.problem = f"raised {type(exc).__name__}"
            if finder.first is not None and finder.first is not site:
                site.inputs.append(f"(before it, the first non-finite value: {finder.first.where()}, "
                                   f"op {finder.first.op_type} {finder.first.problem})")
        return site, exc, finder
    finally:
        op_callbacks.remove_op_callback(finder)
    return None, None, finder

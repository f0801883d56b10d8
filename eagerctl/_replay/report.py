"""`ReplayError`: where a failed compiled call went wrong, found by running it again eagerly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .._errors import EagerctlError


@dataclass
class Site:
    """A line of the user's code, and the op that ran there."""

    filename: str
    lineno: int
    function: str  # the Python function (qualified name where Python knows it)
    source: str  # the line's text, stripped ("" when the file cannot be read)
    op_type: str = ""  # the TF op ("Log"), "" for a Python exception
    op_name: str = ""
    problem: str = ""  # "produced NaN (3 of 32 values)", or the exception's first line
    inputs: list[str] = field(default_factory=list)  # "input 0: finite, float32 (32, 1)"
    gradient_of: Site | None = None  # for an op of a gradient: the forward op it differentiates

    def where(self) -> str:
        return f"{_short(self.filename)}:{self.lineno} in {self.function}"


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith(os.pardir) else rel


class ReplayError(EagerctlError):
    """A compiled call inside `eagerctl.replay()` failed; its eager replay found where.

    `filename`, `lineno` and `op_type` are None when the replay did not find the
    place (an iterator that could not be kept, a failure only compiled code has).

    Attributes:
        function: the `tf.function`'s name.
        step: which of its calls inside the `replay()` block failed, from 1.
        reason: what the compiled call did ("returned non-finite values (...)", "raised ...").
        site: the line, op, inputs and problem found (a `Site`), or None.
        detail: the eager replay's own error message, or why there is no site.
        compiled_error: the exception the compiled call raised (also the `__cause__`), or None.
    """

    def __init__(self, *, function: str, step: int, reason: str, site: Site | None,
                 detail: str = "", compiled_error: BaseException | None = None, state: str = "") -> None:
        self.function = function
        self.step = step
        self.reason = reason
        self.site = site
        self.detail = detail
        self.compiled_error = compiled_error
        self.state = state
        super().__init__(self._message())

    @property
    def filename(self) -> str | None:
        return self.site.filename if self.site else None

    @property
    def lineno(self) -> int | None:
        return self.site.lineno if self.site else None

    @property
    def op_type(self) -> str | None:
        return self.site.op_type if self.site else None

    @property
    def nonfinite_inputs(self) -> list[str]:
        if self.site is None:
            return []
        return [text for text in self.site.inputs if "already non-finite" in text]

    def __reduce__(self) -> tuple[object, ...]:  # the message survives pickling (multiprocessing)
        return (EagerctlError, (str(self),))

    def _message(self) -> str:
        head = (f"tf.function {self.function!r} at step {self.step} (its call {self.step} inside this "
                f"replay()): the compiled call {self.reason}")
        site = self.site
        if site is None:
            lines = [head + ".", *(f"  {line}" for line in self.detail.splitlines())]
        else:
            lines = [head + "; replayed eagerly from the state it started from:"]
            what = f"op {site.op_type} " if site.op_type else ""
            lines.append(f"  {site.where()}: {what}{site.problem}")
            if site.source:
                lines.append(f"      {site.source}")
            if site.gradient_of is not None:
                fwd = site.gradient_of
                lines.append(f"  in the gradient of op {fwd.op_type} at {fwd.where()}")
                if fwd.source:
                    lines.append(f"      {fwd.source}")
            for text in site.inputs:
                lines.append(f"  {text}")
            if self.detail:
                lines.extend(f"  {line}" for line in self.detail.splitlines())
        if self.state:
            lines.append(self.state)
        return "\n".join(lines)

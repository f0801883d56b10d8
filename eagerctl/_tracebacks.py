"""Tracebacks that point at the user's code: eagerctl's own frames left out where Python allows it.

pytest reads `__tracebackhide__` (`_errors.hide_from_pytest`); `eagerctl run`
(`_cli`) and the IPython extension (`_ipython`) show an exception's traceback
without eagerctl's frames, by one rule: `without_own_frames`.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from ._errors import EagerctlError

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep

# The errors whose message says what to do: eagerctl's own, and check_numerics' FloatingPointError.
DELIBERATE = (EagerctlError, FloatingPointError)


def without_own_frames(tb: TracebackType | None, exc: BaseException) -> TracebackType | None:
    """Drop eagerctl's frames (the `@debuggable` call path) so the traceback points at the user's code.

    Frames between two of the user's frames always go; the last ones (where it was
    raised) only for eagerctl's deliberate errors (`EagerctlError`, check_numerics'
    `FloatingPointError`), whose message says what to do; an eagerctl bug keeps them.
    """
    frames: list[TracebackType] = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    own = [f.tb_frame.f_code.co_filename.startswith(_PACKAGE) for f in frames]
    deliberate = isinstance(exc, DELIBERATE)
    last_user = max((i for i, mine in enumerate(own) if not mine), default=-1)
    kept = [f for i, f in enumerate(frames) if not own[i] or (i > last_user and not deliberate)]
    if not kept:
        return frames[0] if frames else None
    for here, after in zip(kept, [*kept[1:], None], strict=True):
        here.tb_next = after
    return kept[0]


# -- IPython --------------------------------------------------------------------------------------------
# IPython hides a frame only for a *local* `__tracebackhide__`, and never the last one: eagerctl's
# frames, where check_numerics raises, would end the traceback. The extension registers a custom
# exception handler for the deliberate errors that shows the traceback IPython would, without them.

def _show_in_ipython(shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None,
                     tb_offset: int | None = None) -> None:
    shell.showtraceback((etype, value, without_own_frames(tb, value)), tb_offset=tb_offset)


def install_in_ipython(shell: Any) -> bool:
    """Show the deliberate errors without eagerctl's frames in this shell; False if it has its own handler."""
    if tuple(getattr(shell, "custom_exceptions", ())) not in ((), DELIBERATE):
        return False  # the user's (or another extension's) handler stays: IPython allows only one
    shell.set_custom_exc(DELIBERATE, _show_in_ipython)
    return True


def uninstall_from_ipython(shell: Any) -> None:
    if tuple(getattr(shell, "custom_exceptions", ())) == DELIBERATE:
        shell.set_custom_exc((), None)  # IPython's own default

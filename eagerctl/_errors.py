"""The library's error base class and warning category."""

from __future__ import annotations

import os
import sys
from typing import Any

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class EagerctlError(RuntimeError):
    """Wrong use of eagerctl, or a TensorFlow it cannot work with.

    A subclass of `RuntimeError`, so existing ``except RuntimeError`` handlers
    keep working. Wrong *types* raise plain `TypeError` instead.
    """

    # AutoGraph re-raises exceptions from converted code as its own StagingError
    # unless they carry this attribute; eagerctl's errors must reach the user as they are.
    ag_pass_through = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A public error defined in a private module (eagerctl._island.IslandError)
        # is named as users import it, eagerctl.IslandError, in tracebacks and pickles,
        # however its module was loaded (eagerctl loads its tools on first use).
        package = sys.modules.get(__package__ or "")
        if cls.__module__.startswith(f"{__package__}._") and cls.__name__ in getattr(package, "__all__", ()):
            cls.__module__ = __package__ or cls.__module__


class EagerctlWarning(UserWarning):
    """Something eagerctl was asked to do cannot take full effect.

    Example: entering a scope while TensorFlow traces a graph, which cannot
    change the graph being built.
    """


def hide_from_pytest(excinfo: Any) -> bool:
    """pytest's `__tracebackhide__` for eagerctl's modules, so a failure points at the user's code.

    A module that imports it under that name has its frames left out of pytest's
    tracebacks (`--full-trace` shows them), unless the exception was raised in
    eagerctl itself and is not one of its deliberate errors: that is a bug, and
    its frames are kept. Costs nothing per call: pytest reads it from the
    module's globals when it formats a failure.
    """
    if excinfo is None:
        return True
    if isinstance(excinfo.value, (EagerctlError, FloatingPointError)):
        return True  # eagerctl's own message says what is wrong and what to do
    tb = excinfo.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    return not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE)

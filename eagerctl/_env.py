"""Environment variables that switch an eagerctl feature on or off: one parser for all their readers.

`@debuggable` (EAGERCTL_DEBUGGABLE) and `eagerctl status`, which reports it, read
the same words the same way, so status never calls a value "off" that the
decorator reads as on, nor accepts one the decorator refuses.
"""

from __future__ import annotations

import os

from ._errors import EagerctlError

# What `EAGERCTL_DEBUGGABLE=0` does, said in its error and in `eagerctl status`.
DEBUGGABLE_OFF = "every @debuggable behaves like the undecorated function"

OFF = frozenset({"0", "false", "no", "off"})
ON = frozenset({"", "1", "true", "yes", "on"})


def parse(raw: str) -> bool | None:
    """True or False for a word that means it (any case, spaces around ignored); None otherwise."""
    value = raw.strip().lower()
    if value in OFF:
        return False
    if value in ON:
        return True
    return None


def switch(name: str, *, off_means: str) -> bool:
    """The switch `name` (on when unset); `EagerctlError` naming the value and the fix for anything else."""
    raw = os.environ.get(name)
    if raw is None:
        return True
    value = parse(raw)
    if value is None:
        raise EagerctlError(f"{name}={raw!r} is not understood: {advice(off_means)}")
    return value


def advice(off_means: str) -> str:
    return f"set it to 0 ({off_means}) or 1 (on, the default), or unset it"

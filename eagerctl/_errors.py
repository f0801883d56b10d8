"""The library's error base class and warning category."""

from __future__ import annotations


class EagerctlError(RuntimeError):
    """Wrong use of eagerctl, or a TensorFlow it cannot work with.

    A subclass of `RuntimeError`, so existing ``except RuntimeError`` handlers
    keep working. Wrong *types* raise plain `TypeError` instead.
    """

    # AutoGraph re-raises exceptions from converted code as its own StagingError
    # unless they carry this attribute; eagerctl's errors must reach the user as they are.
    ag_pass_through = True


class EagerctlWarning(UserWarning):
    """Something eagerctl was asked to do cannot take full effect.

    Example: entering a scope while TensorFlow traces a graph, which cannot
    change the graph being built.
    """

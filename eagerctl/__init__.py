"""eagerctl: precise, safe control over how TensorFlow runs `tf.function`s.

`import eagerctl` does not import TensorFlow, and patches nothing in it: the
hook into TF installs at first use (or `install_hook()`). The tools
(`bisect`, `compare`, `debuggable`, the IPython extension) load when first used.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

# The patches of TF that install and uninstall with the hook register themselves on import.
from . import _compiled as _compiled
from . import _distribute as _distribute
from ._breakpoints import breakpoints  # registers its patches; starts the hook under a debugger
from ._errors import EagerctlError, EagerctlWarning
from ._hook import install as install_hook
from ._hook import uninstall as uninstall_hook
from ._scope import Scope, eager_scope, graph_scope, reset
from ._status import ReplayInfo, ScopeInfo, Status, is_eager, status
from ._version import __version__ as __version__

if _typing.TYPE_CHECKING:  # what type checkers and the API reference see; at run time, _LAZY below
    from ._bisect import Bisection, bisect
    from ._compare import Comparison, compare
    from ._debuggable import debuggable
    from ._ipython import load_ipython_extension, unload_ipython_extension
    from ._island import IslandError
    from ._replay import ReplayError, replay

# Public name -> the private module that defines it, imported on first access
# (PEP 562), so that `import eagerctl` stays as light as wrapt. A new lazy
# export is one line here, one in the TYPE_CHECKING block and one in __all__.
_LAZY: dict[str, str] = {
    "Bisection": "._bisect",
    "bisect": "._bisect",
    "Comparison": "._compare",
    "compare": "._compare",
    "debuggable": "._debuggable",
    "IslandError": "._island",
    "ReplayError": "._replay",
    "replay": "._replay",
    "load_ipython_extension": "._ipython",
    "unload_ipython_extension": "._ipython",
}

__all__ = [
    "Bisection",
    "Comparison",
    "EagerctlError",
    "EagerctlWarning",
    "IslandError",
    "ReplayError",
    "ReplayInfo",
    "Scope",
    "ScopeInfo",
    "Status",
    "bisect",
    "breakpoints",
    "compare",
    "debuggable",
    "eager_scope",
    "graph_scope",
    "install_hook",
    "is_eager",
    "load_ipython_extension",
    "replay",
    "reset",
    "status",
    "uninstall_hook",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# Tracebacks and reprs name the errors as users import them: eagerctl.EagerctlError.
# (Public errors defined in private modules, such as IslandError, are renamed by
# EagerctlError.__init_subclass__ when their module loads.)
for _public in (EagerctlError, EagerctlWarning):
    _public.__module__ = __name__
del _public

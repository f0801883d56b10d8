"""eagerctl: precise, safe control over how TensorFlow runs `tf.function`s.

`import eagerctl` does not import TensorFlow; the hook into TF installs itself
when TF is imported or at first use.
"""

from __future__ import annotations

# The patches of TF that install and uninstall with the hook register themselves on import.
from . import _compiled as _compiled
from . import _distribute as _distribute
from ._bisect import Bisection, bisect
from ._compare import Comparison, compare
from ._debuggable import debuggable
from ._errors import EagerctlError, EagerctlWarning
from ._hook import install as install_hook
from ._hook import register_import_hook as _register_import_hook
from ._hook import uninstall as uninstall_hook
from ._ipython import load_ipython_extension, unload_ipython_extension
from ._island import IslandError
from ._scope import Scope, eager_scope, graph_scope, reset
from ._status import ScopeInfo, Status, is_eager, status
from ._version import __version__ as __version__

__all__ = [
    "Bisection",
    "Comparison",
    "EagerctlError",
    "EagerctlWarning",
    "IslandError",
    "Scope",
    "ScopeInfo",
    "Status",
    "bisect",
    "compare",
    "debuggable",
    "eager_scope",
    "graph_scope",
    "install_hook",
    "is_eager",
    "load_ipython_extension",
    "reset",
    "status",
    "uninstall_hook",
    "unload_ipython_extension",
]

# Tracebacks and reprs name the errors as users import them: eagerctl.EagerctlError.
for _public in (EagerctlError, EagerctlWarning, IslandError):
    _public.__module__ = __name__
del _public

_register_import_hook()

"""eagerctl: precise, safe control over how TensorFlow runs `tf.function`s.

`import eagerctl` does not import TensorFlow; the hook into TF installs itself
when TF is imported or at first use.
"""

from __future__ import annotations

# -- compare (issue 4) --
from ._compare import Comparison, compare

# -- debuggable (issue 3) --
from ._debuggable import debuggable
from ._errors import EagerctlError, EagerctlWarning
from ._hook import install as install_hook
from ._hook import register_import_hook as _register_import_hook
from ._hook import uninstall as uninstall_hook
from ._scope import Scope, eager_scope, graph_scope, reset
from ._status import ScopeInfo, Status, is_eager, status

__all__ = [
    "Comparison",
    "EagerctlError",
    "EagerctlWarning",
    "Scope",
    "ScopeInfo",
    "Status",
    "compare",
    "debuggable",
    "eager_scope",
    "graph_scope",
    "install_hook",
    "is_eager",
    "reset",
    "status",
    "uninstall_hook",
]

__version__ = "0.1.0"

_register_import_hook()

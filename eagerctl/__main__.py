"""`python -m eagerctl`: the same as the `eagerctl` command."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())

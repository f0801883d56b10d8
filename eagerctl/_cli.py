"""Command line (being built, issue 4)."""

from __future__ import annotations


def main() -> int:
    raise SystemExit("eagerctl: the command line is not built yet")

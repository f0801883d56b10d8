"""docs/api.md: every public name has its place, in the order a user reaches for them (issue 21).

The page renders one block per object (`::: eagerctl.NAME`, mkdocstrings); a
name added to `eagerctl.__all__` needs its block, or a placeholder in an HTML
comment while its docs are written. The docstrings it renders are in the
Google style the handler parses: an rST literal block (`Example::`) would show
as literal text with the code run into it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import eagerctl

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "api.md").read_text()
RENDERED = re.findall(r"^::: eagerctl\.(\w+)", re.sub(r"<!--.*?-->", "", PAGE, flags=re.S), re.M)


def test_every_public_name_has_its_place() -> None:
    placed = set(re.findall(r"^::: eagerctl\.(\w+)", PAGE, re.M))  # placeholders in comments count
    assert sorted(set(eagerctl.__all__) - placed) == []
    assert sorted(placed - set(eagerctl.__all__)) == []


def test_the_order_is_what_a_user_reaches_for_first() -> None:
    first = ["eager_scope", "graph_scope", "Scope", "debuggable", "status", "is_eager"]
    assert RENDERED[: len(first)] == first
    order = ["eager_scope", "debuggable", "status", "compare", "bisect", "reset", "EagerctlError"]
    assert [RENDERED.index(name) for name in order] == sorted(RENDERED.index(name) for name in order)
    assert PAGE.index("eagerctl.bisect") < PAGE.index("eagerctl.replay") < PAGE.index("eagerctl.reset")


def test_rendered_docstrings_have_no_rst_literal_blocks() -> None:
    literal = re.compile(r"::\s*$", re.M)
    offenders = [name for name in RENDERED if literal.search(inspect.getdoc(getattr(eagerctl, name)) or "")]
    assert offenders == [], f"'Example::' shows literally in the API reference: {offenders}"

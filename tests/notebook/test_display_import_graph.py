"""The package's imports run one way: no circle, and rendering sits below the results it renders.

Issue 21: `_compare` and `_status` imported the HTML of their results from
the IPython extension, which imports `_status` back (`_compare -> _ipython ->
_status -> _ipython`). Now `eagerctl._display` renders and imports nothing of
eagerctl, and the extension only wires magics: nothing in the package imports
it but the package's own lazy `__init__`.

The graph is read from the source with `ast`: every `import` and `from ...
import` anywhere in a module (function-level ones included: they run, later),
relative ones resolved, in every module of every subpackage
(`eagerctl/_bisect/...`). Imports under `if TYPE_CHECKING:` are left out:
they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import eagerctl

PACKAGE = Path(eagerctl.__file__).parent


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name: its __init__)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["eagerctl", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """The modules of the package one module imports (at import time or later, in a function)."""

    def __init__(self, name: str, is_package: bool, modules: set[str]) -> None:
        self.base = name if is_package else name.rpartition(".")[0]  # what `.` means here
        self.modules = modules
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # the else branch runs
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.base
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            if submodule in self.modules:  # `from . import _hook`, `from .. import _hook`: that module
                self.found.add(submodule)
            else:  # a name the module defines (its package's __init__, for `from . import name`)
                self._add(target)

    def _add(self, dotted: str) -> None:
        if dotted in self.modules:
            self.found.add(dotted)
        elif dotted.startswith("eagerctl."):
            # `import eagerctl._x.y` of a name that is no module: the nearest module it names
            while dotted and dotted not in self.modules:
                dotted = dotted.rpartition(".")[0]
            if dotted:
                self.found.add(dotted)


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", set(modules))
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        graph[name] = visitor.found - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (`a, b, ..., a`), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found is not None:
                return found
    return None


def test_the_graph_sees_function_level_relative_and_subpackage_imports() -> None:
    graph = import_graph()
    assert "eagerctl._hook" in graph["eagerctl._status"]  # `from . import _hook`
    assert "eagerctl._breakpoints" in graph["eagerctl._status"]  # inside Status.__init__
    assert "eagerctl._status" in graph["eagerctl._ipython"]  # inside %eager
    subpackages = {name for name, path in module_names().items() if path.name == "__init__.py"} - {"eagerctl"}
    assert subpackages  # e.g. eagerctl._breakpoints: its modules are in the graph
    for package in subpackages:
        assert any(name.startswith(f"{package}.") for name in graph) or graph[package] == set()


def test_find_cycle_finds_a_circle_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_anywhere_in_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_display_module_imports_nothing_of_eagerctl() -> None:
    source = (PACKAGE / "_display.py").read_text()
    tree = ast.parse(source)
    imported = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imported  # html, math
    for node in imported:
        assert not (isinstance(node, ast.ImportFrom) and node.level), ast.unparse(node)
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        assert not any(name.split(".")[0] == "eagerctl" for name in names), ast.unparse(node)


def test_nothing_in_the_package_imports_the_ipython_extension() -> None:
    importers = sorted(name for name, imports in import_graph().items() if "eagerctl._ipython" in imports)
    assert importers == []
    # `eagerctl.load_ipython_extension` loads it by name, on first use (`%load_ext eagerctl`)
    assert eagerctl._LAZY["load_ipython_extension"] == "._ipython"


@pytest.mark.parametrize("module", ["eagerctl._compare", "eagerctl._status"])
def test_results_render_through_the_display_module(module: str) -> None:
    assert "eagerctl._display" in import_graph()[module]


def test_results_render_as_before() -> None:
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from eagerctl import _display

    with eagerctl.eager_scope():
        status = eagerctl.status()
        page = status._repr_html_()
    assert page == _display.status_html(status)
    assert '<table class="eagerctl-status"' in page
    assert "<tr><th style=\"text-align:left\">effective here</th><td style=\"text-align:left\"><b>eager</b>" \
        in page
    assert '<table class="eagerctl-scopes"' in page and "eager_scope(True)" in page

    @tf.function
    def double(x: tf.Tensor) -> tf.Tensor:
        return x * 2.0

    result = eagerctl.compare(double, tf.constant([1.0, 2.0]), repeat=1)
    page = result._repr_html_()
    assert page == _display.comparison_html(result)
    assert page.startswith("<p><code>compare(test_results_render_as_before.&lt;locals&gt;.double)</code>: "
                           "<b>graph and eager MATCH</b>")
    assert '<table class="eagerctl-compare"' in page

    class Printer:
        def __init__(self) -> None:
            self.texts: list[str] = []

        def text(self, value: str) -> None:
            self.texts.append(value)

    for shown in (status, result):
        printer = Printer()
        shown._repr_pretty_(printer, False)
        assert printer.texts == [str(shown)]

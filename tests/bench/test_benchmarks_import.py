"""`import eagerctl` is light (the benchmarks' import row): the tools load on first use.

Behaviour only, no timing: a fresh interpreter's `import eagerctl` leaves the
tools' modules (bisect, compare, debuggable, islands, the IPython extension)
and TensorFlow, IPython and pytest unimported; every public name still
resolves, to the object its module defines, and `dir()`, `__all__`, the type
checkers' imports and the API reference see every one.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import eagerctl

ROOT = Path(__file__).resolve().parents[2]
# The package as imported: the checkout, or the installed wheel when CI tests that from outside it.
PACKAGE = Path(eagerctl.__file__).resolve().parent
TOOLS = (
    "eagerctl._bisect", "eagerctl._compare", "eagerctl._debuggable", "eagerctl._ipython", "eagerctl._island",
)


def run_python(code: str) -> Any:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_loads_no_tool_and_no_heavy_dependency() -> None:
    got = run_python(
        """
        import json, sys
        import eagerctl
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("eagerctl") or m.split(".")[0]
                                in ("tensorflow", "IPython", "pytest", "keras"))))
        """
    )
    assert isinstance(got, list)
    assert not set(got) & {*TOOLS, "tensorflow", "IPython", "pytest", "keras"}, got


def test_every_public_name_resolves_to_its_module_object_on_first_use() -> None:
    names = [n for n in eagerctl.__all__ if n not in ("install_hook", "uninstall_hook")]
    got = run_python(
        f"""
        import importlib, json, sys
        import eagerctl
        names = {names!r}
        where = {{}}
        for name in names:
            value = getattr(eagerctl, name)
            module = importlib.import_module(eagerctl._LAZY.get(name, "._scope"), "eagerctl")
            where[name] = [getattr(value, "__qualname__", name), name in eagerctl._LAZY
                           and getattr(module, name) is value and eagerctl.__dict__[name] is value]
        loaded = sorted(m for m in sys.modules if m in {TOOLS!r})
        print(json.dumps({{"where": where, "loaded": loaded, "dir": dir(eagerctl)}}))
        """
    )
    where = got["where"]
    assert isinstance(where, dict)
    for name in names:
        assert where[name][0] == name
    assert all(where[name][1] for name in eagerctl._LAZY), where
    assert got["loaded"] == sorted(set(TOOLS))
    assert isinstance(got["dir"], list) and set(eagerctl.__all__) <= set(got["dir"])


def test_dir_all_and_the_lazy_table_agree() -> None:
    assert set(eagerctl.__all__) <= set(dir(eagerctl))
    assert set(eagerctl._LAZY) <= set(eagerctl.__all__)
    assert len(eagerctl.__all__) == len(set(eagerctl.__all__))


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match=r"^module 'eagerctl' has no attribute 'bisekt'$"):
        eagerctl.bisekt  # noqa: B018
    assert not hasattr(eagerctl, "replay_nothing")


def test_type_checkers_see_every_lazy_name() -> None:
    # mypy and the API reference read the `if TYPE_CHECKING:` imports: each lazy
    # name is imported there from the module the table names.
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                for alias in imp.names:
                    seen[alias.asname or alias.name] = "." * imp.level + (imp.module or "")
    assert seen == eagerctl._LAZY


def test_the_api_reference_documents_every_exported_name() -> None:
    griffe = pytest.importorskip("griffe")
    package = griffe.load("eagerctl", search_paths=[str(PACKAGE.parent)], resolve_aliases=True)
    for name in eagerctl.__all__:
        member = package.members[name]
        assert member.is_exported, name
        assert member.docstring is not None and member.docstring.value, name


def test_island_error_is_named_as_users_import_it_when_islands_load_first() -> None:
    got = run_python(
        """
        import json, pickle, traceback
        import eagerctl
        from eagerctl._island import IslandError  # loaded as a @debuggable island loads it
        try:
            raise IslandError("not here")
        except IslandError as exc:
            last = traceback.format_exception(exc)[-1]
            again = pickle.loads(pickle.dumps(exc))
        print(json.dumps([last, type(again) is eagerctl.IslandError, IslandError.__module__]))
        """
    )
    assert got == ["eagerctl.IslandError: not here\n", True, "eagerctl"]

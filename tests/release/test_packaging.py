"""What a user installs: one version everywhere, the exports, and a wheel that carries what it must.

The wheel is built from a copy of the source (the checkout is shared, and a
build writes into it), without build isolation (no network): the same
setuptools backend pip would use. CI (.ci/run) also installs that wheel in a
fresh venv and runs the suite against it.
"""

from __future__ import annotations

import email
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import eagerctl
from eagerctl._cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    from eagerctl._version import __version__

    assert eagerctl.__version__ == __version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"eagerctl {__version__}\n"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "eagerctl._version.__version__" }' in pyproject
    assert "\nversion = " not in pyproject.split("[tool.setuptools.dynamic]")[0]  # written nowhere else
    assert f"## {__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_island_error_is_exported_and_is_an_eagerctl_error() -> None:
    assert "IslandError" in eagerctl.__all__
    assert issubclass(eagerctl.IslandError, eagerctl.EagerctlError)
    assert issubclass(eagerctl.EagerctlError, RuntimeError)
    assert eagerctl.__all__ == sorted(eagerctl.__all__)


def test_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build.__main__")  # the `build` frontend (in the `test` extra)
    if not (ROOT / "eagerctl" / "_version.py").is_file():
        pytest.skip("no source tree next to the tests (the suite runs against an installed wheel)")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "eagerctl", src / "eagerctl", ignore=shutil.ignore_patterns("__pycache__"))
    out = src / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--no-isolation",
                           "--outdir", str(out), str(src)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (found,) = out.glob("eagerctl-*.whl")
    return found


def test_wheel_carries_py_typed_the_plugin_the_command_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(zf.read(f"{dist_info}/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert "eagerctl/py.typed" in names
    assert "eagerctl/_version.py" in names
    assert {"eagerctl/_bisect/__init__.py", "eagerctl/_bisect/api.py"} <= names  # subpackages ship too
    assert any(n.startswith(f"{dist_info}/") and n.endswith("LICENSE") for n in names), sorted(names)
    assert "[pytest11]\neagerctl = eagerctl._pytest_plugin" in entry_points
    assert "[console_scripts]\neagerctl = eagerctl._cli:main" in entry_points
    assert metadata["Version"] == eagerctl.__version__
    assert metadata["Requires-Python"] == ">=3.10"
    urls = metadata.get_all("Project-URL") or []
    assert {u.split(",")[0] for u in urls} >= {"Homepage", "Documentation", "Source", "Changelog"}
    assert not any(n.startswith(("tests/", "docs/", "benchmarks/")) for n in names)


def test_sdist_carries_the_sources_license_and_changelog(wheel: Path) -> None:
    import tarfile

    (sdist,) = wheel.parent.glob("eagerctl-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "LICENSE", "eagerctl/py.typed", "eagerctl/_version.py"} <= names


def test_installed_metadata_matches_when_installed() -> None:
    try:
        installed = importlib.metadata.version("eagerctl")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("eagerctl is not installed as a distribution here (run from the source tree)")
    assert installed == eagerctl.__version__
    plugins = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert plugins.get("eagerctl") == "eagerctl._pytest_plugin"


def test_errors_are_named_as_users_import_them() -> None:
    import pickle
    import traceback

    import eagerctl

    try:
        raise eagerctl.IslandError("an island cannot be built here")
    except eagerctl.EagerctlError as exc:
        last = traceback.format_exception(exc)[-1]
        again = pickle.loads(pickle.dumps(exc))
    assert last == "eagerctl.IslandError: an island cannot be built here\n"
    assert type(again) is eagerctl.IslandError
    assert repr(eagerctl.EagerctlWarning) == "<class 'eagerctl.EagerctlWarning'>"


def _quickstart_config_settings() -> dict[str, str]:
    """The `--config-settings KEY=VALUE` of the README quickstart's editable install."""
    (command,) = [line for line in (ROOT / "README.md").read_text().splitlines()
                  if "pip install -e" in line and line.startswith("python3 -m venv")]
    return dict(s.split("=", 1) for s in re.findall(r"--config-settings[ =](\S+)", command))


def test_the_quickstarts_editable_install_is_typed(tmp_path: Path) -> None:
    """mypy run in the user's own project (outside the checkout) sees eagerctl's types.

    setuptools' default editable install of a flat layout hides the package behind
    an import hook that mypy cannot follow ("Cannot find implementation or library
    stub"); the quickstart asks for `editable_mode=compat`, a plain path entry.
    Built with the README's settings by setuptools' own editable hook, installed by
    unpacking into a venv without pip (no network), checked by mypy --strict.
    """
    pytest.importorskip("mypy")
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 71:  # older ones build wheels through the wheel package
        pytest.importorskip("wheel")
    if not (ROOT / "eagerctl" / "_version.py").is_file():
        pytest.skip("no source tree next to the tests (the suite runs against an installed wheel)")
    settings = _quickstart_config_settings()
    assert settings == {"editable_mode": "compat"}
    src = tmp_path / "checkout"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "eagerctl", src / "eagerctl", ignore=shutil.ignore_patterns("__pycache__"))
    build = ("import sys; from setuptools import build_meta; "
             "print(build_meta.build_editable(sys.argv[1], dict(a.split('=', 1) for a in sys.argv[2:])))")
    proc = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist"),
                           *(f"{k}={v}" for k, v in settings.items())],
                          cwd=src, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    editable_wheel = tmp_path / "dist" / proc.stdout.strip().splitlines()[-1]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with zipfile.ZipFile(editable_wheel) as zf:
        zf.extractall(purelib)
    project = tmp_path / "my_project"
    project.mkdir()
    (project / "train.py").write_text("import eagerctl\n\nreveal_type(eagerctl.is_eager())\n"
                                      "with eagerctl.eager_scope(process=True):\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           "--python-executable", str(python), "train.py"],
                          cwd=project, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r'train\.py:3: note: Revealed type is "(builtins\.)?bool"', proc.stdout), proc.stdout


def test_ci_runs_the_readme_quickstart_verbatim() -> None:
    """.ci/run's first step is the README's two quickstart commands, as written (the front door works)."""
    if not (ROOT / ".ci" / "run").is_file():
        pytest.skip("no .ci/ next to the tests (CI's wheel step runs the suite from a copy of the tests)")
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```console\n", 1)[1].split("```", 1)[0]
    commands = block.strip().splitlines()
    assert len(commands) == 2 and commands[1] == ".venv/bin/python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"\n  {commands[0]}\n" in ci
    assert "\n  run_tests .venv/bin/python\n" in ci  # command 2, with only the exit-5 check added
    getting_started = (ROOT / "docs" / "getting-started.md").read_text()
    assert f"\n{commands[0]}\n{commands[1]}\n" in getting_started


def test_every_module_of_the_installed_package_imports() -> None:
    """The package as installed (the wheel in CI) has every module its lazy imports reach."""
    import importlib
    import pkgutil

    import eagerctl

    names = [m.name for m in pkgutil.walk_packages(eagerctl.__path__, "eagerctl.")
             if not m.name.endswith(".__main__")]  # `python -m eagerctl`: importing it runs the command
    assert {"eagerctl._replay", "eagerctl._island", "eagerctl._bisect", "eagerctl._breakpoints"} <= set(names)
    for name in names:
        importlib.import_module(name)
    for name in eagerctl.__all__:  # the lazily loaded names too
        assert getattr(eagerctl, name) is not None, name

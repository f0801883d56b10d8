"""Every ```python block in README.md and docs/*.md runs as written, and prints what the page shows.

pytest-examples finds the blocks and runs each one as a `__main__` module from a
file of its own (tracebacks point at the page's lines). A ```text (or ```output)
block that follows a Python block, with only blank lines between, is its expected
output: what it writes to stdout and stderr, in order, and for a block that
raises, the last line of the traceback (`ValueError: ...`); the "Traceback" line
and the indented frames under it may be shown or left out. Compared after
normalising only what changes from run to run: addresses, timings (and the
speed ratios made of them: the figure, never the words around it), temporary
paths, and TensorFlow's own log lines. Everything else is compared literally.

Each page runs in a child pytest process of its own: the examples import
TensorFlow, configure devices (`tf.distribute`), and may switch on irreversible
global modes (`tf.data.experimental.enable_debug_mode()`), which must not leak
into the rest of the suite or into other pages. Inside a page the blocks run in
order in one process (like a reader running them one after the other), each
starting from a fresh Keras session, and conftest's guard fails a block that
leaves a scope active or TensorFlow's flag changed.

The pages show TF 2.21 with Keras 3. On TF 2.13 (Keras 2) every block runs,
and its output is compared too unless the block uses Keras (layer and variable
names, defaults and messages differ between Keras 2 and 3); there a TensorFlow
version shown in the output (`PAGES_TF`) stands for the one running.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from helpers import normalise

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHILD_PAGE = os.environ.get("EAGERCTL_DOCS_PAGE")
REPO_BLOB = "https://github.com/eagerctl/eagerctl/blob/main/"
PAGES_TF = "2.21.0"  # the TensorFlow whose output the pages show; the running one's version stands for it

_PY_FENCE = re.compile(r"^ *```+ *py", re.IGNORECASE | re.MULTILINE)
_OUTPUT_FENCE = re.compile(r"\n*( *)(```+) *(?:text|output)[^\n]*\n(.*?)\n\1\2", re.DOTALL)


def _has_python_blocks(page: Path) -> bool:
    return bool(_PY_FENCE.search(page.read_text()))


def _keras_major() -> int:
    import keras  # Keras 3, or in TF 2.13-2.15 the Keras 2 that tf.keras is

    return int(str(keras.__version__).split(".")[0])


# -- normalisation (`normalise`, in helpers: the notebook test uses it too) ----


def expected_output(example: Any) -> str | None:
    """The ```text/```output block right after the example, or None."""
    text = example.path.read_text()
    closing = text.index("\n", example.end_index) + 1 if "\n" in text[example.end_index :] else len(text)
    match = _OUTPUT_FENCE.match(text, closing)
    if match is None:
        return None
    indent = len(match.group(1))
    return "\n".join(line[indent:] for line in match.group(3).splitlines())


def _drop_traceback_frames(lines: list[str]) -> list[str]:
    """Remove a shown "Traceback (most recent call last):" line and the indented frames under it."""
    out: list[str] = []
    in_traceback = False
    for line in lines:
        if line == "Traceback (most recent call last):":
            in_traceback = True
            continue
        if in_traceback and (line.startswith(" ") or not line):
            continue
        in_traceback = False
        out.append(line)
    return out


def _describe(exc: BaseException) -> str:
    """The traceback, read frame by frame (pytest cannot format the one pytest-examples builds)."""
    lines = ["Traceback (most recent call last):"]
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f"  {code.co_filename}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    lines.append(f"{type(exc).__name__}: {exc}")
    return "\n".join(lines)


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, *_: Any) -> None:
    """Print eagerctl's warnings as Python would in a terminal; TensorFlow's deprecation noise is left out."""
    if category.__name__.startswith("Eagerctl"):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line=""))


# -- the parent: one child process per page ----------------------------------------

if CHILD_PAGE is None:

    def test_normalise_hides_measurements_and_nothing_else() -> None:
        """Times and the figure of a speed ratio vary per run; the words around them are output."""
        shown = "time per call: graph 457 us, eager 46.2 us, slowdown 0.1x  (10 timed calls each)"
        printed = "time per call: graph 512 us, eager 61.0 us, eager 6.7x faster  (10 timed calls each)"
        assert normalise(shown) != normalise(printed)
        assert normalise(printed) == normalise(printed.replace("6.7x", "9.9x").replace("512 us", "1.2 ms"))
        assert normalise("slowdown 7.1x") == normalise("slowdown 14.9x")
        # a figure that is not a measurement is compared as written
        assert normalise("a 3x3 kernel, 2x upsampling") != normalise("a 3x3 kernel, 4x upsampling")
        assert normalise("traces 2, calls 10") != normalise("traces 3, calls 10")

    def test_readme_links_and_size() -> None:
        """The README is the short front door (at most ~12 KB); its links are absolute and resolve.

        The package index shows the README without the repository around it, where a
        relative link leads nowhere: every link to a file of the repository is written
        as its GitHub address, and names a file that exists here.
        """
        text = (ROOT / "README.md").read_text()
        assert len(text.encode()) <= 12_500
        links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
        relative = [t for t in links if not re.match(r"https?://", t)]
        assert not relative, f"README links that break on the package index (make them absolute): {relative}"
        targets = [t.removeprefix(REPO_BLOB) for t in links if t.startswith(REPO_BLOB)]
        assert "docs/recipes.md" in targets
        missing = [t for t in targets if not (ROOT / t).exists()]
        assert not missing, f"README links to files that do not exist: {missing}"
        nav = (ROOT / "mkdocs.yml").read_text()
        unlisted = [p.name for p in (ROOT / "docs").glob("*.md") if f": {p.name}" not in nav]
        assert not unlisted, f"docs pages missing from the mkdocs.yml nav: {unlisted}"

    @pytest.mark.parametrize(
        "page",
        [p for p in PAGES if _has_python_blocks(p)],
        ids=lambda p: str(p.relative_to(ROOT)),
    )
    def test_page_examples(page: Path, tmp_path: Path) -> None:
        pytest.importorskip("pytest_examples")  # in the `test` extra
        env = dict(os.environ, EAGERCTL_DOCS_PAGE=str(page), PYTHONBREAKPOINT="0", TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("PYTEST_ADDOPTS", None)
        proc = subprocess.run(
            # -n 0: the page's blocks run in order in this one child (pyproject's addopts spread tests
            # over xdist workers); -p no:randomly: and in the page's order.
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:logging", "-n", "0",
             "-p", "no:randomly", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), __file__],
            check=False, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=900,
        )
        report = proc.stdout[-12000:] + proc.stderr[-3000:]
        assert proc.returncode != 5, f"{page.name}: no example collected although the page has Python blocks"
        assert proc.returncode == 0, f"examples in {page.relative_to(ROOT)} failed:\n{report}"


# -- the child: the examples of one page, in order, in this process ----------------

else:
    pytest_examples = pytest.importorskip("pytest_examples")
    EXAMPLES = list(pytest_examples.find_examples(CHILD_PAGE))

    @pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{Path(e.path).name}:{e.start_line}")
    def test_example(example: Any, eval_example: Any) -> None:
        settings = example.prefix_settings()
        if settings.get("test") == "skip":
            pytest.skip("fenced with test=\"skip\"")
        import tensorflow as tf

        keras3 = _keras_major() >= 3
        if settings.get("requires") == "keras3" and not keras3:
            pytest.skip("written for Keras 3")
        tf.keras.backend.clear_session()  # fresh layer names (dense, dense_1, ...) per block

        expected = expected_output(example)
        buffer = io.StringIO()
        raised: BaseException | None = None
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), \
                warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            try:
                eval_example.run(example, rewrite_assertions=False)
            except Exception as exc:  # noqa: BLE001 (a shown traceback is part of the expected output)
                raised = exc
        if raised is not None:
            shown = _drop_traceback_frames(normalise(expected or ""))
            if not shown or not shown[-1].startswith(type(raised).__name__ + ":"):
                pytest.fail(f"{example} raised, and the page does not show it:\n{_describe(raised)}",
                            pytrace=False)
            print(f"{type(raised).__name__}: {raised}", file=buffer)
        if expected is None or not (keras3 or "keras" not in example.source):
            return  # it ran; the page shows Keras 3 output
        example_file = eval_example.tmp_path / f"{example.module_name}.py"
        title = settings.get("title")
        printed = buffer.getvalue().replace(tf.__version__, PAGES_TF)
        got = _drop_traceback_frames(normalise(printed, example_file=example_file, title=title))
        want = _drop_traceback_frames(normalise(expected))
        if got != want:
            diff = "\n".join(difflib.unified_diff(want, got, "shown in the page", "printed", lineterm=""))
            pytest.fail(f"{example}: the output differs from the page (normalised):\n{diff}", pytrace=False)

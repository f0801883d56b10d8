"""Why one culprit's compiled and eager runs differ: the patterns eagerctl recognizes, most specific first.

What eagerctl saw while tracing (Python state the candidate changed, ops it
built, variables it created), what its source says (Python or NumPy random,
branches on `tf.executing_eagerly()` or on Python values), and what its two
outputs look like (NaN/Inf in one mode only, differences at the level of
float rounding).
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from collections.abc import Sequence
from typing import Any

from .. import _compare
from .candidates import Candidate
from .code import is_user_code
from .report import Cause

FLOAT_ROUNDING_RTOL = 1e-3
FLOAT_ROUNDING_ATOL = 1e-5

SUMMARIES = {
    "trace-side-effect": "a Python side effect that runs only while tracing: compiled calls reuse the value "
                         "it had when traced, eager calls run it every time ({} while traced)",
    "python-random": "Python or NumPy random numbers: drawn once while tracing and frozen into the graph as "
                     "constants, drawn anew at every eager call (use tf.random with a seed or a "
                     "tf.random.Generator)",
    "stateful-random": "stateful random ops without a fixed stream: compiled and eager draw different "
                       "numbers (use tf.random.stateless_* with explicit seeds or a tf.random.Generator)",
    "control-flow": "Python control flow on values: the branch is chosen once while tracing (or on the "
                    "execution mode), so compiled and eager run different code",
}


def _source_tree(code: Any) -> tuple[ast.AST, int] | None:
    try:
        lines, _ = inspect.findsource(code)
    except (OSError, TypeError):
        return None
    first = code.co_firstlineno - 1
    block = inspect.getblock(lines[first:])
    try:
        return ast.parse(textwrap.dedent("".join(block))), first
    except SyntaxError:
        return None


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return "?"


def source_findings(code: Any, watched_names: set[str]) -> dict[str, list[str]]:
    """Patterns in a candidate's own source: Python/NumPy random, branches on mode or Python values."""
    found: dict[str, list[str]] = {"python-random": [], "control-flow": [], "tf-random": []}
    parsed = _source_tree(code) if code is not None else None
    if parsed is None:
        return found
    tree, offset = parsed
    filename = os.path.basename(code.co_filename)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0) + offset
        if isinstance(node, ast.Call):
            _call_finding(found, _dotted(node.func), node, f"{filename}:{line}")
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            _branch_finding(found, node.test, watched_names, f"{filename}:{line}")
    return found


def _call_finding(found: dict[str, list[str]], name: str, node: ast.Call, at: str) -> None:
    if name.startswith(("random.", "np.random.", "numpy.random.")):
        found["python-random"].append(f"{name}() at {at} draws a Python-side random number")
    elif name.startswith(("tf.random.", "tensorflow.random.")) and not name.startswith(
            ("tf.random.stateless", "tf.random.Generator", "tf.random.set_seed")) and not any(
            k.arg == "seed" for k in node.keywords):
        found["tf-random"].append(f"{name}() without a seed at {at}")


def _branch_finding(found: dict[str, list[str]], test: ast.expr, watched_names: set[str], at: str) -> None:
    text = ast.unparse(test)
    names = {n.attr if isinstance(n, ast.Attribute) else n.id
             for n in ast.walk(test) if isinstance(n, (ast.Name, ast.Attribute))}
    if "executing_eagerly" in text:
        found["control-flow"].append(
            f"`{text}` at {at} branches on the execution mode: compiled and eager take different branches")
    elif ".numpy()" in text or names & watched_names:
        what = sorted(names & watched_names)
        found["control-flow"].append(
            f"`{text}` at {at} is Python control flow on "
            f"{'the Python value ' + ', '.join(what) if what else 'a value'}: decided once while "
            "tracing, on every call when eager")


def nonfinite_note(graph_flat: dict[str, Any] | None, eager_flat: dict[str, Any] | None,
                   np: Any) -> str | None:
    if not graph_flat or not eager_flat:
        return None
    for path, g in graph_flat.items():
        e = eager_flat.get(path)
        if not (isinstance(g, np.ndarray) and isinstance(e, np.ndarray)) or g.dtype.kind not in "fc":
            continue
        if e.shape != g.shape:
            continue
        g_bad, e_bad = ~np.isfinite(g), ~np.isfinite(e)
        if g_bad.any() and not e_bad.any():
            return f"{path} holds {int(g_bad.sum())} NaN/Inf value(s) compiled and none eagerly"
        if e_bad.any() and not g_bad.any():
            return f"{path} holds {int(e_bad.sum())} NaN/Inf value(s) eagerly and none compiled"
    return None


def rounding_level(rows: list[_compare.Row], a: dict[str, Any] | None, b: dict[str, Any] | None,
                   np: Any) -> bool:
    """Every differing value within float-rounding distance (finite floats, rtol 1e-3)."""
    if not rows or not a or not b:
        return False
    for row in rows:
        x, y = a.get(row.path), b.get(row.path)
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)) or x.shape != y.shape:
            return False
        if x.dtype.kind not in "fc" or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
            return False
        if not np.allclose(x, y, rtol=FLOAT_ROUNDING_RTOL, atol=FLOAT_ROUNDING_ATOL):
            return False
    return True


def flags(c: Candidate) -> bool:
    """Whether discovery already saw a known cause in `c`: a state change, an op with hidden state, or
    Python random or value-dependent branches in its own source."""
    if c.state_changes or nondeterministic_ops(c):
        return True
    if c.code is None or not is_user_code(c.code):
        return False
    found = source_findings(c.code, {name for _, name in c.watched})
    return any(found.values())


def nondeterministic_ops(candidate: Candidate) -> list[Any]:
    """The ops it built whose kernels keep hidden state (TensorFlow's op registry: see `_compare`)."""
    return [op for op in candidate.ops if _compare.is_nondeterministic_op(op.type)]


def explain(c: Candidate, rows: list[_compare.Row], *, created: Sequence[Any], graph_flat: Any,
            eager_flat: Any, np: Any, extra: Sequence[str] = ()) -> Cause:
    """The likely cause for culprit `c`, most specific first, with every finding as evidence."""
    watched_names = {name for _, name in c.watched}
    found = source_findings(c.code if c.kind != "layer" or is_user_code(c.code) else None, watched_names)
    random_ops = nondeterministic_ops(c)
    evidence: list[str] = list(extra)
    kinds: list[tuple[str, str]] = []
    nonfinite = nonfinite_note(graph_flat, eager_flat, np)
    if nonfinite:
        kinds.append(("nonfinite", f"numerics: NaN or Inf in one mode only ({nonfinite})"))
    if c.state_changes:
        evidence += [f"while traced, {change}" for change in c.state_changes]
        kinds.append(("trace-side-effect", SUMMARIES["trace-side-effect"].format(c.state_changes[0])))
    if found["python-random"]:
        evidence += found["python-random"]
        kinds.append(("python-random", SUMMARIES["python-random"]))
    if random_ops or found["tf-random"]:
        names = sorted({f"{op.type} ({op.name})" for op in random_ops})
        evidence += [f"builds stateful op {n}, whose kernel keeps its own state" for n in names[:3]]
        evidence += found["tf-random"]
        kinds.append(("stateful-random", SUMMARIES["stateful-random"]))
    if created:
        evidence += [f"creates tf.Variable {_compare._variable_name(v)!r} while traced" for v in created[:3]]
        kinds.append((
            "variable-creation",
            "a variable created inside the function: compiled, it is created once and keeps its value across "
            "calls; eager, a new one is made at every call"))
    if rounding_level(rows, graph_flat, eager_flat, np):
        worst = max(r.max_abs_diff for r in rows)
        kinds.append((
            "float-rounding",
            f"numerics at the level of float rounding (max |diff| {worst:.3g}): the compiled graph orders or "
            "fuses float operations differently; not a bug, compare with a looser rtol/atol"))
    if found["control-flow"]:
        evidence += found["control-flow"]
        kinds.append(("control-flow", SUMMARIES["control-flow"]))
    if not kinds:
        return Cause("unknown", "no known pattern explains it: its outputs differ between its two modes; "
                     "run it under @eagerctl.debuggable and step through it", evidence)
    kind, summary = kinds[0]
    return Cause(kind, summary, evidence)


def suspect_cause(code: Any, watched: Sequence[tuple[Any, str]],
                  state_changes: Sequence[str]) -> Cause | None:
    """The cause a profiler-only function's trace or source shows, or None."""
    found = source_findings(code, {name for _, name in watched})
    note = ("named from its trace and source: it is called outside AutoGraph (by Keras or "
            "TensorFlow), so bisect cannot make it eager by itself")
    if state_changes:
        return Cause("trace-side-effect", SUMMARIES["trace-side-effect"].format(state_changes[0]),
                     [*(f"while traced, {c}" for c in state_changes), note])
    for kind, key in (("python-random", "python-random"), ("control-flow", "control-flow"),
                      ("stateful-random", "tf-random")):
        if found[key]:
            return Cause(kind, SUMMARIES[kind], [*found[key], note])
    return None

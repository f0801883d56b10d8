"""What `bisect` returns: `Bisection`, its `Culprit`s and their `Cause`s, and how each reads.

The result types own their presentation (`__str__`, `_repr_html_`); nothing
here runs TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _compare

_MAX_PRINTED_LINES = 12
"""Lines of what the runs printed that the report shows (all of them are in `Bisection.printed`)."""


class Cause:
    """The likely cause of one culprit's difference, with what eagerctl saw.

    `kind` is one of ``"frozen-value"``, ``"trace-side-effect"``,
    ``"stateful-random"``, ``"python-random"``, ``"control-flow"``,
    ``"variable-creation"``, ``"nonfinite"``, ``"float-rounding"``,
    ``"graph-only-error"``, ``"xla"``, ``"stale-train-function"`` or
    ``"unknown"``; `summary` is one sentence; `evidence` the facts behind it.
    """

    __slots__ = ("evidence", "kind", "summary")

    def __init__(self, kind: str, summary: str, evidence: Sequence[str] = ()) -> None:
        self.kind = kind
        self.summary = summary
        self.evidence = tuple(evidence)

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return f"Cause(kind={self.kind!r}, summary={self.summary!r})"


class Culprit:
    """One callable responsible for a difference between graph and eager.

    Attributes:
        qualname: ``"Scale.call"``, ``"loss_fn"``, ...
        where: ``"path/to/file.py:12"`` (where its code starts).
        kind: ``"tf.function"``, ``"layer"``, ``"model"``, ``"function"`` or
            ``"fn itself"`` (the difference is in the bisected function's own body).
        name: the layer's name for layers and models, else the qualname.
        path: the chain of candidates from `fn` down to it, e.g. ``("model", "scale")``.
        outputs: paths of its outputs that differ between its two modes given
            the same inputs (e.g. ``("output",)``, ``("output[1]",)``).
        max_abs_diff: the largest of those differences (NaN if not measured).
        cause: a `Cause`.
        together: True when it changes the result only together with the other
            culprits marked so.
    """

    __slots__ = ("cause", "kind", "max_abs_diff", "name", "outputs", "path", "qualname", "together", "where")

    def __init__(self, *, qualname: str, where: str, kind: str, name: str, path: Sequence[str],
                 outputs: Sequence[str], max_abs_diff: float, cause: Cause, together: bool = False) -> None:
        self.qualname = qualname
        self.where = where
        self.kind = kind
        self.name = name
        self.path = tuple(path)
        self.outputs = tuple(outputs)
        self.max_abs_diff = max_abs_diff
        self.cause = cause
        self.together = together

    @property
    def label(self) -> str:
        if self.kind in ("layer", "model") and self.name != self.qualname:
            return f"{self.qualname} ({self.kind} {self.name!r})"
        return f"{self.qualname} ({self.kind})"

    def __repr__(self) -> str:
        return (f"Culprit(qualname={self.qualname!r}, where={self.where!r}, kind={self.kind!r}, "
                f"outputs={list(self.outputs)!r}, max_abs_diff={self.max_abs_diff:.3g}, "
                f"cause={self.cause.kind!r})")

    def report_lines(self, number: int) -> list[str]:
        lines = [f"  culprit {number}: {self.label}  at {self.where}"]
        if len(self.path) > 1:
            lines.append(f"    called as: {' > '.join(self.path)}")
        lines.append(f"    cause: {self.cause.summary}")
        lines.extend(f"      - {e}" for e in self.cause.evidence)
        if self.outputs:
            lines.append(f"    its outputs that differ, same inputs in both modes: {', '.join(self.outputs)} "
                         f"(max |graph - eager| {_compare._fmt_diff(self.max_abs_diff)})")
        elif self.max_abs_diff == 0 and self.together:
            lines.append("    alone, its two modes give the same outputs: it changes the result only "
                         "together with the other culprit(s) above")
        elif self.max_abs_diff == 0:
            lines.append("    its outputs agree when it runs alone with the same inputs: "
                         "the difference builds up across it and its callers")
        return lines


class Bisection:
    """What `bisect()` found; `str()` of it is a readable report.

    Attributes:
        name (str): the bisected function's name.
        match (bool): True when compiled and eager agree (nothing to bisect).
        culprits (tuple[Culprit, ...]): the most responsible first (empty when `match`).
        verdict (str): one plain sentence: what differs and where.
        mismatches (tuple[str, ...]): the paths of the values that differ between the
            compiled and the eager run of `fn` (as in `compare`).
        max_abs_diff (float): the largest absolute difference between them.
        runs (int): how many times `fn` was run (reference runs and trials).
        traces (int): how many times `fn` was traced (one per trial).
        candidates (tuple[str, ...]): qualnames (with kind) of every candidate found.
        steps (tuple[str, ...]): how the culprits were found, one line per step.
        seconds (float): wall time of the whole bisection.
        printed (str): what bisect's runs of `fn` printed to stdout (shown in the
            report, never on the program's stdout).
    """

    __slots__ = ("candidates", "culprits", "match", "max_abs_diff", "mismatches", "name", "printed", "runs",
                 "seconds", "steps", "traces", "verdict")

    def __init__(self, *, name: str, match: bool, culprits: Sequence[Culprit], verdict: str,
                 mismatches: Sequence[str], max_abs_diff: float, runs: int, traces: int,
                 candidates: Sequence[str], steps: Sequence[str], seconds: float, printed: str = "") -> None:
        self.name = name
        self.match = match
        self.culprits = tuple(culprits)
        self.verdict = verdict
        self.mismatches = tuple(mismatches)
        self.max_abs_diff = max_abs_diff
        self.runs = runs
        self.traces = traces
        self.candidates = tuple(candidates)
        self.steps = tuple(steps)
        self.seconds = seconds
        self.printed = printed

    def __repr__(self) -> str:
        culprits = [c.qualname for c in self.culprits]
        return (f"<Bisection {self.name}: match={self.match}, culprits={culprits!r}, "
                f"runs={self.runs}, seconds={self.seconds:.3g}>")

    def __str__(self) -> str:
        lines = [f"bisect({self.name}): {self.verdict}"]
        for i, c in enumerate(self.culprits, 1):
            lines += c.report_lines(i)
        if self.mismatches:
            shown = ", ".join(self.mismatches[:6]) + (" ..." if len(self.mismatches) > 6 else "")
            lines.append(f"  {self.name} differs in: {shown} (max |graph - eager| "
                         f"{_compare._fmt_diff(self.max_abs_diff)})")
        lines.append(f"  how: {plural(self.runs, 'run')} and {plural(self.traces, 'trace')} of {self.name} "
                     f"in {_compare._fmt_seconds(self.seconds)}; {len(self.candidates)} candidate"
                     f"{'s' if len(self.candidates) != 1 else ''} examined")
        lines.extend(f"    {step}" for step in self.steps)
        lines += self._printed_lines()
        return "\n".join(lines)

    def _printed_lines(self) -> list[str]:
        printed = self.printed.splitlines()
        if not printed:
            return []
        lines = [f"  bisect's runs of {self.name} printed (not the program's output):"]
        lines += [f"    | {line}" for line in printed[:_MAX_PRINTED_LINES]]
        if len(printed) > _MAX_PRINTED_LINES:
            lines.append(f"    ... and {len(printed) - _MAX_PRINTED_LINES} more lines (Bisection.printed)")
        return lines

    def _repr_html_(self) -> str:
        import html

        esc = html.escape
        rows = []
        for i, c in enumerate(self.culprits, 1):
            evidence = "".join(f"<li>{esc(e)}</li>" for e in c.cause.evidence)
            rows.append(
                f"<tr><td>{i}</td><td><code>{esc(c.qualname)}</code><br><small>{esc(c.kind)} "
                f"{esc(c.name if c.name != c.qualname else '')}</small></td>"
                f"<td><code>{esc(c.where)}</code></td><td>{esc(c.cause.summary)}<ul>{evidence}</ul></td>"
                f"<td>{esc(', '.join(c.outputs))}</td>"
                f"<td>{esc(_compare._fmt_diff(c.max_abs_diff))}</td></tr>")
        header = ("<tr><th>#</th><th>culprit</th><th>where</th><th>likely cause</th>"
                  "<th>differing outputs</th><th>max |diff|</th></tr>")
        table = f"<table>{header}{''.join(rows)}</table>" if rows else ""
        steps = "".join(f"<li>{esc(s)}</li>" for s in self.steps)
        printed = f"<pre>{esc(self.printed)}</pre>" if self.printed else ""
        return (f"<div><p><b>bisect({esc(self.name)})</b>: {esc(self.verdict)}</p>{table}"
                f"<p><small>{self.runs} runs, {self.traces} traces, {len(self.candidates)} candidates, "
                f"{esc(_compare._fmt_seconds(self.seconds))}</small></p><ul>{steps}</ul>{printed}</div>")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def verdict_text(name: str, culprits: Sequence[Culprit]) -> str:
    """The one sentence that opens the report."""
    if not culprits:
        return "graph and eager DIFFER, and no candidate explains it"
    if len(culprits) == 1 and culprits[0].kind == "fn itself":
        return (f"graph and eager DIFFER, and the difference is in {name} itself: no nested candidate "
                "explains it")
    together = [c for c in culprits if c.together]
    if together:
        return ("graph and eager DIFFER only when " + " and ".join(c.qualname for c in together)
                + " run eagerly together: no one of them alone explains it")
    labels = [f"{c.qualname} ({c.name!r})" if c.kind in ("layer", "model") else c.qualname for c in culprits]
    return f"graph and eager DIFFER because of {', '.join(labels)}"


__all__ = ["Bisection", "Cause", "Culprit"]

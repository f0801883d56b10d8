"""How results look: figures formatted for reading, and the HTML tables notebooks show.

Below the result types: `Status` (`_status`) and `Comparison` (`_compare`)
call in here for their `_repr_html_`, and their text tables use the same
formatting of modes, differences, times and speeds. This module imports
nothing of eagerctl, so every module can use it and no import runs back up;
the IPython extension (`_ipython`) only wires magics. It reads the results
it renders by their attributes.
"""

from __future__ import annotations

import html
import math
from typing import Any

MAX_ROWS = 30  # rows of matching values a comparison table shows (differing ones always show)
TABLE_STYLE = "border-collapse:collapse;font-family:monospace;font-size:90%"


# -- figures and words ----------------------------------------------------------------------------------

def mode(value: bool | None) -> str:
    """A mode as a word: eager (True), graph (False) or "-" (None: not set)."""
    return "-" if value is None else ("eager" if value else "graph")


def fmt_diff(value: float) -> str:
    """A difference to 3 significant digits, 0 as "0"."""
    if value == 0:
        return "0"
    return f"{value:.3g}"


def fmt_seconds(seconds: float) -> str:
    """A duration in the unit that reads best: s, ms or us."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def speed(slowdown: float) -> str:
    """Eager against graph, said the way round that reads: a slowdown, or how much faster eager is."""
    if math.isnan(slowdown):
        return "slowdown n/a"
    if slowdown >= 1 or slowdown <= 0:
        return f"slowdown {slowdown:.1f}x"
    return f"eager {1 / slowdown:.1f}x faster"


# -- HTML for notebooks ---------------------------------------------------------------------------------

def _cells(values: list[str], tag: str = "td", style: str = "") -> str:
    attr = f' style="{style}"' if style else ""
    return "".join(f"<{tag}{attr}>{html.escape(v)}</{tag}>" for v in values)


def status_html(status: Any) -> str:
    """A `Status` as an HTML table (its `_repr_html_`)."""
    rows = [
        ("tensorflow", status.tensorflow or "not imported"),
        ("hook installed", "yes" if status.hook_installed else "no"),
        ("process flag", mode(status.process_flag)),
        ("baseline", mode(status.baseline)),
        ("local override", mode(status.override)),
        ("effective here", mode(status.is_eager)),
    ]
    out = [f'<table class="eagerctl-status" style="{TABLE_STYLE}">']
    out += [f'<tr><th style="text-align:left">{html.escape(k)}</th><td style="text-align:left">'
            f"<b>{html.escape(v)}</b></td></tr>" if k == "effective here" else
            f'<tr><th style="text-align:left">{html.escape(k)}</th><td style="text-align:left">'
            f"{html.escape(v)}</td></tr>" for k, v in rows]
    out.append("</table>")
    if not status.scopes:
        out.append("<p><i>no active scopes</i></p>")
    else:
        out.append(f'<table class="eagerctl-scopes" style="{TABLE_STYLE}">')
        header = _cells(["kind", "mode", "scope", "thread", "entered at"], "th", "text-align:left")
        out.append(f"<tr>{header}</tr>")
        for info in status.scopes:
            out.append("<tr>" + _cells([info.kind, mode(info.enabled), info.scope, info.thread, info.where],
                                       "td", "text-align:left") + "</tr>")
        out.append("</table>")
    replays = getattr(status, "replays", ())
    if replays:  # shown only when some are active, as in str()
        out.append(f'<table class="eagerctl-replays" style="{TABLE_STYLE}">')
        header = _cells(["replay", "in force here", "thread", "entered at"], "th", "text-align:left")
        out.append(f"<tr>{header}</tr>")
        for rep in replays:
            out.append("<tr>" + _cells([rep.replay, "yes" if rep.here else "no", rep.thread, rep.where],
                                       "td", "text-align:left") + "</tr>")
        out.append("</table>")
    return "\n".join(out)


def comparison_html(result: Any) -> str:
    """A `Comparison` as HTML (its `_repr_html_`): the verdict, then the values, differing ones first in red.

    The same content as `str(result)`, whose wording (verdict, explanations)
    it takes from the `Comparison` itself.
    """
    verdict = result._verdict() if hasattr(result, "_verdict") else (
        "graph and eager MATCH" if result.match else f"graph and eager DIFFER in {len(result.mismatches)}")
    style = "" if result.match else ' style="color:#c00"'
    out = [f"<p><code>compare({html.escape(result.name)})</code>: <b{style}>{html.escape(verdict)}</b> "
           f"(rtol={result.rtol:g}, atol={result.atol:g})</p>"]
    explanations = result._explanations() if hasattr(result, "_explanations") else []
    out += [f"<p>{html.escape(line.strip())}</p>" for line in explanations]
    out.append(f'<table class="eagerctl-compare" style="{TABLE_STYLE}">')
    header = _cells(["value", "shape", "dtype", "max |graph - eager|", "same", ""], "th", "text-align:left")
    out.append(f"<tr>{header}</tr>")

    def same(row: Any) -> str:
        return "varies" if getattr(row, "varies", None) else "yes" if row.match else "NO"

    first = [r for r in result.rows if same(r) != "yes"]
    rest = [r for r in result.rows if same(r) == "yes"]
    shown = first + rest[:max(0, MAX_ROWS - len(first))]
    for row in shown:
        verdict_of_row = same(row)
        cell_style = "text-align:left" + (";color:#c00;font-weight:bold" if verdict_of_row == "NO" else "")
        out.append("<tr>" + _cells([row.path, row.shape, row.dtype, fmt_diff(row.max_abs_diff),
                                    verdict_of_row, row.note], "td", cell_style) + "</tr>")
    out.append("</table>")
    hidden = len(result.rows) - len(shown)
    if hidden:
        out.append(f"<p>... and {hidden} more that match</p>")
    calls = f"{result.repeat} timed call{'s' if result.repeat != 1 else ''}"
    if getattr(result, "graph_error", None) is not None:
        out.append(f"<p>time per call: eager {fmt_seconds(result.eager_seconds)} ({calls}; the graph did "
                   "not run)</p>")
    else:
        out.append(f"<p>time per call: graph {fmt_seconds(result.graph_seconds)}, eager "
                   f"{fmt_seconds(result.eager_seconds)}, {speed(result.slowdown)} "
                   f"({calls} each)</p>")
    return "\n".join(out)


def pretty(result: Any, printer: Any, cycle: bool) -> None:
    """`_repr_pretty_` of a result: IPython's terminal shows its `str()` (the table), not its `repr()`."""
    printer.text(str(result))

"""`eagerctl demo` shows what the README says it shows: overlapping threads and tf.data (issue 21).

The README's "Three facts" section ends with "`python -m eagerctl demo` shows all of
this": the two scenarios after the article's examples are the threads whose scopes
overlap (TF's own helper against eagerctl's registry) and a `tf.data` map function.
"""

from __future__ import annotations

import io

import tensorflow as tf

import eagerctl
from eagerctl import _demo


def test_overlapping_threads_break_tfs_helper_and_not_eagerctl() -> None:
    s = _demo.overlapping_threads(tf, 0)
    assert s.facts == [
        "TF's own helper, test_util.run_functions_eagerly(True), in each thread:",
        "  in B after A exits: flag = False; after both: True (for good)",
        "  (it restores on exit what it saw on entry: B runs compiled inside its own scope)",
        "eagerctl.eager_scope(process=True) in each thread:",
        "  in B after A exits: flag = True; after both: False (the baseline again)",
    ]
    assert tf.config.functions_run_eagerly() is False  # the demo puts TF's helper's leak back
    assert eagerctl.status().scopes == ()


def test_tf_data_map_is_traced_with_the_flag_on() -> None:
    s = _demo.data_map(tf, 0)
    assert s.facts[0] == "flag on: map gave [1, 2, 3]; its Python body ran 1x, eagerly: False"
    out = io.StringIO()
    _demo.report(s, 6, 6, 0, out)
    lines = out.getvalue().splitlines()
    assert lines[1] == "[6/6] tf.data: dataset.map(fn) with the flag on"
    assert "tf.data.experimental.enable_debug_mode(), is global and irreversible" in out.getvalue()
    assert all(len(line) <= 100 for line in lines)
    assert not tf.config.functions_run_eagerly()


def test_the_demo_runs_both_after_the_articles_examples() -> None:
    plan = [name for name, _ in _demo.__dict__.items()]
    assert "overlapping_threads" in plan and "data_map" in plan
    out = io.StringIO()
    _demo.report(_demo.overlapping_threads(tf, 0), 5, 6, 0, out)
    assert all(len(line) <= 100 for line in out.getvalue().splitlines())

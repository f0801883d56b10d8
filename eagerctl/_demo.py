"""`eagerctl demo`: the source article's three examples, and what really happens.

The article ("Can `tf.config.run_functions_eagerly(True)` be used in Python 3?",
January 2025) says `tf.config.run_functions_eagerly`
switches plain ops, undecorated functions and an undecorated Keras train step
between graph and eager execution. In TF 2 it does not: only `tf.function`s
have two modes. Each scenario here runs the article's code with the flag off
and on (through `eager_scope(process=True)` / `graph_scope(process=True)`,
which drive that same flag and restore it), records inside the function body
whether it ran eagerly, then `compare()`s graph and eager: values, variables
and time per call.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from ._compare import Comparison, compare
from ._compare import speed as _speed
from ._scope import eager_scope, graph_scope
from ._status import is_eager

ARTICLE = '"Can tf.config.run_functions_eagerly(True) be used in Python 3?"'
TRY_IT = """
The flag only ever changed how tf.function calls run, never the values they compute.
Now try it on your code, keeping the rest of it compiled:
  eagerctl run --debug mypkg.train:train_step train.py    one function eager, no edit
  @eagerctl.debuggable above @tf.function                 that function eager on every call
  with eagerctl.eager_scope(): train_step(x, y)           one block, this thread only"""

PLOT_MISSING = ("eagerctl demo --plot needs matplotlib, which is not installed; "
                "install it with: pip install matplotlib")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (TF's C++ start-up logging ignores TF_CPP_MIN_LOG_LEVEL)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded, captured): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly() -> Any:
    """Import TF with its start-up log noise kept out of the terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf
    # The import's own errors are Python exceptions, raised after fd 2 is back.
    with quiet_stderr():
        import tensorflow as tf
    return tf


def keras_version(tf: Any) -> str:
    keras = sys.modules.get("keras")
    version = getattr(keras, "__version__", None) if keras is not None else None
    if version is None:
        version = getattr(getattr(tf, "keras", None), "__version__", None)
    return str(version) if version else "not installed"


class Scenario:
    """One demo scenario: what the article claims, what happened, and the graph/eager comparison."""

    __slots__ = ("body_runs", "claim", "comparison", "error", "facts", "label", "note", "source", "title")

    def __init__(self, label: str, title: str, source: str, claim: str) -> None:
        self.label = label
        self.title = title
        self.source = source
        self.claim = claim
        self.facts: list[str] = []
        self.comparison: Comparison | None = None
        self.body_runs: list[tuple[bool, bool]] = []  # (eagerctl.is_eager(), tf.executing_eagerly())
        self.note = ""
        self.error: BaseException | None = None


def _recorder(scenario: Scenario, tf: Any) -> Callable[[], None]:
    def record() -> None:
        scenario.body_runs.append((is_eager(), bool(tf.executing_eagerly())))

    return record


def _body_summary(runs: list[tuple[bool, bool]], repeat: int) -> list[str]:
    """What the body recorded during compare(): (eagerctl.is_eager(), tf.executing_eagerly()) per run."""
    graph = [executing for mode, executing in runs if not mode]
    eager = [executing for mode, executing in runs if mode]
    traced = sum(1 for executing in graph if not executing)
    # Each mode makes the same calls, and every eager call runs the body once: count those
    # (compare() makes `repeat` timed calls plus its compared ones).
    calls = len(eager) or repeat + 2
    if not graph:
        graph_line = f"graph: {calls} calls ran the compiled graph; the Python body did not run"
    elif traced == len(graph):
        graph_line = (f"graph: {calls} calls ran the compiled graph; the Python body ran {traced}x, "
                      "only to trace")
    else:
        graph_line = f"graph: the Python body ran {len(graph)}x in {calls} calls ({traced}x tracing)"
    how = "eagerly" if eager and all(eager) else "NOT always eagerly"
    return [graph_line, f"eager: the Python body ran on {len(eager)} of {calls} calls, {how}"]


def plain_ops(tf: Any, repeat: int) -> Scenario:
    s = Scenario("Plain ops", "Plain ops: c = tf.constant(2) + tf.constant(3)", "article example 1",
                 "with the flag off, c is a symbolic graph tensor; with it on, the value 5")
    record = _recorder(s, tf)
    seen = {}
    for label, scope in (("off", graph_scope(process=True)), ("on", eager_scope(process=True))):
        with scope:
            c = tf.constant(2) + tf.constant(3)
            seen[label] = (tf.executing_eagerly(), c)
    for label, (executing, c) in seen.items():
        s.facts.append(f"flag {label + ':':<4} c = {c.numpy().item()!r} at once ({type(c).__name__}), "
                       f"tf.executing_eagerly() = {executing}")
    s.facts.append("plain ops run eagerly in TF 2 whatever the flag: it concerns only tf.function")

    def add() -> Any:
        record()
        return tf.constant(2) + tf.constant(3)

    s.comparison = compare(add, repeat=repeat)
    s.note = "tf.function(add) against add"
    if s.comparison.graph_seconds > s.comparison.eager_seconds:
        s.note += ": for two tiny ops a graph call costs more"
    return s


def square_and_gradient(tf: Any, repeat: int) -> Scenario:
    s = Scenario("square_and_gradient", "square_and_gradient(3.0) with tf.GradientTape", "article example 2",
                 "the decorated function follows the flag; the undecorated one ignores it")
    record = _recorder(s, tf)

    def body(x: Any) -> tuple[Any, Any]:
        record()
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = x * x
        return y, tape.gradient(y, x)

    decorated = tf.function(body)
    x = tf.constant(3.0)
    results = []
    for label, scope in (("off", graph_scope(process=True)), ("on", eager_scope(process=True))):
        del s.body_runs[:]
        with scope:
            for _ in range(3):
                y, dy_dx = decorated(x)
        runs = len(s.body_runs)
        how = "only to trace" if label == "off" else "on every call"
        results.append(f"flag {label + ':':<4} y = {float(y):g}, dy/dx = {float(dy_dx):g}; in 3 calls the "
                       f"Python body ran {runs}x ({how})")
    s.facts.extend(results)
    del s.body_runs[:]
    with graph_scope(process=True):
        y, dy_dx = body(x)  # the article's square_and_gradient_no_tf_function
    s.facts.append(f"twin without @tf.function, flag off: y = {float(y):g}, dy/dx = {float(dy_dx):g}, "
                   f"executing eagerly: {s.body_runs[-1][1]}")
    s.facts.append("same values everywhere; the flag only decides if the decorated body runs per call")
    del s.body_runs[:]
    s.comparison = compare(decorated, x, repeat=repeat)
    return s


def keras_train_step(tf: Any, repeat: int) -> Scenario:
    s = Scenario("Keras train step", "Keras train step (SimpleModel, Adam, MSE)", "article example 3",
                 "the same train_step runs in graph mode with the flag off")
    record = _recorder(s, tf)

    class SimpleModel(tf.keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = tf.keras.layers.Dense(1)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    def train_step(model: Any, optimizer: Any, loss_fn: Any, x: Any, y: Any) -> Any:
        record()
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    tf.keras.utils.set_random_seed(0)
    model = SimpleModel()
    loss_fn = tf.keras.losses.MeanSquaredError()
    x = tf.constant([[1.0], [2.0], [3.0]])
    y = tf.constant([[2.0], [4.0], [6.0]])
    model(x)  # build, so both runs below can start from the same weights
    start_weights = model.get_weights()
    for label, scope in (("off", graph_scope(process=True)), ("on", eager_scope(process=True))):
        del s.body_runs[:]
        model.set_weights(start_weights)
        optimizer = tf.keras.optimizers.Adam()
        with scope:
            loss = train_step(model, optimizer, loss_fn, x, y)
        executing = s.body_runs[-1][1]
        s.facts.append(f"flag {label + ':':<4} loss = {float(loss):.4f}, and inside train_step "
                       f"tf.executing_eagerly() = {executing}")
    s.facts.append("train_step is not a tf.function, so the flag changes nothing: both runs were eager")
    s.facts.append("(both runs start from the same weights and a fresh Adam, so the losses are equal)")
    s.facts.append("compiling it takes @tf.function (or Keras fit)")
    del s.body_runs[:]
    s.comparison = compare(train_step, model, optimizer, loss_fn, x, y, repeat=repeat)
    s.note = "tf.function(train_step) against train_step; weights, Adam slots restored"
    return s


def mlp_train_step(tf: Any, repeat: int) -> Scenario:
    s = Scenario("512-wide MLP train step", "512-wide MLP train step (@tf.function, 2 hidden layers, "
                 "batch 64, Adam)", "", "")
    record = _recorder(s, tf)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((128,)),
        tf.keras.layers.Dense(512, activation="relu"),
        tf.keras.layers.Dense(512, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    optimizer = tf.keras.optimizers.Adam(1e-3)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function  # type: ignore[untyped-decorator]
    def train_step(x: Any, y: Any) -> Any:
        record()
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    x = tf.random.normal((64, 128), seed=1)
    y = tf.random.uniform((64,), maxval=10, dtype=tf.int32, seed=2)
    s.comparison = compare(train_step, x, y, repeat=repeat)
    return s


def _overlapping_threads(enter: Callable[[], Any], flag: Callable[[], bool]) -> tuple[bool, bool]:
    """Thread A enters, B enters, A exits, B exits: the flag inside B after A left, and after both."""
    steps = [threading.Event() for _ in range(3)]  # A is in, B is in, A is out
    seen: list[bool] = []

    def a() -> None:
        with enter():
            steps[0].set()
            steps[1].wait(10)
        steps[2].set()

    def b() -> None:
        steps[0].wait(10)
        with enter():
            steps[1].set()
            steps[2].wait(10)
            seen.append(flag())

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen[0], flag()


def overlapping_threads(tf: Any, repeat: int) -> Scenario:
    s = Scenario("Two threads", "Two threads' scopes overlap: A enters, B enters, A exits, B exits", "", "")
    from tensorflow.python.framework import test_util  # TF's own helper (its test utilities)

    baseline = bool(tf.config.functions_run_eagerly())
    try:
        in_b, after = _overlapping_threads(lambda: test_util.run_functions_eagerly(True),
                                           tf.config.functions_run_eagerly)
    finally:
        tf.config.run_functions_eagerly(baseline)
    s.facts.append("TF's own helper, test_util.run_functions_eagerly(True), in each thread:")
    s.facts.append(f"  in B after A exits: flag = {in_b}; after both: {after}"
                   f"{' (for good)' if after != baseline else ''}")
    if not in_b:
        s.facts.append("  (it restores on exit what it saw on entry: B runs compiled inside its own scope)")
    in_b, after = _overlapping_threads(lambda: eager_scope(process=True), tf.config.functions_run_eagerly)
    s.facts.append("eagerctl.eager_scope(process=True) in each thread:")
    s.facts.append(f"  in B after A exits: flag = {in_b}; after both: {after}"
                   f"{' (the baseline again)' if after == baseline else ''}")
    return s


def data_map(tf: Any, repeat: int) -> Scenario:
    s = Scenario("tf.data map", "tf.data: dataset.map(fn) with the flag on", "", "")
    seen: list[bool] = []

    def plus_one(x: Any) -> Any:
        seen.append(bool(tf.executing_eagerly()))
        return x + 1

    with eager_scope(process=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TF's own note that the flag does not apply, said below
        values = [int(v) for v in tf.data.Dataset.range(3).map(plus_one)]
    s.facts.append(f"flag on: map gave {values}; its Python body ran {len(seen)}x, eagerly: {any(seen)}")
    s.facts.append("tf.data functions are always traced: the flag never reaches them. Their one switch,")
    s.facts.append("tf.data.experimental.enable_debug_mode(), is global and irreversible")
    s.facts.append("(eagerctl run --data-debug turns it on before the program builds its datasets)")
    return s


def _verdict(c: Comparison) -> str:
    outputs = len(c.rows) - len(c.variables)
    checked = f"{outputs} output{'s' if outputs != 1 else ''}"
    if c.variables:
        checked += f" and {len(c.variables)} variables"
    if c.match:
        return f"yes: {checked} checked, max |graph - eager| {c.max_abs_diff:.3g}"
    return (f"NO (rtol={c.rtol:g}, atol={c.atol:g}): {', '.join(c.mismatches)} differ; "
            f"max |graph - eager| {c.max_abs_diff:.3g}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def report(s: Scenario, index: int, total: int, repeat: int, out: TextIO) -> None:
    source = f"   ({s.source})" if s.source else ""
    print(f"\n[{index}/{total}] {s.title}{source}", file=out)
    if s.claim:
        print(f"  article says   {s.claim}", file=out)
    first = True
    for fact in s.facts:
        print(f"  {'what happens' if first else '':<14} {fact}", file=out)
        first = False
    if s.error is not None:
        print(f"  FAILED         {type(s.error).__name__}: {s.error}", file=out)
        return
    c = s.comparison
    if c is None:  # a scenario of facts only
        return
    graph_line, eager_line = _body_summary(s.body_runs, repeat)
    print(f"  ran eagerly    {graph_line}", file=out)
    print(f"                 {eager_line}", file=out)
    print(f"  agree?         {_verdict(c)}", file=out)
    if s.note:
        print(f"                 ({s.note})", file=out)
    print(f"  time per call  graph {_ms(c.graph_seconds)}   eager {_ms(c.eager_seconds)}   "
          f"{_speed(c.slowdown)}", file=out)
    if c.traces:
        print(f"  tracing        {c.traces}x, {c.trace_seconds * 1e3:.0f} ms, not in the times above",
              file=out)


def plot(scenarios: list[Scenario], path: str) -> None:
    from matplotlib.figure import Figure

    labels = [f"{i + 1}. {s.label}" for i, s in enumerate(scenarios) if s.comparison is not None]
    done = [s for s in scenarios if s.comparison is not None]
    graph = [s.comparison.graph_seconds * 1e3 for s in done if s.comparison is not None]
    eager = [s.comparison.eager_seconds * 1e3 for s in done if s.comparison is not None]
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    xs = range(len(done))
    ax.bar([i - 0.2 for i in xs], graph, width=0.4, label="graph (tf.function)")
    ax.bar([i + 0.2 for i in xs], eager, width=0.4, label="eager")
    for i, (g, e) in enumerate(zip(graph, eager, strict=True)):
        ax.annotate(f"{e / g:.1f}x" if g > 0 else "", (i + 0.2, e), ha="center", va="bottom")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("time per call (ms, log scale)")
    ax.set_title("eagerctl demo: graph vs eager, time per call (slowdown above the eager bars)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def run(plot_path: str | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo; return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if plot_path is not None:
        folder = os.path.dirname(os.path.abspath(plot_path))
        if not os.path.isdir(folder):
            print(f"eagerctl: demo --plot {plot_path!r}: the folder {folder!r} does not exist", file=err)
            return 2
        if importlib.util.find_spec("matplotlib") is None:
            print(f"eagerctl: {PLOT_MISSING}", file=err)
            return 2
    start = time.perf_counter()
    try:
        tf = import_tensorflow_quietly()
    except ImportError as exc:
        from ._hook import INSTALL_COMMAND

        print(f"eagerctl: the demo needs TensorFlow, which cannot be imported ({exc}); "
              f"install it with: {INSTALL_COMMAND}", file=err)
        return 1
    cpu = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"eagerctl demo: TensorFlow {tf.__version__}, Keras {keras_version(tf)}, "
          f"Python {platform.python_version()}, {cpu}", file=out)
    print(f"The article {ARTICLE} (January 2025)\n"
          "says the flag switches plain ops and any train step between graph and eager. Each scenario\n"
          "runs its code with tf.config.run_functions_eagerly off and on, then eagerctl.compare()\n"
          "runs it compiled and eagerly from the same state. The last two show what the flag does\n"
          "to overlapping threads, and what it never reaches.", file=out)
    plan: list[tuple[Callable[[Any, int], Scenario], int, str]] = [
        (plain_ops, 50, "Plain ops"),
        (square_and_gradient, 50, "square_and_gradient"),
        (keras_train_step, 20, "Keras train step"),
        (mlp_train_step, 10, "512-wide MLP train step"),
        (overlapping_threads, 0, "Two threads"),
        (data_map, 0, "tf.data map"),
    ]
    scenarios = []
    failed = 0
    for index, (build, repeat, title) in enumerate(plan, 1):
        try:
            scenario = build(tf, repeat)
        except Exception as exc:  # noqa: BLE001 - report it and go on with the other scenarios
            scenario = Scenario(title, title, "", "")
            scenario.error = exc
            failed += 1
        scenarios.append(scenario)
        report(scenario, index, len(plan), repeat, out)
    print(f"{TRY_IT}\n(demo took {time.perf_counter() - start:.1f} s)", file=out)
    if plot_path is not None:
        try:
            plot(scenarios, plot_path)
        except (OSError, ValueError) as exc:  # unwritable path, unknown image format
            print(f"eagerctl: demo --plot {plot_path!r}: cannot write the plot: {exc}", file=err)
            return 1
        print(f"plot written to {plot_path}", file=out)
    return 1 if failed else 0

"""The IPython extension: `%load_ext eagerctl` in Jupyter, Colab and the IPython terminal.

- `%eager on` / `%eager graph` / `%eager off`: the mode of every following cell
  (a process scope owned by the extension); `%eager reset`: `eagerctl.reset()`;
  `%eager` alone: `status()`.
- `%%eager` / `%%graph`: the mode of one cell (a local scope around its body).
- `%debuggable NAME` / `%undebuggable NAME`: wrap or unwrap a function of the
  notebook's namespace, and say which already-traced graphs hold its old body.
- Cell hooks: a scope entered by hand in one cell can be exited in a later one
  (ipykernel 7 runs each cell in its own asyncio task, in one shared context),
  and a cell interrupted with Ctrl-C leaves the kernel in the mode it had before.

Nothing here imports IPython or TensorFlow at import time: `eagerctl` imports
this module for `load_ipython_extension`, and IPython is only touched through
the shell object it passes in. It only wires magics and cell hooks: how
results look in a notebook (`_repr_html_`) is theirs (`eagerctl._display`).
"""

from __future__ import annotations

import ast
import inspect
import signal
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from typing import Any

from . import _hook, _local, _tracebacks
from ._display import mode as _mode
from ._errors import EagerctlError, EagerctlWarning
from ._registry import REGISTRY
from ._scope import Activation, Scope, reset

_EXTENSIONS: dict[int, _Extension] = {}
_RELOADED: dict[int, _Extension] = {}  # unloaded by %reload_ext: its state goes to the next load

# Set once per hand-entered scope, in the context that entered it: resetting the
# token succeeds only in that same `contextvars.Context` (Python checks it), which
# is how a later cell proves it runs in the context that holds the scope.
_CELL_CONTEXT: ContextVar[None] = ContextVar("eagerctl_ipython_cell_context")

_EAGER_USAGE = (
    "%eager on      every tf.function runs eagerly (its Python body), in every cell and thread\n"
    "%eager graph   every tf.function runs its compiled graph, in every cell and thread\n"
    "%eager off     back to TensorFlow's own flag (undoes %eager on / %eager graph)\n"
    "%eager reset   no scope left in this kernel's cells, the flag at its baseline (eagerctl.reset())\n"
    "%eager         show eagerctl.status()\n"
    "%%eager, %%graph (first line of a cell): the mode of that one cell"
)
_DEBUGGABLE_OPTIONS = {
    "--no-recursive": ("recursive", False),
    "--post-mortem": ("post_mortem", True),
    "--check-numerics": ("check_numerics", True),
    "--log-calls": ("log_calls", True),
    "--no-island": ("island", False),
}


# -- extension entry points ---------------------------------------------------------------------------

def load_ipython_extension(ipython: Any) -> None:
    """Load eagerctl's magics into an IPython shell (`%load_ext eagerctl`).

    Also what `c.InteractiveShellApp.extensions = ["eagerctl"]` calls. Loading
    twice is harmless.

    Example (in a notebook cell):
        ```text
        %load_ext eagerctl
        %eager on
        ```
    """
    loaded = _EXTENSIONS.get(id(ipython))
    if loaded is not None and loaded.shell is ipython:
        return
    extension = _Extension(ipython)
    previous = _RELOADED.pop(id(ipython), None)
    if previous is not None and previous.shell is ipython:
        extension.carry_over(previous)
    extension.load()
    _EXTENSIONS[id(ipython)] = extension
    if previous is not None and extension.process is not None:
        print(f"eagerctl: reloaded; {extension.process!r} still holds (%eager off ends it)")


def unload_ipython_extension(ipython: Any) -> None:
    """Remove eagerctl's magics and cell hooks (`%unload_ext eagerctl`).

    A mode set with `%eager on` or `%eager graph` ends with the extension:
    TensorFlow's flag goes back to its baseline. `%reload_ext eagerctl` is
    not an end: the mode, and what `%debuggable` replaced, carry over to the
    extension loaded again.
    """
    extension = _EXTENSIONS.pop(id(ipython), None)
    if extension is None:
        return
    if _reloading(ipython):
        extension.unload(end_mode=False)
        _RELOADED[id(ipython)] = extension
    else:
        extension.unload()


def _reloading(ipython: Any) -> bool:
    """Whether IPython's `%reload_ext` is unloading the extension (to load it again at once)."""
    manager = getattr(ipython, "extension_manager", None)
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "reload_extension" and manager is not None and \
                frame.f_locals.get("self") is manager:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


# -- helpers ---------------------------------------------------------------------------------------------

def _usage_error(message: str) -> Exception:
    """IPython's `UsageError`: shown as one line, `UsageError: ...`, without a traceback.

    Not an `EagerctlError` subclass on purpose: IPython shows only the exact
    type `UsageError` that way, anything else gets a full traceback.
    """
    from IPython.core.error import UsageError

    return UsageError(message)


class _DeferSigint:
    """Hold a SIGINT (Ctrl-C) that arrives while the extension changes eagerctl's state.

    The signal is delivered when the block ends, so a `KeyboardInterrupt` never
    lands between two steps of an enter or an exit. Only the main thread
    receives signals; elsewhere this does nothing.
    """

    __slots__ = ("old", "pending")

    def __enter__(self) -> None:
        self.pending: tuple[int, Any] | None = None
        self.old: Any = None
        if threading.current_thread() is not threading.main_thread():
            return
        old = signal.getsignal(signal.SIGINT)
        if old is None:  # installed outside Python: cannot be put back
            return
        signal.signal(signal.SIGINT, self._hold)
        self.old = old

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = (signum, frame)

    def __exit__(self, *exc: object) -> None:
        old = self.old
        if old is None:
            return
        signal.signal(signal.SIGINT, old)
        if self.pending is not None:
            if callable(old):
                old(*self.pending)  # default_int_handler: raises KeyboardInterrupt here
            elif old == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


def _current_task() -> object | None:
    aio = sys.modules.get("asyncio")
    if aio is None or aio._get_running_loop() is None:
        return None
    task: object | None = aio.current_task()
    return task


def _here() -> list[Activation]:
    """The local activations in force on this context's stack, innermost first."""
    acts: list[Activation] = []
    top: Any = _local.STACK.get()
    while top is not None:
        act = getattr(top, "activation", top)  # a rebuilt frame stands for its activation
        if isinstance(act, Activation) and act.value is not None and act not in acts:
            acts.append(act)
        top = top.below
    return acts


def _process_activations() -> list[Activation]:
    acts: list[Any] = list(REGISTRY.snapshot()[1])
    return acts


def _exit_activation(act: Activation) -> None:
    scope = act.scope
    if getattr(scope, "_activation", None) is act:
        scope.__exit__(None, None, None)
    else:  # a decorated call or a @debuggable call: no scope object holds it
        act.exit()


# -- the extension -----------------------------------------------------------------------------------------

class _Extension:
    """The magics and cell hooks of one IPython shell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.process: Scope | None = None  # the scope of `%eager on` / `%eager graph`
        self.tokens: dict[Activation, Token[None]] = {}
        self.before: tuple[set[Activation], set[Activation]] | None = None
        # (owner or namespace id, name) -> (object replaced by %debuggable, whether the owner held it itself)
        self.replaced: dict[tuple[int, str], tuple[Any, bool]] = {}
        self.magics: list[tuple[str, str, Callable[..., Any]]] = [
            ("line", "eager", self.eager),
            ("cell", "eager", self.eager),
            ("cell", "graph", self.graph),
            ("line", "debuggable", self.debuggable),
            ("line", "undebuggable", self.undebuggable),
        ]

    def load(self) -> None:
        shell = self.shell
        shell.register_magic_function(self.eager, "line_cell", "eager")
        shell.register_magic_function(self.graph, "cell", "graph")
        shell.register_magic_function(self.debuggable, "line", "debuggable")
        shell.register_magic_function(self.undebuggable, "line", "undebuggable")
        shell.events.register("pre_run_cell", self.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)
        _tracebacks.install_in_ipython(shell)  # check_numerics' and eagerctl's errors point at your code
        self.remember_hand_entered()

    def carry_over(self, old: _Extension) -> None:
        """Take over the state of the extension `%reload_ext` unloaded: its mode and replacements."""
        self.process, self.tokens, self.replaced = old.process, old.tokens, old.replaced

    def unload(self, *, end_mode: bool = True) -> None:
        shell = self.shell
        table = shell.magics_manager.magics
        for kind, name, fn in self.magics:
            if table[kind].get(name) == fn:
                del table[kind][name]
        for event, callback in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            try:
                shell.events.unregister(event, callback)
            except ValueError:
                pass
        _tracebacks.uninstall_from_ipython(shell)
        if end_mode:
            self.set_process_mode(None)

    # -- %eager ------------------------------------------------------------------------------------------
    def eager(self, line: str, cell: str | None = None) -> None:
        """eagerctl's mode for the following cells (`%eager ...`) or for one cell (`%%eager`).

        %eager on      every tf.function runs eagerly, in every cell and thread, until %eager off
        %eager graph   every tf.function runs its compiled graph, until %eager off
        %eager off     back to TensorFlow's own flag
        %eager reset   every scope gone (also ones left by hand or by an interrupt), the flag at its baseline
        %eager         show eagerctl.status() (a table in a notebook)
        %%eager        (first line of a cell) run that cell eagerly
        """
        __tracebackhide__ = True
        if cell is not None:
            if line.strip():
                raise _usage_error(f"%%eager takes no arguments, got {line.strip()!r}; for a mode that lasts "
                                   "across cells use %eager on in a cell of its own")
            self.run_cell_in(Scope(True, False, "%%eager"), cell, "%%eager")
            return
        word = line.strip()
        if word in ("", "status"):
            from IPython.display import display

            from ._status import status

            display(status())  # type: ignore[no-untyped-call]  # shown wherever the line is in the cell
            return
        if word == "on":
            self.set_process_mode(True)
        elif word in ("graph", "off"):
            self.set_process_mode(False if word == "graph" else None)
        elif word == "reset":
            with _DeferSigint():
                reset()
                self.process = None
                self.tokens.clear()
        else:
            raise _usage_error(f"%eager {word}: unknown; use one of:\n{_EAGER_USAGE}")
        self.report_mode(word)

    def graph(self, line: str, cell: str) -> None:
        """Run this cell's tf.functions as compiled graphs (`%%graph`, first line of a cell)."""
        __tracebackhide__ = True
        if line.strip():
            raise _usage_error(f"%%graph takes no arguments, got {line.strip()!r}; for a mode that lasts "
                               "across cells use %eager graph in a cell of its own")
        self.run_cell_in(Scope(False, False, "%%graph"), cell, "%%graph")

    def set_process_mode(self, value: bool | None) -> None:
        """Replace the extension's process scope: eager (True), graph (False) or none."""
        with _DeferSigint():
            old = self.process
            if value is not None:
                scope = Scope(value, True, "%eager on" if value else "%eager graph")
                self.enter_at_cell(scope)  # the new one first: other threads never see the baseline between
                self.process = scope
            else:
                self.process = None
            if old is not None and old.active:
                old.__exit__(None, None, None)

    def enter_at_cell(self, scope: Scope) -> None:
        """Enter `scope` as from the user's line that ran the magic: "Cell In[5]:1" in status() and messages.

        Not this file's line, which says nothing to the user: the call that enters it is compiled
        under the cell's name, at the line of the cell that called the magic.
        """
        number, line = self.calling_cell()
        tree = ast.parse("enter()", mode="eval")
        ast.increment_lineno(tree, line - 1)
        eval(compile(tree, f"Cell In[{number}]", "eval"), {"enter": scope.__enter__})

    def where(self, act: Activation) -> str:
        """Where `act` was entered, a line of a cell said as IPython says it ("Cell In[5]:2")."""
        where = act.where
        number = getattr(self.shell.compile, "_filename_map", {}).get(act.code.co_filename)
        if isinstance(number, int):  # the kernel's file of that cell, /tmp/ipykernel_1234/2851.py
            return f"Cell In[{number}]:{where.rpartition(':')[2]}"
        return where

    def calling_cell(self) -> tuple[int, int]:
        """(cell number, line) of the cell code running the magic; else the running cell's first line."""
        cells = getattr(self.shell.compile, "_filename_map", {})  # IPython's: cell file -> number
        frame = sys._getframe(2)
        while frame is not None:
            number = cells.get(frame.f_code.co_filename)
            if isinstance(number, int):
                return number, frame.f_lineno
            frame = frame.f_back  # type: ignore[assignment]
        running = getattr(self.shell.displayhook, "exec_result", None)
        return int(getattr(running, "execution_count", None) or self.shell.execution_count or 0), 1

    def report_mode(self, word: str) -> None:
        flag = _mode(_hook.read_flag())
        if word == "on":
            text = "every tf.function runs eagerly (its Python body), in every cell and thread, until " \
                   "%eager off"
        elif word == "graph":
            text = "every tf.function runs its compiled graph, in every cell and thread, until %eager off"
        elif word == "off":
            text = f"tf.functions follow TensorFlow's own flag again: {flag}"
        else:
            text = f"no scope active in this kernel's cells, TensorFlow's flag at its baseline: {flag}"
        print(f"eagerctl: {text}")
        here = _here()
        if here:
            act = here[0]
            if act.scope.factory in ("%%eager", "%%graph"):  # the cell magic's: it ends with its cell
                print(f"eagerctl: note: this cell runs under {act.scope!r} (at {self.where(act)}): its "
                      f"tf.functions run {_mode(act.value)} until the cell ends; the mode above holds from "
                      "the next cell")
            else:
                print(f"eagerctl: note: {act.scope!r} (entered at {self.where(act)}) is still active in this "
                      f"context and decides here: tf.functions called from these cells run "
                      f"{_mode(act.value)}; exit it, or run %eager reset")

    # -- %%eager / %%graph -------------------------------------------------------------------------------
    def run_cell_in(self, scope: Scope, cell: str, magic: str) -> None:
        """Run a cell's body under `scope`, as IPython runs a cell (the last expression is displayed)."""
        __tracebackhide__ = True
        codes = self.compile_cell(cell, magic)  # a syntax error raises before anything is entered
        shell = self.shell
        entered = False
        try:
            with _DeferSigint():
                self.enter_at_cell(scope)
                entered = True
            for code in codes:
                exec(code, shell.user_global_ns, shell.user_ns)
        finally:
            if entered:
                with _DeferSigint():
                    scope.__exit__(None, None, None)

    def compile_cell(self, cell: str, magic: str) -> list[types.CodeType]:
        shell = self.shell
        # The magic's line as a comment: line numbers in tracebacks are the cell's own.
        transformed = f"# {magic}\n" + shell.transform_cell(cell)
        try:
            is_async = shell.should_run_async(cell, transformed_cell=transformed,
                                              preprocessing_exc_tuple=None)
        except TypeError:  # an IPython without these keywords
            is_async = False
        if is_async:
            raise _usage_error(
                "%%eager and %%graph cannot run a cell with top-level await; in a normal cell, write "
                "`async with eagerctl.eager_scope():` (or graph_scope()) around the awaited code"
            )
        compiler = shell.compile
        running = getattr(shell.displayhook, "exec_result", None)  # the cell this magic runs in
        number = getattr(running, "execution_count", None) or shell.execution_count
        try:  # tracebacks then show the body's lines as that cell's ("Cell In[5], line 3")
            filename = compiler.cache(transformed, number, raw_code=f"{magic}\n{cell}")
        except TypeError:  # IPython 7: no raw_code
            filename = compiler.cache(transformed, number)
        tree = compiler.ast_parse(transformed, filename=filename)
        tree = shell.transform_ast(tree)
        body = list(tree.body)
        display_last = (bool(body) and isinstance(body[-1], ast.Expr)
                        and shell.ast_node_interactivity != "none")
        codes = []
        for index, node in enumerate(body):
            if display_last and index == len(body) - 1:
                codes.append(compiler(ast.Interactive([node]), filename, "single"))
            else:
                codes.append(compiler(ast.Module([node], []), filename, "exec"))
        return codes

    # -- cell hooks ----------------------------------------------------------------------------------------
    def pre_run_cell(self, info: object = None) -> None:
        self.rebind_hand_entered()
        self.before = (set(_here()), set(_process_activations()))

    def post_run_cell(self, result: object = None) -> None:
        before, self.before = self.before, None
        error = getattr(result, "error_in_exec", None)
        if isinstance(error, KeyboardInterrupt) and before is not None:
            self.undo_interrupted(*before)
        elif isinstance(error, EagerctlError) and "cannot exit in " in str(error):  # another context
            print("eagerctl: in a notebook, a scope entered by hand (s.__enter__()) stays active across "
                  "cells; %eager reset drops every scope and puts TensorFlow's flag back to its baseline. "
                  "For a mode that lasts across cells use %eager on / %eager off; for part of one cell, "
                  "a `with` block",
                  file=sys.stderr)
        self.remember_hand_entered()

    def remember_hand_entered(self) -> None:
        """Note the context of each scope this cell entered and left active."""
        here = _here()
        for act in [a for a in self.tokens if a not in here]:
            del self.tokens[act]
        task = _current_task()
        if task is None:  # the IPython terminal: cells share one context and no task
            return
        for act in here:
            if act.task is task and act not in self.tokens:
                self.tokens[act] = _CELL_CONTEXT.set(None)

    def rebind_hand_entered(self) -> None:
        """Let this cell's task exit the scopes earlier cells entered in this same context.

        ipykernel 7 runs every cell in a new asyncio task, all in one
        `contextvars.Context`, so the scope is on this cell's stack, and exiting it
        here is exiting it where it was entered. A cell run in a copy of that
        context (ipykernel runs cells with top-level await so) fails the token
        check and gets the usual error.
        """
        task = _current_task()
        if task is None or not self.tokens:
            return
        for act in _here():
            token = self.tokens.get(act)
            if token is None or act.task is task:
                continue
            try:
                _CELL_CONTEXT.reset(token)
            except (ValueError, RuntimeError):  # another context
                continue
            act.task = task
            self.tokens[act] = _CELL_CONTEXT.set(None)

    def undo_interrupted(self, local_before: set[Activation], process_before: set[Activation]) -> None:
        """After Ctrl-C: exit the scopes the cell entered and left active: the mode is the one before it."""
        me = threading.get_ident()
        left = [a for a in _here() if a not in local_before]
        left += [a for a in reversed(_process_activations()) if a not in process_before and a.thread == me]
        if not left:
            return
        exited, failed = [], []
        for act in left:
            scope, described = act.scope, f"{act.scope!r} entered at {self.where(act)}"  # exiting may clear
            try:
                with _DeferSigint():
                    _exit_activation(act)
                    if self.process is not None and scope is self.process:
                        self.process = None
                exited.append(described)
            except EagerctlError as exc:
                failed.append(str(exc))
        from ._status import is_eager

        if exited:
            print(f"eagerctl: the interrupted cell left {len(exited)} scope(s) active: "
                  f"{'; '.join(exited)}. Exited: tf.functions run {_mode(is_eager())} here, as before "
                  "the cell",
                  file=sys.stderr)
        if failed:
            print(f"eagerctl: could not exit after the interrupt: {'; '.join(failed)}. "
                  "Run %eager reset to drop every scope", file=sys.stderr)

    # -- %debuggable / %undebuggable ---------------------------------------------------------------------
    def debuggable(self, line: str) -> None:
        """Make functions of the notebook's namespace @debuggable: `%debuggable NAME [NAME...] [options]`.

        NAME is a function, a tf.function or a method (`Model.train_step`); its
        calls then run the Python body eagerly (print, pdb, .numpy() work there).
        Options: --no-recursive --post-mortem --check-numerics --log-calls --no-island.
        Undo with %undebuggable NAME.
        """
        __tracebackhide__ = True
        from ._debuggable import debuggable

        names, options = self.parse(line, "debuggable", allow_options=True)
        made: list[tuple[str, Any, str, Any, Any, list[warnings.WarningMessage]]] = []
        # Every name is checked and wrapped before any is assigned: wrong use changes nothing.
        for dotted in names:
            owner, attr, value = self.resolve(dotted, "debuggable")
            if _is_proxy(value):
                value = self.original(owner, attr, value)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    proxy = debuggable(value, **options)
                except (TypeError, EagerctlError) as exc:  # not a function; a bad EAGERCTL_DEBUGGABLE
                    raise _usage_error(f"%debuggable {dotted}: {_for_the_magic(exc)}") from None
            made.append((dotted, owner, attr, value, proxy, caught))
        for dotted, owner, attr, value, proxy, caught in made:
            if proxy is value:  # EAGERCTL_DEBUGGABLE=0: debuggable hands back the function itself
                print(f"eagerctl: {dotted} is unchanged: the environment variable EAGERCTL_DEBUGGABLE=0 "
                      "turns @debuggable off")
                continue
            self.assign(owner, attr, proxy, remember_original=value)
            print(f"eagerctl: {dotted} is @debuggable: its calls run the Python body eagerly "
                  f"(%undebuggable {dotted} to undo)")
            if not self.warn_traced(dotted, value, "debuggable"):
                for warning in caught:  # debuggable's own, less specific, warning, when this found nothing
                    warnings.warn_explicit(warning.message, warning.category, f"%debuggable {dotted}", 1,
                                           module="eagerctl", registry={})

    def undebuggable(self, line: str) -> None:
        """Undo %debuggable (or a @debuggable in the code): `%undebuggable NAME [NAME...]`."""
        __tracebackhide__ = True
        names, _ = self.parse(line, "undebuggable", allow_options=False)
        for dotted in names:
            owner, attr, value = self.resolve(dotted, "undebuggable")
            if not _is_proxy(value):
                raise _usage_error(f"%undebuggable {dotted}: {value!r} is not @debuggable; nothing to undo")
            original = self.original(owner, attr, value)
            self.restore(owner, attr, original)
            print(f"eagerctl: {dotted} is no longer @debuggable")
            self.warn_traced(dotted, value, "undebuggable")

    def parse(self, line: str, magic: str, *, allow_options: bool) -> tuple[list[str], dict[str, bool]]:
        names: list[str] = []
        options: dict[str, bool] = {}
        for word in line.split():
            if word.startswith("-"):
                if not allow_options or word not in _DEBUGGABLE_OPTIONS:
                    known = ", ".join(_DEBUGGABLE_OPTIONS) if allow_options else "none"
                    raise _usage_error(f"%{magic} {line.strip()}: unknown option {word!r} (options: {known})")
                key, value = _DEBUGGABLE_OPTIONS[word]
                options[key] = value
            elif all(part.isidentifier() for part in word.split(".")):
                names.append(word)
            else:
                raise _usage_error(f"%{magic} {word}: not a name; give a name of the notebook's namespace, "
                                   f"such as %{magic} loss_fn or %{magic} MyModel.train_step")
        if not names:
            raise _usage_error(f"%{magic} needs a name: %{magic} loss_fn (a function, tf.function or method "
                               "defined in the notebook)")
        return names, options

    def resolve(self, dotted: str, magic: str) -> tuple[Any, str, Any]:
        """(owner or None for the namespace, attribute name, the object as stored there)."""
        parts = dotted.split(".")
        namespace = self.shell.user_ns
        if parts[0] not in namespace:
            raise _usage_error(f"%{magic} {dotted}: name {parts[0]!r} is not defined in the notebook's "
                               "namespace; run the cell that defines it first")
        owner: Any = None
        value = namespace[parts[0]]
        for depth, attr in enumerate(parts[1:], start=1):
            owner = value
            if isinstance(owner, type):
                for klass in owner.__mro__:
                    if attr in vars(klass):
                        value = vars(klass)[attr]  # as stored: staticmethod and classmethod included
                        break
                else:
                    value = _missing(dotted, parts, depth, magic)
            elif hasattr(owner, attr):
                value = getattr(owner, attr)
            else:
                value = _missing(dotted, parts, depth, magic)
        return owner, parts[-1], value

    def key(self, owner: Any, attr: str) -> tuple[int, str]:
        return (id(self.shell.user_ns) if owner is None else id(owner), attr)

    def assign(self, owner: Any, attr: str, new: Any, *, remember_original: Any) -> None:
        key = self.key(owner, attr)
        if key not in self.replaced:
            had_own = owner is None or (isinstance(owner, type) and attr in vars(owner)) or \
                attr in getattr(owner, "__dict__", {})
            self.replaced[key] = (remember_original, had_own)
        if owner is None:
            self.shell.user_ns[attr] = new
        else:
            setattr(owner, attr, new)

    def original(self, owner: Any, attr: str, proxy: Any) -> Any:
        entry = self.replaced.get(self.key(owner, attr))
        if entry is not None and getattr(proxy, "__wrapped__", None) is entry[0]:
            return entry[0]
        return proxy.__wrapped__

    def restore(self, owner: Any, attr: str, original: Any) -> None:
        entry = self.replaced.pop(self.key(owner, attr), None)
        if owner is None:
            self.shell.user_ns[attr] = original
        elif entry is not None and not entry[1] and entry[0] is original:
            delattr(owner, attr)  # %debuggable put it on the object: take it off again
        else:
            setattr(owner, attr, original)

    def warn_traced(self, dotted: str, target: Any, magic: str) -> bool:
        """Warn about tf.functions and Keras models already traced with the old body of `dotted`.

        True when it warned. Searched by name, through the notebook's functions
        they call (`@debuggable`'s own warning knows only that some graph did).
        """
        name = dotted.rsplit(".", 1)[-1]
        found = sorted(_traced_users(self.shell.user_ns, name, target))
        if not found:
            return False
        functions = [n for n, kind in found if kind == "function"]
        models = [n for n, kind in found if kind == "model"]
        losses = [n for n, kind in found if kind == "loss"]
        if magic == "debuggable":
            now, held = "runs eagerly", f"hold the old body of {name}"
        else:
            now, held = "is undecorated", f"may hold {name} as it was while @debuggable (an eager island)"
        parts = []
        if functions:
            listed = ", ".join(functions)
            parts.append(f"the tf.function(s) {listed} were already traced, and their graphs {held}: calls "
                         f"of them keep running it. Re-run the cell that defines {functions[0]} to trace it "
                         "again")
        if models:
            listed = ", ".join(models)
            parts.append(f"the Keras model(s) {listed} already built train/test/predict functions that "
                         f"{held}: run {models[0]}.make_train_function(force=True) (or compile the model "
                         "again) for fit to trace it again")
        if losses:
            listed = ", ".join(losses)
            parts.append(f"the Keras model(s) {listed} were compiled with loss={name} and hold that function "
                         f"itself: compile {losses[0]} again with loss={name} to use the new one")
        message = (f"%{magic} {dotted}: {name} {now} where it is called from now on, but "
                   + "; ".join(parts) + ".")
        warnings.warn_explicit(message, EagerctlWarning, filename=f"%{magic} {dotted}", lineno=1,
                               module="eagerctl", registry={})
        return True


def _for_the_magic(exc: BaseException) -> str:
    """`debuggable()`'s refusal, with the remedy a magic's user can follow (a name, not an object)."""
    return str(exc).replace("; pass the function itself",
                            "; name a function, tf.function or method of the notebook instead")


def _missing(dotted: str, parts: list[str], depth: int, magic: str) -> Any:
    where = ".".join(parts[:depth])
    raise _usage_error(f"%{magic} {dotted}: {where} has no attribute {parts[depth]!r}")


def _is_proxy(value: object) -> bool:
    from ._debuggable import _Debuggable

    return isinstance(value, _Debuggable)


# -- which traced graphs use a function ------------------------------------------------------------------

_KERAS_ROOTS = frozenset({"keras", "tf_keras", "tensorflow"})
_MODEL_CLASSES = frozenset({"Model", "Functional", "Sequential"})


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _python_body(value: Any) -> Any:
    """The Python function behind a function, method, tf.function or @debuggable proxy; else None."""
    for _ in range(5):
        if _is_proxy(value):
            value = value.__wrapped__
        elif isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif inspect.ismethod(value):
            value = value.__func__
        elif hasattr(value, "python_function") and not inspect.isfunction(value):
            value = value.python_function
        else:
            break
    return value if inspect.isfunction(value) else None


def _calls(fn: Any, name: str, namespace: dict[str, Any], seen: set[int]) -> bool:
    """Whether `fn`'s body names `name`, itself or through functions of the namespace it calls."""
    body = _python_body(fn)
    if body is None or id(body) in seen or len(seen) > 200:
        return False
    seen.add(id(body))
    names = set(_code_names(body.__code__))
    if name in names:
        return True
    scope = {**body.__globals__, **namespace} if body.__globals__ is not namespace else namespace
    return any(_calls(scope[n], name, namespace, seen) for n in names if n in scope and callable(scope[n]))


def _tf_function_type() -> type | None:
    module = sys.modules.get(_hook.FUNCTION_MODULE)
    return getattr(module, "Function", None) if module is not None else None


def _is_keras_model(value: object) -> bool:
    return any(c.__module__.split(".")[0] in _KERAS_ROOTS and c.__name__ in _MODEL_CLASSES
               for c in type(value).__mro__)


def _model_calls(model: Any, name: str, namespace: dict[str, Any]) -> bool:
    objects = [model, *getattr(model, "layers", [])]
    seen: set[int] = set()
    for obj in objects:
        for klass in type(obj).__mro__:
            if klass.__module__.split(".")[0] in _KERAS_ROOTS or klass is object:
                continue
            if any(_calls(member, name, namespace, seen) for member in vars(klass).values()):
                return True
    return False


def _traced_users(namespace: dict[str, Any], name: str, target: Any) -> set[tuple[str, str]]:
    """(variable name, kind) of what already holds the old `name`: "function" (a traced tf.function that
    calls it), "model" (a Keras model whose built train/test/predict functions call it), "loss" (a Keras
    model compiled with it as its loss)."""
    function_type: Any = _tf_function_type()
    if function_type is None:  # TensorFlow not imported: nothing can have been traced
        return set()
    target_body = _python_body(target)
    found: set[tuple[str, str]] = set()
    for key, value in list(namespace.items()):
        if key.startswith("_") or value is target or _is_proxy(value):
            continue
        if isinstance(value, function_type):
            if _python_body(value) is target_body:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = value.experimental_get_tracing_count()
            if traced and _calls(value, name, namespace, set()):
                found.add((key, "function"))
        elif _is_keras_model(value):
            if getattr(value, "loss", None) is target:
                found.add((key, "loss"))  # what compile() keeps: retracing alone would not change it
                continue
            built = any(getattr(value, attr, None) is not None
                        for attr in ("train_function", "test_function", "predict_function"))
            if built and _model_calls(value, name, namespace):
                found.add((key, "model"))
    return found

"""The `eagerctl` command (also `python -m eagerctl`): demo, run, status.

`eagerctl run` runs a program the way `python` would (`sys.argv`, `__main__`,
`sys.path[0]`, exit status), with `tf.function` calls forced eager or
compiled, chosen functions made `@debuggable` as their modules are imported,
and `tf.data` debug mode on, without changing a line of the program.
"""

from __future__ import annotations

import argparse
import os
import platform
import runpy
import sys
import threading
import traceback
from collections.abc import Sequence
from types import ModuleType, TracebackType
from typing import Any, TextIO

from ._errors import EagerctlError

PROG = "eagerctl"
RUN_USAGE = ("eagerctl run [--eager | --graph] [--process] [--debug MODULE:QUALNAME]... [--data-debug] "
             "(SCRIPT | -m MODULE) [ARGS...]")


class _UsageError(Exception):
    """A bad command line: print the message, exit with status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Control and inspect how TensorFlow runs tf.functions: eagerly or compiled.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="show what the eager flag really does, graph vs eager agreement and speed",
        description="Run the source article's three examples and a 512-wide MLP train step; print what ran "
                    "eagerly, whether graph and eager agree, and the time per call in each mode.",
    )
    demo.add_argument("--plot", metavar="FILE.png",
                      help="also draw graph-versus-eager times to FILE.png (needs matplotlib)")
    sub.add_parser("run", add_help=False, help="run a Python program with tf.functions eager or compiled")
    sub.add_parser("status", help="TF and Keras versions, the hook, the flag and what is active",
                   description="Print TF and Keras versions, whether eagerctl's hook is in, TF's flag, "
                               "and every active scope.")
    return parser


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eagerctl run", usage=RUN_USAGE, allow_abbrev=False,
        description="Run a Python program unchanged, the way `python SCRIPT` or `python -m MODULE` would, "
                    "with tf.function calls forced eager or compiled.",
        epilog="Everything after SCRIPT (or -m MODULE) is passed to the program as sys.argv[1:].",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--eager", action="store_true",
                      help="run every tf.function call eagerly (its Python body, line by line)")
    mode.add_argument("--graph", action="store_true",
                      help="run every tf.function call compiled, even if the program sets "
                           "tf.config.run_functions_eagerly(True)")
    parser.add_argument("--process", action="store_true",
                        help="apply --eager/--graph to the whole process (all threads) through TF's global "
                             "flag; by default it applies to the main thread and the asyncio tasks it starts")
    parser.add_argument("--debug", action="append", default=[], metavar="MODULE:QUALNAME",
                        help="make this function or method (pkg.mod:Class.method) @eagerctl.debuggable when "
                             "its module is imported; repeatable")
    parser.add_argument("--data-debug", action="store_true",
                        help="turn on tf.data debug mode before the program starts, so tf.data map/filter "
                             "functions run eagerly too (they ignore everything else)")
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module, like python -m")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `eagerctl` command; returns the exit status.

    Example::

        $ eagerctl run --eager train.py --epochs 1
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        return _run_command(args[1:])
    parser = _parser()
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # --help (0) or a usage error (2): return it, don't exit
        return _exit_status(exc.code)
    if ns.command == "demo":
        from . import _demo

        return _demo.run(ns.plot)
    if ns.command == "status":
        return _status_command(sys.stdout)
    parser.print_help(sys.stderr)
    return 2


# -- status -------------------------------------------------------------------

def _status_command(out: TextIO) -> int:
    from . import __version__, _demo, _status

    print(f"eagerctl         {__version__} (Python {platform.python_version()})", file=out)
    try:
        tf = _demo.import_tensorflow_quietly()
    except ImportError as exc:
        from ._hook import INSTALL_COMMAND

        print(f"tensorflow       not importable ({exc}); install it with: {INSTALL_COMMAND}", file=out)
        return 1
    print(f"keras            {_demo.keras_version(tf)}", file=out)
    print(_status.status(), file=out)
    setting = os.environ.get("EAGERCTL_DEBUGGABLE")
    if setting is not None:
        off = "  (@debuggable is off)" if setting == "0" else ""
        print(f"EAGERCTL_DEBUGGABLE={setting!r}{off}", file=out)
    return 0


# -- run ----------------------------------------------------------------------

def _split_run_args(args: list[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """(eagerctl's options, script, module, the program's arguments).

    Done by hand because everything after SCRIPT or `-m MODULE` belongs to the
    program, options included, as with `python`.
    """
    options: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            if i + 1 >= len(args):
                break
            return options, args[i + 1], None, args[i + 2:]
        if token == "-m":
            if i + 1 >= len(args):
                raise _UsageError("-m needs a MODULE to run")
            return options, None, args[i + 1], args[i + 2:]
        if token.startswith("-m") and not token.startswith("--"):
            return options, None, token[2:], args[i + 1:]
        if token.startswith("-") and token != "-":
            options.append(token)
            if token == "--debug" and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
            i += 1
            continue
        return options, token, None, args[i + 1:]
    return options, None, None, []


def _run_command(args: list[str]) -> int:
    parser = _run_parser()
    try:
        options, script, module, program_args = _split_run_args(args)
        try:
            ns = parser.parse_args(options)
        except SystemExit as exc:
            return _exit_status(exc.code)
        if script is None and module is None:
            raise _UsageError("give the program to run: a SCRIPT path or -m MODULE")
        if ns.process and not (ns.eager or ns.graph):
            raise _UsageError("--process applies --eager or --graph to the whole process; give one of them")
        specs = [_DebugSpec.parse(text) for text in ns.debug]
    except _UsageError as exc:
        print(f"usage: {RUN_USAGE}", file=sys.stderr)
        print(f"eagerctl run: error: {exc}", file=sys.stderr)
        return 2
    return _Runner(ns, script, module, program_args, specs).run()


class _DebugSpec:
    """One `--debug MODULE:QUALNAME`, applied by a post-import hook."""

    def __init__(self, text: str, module: str, qualname: str) -> None:
        self.text = text
        self.module = module
        self.qualname = qualname
        self.applied = False
        self.failed = False
        self.live = True  # False once the run is over: a late import must not fire it

    @classmethod
    def parse(cls, text: str) -> _DebugSpec:
        module, sep, qualname = text.partition(":")
        names = qualname.split(".")
        if not sep or not module or not all(part.isidentifier() for part in names) or not all(
            part.isidentifier() for part in module.split(".")
        ):
            raise _UsageError(
                f"--debug {text!r}: expected MODULE:QUALNAME, a module and a function in it, such as "
                "mypkg.train:train_step or mypkg.models:MyModel.train_step"
            )
        return cls(text, module, qualname)

    @property
    def in_main(self) -> bool:
        """Whether it names the program itself (`__main__:fn`), applied by `_MainTracer`."""
        return self.module == "__main__"

    def check_module(self) -> None:
        if not _module_exists(self.module):
            raise _UsageError(f"--debug {self.text}: no module named {self.module!r} (searched sys.path, "
                              "which starts with the program's directory)")

    def apply(self, module: ModuleType | _Globals) -> None:
        """Post-import hook body: wrap the target in @debuggable; SystemExit(2) if it cannot."""
        if not self.live or self.applied:
            return
        try:
            self._apply(module)
        except _UsageError as exc:
            self.failed = True
            print(f"eagerctl run: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    def _apply(self, module: ModuleType | _Globals) -> None:
        from ._debuggable import debuggable

        owner: Any = module
        parts = self.qualname.split(".")
        where = self.module
        for part in parts[:-1]:
            if not hasattr(owner, part):
                raise _UsageError(f"--debug {self.text}: {where} has no attribute {part!r}")
            owner = getattr(owner, part)
            where = f"{where}.{part}"
        name = parts[-1]
        # A class's own __dict__ keeps classmethod/staticmethod objects, which
        # @debuggable needs to see as such.
        if isinstance(owner, type) and name in owner.__dict__:
            target = owner.__dict__[name]
        elif hasattr(owner, name):
            target = getattr(owner, name)
        else:
            raise _UsageError(f"--debug {self.text}: {where} has no attribute {name!r}")
        if not (callable(target) or isinstance(target, (classmethod, staticmethod))):
            raise _UsageError(f"--debug {self.text}: {where}.{name} is not callable (it is a "
                              f"{type(target).__name__}); name a function or method")
        try:
            wrapped = debuggable(target)
        except TypeError as exc:
            raise _UsageError(f"--debug {self.text}: {exc}") from None
        setattr(owner, name, wrapped)
        self.applied = True


class _Runner:
    def __init__(self, ns: argparse.Namespace, script: str | None, module: str | None,
                 program_args: list[str], specs: list[_DebugSpec]) -> None:
        self.ns = ns
        self.script = script
        self.module = module
        self.program_args = program_args
        self.specs = specs

    def run(self) -> int:
        saved_argv = sys.argv
        saved_path0 = sys.path[0] if sys.path else None
        try:
            return self._run()
        finally:
            sys.argv = saved_argv
            if saved_path0 is not None:
                sys.path[0] = saved_path0
            for spec in self.specs:
                spec.live = False

    def _run(self) -> int:
        problem = self._prepare()
        if problem is not None:
            return problem
        setup = _TensorFlowSetup(self._scope(), self.ns.data_debug)
        if not setup.needed:
            return self._report_unapplied(self._execute())
        import wrapt

        try:
            # Done when the program imports TensorFlow (at once if it is already
            # imported), so settings the program makes before its import
            # (TF_CPP_MIN_LOG_LEVEL, TF_ENABLE_ONEDNN_OPTS, ...) still apply.
            wrapt.register_post_import_hook(setup.on_import, "tensorflow")
        except SystemExit as exc:
            setup.finish()
            return _exit_status(exc.code)
        try:
            status = self._execute()
            if setup.scope is not None and setup.scope.process:
                status = _wait_for_threads(status)
        finally:
            setup.finish()
        return self._report_unapplied(status)

    def _prepare(self) -> int | None:
        """Set up what python would, check the target and the specs; an exit status if that fails."""
        # As python does: sys.path[0] is the script's directory, or the
        # current directory for -m (instead of eagerctl's own bin directory).
        if self.script is not None:
            if not os.path.exists(self.script):
                print(f"eagerctl run: can't open file {os.path.abspath(self.script)!r}: "
                      "[Errno 2] No such file or directory", file=sys.stderr)
                return 2
            real = os.path.realpath(self.script)
            path0 = real if os.path.isdir(real) else os.path.dirname(real)
        else:
            path0 = os.getcwd()
        if sys.path:
            sys.path[0] = path0
        else:
            sys.path.insert(0, path0)
        if self.module is not None and not _module_exists(self.module):
            print(f"eagerctl run: no module named {self.module!r}", file=sys.stderr)
            return 1
        try:
            for spec in self.specs:
                if not spec.in_main:
                    spec.check_module()
        except _UsageError as exc:
            print(f"eagerctl run: error: {exc}", file=sys.stderr)
            return 2
        if self.specs:
            import wrapt

            try:
                for spec in self.specs:
                    if not spec.in_main:
                        # Fires at once (and may fail with SystemExit(2)) if already imported.
                        wrapt.register_post_import_hook(spec.apply, spec.module)
            except SystemExit as exc:
                return _exit_status(exc.code)
        return None

    def _report_unapplied(self, status: int) -> int:
        for spec in self.specs:
            if spec.applied or spec.failed:
                continue
            if spec.in_main and status == 0:
                # The program ran to its end without ever binding the name at module level.
                name = spec.qualname.split(".")[0]
                print(f"eagerctl run: error: --debug {spec.text}: the program never defined {name!r} at "
                      "module level", file=sys.stderr)
                status = 2
            elif spec.in_main:
                print(f"eagerctl run: warning: --debug {spec.text} was never applied: the program stopped "
                      "before defining it", file=sys.stderr)
            else:
                print(f"eagerctl run: warning: --debug {spec.text} was never applied: the program did not "
                      f"import {spec.module}{self._main_hint(spec)}", file=sys.stderr)
        return status

    def _scope(self) -> Any:
        from ._scope import eager_scope, graph_scope

        if self.ns.eager:
            return eager_scope(process=self.ns.process)
        if self.ns.graph:
            return graph_scope(process=self.ns.process)
        return None

    def _main_hint(self, spec: _DebugSpec) -> str:
        program = self.module if self.module is not None else (
            os.path.splitext(os.path.basename(os.path.normpath(self.script or "")))[0])
        if spec.module == program:
            return f" (the program itself runs as __main__: use --debug __main__:{spec.qualname})"
        return ""

    def _execute(self) -> int:
        main_specs = [spec for spec in self.specs if spec.in_main]
        if not main_specs:
            return self._execute_program()
        if sys.gettrace() is not None:
            print("eagerctl run: error: --debug __main__:... needs sys.settrace, and a debugger or coverage "
                  "tool already uses it here; move the function into a module, or decorate it with "
                  "@eagerctl.debuggable", file=sys.stderr)
            for spec in main_specs:
                spec.failed = True
            return 2
        tracer = _MainTracer(main_specs)
        sys.settrace(tracer.on_call)
        try:
            return self._execute_program()
        finally:
            tracer.stop()

    def _execute_program(self) -> int:
        try:
            if self.module is not None:
                # run_module(alter_sys=True) puts the module's file in sys.argv[0].
                sys.argv = [self.module, *self.program_args]
                runpy.run_module(self.module, run_name="__main__", alter_sys=True)
            else:
                assert self.script is not None
                sys.argv = [self.script, *self.program_args]
                runpy.run_path(self.script, run_name="__main__")
        except SystemExit as exc:
            return _exit_status(exc.code, report=True)
        except BaseException as exc:  # noqa: BLE001 - reported the way python reports it
            _report(exc)
            return 130 if isinstance(exc, KeyboardInterrupt) else 1
        return 0


class _TensorFlowSetup:
    """What `eagerctl run` does to TensorFlow, done by a post-import hook on it.

    The mode scope (--eager/--graph) and tf.data debug mode are set up right
    after the program's own `import tensorflow`, in the thread that imports
    it. A local scope is entered only if that is the thread that runs the
    program (it always is, unless the program imports TensorFlow first in a
    thread of its own; then a warning says to use --process).
    """

    def __init__(self, scope: Any, data_debug: bool) -> None:
        self.scope = scope
        self.data_debug = data_debug
        self.thread = threading.current_thread()
        self.live = True
        self.entered = False

    @property
    def needed(self) -> bool:
        return self.scope is not None or self.data_debug

    def on_import(self, tf: ModuleType) -> None:
        if not self.live:
            return
        self.live = False
        if self.data_debug:
            tf.data.experimental.enable_debug_mode()
        if self.scope is None:
            return
        if not self.scope.process and threading.current_thread() is not self.thread:
            print(f"eagerctl run: warning: the program imported TensorFlow first in thread "
                  f"{threading.current_thread().name!r}, so {self.scope!r} could not be set for its main "
                  "thread; use --process", file=sys.stderr)
            return
        try:
            self.scope.__enter__()
        except EagerctlError as exc:
            print(f"eagerctl run: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        self.entered = True

    def finish(self) -> None:
        self.live = False
        if self.entered:
            self.entered = False
            try:
                self.scope.__exit__(None, None, None)
            except EagerctlError as exc:  # entered in a context the program then left (an asyncio task)
                print(f"eagerctl run: warning: {exc}", file=sys.stderr)


def _module_exists(name: str) -> bool:
    """Whether module `name` can be found, without importing it or its parent packages.

    `importlib.util.find_spec("pkg.mod")` would import `pkg`, running its code
    (often an `import tensorflow`) before the program starts.
    """
    parts = name.split(".")
    path: list[str] | None = None
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        module = sys.modules.get(full)
        if module is not None:
            locations = getattr(module, "__path__", None)
        else:
            spec = _find_spec(full, path)
            if spec is None:
                return False
            locations = spec.submodule_search_locations
        if i < len(parts) - 1:
            if locations is None:  # not a package: it has no submodules
                return False
            path = list(locations)
    return True


def _find_spec(fullname: str, path: list[str] | None) -> Any:
    for finder in sys.meta_path:
        # wrapt's post-import finder only delegates, through importlib.util.find_spec (which imports parents).
        if type(finder).__module__.startswith("wrapt"):
            continue
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(fullname, path)
        except (ImportError, ValueError):
            continue
        if spec is not None:
            return spec
    return None


class _Globals:
    """A module's globals dict seen as attributes, so `_DebugSpec._apply` treats it like a module."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        object.__setattr__(self, "_namespace", namespace)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._namespace[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._namespace[name] = value


class _MainTracer:
    """Applies `--debug __main__:NAME` specs as the program binds those names.

    The program's own code runs as `__main__` and is never imported, so no
    import hook can see it. A trace function follows the program's module-level
    code line by line and wraps each named function right after its `def` (or
    other binding) ran. Tracing costs time, so it stops as soon as every spec
    is applied, usually after the program's first few lines (its imports).
    """

    def __init__(self, specs: list[_DebugSpec]) -> None:
        self.pending = list(specs)
        self.frame: Any = None

    def on_call(self, frame: Any, event: str, arg: Any) -> Any:
        if (self.frame is None and event == "call" and frame.f_code.co_name == "<module>"
                and frame.f_globals.get("__name__") == "__main__"):
            self.frame = frame
            return self.on_line
        return None

    def on_line(self, frame: Any, event: str, arg: Any) -> Any:
        # Each event comes before its line runs: the previous line's bindings are visible.
        namespace = frame.f_globals
        for spec in list(self.pending):
            if spec.qualname.split(".")[0] in namespace:
                self.pending.remove(spec)
                spec.apply(_Globals(namespace))  # SystemExit(2) on a bad target
        if not self.pending or event == "return":
            self.stop()
            return None
        return self.on_line

    def stop(self) -> None:
        if sys.gettrace() == self.on_call:
            sys.settrace(None)
        if self.frame is not None:
            self.frame.f_trace = None
            self.frame = None


def _wait_for_threads(status: int) -> int:
    """Join the program's non-daemon threads, as python does before it exits.

    Under --process this happens before the process scope exits, so threads
    that outlive the program's main code keep the mode they were given.
    """
    current = threading.current_thread()
    try:
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon:
                thread.join()
    except KeyboardInterrupt:
        return 130
    return status


def _exit_status(code: object, report: bool = False) -> int:
    """SystemExit's code as python turns it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    if report:
        print(code, file=sys.stderr)
    return 1


def _report(exc: BaseException) -> None:
    """Print an uncaught exception through sys.excepthook, without eagerctl's and runpy's frames."""
    tb: TracebackType | None = exc.__traceback__
    skip = {__file__, os.path.abspath(__file__), runpy.__file__}
    while tb is not None and (tb.tb_frame.f_code.co_filename in skip
                              or tb.tb_frame.f_code.co_filename.startswith("<frozen runpy")):
        tb = tb.tb_next
    # CPython prints the exception's own __traceback__, whatever tb is passed.
    exc.__traceback__ = tb
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception:  # noqa: BLE001 - a broken excepthook must not hide the error
        traceback.print_exception(type(exc), exc, tb)

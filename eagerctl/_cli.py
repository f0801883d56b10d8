"""The `eagerctl` command (also `python -m eagerctl`): demo, run, status.

`eagerctl run` runs a program the way `python` would (`sys.argv`, `__main__`,
`sys.path[0]`, exit status), with `tf.function` calls forced eager or
compiled, every definition of chosen functions made `@debuggable` as the
program makes it, and `tf.data` debug mode on, without changing a line of the
program.
"""

from __future__ import annotations

import argparse
import importlib.abc
import inspect
import os
import platform
import runpy
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, MutableMapping, Sequence
from types import ModuleType, TracebackType
from typing import Any, TextIO

from ._errors import EagerctlError, EagerctlWarning
from ._tracebacks import without_own_frames

PROG = "eagerctl"
RUN_USAGE = ("eagerctl run [--eager | --graph] [--process] [--debug MODULE:QUALNAME]... "
             "[--bisect MODULE:QUALNAME] [--data-debug] [--replay] "
             "(SCRIPT | -m MODULE) [ARGS...]")


class _UsageError(Exception):
    """A bad command line: print the message, exit with status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Control and inspect how TensorFlow runs tf.functions: eagerly or compiled.",
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
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
                        help="make every definition of this function or method (pkg.mod:Class.method, "
                             "__main__:train_step) @eagerctl.debuggable as the program makes it; repeatable")
    parser.add_argument("--bisect", action="append", default=[], metavar="MODULE:QUALNAME",
                        help="bisect the first call of this function (eagerctl.bisect: which nested "
                             "function, layer or tf.function makes graph and eager differ), print the "
                             "report, let the program go on")
    parser.add_argument("--data-debug", action="store_true",
                        help="turn on tf.data debug mode before the program starts, so tf.data map/filter "
                             "functions run eagerly too (they ignore everything else)")
    parser.add_argument("--replay", action="store_true",
                        help="run the program inside eagerctl.replay(): a compiled tf.function call that "
                             "raises or returns NaN/Inf is run again eagerly from the state it started "
                             "from, and the error names the line, the op and the step")
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
    if setting is not None:  # read as @debuggable reads it (_env)
        from . import _env

        value = _env.parse(setting)
        said = ("  (@debuggable is off)" if value is False else "" if value else
                f"  (not understood: @debuggable raises EagerctlError; {_env.advice(_env.DEBUGGABLE_OFF)})")
        print(f"EAGERCTL_DEBUGGABLE={setting!r}{said}", file=out)
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
            if token in ("--debug", "--bisect") and i + 1 < len(args):
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
        specs += [_BisectSpec.parse(text) for text in ns.bisect]
    except _UsageError as exc:
        print(f"usage: {RUN_USAGE}", file=sys.stderr)
        print(f"eagerctl run: error: {exc}", file=sys.stderr)
        return 2
    return _Runner(ns, script, module, program_args, specs).run()


class _DebugSpec:
    """One `--debug MODULE:QUALNAME`: wraps every definition of its target the program makes.

    The module's own code runs with `_WatchedNamespace` as its locals, so each
    module-level binding of the target's first name (a `def`, a `class` holding
    the method, an assignment) is wrapped as it is made; for a module imported
    already, a post-import hook wraps what is there.
    """

    option = "--debug"

    def __init__(self, text: str, module: str, qualname: str) -> None:
        self.text = text
        self.module = module
        self.qualname = qualname
        self.top = qualname.split(".", maxsplit=1)[0]
        self.definitions: list[str] = []  # where each wrapped definition was made (file:line)
        self.proxies: list[Any] = []  # the @debuggable proxies counted in `definitions`
        self.failed = False
        self.live = True  # False once the run is over: a late import must not fire it

    @property
    def applied(self) -> bool:
        return bool(self.definitions)

    @classmethod
    def parse(cls, text: str) -> _DebugSpec:
        module, sep, qualname = text.partition(":")
        names = qualname.split(".")
        if not sep or not module or not all(part.isidentifier() for part in names) or not all(
            part.isidentifier() for part in module.split(".")
        ):
            raise _UsageError(
                f"{cls.option} {text!r}: expected MODULE:QUALNAME, a module and a function in it, such as "
                "mypkg.train:train_step or mypkg.models:MyModel.train_step"
            )
        return cls(text, module, qualname)

    @property
    def in_main(self) -> bool:
        """Whether it names the program itself (`__main__:fn`), applied by `_MainWatch`."""
        return self.module == "__main__"

    def check_module(self) -> None:
        if not _module_exists(self.module):
            raise _UsageError(f"{self.option} {self.text}: no module named {self.module!r} (searched "
                              "sys.path, which starts with the program's directory)")

    def apply(self, module: ModuleType | _Globals) -> None:
        """Post-import hook body: wrap the target in @debuggable; SystemExit(2) if it cannot."""
        if not self.live:
            return
        try:
            self._apply(module)
        except _UsageError as exc:
            self._fail(exc)

    def _fail(self, exc: _UsageError) -> None:
        self.failed = True
        print(f"eagerctl run: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    def bind(self, value: Any) -> Any:
        """The program binds the target's first name to `value`: what to store (the target wrapped)."""
        if not self.live:
            return value
        try:
            if "." not in self.qualname:
                return self._wrapped(value, f"{self.module}.{self.top}")
            self._apply(_Globals({self.top: value}))
        except _UsageError as exc:
            self._fail(exc)
        return value

    def _apply(self, module: ModuleType | _Globals) -> None:
        owner: Any = module
        parts = self.qualname.split(".")
        where = self.module
        for part in parts[:-1]:
            if not hasattr(owner, part):
                raise _UsageError(f"{self.option} {self.text}: {where} has no attribute {part!r}")
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
            raise _UsageError(f"{self.option} {self.text}: {where} has no attribute {name!r}")
        wrapped = self._wrapped(target, f"{where}.{name}")
        if wrapped is not target:
            setattr(owner, name, wrapped)

    def _wrapped(self, target: Any, where: str) -> Any:
        """`target` made @debuggable (recorded, with a warning if that comes after tracing)."""
        from ._debuggable import _Debuggable, debuggable, traced_message

        if isinstance(target, _Debuggable):
            if not any(proxy is target for proxy in self.proxies):  # decorated by the program itself
                self.proxies.append(target)
                self.definitions.append(f"{_definition_site(target.__wrapped__)} (already @debuggable)")
            return target
        if not (callable(target) or isinstance(target, (classmethod, staticmethod))):
            raise _UsageError(f"{self.option} {self.text}: {where} is not callable (it is a "
                              f"{type(target).__name__}); name a function or method")
        late = traced_message(target)
        if late is not None:
            print(f"eagerctl run: warning: --debug {self.text}: {late}", file=sys.stderr)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EagerctlWarning)  # said above, pointing at no eagerctl line
                wrapped = debuggable(target)
        except TypeError as exc:
            raise _UsageError(f"{self.option} {self.text}: {exc}") from None
        self.definitions.append(_definition_site(target))
        self.proxies.append(wrapped)
        return wrapped


class _BisectSpec(_DebugSpec):
    """One `--bisect MODULE:QUALNAME`: found and wrapped as `--debug` does; its first call is bisected."""

    option = "--bisect"

    def _wrapped(self, target: Any, where: str) -> Any:
        from ._bisect import bisect_first_call

        if not callable(target):
            raise _UsageError(f"--bisect {self.text}: {where} is not callable (it is a "
                              f"{type(target).__name__}); name a function, tf.function or method")
        self.definitions.append(_definition_site(target))
        return bisect_first_call(target, self.text)


class _Runner:
    def __init__(self, ns: argparse.Namespace, script: str | None, module: str | None,
                 program_args: list[str], specs: list[_DebugSpec]) -> None:
        self.ns = ns
        self.script = script
        self.module = module
        self.program_args = program_args
        self.specs = specs
        self.module_watch = _ModuleWatch([spec for spec in specs if not spec.in_main])

    def run(self) -> int:
        saved_argv = sys.argv
        saved_path0 = sys.path[0] if sys.path else None
        try:
            return self._run()
        finally:
            sys.argv = saved_argv
            if saved_path0 is not None:
                sys.path[0] = saved_path0
            self.module_watch.uninstall()
            for spec in self.specs:
                spec.live = False

    def _run(self) -> int:
        problem = self._prepare()
        if problem is not None:
            return problem
        from . import _hook

        # `eagerctl run` is a use of eagerctl: the hook (with the breakpoint patches it carries, so a
        # `breakpoint()` in a tf.function body stops on every call) goes in when the program imports TF.
        _hook.install_when_tf_imported()
        # TF's C++ start-up lines (INFO: CPU features, oneDNN) are left out, as `demo` and `status`
        # leave them out; its warnings and errors still show, and a level the user set wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
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
            setup.start()
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
                    self._check_not_the_program(spec)
        except _UsageError as exc:
            print(f"eagerctl run: error: {exc}", file=sys.stderr)
            return 2
        if self.specs:
            import wrapt

            self.module_watch.install()
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
            option = f"{spec.option} {spec.text}"
            if spec.applied:
                n = len(spec.definitions)
                print(f"eagerctl run: {option} wrapped {n} definition{'s' if n != 1 else ''}: "
                      f"{', '.join(spec.definitions)}", file=sys.stderr)
            if spec.applied or spec.failed:
                continue
            if spec.in_main and status == 0:
                # The program ran to its end without ever binding the name at module level.
                name = spec.qualname.split(".")[0]
                print(f"eagerctl run: error: {option}: the program never defined {name!r} at "
                      "module level", file=sys.stderr)
                status = 2
            elif spec.in_main:
                print(f"eagerctl run: warning: {option} was never applied: the program stopped "
                      "before defining it", file=sys.stderr)
            else:
                print(f"eagerctl run: warning: {option} was never applied: the program did not "
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
            return f" (the program itself runs as __main__: use {spec.option} __main__:{spec.qualname})"
        return ""

    def _check_not_the_program(self, spec: _DebugSpec) -> None:
        """`_UsageError` if `spec` names the program's own module (`train:step` for `train.py`).

        Python runs the program as `__main__`, not under its module name: such a spec
        could only apply to a second copy the program imported of itself, so it is
        refused before the program runs, with the spelling that applies.
        """
        if self.module is not None:
            same = spec.module == self.module
            program = f"-m {self.module}"
        else:
            script = os.path.realpath(self.script or "")
            if os.path.isdir(script):  # a directory or zip with __main__.py: no module name of its own
                return
            found = _module_file(spec.module)
            same = isinstance(found, str) and os.path.realpath(found) == script
            program = self.script or ""
        if same:
            raise _UsageError(
                f"{spec.option} {spec.text}: {spec.module} is the program itself ({program}), which Python "
                f"runs as __main__, not as {spec.module!r}, so this would never apply; use "
                f"{spec.option} __main__:{spec.qualname}")

    def _execute(self) -> int:
        if self.ns.replay:  # TF is patched when the program imports it (docs/replay.md)
            from ._replay import replay

            with replay():
                return self._execute_watched()
        return self._execute_watched()

    def _execute_watched(self) -> int:
        main_specs = [spec for spec in self.specs if spec.in_main]
        if not main_specs:
            return self._execute_program()
        with _MainWatch(main_specs):
            return self._execute_program()

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
    """What `eagerctl run` does to TensorFlow.

    A local mode scope (--eager/--graph without --process) is entered before
    the program starts, in the context of the thread that runs it, so the
    program's main thread and every asyncio task it starts inherit it, wherever
    and however the program then imports TensorFlow (in a child task, in a
    thread). It is exited there after the program. A process scope and tf.data
    debug mode are set up by a post-import hook right after the program's own
    `import tensorflow`, so that settings the program makes before it
    (TF_CPP_MIN_LOG_LEVEL, ...) still apply; that hook also checks that local
    overrides work with this TensorFlow.
    """

    def __init__(self, scope: Any, data_debug: bool) -> None:
        self.scope = scope
        self.data_debug = data_debug
        self.live = True
        self.entered = False
        self.activation: Any = None

    @property
    def needed(self) -> bool:
        return self.scope is not None or self.data_debug

    def start(self) -> None:
        if self.scope is None or self.scope.process:
            return
        from . import _hook, _scope

        # Kept before it is entered: `finish()` undoes whatever part an interrupt let happen.
        self.activation = _scope.Activation(self.scope, sys._getframe())
        self.entered = True
        if _hook.installed:
            self.activation.enter()
        else:
            _enter_before_tensorflow(self.activation)

    def on_import(self, tf: ModuleType) -> None:
        if not self.live:
            return
        self.live = False
        if self.data_debug:
            tf.data.experimental.enable_debug_mode()
        if self.scope is None:
            return
        from . import _hook

        try:
            if self.scope.process:
                self.scope.__enter__()
                self.entered = True
            else:
                _hook.require_local()  # the override entered before the program needs the hook
        except EagerctlError as exc:
            print(f"eagerctl run: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    def finish(self) -> None:
        self.live = False
        if not self.entered:
            return
        self.entered = False
        if self.activation is not None:
            activation, self.activation = self.activation, None
            activation.exit()  # safe in any state an interrupt left it in
        else:
            self.scope.__exit__(None, None, None)


def _enter_before_tensorflow(activation: Any) -> None:
    """Enter a local scope's `activation` in this context before TensorFlow is imported.

    `Activation.enter()` needs TF (to install the hook, and to check for a
    trace). Before TF is imported nothing can be traced and nothing reads the
    override yet: this does the rest of the local entry, the same steps in the
    same order (the `ContextVar.set` last: the commit), and eagerctl's import
    hook installs the hook reading it when the program imports TF.
    `Activation.exit()` leaves it as usual.
    """
    from . import _local, _scope

    activation.thread = threading.get_ident()
    activation.below = _local.STACK.get()
    activation.value = activation.scope.enabled
    _scope.LIVE_LOCAL[activation] = None
    activation.token = _local.STACK.set(activation)


def _module_exists(name: str) -> bool:
    """Whether module `name` can be found, without importing it or its parent packages."""
    return _module_file(name) is not False


def _module_file(name: str) -> str | bool | None:
    """The file module `name` would be loaded from (None if it has none), or False if not found.

    Without importing it or its parent packages: `importlib.util.find_spec("pkg.mod")`
    would import `pkg`, running its code (often an `import tensorflow`) before the
    program starts.
    """
    parts = name.split(".")
    path: list[str] | None = None
    origin: str | None = None
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        module = sys.modules.get(full)
        if module is not None:
            locations = getattr(module, "__path__", None)
            origin = getattr(module, "__file__", None)
        else:
            spec = _find_spec(full, path)
            if spec is None:
                return False
            locations = spec.submodule_search_locations
            origin = spec.origin if spec.has_location else None
        if i < len(parts) - 1:
            if locations is None:  # not a package: it has no submodules
                return False
            path = list(locations)
    return origin


def _find_spec(fullname: str, path: list[str] | None, skip: object = None) -> Any:
    for finder in sys.meta_path:
        # wrapt's post-import finder only delegates, through importlib.util.find_spec (which imports parents).
        if finder is skip or type(finder).__module__.startswith("wrapt"):
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


class _WatchedNamespace(MutableMapping[str, Any]):
    """A module's namespace as its module-level code sees it, with `--debug` targets wrapped as bound.

    The module's code runs as `exec(code, namespace, _WatchedNamespace(namespace, specs))`:
    its `def`, `class`, `import` and assignment statements store names through
    `__setitem__` (the `*_NAME` opcodes use the locals mapping), and everything is
    kept in the real namespace, which its functions use as their globals. Each
    binding of a `--debug` target's first name is wrapped before it is stored, so
    every definition is wrapped, however often the program redefines it.
    """

    __slots__ = ("_namespace", "_specs")

    def __init__(self, namespace: dict[str, Any], specs: list[_DebugSpec]) -> None:
        self._namespace = namespace
        self._specs = specs

    def __getitem__(self, name: str) -> Any:
        return self._namespace[name]

    def __setitem__(self, name: str, value: Any) -> None:
        for spec in self._specs:
            if spec.top == name:
                value = spec.bind(value)  # SystemExit(2) on a bad target
        self._namespace[name] = value

    def __delitem__(self, name: str) -> None:
        del self._namespace[name]

    def __contains__(self, name: object) -> bool:
        return name in self._namespace

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespace)

    def __len__(self) -> int:
        return len(self._namespace)


def _definition_site(target: Any) -> str:
    """file:line of the `def` behind `target` (a function, method, tf.function), or its repr."""
    inner = target.__func__ if isinstance(target, (classmethod, staticmethod)) else target
    inner = getattr(inner, "python_function", inner)
    code = getattr(inspect.unwrap(inner) if inspect.isroutine(inner) else inner, "__code__", None)
    if code is None:
        return repr(target)
    return f"{code.co_filename}:{code.co_firstlineno}"


class _MainWatch:
    """Runs the program's own code (`__main__`) with its namespace watched for `--debug __main__:...`.

    runpy executes the program with `exec(code, run_globals)`; a module-level
    `exec` in runpy's namespace takes the place of the builtin for that one call.
    """

    def __init__(self, specs: list[_DebugSpec]) -> None:
        self.specs = specs

    def __enter__(self) -> _MainWatch:
        runpy.exec = self._exec  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc_info: object) -> None:
        runpy.__dict__.pop("exec", None)

    def _exec(self, code: Any, run_globals: dict[str, Any], *rest: Any) -> None:
        runpy.__dict__.pop("exec", None)  # once: a runpy call the program makes itself is its own
        if rest or run_globals.get("__name__") != "__main__":
            exec(code, run_globals, *rest)  # what runpy would have done
            return
        exec(code, run_globals, _WatchedNamespace(run_globals, self.specs))


class _ModuleWatch(importlib.abc.MetaPathFinder):
    """Runs the code of the modules named by `--debug pkg.mod:NAME` with their namespace watched.

    A finder placed after wrapt's (whose post-import hooks still fire) finds
    the module as the other finders would, and gives its spec a loader that
    runs the module's code through `_WatchedNamespace`.
    """

    def __init__(self, specs: list[_DebugSpec]) -> None:
        self.specs: dict[str, list[_DebugSpec]] = {}
        for spec in specs:
            self.specs.setdefault(spec.module, []).append(spec)

    def install(self) -> None:
        place = next((i + 1 for i, finder in enumerate(sys.meta_path)
                      if type(finder).__module__.startswith("wrapt")), 0)
        sys.meta_path.insert(place, self)

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        specs = self.specs.get(fullname)
        if specs is None or not all(spec.live for spec in specs):
            return None
        found = _find_spec(fullname, list(path) if path is not None else None, skip=self)
        loader = getattr(found, "loader", None)
        if found is None or not callable(getattr(loader, "get_code", None)):
            return None  # not Python source we can run ourselves: the post-import hook wraps the end result
        found.loader = _WatchedLoader(loader, specs)
        return found


class _WatchedLoader(importlib.abc.Loader):
    """A module's own loader, except that its code runs with the namespace watched."""

    def __init__(self, loader: Any, specs: list[_DebugSpec]) -> None:
        self._loader = loader
        self._specs = specs

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        code = self._loader.get_code(module.__name__)
        exec(code, module.__dict__, _WatchedNamespace(module.__dict__, self._specs))


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
    tb = without_own_frames(tb, exc)
    # CPython prints the exception's own __traceback__, whatever tb is passed.
    exc.__traceback__ = tb
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception:  # noqa: BLE001 - a broken excepthook must not hide the error
        traceback.print_exception(type(exc), exc, tb)

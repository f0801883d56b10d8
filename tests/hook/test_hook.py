"""The hook into TensorFlow: lazy, exact to uninstall, and clear when TF cannot be hooked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf
from helpers import make_probe, mode_of
from tensorflow.python.eager.polymorphic_function import polymorphic_function
from tensorflow.python.saved_model import function_deserialization

import eagerctl
from eagerctl import EagerctlError, _distribute, _hook

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; it prints one JSON line last."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_import_is_lazy_and_the_hook_installs_at_first_use_only() -> None:
    got = run_python(
        """
        import json, sys
        import eagerctl
        before = "tensorflow" in sys.modules
        status_before = str(eagerctl.status())
        import tensorflow as tf
        from tensorflow.python.eager.polymorphic_function import polymorphic_function as pf

        def ours():
            prop = pf.Function.__dict__["_run_functions_eagerly"]
            return "eagerctl" in (prop.__doc__ or "")

        after_tf = {"installed": eagerctl.status().hook_installed, "ours": ours(),
                    "writer": hasattr(tf.config.run_functions_eagerly, "__eagerctl_original__")}
        with eagerctl.eager_scope():  # first use
            pass
        print(json.dumps({"tf_at_import": before, "status": status_before, "after_tf": after_tf,
                          "after_use": [eagerctl.status().hook_installed, ours()]}))
        """
    )
    assert got["tf_at_import"] is False
    assert "tensorflow       not imported" in str(got["status"])
    # Importing TF after eagerctl patches nothing: inert unless asked.
    assert got["after_tf"] == {"installed": False, "ours": False, "writer": False}
    assert got["after_use"] == [True, True]


def test_install_when_tf_imported_installs_at_tf_import() -> None:
    # The entry point for a feature that must act before any scope is used.
    got = run_python(
        """
        import json
        import eagerctl
        from eagerctl import _hook
        _hook.install_when_tf_imported()
        import tensorflow as tf
        print(json.dumps({"installed": eagerctl.status().hook_installed}))
        """
    )
    assert got == {"installed": True}


def test_without_tensorflow_import_works_and_scopes_say_how_to_install() -> None:
    got = run_python(
        """
        import json, sys
        sys.modules["tensorflow"] = None  # as if TensorFlow were not installed
        import eagerctl
        errors = []
        for make in (lambda: eagerctl.eager_scope(), lambda: eagerctl.eager_scope(process=True)):
            try:
                with make():
                    pass
            except eagerctl.EagerctlError as exc:
                errors.append(str(exc))
        try:
            eagerctl.is_eager()
        except eagerctl.EagerctlError as exc:
            errors.append(str(exc))
        print(json.dumps({"errors": errors, "status": str(eagerctl.status())}))
        """
    )
    errors = got["errors"]
    assert isinstance(errors, list) and len(errors) == 3
    for message in errors:
        assert message.startswith("eagerctl needs TensorFlow, which cannot be imported here (")
        assert message.endswith(
            "); install it with: pip install tensorflow  (or tensorflow-cpu on a machine without a GPU)"
        )
    assert "tensorflow       not imported" in str(got["status"])


def test_tf_without_the_hooked_attribute_refuses_local_scopes_but_process_scopes_work() -> None:
    got = run_python(
        """
        import json
        import tensorflow as tf
        from tensorflow.python.eager.polymorphic_function import polymorphic_function as pf
        del pf.Function._run_functions_eagerly  # what a TF without this attribute looks like
        import eagerctl
        errors = []
        for use in (lambda: eagerctl.eager_scope().__enter__(), lambda: eagerctl.graph_scope().__enter__()):
            try:
                use()
            except eagerctl.EagerctlError as exc:
                errors.append(str(exc))
        with eagerctl.eager_scope(process=True):
            inside = tf.config.functions_run_eagerly()
        print(json.dumps({"errors": errors, "inside": inside, "after": tf.config.functions_run_eagerly(),
                          "version": tf.__version__, "scopes": len(eagerctl.status().scopes)}))
        """
    )
    version = got["version"]
    assert got["errors"] == [
        f"TensorFlow {version} has no property Function._run_functions_eagerly to hook, so local scopes "
        "and @debuggable cannot work with it; use eager_scope(process=True), which drives TF's global "
        "flag, or install TensorFlow 2.13 to 2.21"
    ] * 2
    assert (got["inside"], got["after"], got["scopes"]) == (True, False, 0)


def test_uninstall_restores_tf_original_object_exactly_and_first_use_reinstalls() -> None:
    cls = polymorphic_function.Function
    eagerctl.install_hook()
    ours = cls.__dict__["_run_functions_eagerly"]
    original = _hook.original
    assert ours is not original
    assert _distribute.installed()
    eagerctl.uninstall_hook()
    try:
        assert cls.__dict__["_run_functions_eagerly"] is original
        assert not _distribute.installed()  # the replica-thread hand-over goes with it
        assert eagerctl.status().hook_installed is False
        probe, seen = make_probe()
        tf.config.run_functions_eagerly(True)
        assert mode_of(probe, seen) == "eager"  # TF's own property works as before
        tf.config.run_functions_eagerly(False)
        with eagerctl.eager_scope():  # first use puts the hook back
            assert mode_of(probe, seen) == "eager"
        assert isinstance(cls.__dict__["_run_functions_eagerly"], property)
        assert cls.__dict__["_run_functions_eagerly"] is not original
        assert _distribute.installed()
    finally:
        eagerctl.install_hook()


def test_uninstall_refuses_while_local_scopes_are_active() -> None:
    with eagerctl.eager_scope():
        with pytest.raises(EagerctlError) as info:
            eagerctl.uninstall_hook()
        assert str(info.value) == (
            "cannot uninstall eagerctl's hook while 1 local scope(s) are active: they would silently stop "
            "working; exit them first, or call eagerctl.reset() (see eagerctl.status())"
        )
        assert eagerctl.status().hook_installed is True
        assert eagerctl.is_eager()


def test_restored_functions_keep_their_own_property(tmp_path: Path) -> None:
    module = tf.Module()
    module.double = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    restored_cls = function_deserialization.RestoredFunction
    own = restored_cls.__dict__["_run_functions_eagerly"]
    with eagerctl.eager_scope():
        assert loaded.double._run_functions_eagerly is False
        assert float(loaded.double(tf.constant(3.0))) == 6.0
    assert restored_cls.__dict__["_run_functions_eagerly"] is own
    assert "eagerctl" not in (own.__doc__ or "")


def test_a_compiled_call_runs_no_eagerctl_code_but_the_hooks_property_until_a_debugger_is_watched() -> None:
    """Every tf.function call goes through the hook: without a debugger that is one property read.

    The breakpoint machinery's retracing wrapper of TF's trace-unless-cached
    step goes in only once a debugger is watched (here: pdb's first breakpoint).
    """
    got = run_python(
        """
        import collections, json, os, sys
        import tensorflow as tf
        import eagerctl
        from eagerctl import _hook

        eagerctl.install_hook()
        add_one = tf.function(lambda x: x + 1.0)
        x = tf.constant(1.0)
        add_one(x)
        package = os.path.dirname(eagerctl.__file__)

        def eagerctl_calls():
            called = collections.Counter()

            def profile(frame, event, arg):
                if event == "call" and frame.f_code.co_filename.startswith(package):
                    called[frame.f_code.co_qualname] += 1

            sys.setprofile(profile)
            try:
                for _ in range(10):
                    add_one(x)
            finally:
                sys.setprofile(None)
            return dict(called)

        plain = eagerctl_calls()
        import pdb
        debugger = pdb.Pdb()
        debugger.set_break(eagerctl.__file__, 1)
        watched = [_hook.WATCH.on, eagerctl_calls()]
        print(json.dumps({"plain": plain, "watched": watched}))
        """
    )
    assert got["plain"] == {"_make_property.<locals>._run_functions_eagerly": 10}
    on, calls = got["watched"]  # type: ignore[misc]
    assert on is True
    assert calls.get("_retrying") == 10, calls


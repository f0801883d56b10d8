"""What the proxy passes through: names, docs, __wrapped__, signatures (runtime and for mypy)."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf

import eagerctl


def loss(y_true: Any, y_pred: Any, *, weight: float = 1.0) -> Any:
    """Mean squared error."""
    return tf.reduce_mean((y_true - y_pred) ** 2) * weight


def test_function_metadata_and_signature() -> None:
    proxy = eagerctl.debuggable(loss)
    assert proxy.__wrapped__ is loss
    assert (proxy.__name__, proxy.__qualname__, proxy.__doc__, proxy.__module__) == (
        "loss", "loss", "Mean squared error.", __name__)
    assert inspect.signature(proxy) == inspect.signature(loss)
    assert str(inspect.signature(proxy)) == (
        "(y_true: 'Any', y_pred: 'Any', *, weight: 'float' = 1.0) -> 'Any'")
    assert inspect.isfunction(proxy) and callable(proxy)
    assert proxy == loss and hash(proxy) == hash(loss)


def test_tf_function_metadata_and_signature() -> None:
    compiled = tf.function(loss)
    proxy = eagerctl.debuggable(compiled)
    assert proxy.__wrapped__ is compiled
    assert proxy.__name__ == "loss" and proxy.__doc__ == compiled.__doc__
    assert inspect.signature(proxy) == inspect.signature(compiled)
    assert isinstance(proxy, tf.types.experimental.GenericFunction)
    assert inspect.unwrap(proxy) is inspect.unwrap(compiled)


def test_method_signatures_drop_self_when_bound() -> None:
    class Model(tf.Module):
        @eagerctl.debuggable
        @tf.function
        def step(self, x: Any, training: bool = False) -> Any:
            return x

        @eagerctl.debuggable
        def call(self, x: Any, training: bool = False) -> Any:
            return x

    m = Model()
    for name in ("step", "call"):
        assert str(inspect.signature(getattr(m, name))) == "(x: 'Any', training: 'bool' = False) -> 'Any'"
        assert str(inspect.signature(getattr(Model, name))) == (
            "(self, x: 'Any', training: 'bool' = False) -> 'Any'")
        qualname = f"test_method_signatures_drop_self_when_bound.<locals>.Model.{name}"
        assert getattr(m, name).__qualname__ == qualname


MYPY_SNIPPET = '''
from __future__ import annotations
import eagerctl

@eagerctl.debuggable
def loss(x: int, *, scale: float = 1.0) -> float:
    return x * scale

@eagerctl.debuggable(recursive=False, log_calls=True)
async def fetch(url: str) -> bytes:
    return b""

class Net:
    @eagerctl.debuggable
    def call(self, x: int) -> str:
        return str(x)

    @eagerctl.debuggable
    @classmethod
    def make(cls, size: int) -> Net:
        return cls()

    @eagerctl.debuggable
    @staticmethod
    def helper(a: str) -> int:
        return len(a)

reveal_type(loss)
reveal_type(fetch)
reveal_type(Net().call)
reveal_type(Net.make)
reveal_type(Net.helper)
loss("one")
'''


def test_type_checkers_see_the_original_signatures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api")
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # where mypy finds eagerctl's source
    # mypy sets $MYPY_CONFIG_FILE_DIR when it reads a config file: monkeypatch records it to put it back.
    monkeypatch.setenv("MYPY_CONFIG_FILE_DIR", str(Path.cwd()))
    source = tmp_path / "snippet.py"
    source.write_text(textwrap.dedent(MYPY_SNIPPET))
    out, _, _ = api.run([str(source), "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                         "--follow-imports=silent"])
    lines = [line.split(": ", 1)[1] for line in out.splitlines() if ": note: " in line or ": error: " in line]
    # mypy releases differ only in whether builtins are spelled out.
    assert [line.replace("builtins.", "") for line in lines] == [
        'note: Revealed type is "def (x: int, *, scale: float =) -> float"',
        'note: Revealed type is "def (url: str) -> typing.Coroutine[Any, Any, bytes]"',
        'note: Revealed type is "def (x: int) -> str"',
        'note: Revealed type is "def (size: int) -> snippet.Net"',
        'note: Revealed type is "def (a: str) -> int"',
        'error: Argument 1 to "loss" has incompatible type "str"; expected "int"  [arg-type]',
    ]

"""The island callback's outputs as TF's EagerPyFunc kernel gets them (issue 20's fast path).

On the CPU an island callback passes eager tensors of the op's dtypes on as
they are and makes its call id a tensor itself; anything else (a NumPy value,
another device) goes through TF's own conversion, with TF's errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from eagerctl._island import callbacks

CPU = "/job:localhost/replica:0/task:0/device:CPU:0"


class _Island:
    name = "loss"


def island_func(body: Any, tout: list[Any]) -> Any:
    func = callbacks._eager_func_class()(body, tout, False)
    func.island = _Island()
    return func


def test_eager_outputs_pass_as_they_are_and_the_call_id_becomes_an_int64_tensor() -> None:
    loss = tf.constant(2.5)
    out = island_func(lambda: [loss, 7], [tf.float32, tf.int64])._call(None, [])
    assert out[0] is loss
    assert out[1].dtype == tf.int64 and int(out[1]) == 7
    assert out[1].backing_device == CPU


@pytest.mark.parametrize("device", [None, CPU])
def test_other_outputs_take_tfs_conversion_on_any_device(device: Any) -> None:
    out = island_func(lambda: [np.float32(1.5), 3], [tf.float32, tf.int64])._call(device, [])
    assert [o.dtype for o in out] == [tf.float32, tf.int64]
    assert float(out[0]) == 1.5 and int(out[1]) == 3


def test_a_wrong_dtype_is_tfs_error() -> None:
    func = island_func(lambda: [tf.constant(2.0, tf.float64), 0], [tf.float32, tf.int64])
    with pytest.raises(ValueError, match="requested dtype float32"):
        func._call(None, [])


def test_the_call_id_tensor_is_made_before_anything_initialized_the_context() -> None:
    # A fresh process: no tensor made yet. TF's conversion initializes the context; so must the callback.
    code = textwrap.dedent("""
        import tensorflow as tf
        from eagerctl._island import callbacks
        func = callbacks._eager_func_class()(lambda: [5], [tf.int64], False)
        func.island = type("I", (), {"name": "x"})()
        print(int(func._call(None, [])[0]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "5"

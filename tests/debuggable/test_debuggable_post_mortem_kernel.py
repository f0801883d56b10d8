"""`post_mortem=True` in a real Jupyter kernel: there is no terminal, yet pdb works through the frontend.

The no-terminal rule (skip pdb with a warning) must not take the post-mortem
away from notebooks: ipykernel routes pdb's `input()` to the frontend. One
kernel from this venv's interpreter, driven with `jupyter_client`; the test
answers pdb's prompts as a notebook user would.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0

CELL = """
import sys
print("stdin is a terminal:", bool(sys.stdin and sys.stdin.isatty()))
import tensorflow as tf
import eagerctl

@eagerctl.debuggable(post_mortem=True)
@tf.function
def normalize(x):
    total = tf.reduce_sum(x)
    if total == 0:
        raise ValueError("cannot normalize a zero vector")
    return x / total

normalize(tf.constant([0.0, 0.0]))
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    kernels = tmp_path_factory.mktemp("kernelspec") / "kernels"
    spec = kernels / "eagerctl-post-mortem"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "eagerctl post-mortem test", "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
    }))
    km = KernelManager(kernel_name="eagerctl-post-mortem",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    km.start_kernel(cwd=str(ROOT))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_pdb_opens_in_the_kernel_and_the_exception_then_propagates(client: Any) -> None:
    msg_id = client.execute(CELL, allow_stdin=True)
    prompts: list[str] = []
    answers = iter(["p total.numpy()", "p tf.executing_eagerly()", "c"])
    stdout, error, warnings_seen = "", None, ""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            request = client.get_stdin_msg(timeout=0.2)
        except queue.Empty:
            pass
        else:
            prompts.append(request["content"]["prompt"])
            client.input(next(answers))
        try:
            msg = client.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            stdout += content["text"]
        elif kind == "stream":
            warnings_seen += content["text"]
        elif kind == "error":
            error = (content["ename"], content["evalue"])
        elif kind == "status" and content["execution_state"] == "idle" and error is not None:
            break
    assert error == ("ValueError", "cannot normalize a zero vector")  # propagated unchanged, after pdb
    # pdb's prompt, "(Pdb) " or IPython's "ipdb> " where ipykernel's shell provides it.
    assert len(prompts) == 3 and all(p.rstrip().endswith(("(Pdb)", "ipdb>")) for p in prompts), prompts
    assert stdout.startswith("stdin is a terminal: False\n")  # the case the no-terminal rule must spare
    assert "0.0" in stdout and "True" in stdout  # pdb printed the body's local and the mode
    assert "no interactive terminal" not in warnings_seen

"""A small Debug Adapter Protocol client that drives debugpy as an IDE does.

VS Code (and Visual Studio, and the Jupyter debugger) talk to debugpy with DAP:
JSON messages framed by a `Content-Length` header over a socket. This client
starts a program under `python -m debugpy --listen 127.0.0.1:PORT
--wait-for-client`, connects, and runs the IDE's handshake: `initialize`,
`attach`, `setBreakpoints` (after the `initialized` event), `configurationDone`.
Then the test waits for `stopped` events and, on each, asks `stackTrace` and
`evaluate`, and sends `continue`, as a person clicking through would.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TIMEOUT = 120.0  # seconds for any one step: TensorFlow imports and traces slowly on a busy machine


class DapError(AssertionError):
    """The debugger did not answer as an IDE expects (the message says what it did instead)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DebugSession:
    """One program run under debugpy, driven over DAP like an IDE."""

    def __init__(self, program: Path, *, python: str = sys.executable, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, cwd: Path | None = None,
                 module_run: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
        target = [*module_run, str(program)] if module_run else [str(program)]
        self.proc = subprocess.Popen(
            [python, "-m", "debugpy", "--listen", f"127.0.0.1:{self.port}", "--wait-for-client", *target,
             *args],
            cwd=str(cwd or program.parent), env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._out_thread = threading.Thread(target=self._drain, daemon=True)
        self._out_thread.start()
        self.sock = self._connect()
        self.seq = 0
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # -- transport ---------------------------------------------------------------
    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                return socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    output = "".join(self.output)
                    raise DapError(f"debugpy never listened on {self.port}:\n{output}") from None
                time.sleep(0.1)

    def _read(self) -> None:
        stream = self.sock.makefile("rb")
        self.sock.settimeout(None)
        try:
            while True:
                length = 0
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                self.messages.put(json.loads(stream.read(length)))
        except (OSError, ValueError):
            return

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(data) + data)

    def _next(self, timeout: float) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise DapError(f"no message from debugpy in {timeout:.0f}s; program output:\n"
                           f"{''.join(self.output)[-4000:]}") from None

    # -- requests and events -----------------------------------------------------
    def send_request(self, command: str, **arguments: Any) -> int:
        self.seq += 1
        self._send({"seq": self.seq, "type": "request", "command": command, "arguments": arguments})
        return self.seq

    def response(self, seq: int, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The response to request `seq`; events that arrive meanwhile are kept for `wait_event`."""
        deadline = time.monotonic() + timeout
        kept: list[dict[str, Any]] = []
        try:
            while True:
                message = self._next(max(0.1, deadline - time.monotonic()))
                if message.get("type") == "response" and message.get("request_seq") == seq:
                    if not message.get("success"):
                        raise DapError(f"request {message.get('command')} failed: {message.get('message')}")
                    return dict(message.get("body") or {})
                kept.append(message)
        finally:
            self._pending[:0] = kept

    def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        return self.response(self.send_request(command, **arguments))

    def wait_event(self, *names: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next event among `names` (others are recorded in `events` and skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(max(0.1, deadline - time.monotonic()))
            if message.get("type") == "event":
                self.events.append(message)
                if message.get("event") in names:
                    return message
            if time.monotonic() > deadline:
                raise DapError(f"no {names} event in {timeout:.0f}s")

    # -- what an IDE does ----------------------------------------------------------
    def start(self, breakpoints: dict[Path, list[dict[str, Any]]]) -> None:
        """initialize, attach, setBreakpoints, configurationDone: the program starts running."""
        self.request("initialize", clientID="eagerctl-tests", adapterID="python", linesStartAt1=True,
                     columnsStartAt1=True, pathFormat="path", supportsRunInTerminalRequest=False)
        attach = self.send_request("attach", justMyCode=True, redirectOutput=False)
        self.wait_event("initialized")
        for path, lines in breakpoints.items():
            self.set_breakpoints(path, lines)
        self.request("configurationDone")
        self.response(attach)

    def wait_output(self, text: str, timeout: float = TIMEOUT) -> None:
        """Wait until the program has printed `text`."""
        deadline = time.monotonic() + timeout
        while text not in "".join(self.output):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise DapError(f"the program never printed {text!r}:\n{''.join(self.output)[-4000:]}")
            time.sleep(0.05)

    def set_breakpoints(self, path: Path, lines: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request("setBreakpoints", source={"path": str(path)}, breakpoints=lines)

    def next_stop(self, timeout: float = TIMEOUT) -> dict[str, Any] | None:
        """The next `stopped` event, or None when the program ended first."""
        event = self.wait_event("stopped", "terminated", "exited", timeout=timeout)
        return event if event["event"] == "stopped" else None

    def top_frame(self, thread_id: int) -> dict[str, Any]:
        frames = self.request("stackTrace", threadId=thread_id, startFrame=0, levels=20)["stackFrames"]
        return dict(frames[0])

    def evaluate(self, expression: str, frame_id: int) -> str:
        body = self.request("evaluate", expression=expression, frameId=frame_id, context="repl")
        return str(body["result"])

    def resume(self, thread_id: int) -> None:
        self.request("continue", threadId=thread_id)

    def finish(self, timeout: float = TIMEOUT) -> str:
        """Wait for the program to end; its output. Raises if it failed."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            output = "".join(self.output)[-4000:]
            raise DapError(f"program did not end in {timeout:.0f}s:\n{output}") from None
        self._out_thread.join(5)
        out = "".join(self.output)
        if code != 0:
            raise DapError(f"program exited with {code}:\n{out[-6000:]}")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        try:
            self.sock.close()
        except OSError:
            pass


def run_program(program: Path, breakpoints: list[dict[str, Any]], expressions: dict[int, str], *,
                args: tuple[str, ...] = (), on_stop: Any = None,
                module_run: tuple[str, ...] = ()) -> tuple[list[tuple[str, int, str]], str]:
    """Run `program` under debugpy with `breakpoints`; per stop: (file name, line, expression's value).

    On every `stopped` event: the top frame, `expressions[its line]` evaluated there, `continue`.
    `on_stop(session, thread, stops)` runs once after the start (thread None) and at every stop.
    """
    session = DebugSession(program, args=args, module_run=module_run)
    stops: list[tuple[str, int, str]] = []
    try:
        session.start({program: breakpoints})
        if on_stop is not None:
            on_stop(session, None, stops)
        while (event := session.next_stop()) is not None:
            thread = event["body"]["threadId"]
            frame = session.top_frame(thread)
            value = session.evaluate(expressions[frame["line"]], frame["id"])
            stops.append((Path(frame["source"]["path"]).name, frame["line"], value))
            if on_stop is not None:
                on_stop(session, thread, stops)
            session.resume(thread)
        output = session.finish()
    finally:
        session.close()
    return stops, output

"""Real OpenAI-compatible servers for the endpoint tests: `transformers serve` (the pinned transformers, its
[serving] extra) on a local model folder, and a small real HTTP proxy in front of it that injects faults."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TransformersServer:
    """`transformers serve MODEL` in a child process on a free localhost port (CPU, one thread)."""

    def __init__(self, model_dir: str | Path, log: str | Path):
        self.model = str(model_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve", self.model,
             "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--dtype", "float32"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait(self, timeout: float = 120.0) -> TransformersServer:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.proc.returncode}: "
                                   f"{Path(self._log.name).read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("transformers serve did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


class FaultProxy:
    """A threaded HTTP proxy to `upstream` that logs every request body and answers according to `faults`, a list
    consumed one entry per request: None (forward), "500"/"503"/"429" (that status, not forwarded), ("delay", s)
    (sleep s, then forward), "drop" (close the connection). `rewrite(body)` changes forwarded bodies;
    `require_key` answers 401 without that bearer key."""

    def __init__(self, upstream: str, *, faults: list[Any] | None = None,
                 rewrite: Callable[[dict], dict] | None = None, require_key: str | None = None,
                 answers: list[str] | None = None):
        self.upstream = upstream.split("://", 1)[1]
        self.faults = list(faults or [])
        self.rewrite = rewrite
        self.require_key = require_key
        self.answers = list(answers or [])  # replace the served answer's text, one per request (judge tests)
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw)
                with proxy.lock:
                    proxy.bodies.append(body)
                    proxy.headers.append(dict(self.headers))
                    fault = proxy.faults.pop(0) if proxy.faults else None
                if proxy.require_key and self.headers.get("authorization") != f"Bearer {proxy.require_key}":
                    return self._send(401, b'{"error": "invalid api key"}')
                if fault in ("500", "503"):
                    return self._send(int(fault), b'{"error": "injected server error"}')
                if fault == "429":
                    return self._send(429, b'{"error": "rate limited"}', {"retry-after": "0"})
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if isinstance(fault, tuple) and fault[0] == "delay":
                    time.sleep(fault[1])
                if proxy.rewrite:
                    body = proxy.rewrite(body)
                host, port = proxy.upstream.split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
                conn.request("POST", self.path, json.dumps(body), {"content-type": "application/json"})
                answer = conn.getresponse()
                data = answer.read()
                with proxy.lock:
                    replacement = proxy.answers.pop(0) if proxy.answers else None
                if replacement is not None and answer.status == 200:
                    served = json.loads(data)
                    served["choices"][0]["message"]["content"] = replacement
                    data = json.dumps(served).encode()
                try:
                    self._send(answer.status, data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

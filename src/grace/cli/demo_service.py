"""The demo service: a small HTTP service Grace supervises, which can be broken on purpose
(``grace demo``, ``grace serve --demo`` and the immune end-to-end tests run it).

    python -m grace.cli.demo_service --port 8123 [--state-file faults.json] [--fail-after N]

Endpoints: ``GET /health`` and ``GET /work`` answer 200 — or 500 while failing, after a
delay while slow. ``GET /admin/info`` gives the pid and request count. Faults:

* in memory (a restart clears them): ``POST /admin/fail``, ``POST /admin/slow?ms=N``,
  ``POST /admin/heal``; ``--fail-after N`` starts failing after N served requests (a
  service that flaps: every restart helps, for a while);
* in the state file (a restart keeps them): ``{"fail": true, "slow_ms": 0}``, read on
  every request — the "restart does not help" case.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class State:
    """The service's faults and counters."""

    def __init__(self, state_file: Path | None, fail_after: int | None) -> None:
        self.state_file = state_file
        self.fail_after = fail_after
        self.failing = False
        self.slow_ms = 0
        self.served = 0
        self.lock = threading.Lock()

    def persistent(self) -> dict[str, Any]:
        """The faults in the state file (none if it is missing or unreadable)."""
        if self.state_file is None:
            return {}
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def serve(self) -> tuple[bool, int]:
        """Count a request; (failing, delay in ms) for it."""
        stored = self.persistent()
        with self.lock:
            self.served += 1
            failing = self.failing or bool(stored.get("fail"))
            if self.fail_after is not None and self.served > self.fail_after:
                failing = True
            return failing, max(self.slow_ms, int(stored.get("slow_ms", 0)))


def handler(state: State) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to ``state``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/admin/info":
                self._answer(200, {"pid": os.getpid(), "served": state.served})
                return
            if path not in ("/health", "/work"):
                self._answer(404, {"error": "not found"})
                return
            failing, delay_ms = state.serve()
            if delay_ms:
                time.sleep(delay_ms / 1000)
            if failing:
                self._answer(500, {"status": "failing"})
            else:
                self._answer(200, {"status": "ok"})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            with state.lock:
                if url.path == "/admin/fail":
                    state.failing = True
                elif url.path == "/admin/slow":
                    state.slow_ms = int(parse_qs(url.query).get("ms", ["0"])[0])
                elif url.path == "/admin/heal":
                    state.failing, state.slow_ms = False, 0
                else:
                    self._answer(404, {"error": "not found"})
                    return
            self._answer(200, {"ok": True})

    return Handler


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path)
    parser.add_argument("--fail-after", type=int)
    args = parser.parse_args()
    state = State(args.state_file, args.fail_after)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(state))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

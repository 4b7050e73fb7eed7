"""Fixtures for the web console's browser tests: a real ``grace serve`` subprocess and
Debian's chromium driven by Playwright.

The browser is gated like the services in ``tests/conftest.py``: without
``/usr/bin/chromium`` (or Playwright) the tests skip, unless ``GRACE_REQUIRE_BROWSER=1``
says this machine must run them — then they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.types import SystemClock

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path(os.environ.get("GRACE_TEST_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("GRACE_REQUIRE_BROWSER") == "1"
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
READY_TIMEOUT_S = 30.0


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (GRACE_REQUIRE_BROWSER=1: this machine must provide it)")
    pytest.skip(reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """A running ``grace serve`` and the API keys of its principals."""

    url: str
    keys: dict[str, str]
    data_dir: Path
    log: Path
    client: httpx.Client = field(repr=False)

    def as_(self, who: str) -> dict[str, str]:
        """Authorization headers for a principal."""
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def call(self, method: str, path: str, who: str, **kwargs: Any) -> httpx.Response:
        """An API call as ``who``."""
        return self.client.request(method, self.url + path, headers=self.as_(who), **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _register(data_dir: Path) -> dict[str, str]:
    """Principals and keys, made before the server starts (as `grace principals add` does)."""
    registry = PrincipalRegistry(data_dir / "principals.db", clock=SystemClock())
    try:
        registry.add("alice", kind=PrincipalKind.HUMAN, roles=["approver", "operator"])
        registry.add("pep-gw", kind=PrincipalKind.SERVICE, roles=["pep"])
        registry.add("agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)
        # May read approval requests but not decide them (no approver role).
        registry.add("dave", kind=PrincipalKind.HUMAN, roles=["auditor"])
        return {p: registry.create_key(p) for p in ("alice", "pep-gw", "agent-7", "dave")}
    finally:
        registry.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``grace serve`` as a real subprocess on a free port, ready."""
    data_dir = tmp_path_factory.mktemp("console") / "data"
    data_dir.mkdir()
    keys = _register(data_dir)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    log = data_dir.parent / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "grace", "serve", "--port", str(port), "--data-dir", data_dir],
            cwd=data_dir.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(timeout=10)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"grace serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if client.get(url + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"grace serve was not ready in {READY_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.05)
        yield Server(url=url, keys=keys, data_dir=data_dir, log=log, client=client)
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        _unavailable(f"chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        _unavailable(f"playwright for Python is not installed: {e}")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A fresh page (own storage) on a laptop-sized viewport; fails the test on any uncaught
    script error."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught script errors in the console: {errors}"

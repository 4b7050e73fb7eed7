"""`grace demo` tells the whole story on the embedded default, for real, and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cli.test_audit_cli import grace
from tests.cli.test_governance_cli import _free_port


def test_the_demo_story_runs_end_to_end_and_is_repeatable(tmp_path: Path) -> None:
    """Every act goes as told (twice on the same data dir), and the record verifies."""
    for _ in range(2):
        done = grace("demo", "-d", "d", cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Every step went as told" in done.stdout
        for act in ("1. Boot", "3. Rollout", "4. An agent deploys", "5. The demo service", "7."):
            assert act in done.stdout
        assert "✘" not in done.stdout
    assert (tmp_path / "d" / "deployments" / "pricing.py").is_file()
    proofs = list((tmp_path / "d").glob("proof-*.json"))
    assert proofs
    verified = grace("audit", "verify", "-d", "d", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_serve_demo_prints_a_console_key_and_runs_a_live_workload(tmp_path: Path) -> None:
    """`grace serve --demo` (what `make run` starts): the printed key signs in, the demo
    service is supervised, the workload produces decisions and a pending approval."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "grace", "serve", "--demo", "--port", str(port), "-d", "d"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "grace serve --demo did not come up"
            time.sleep(0.2)
        key = (tmp_path / "d" / "demo-console.key").read_text().strip()
        assert key in log.read_text()
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{url}/", timeout=5).status_code in (200, 404)
        deadline = time.monotonic() + 30
        while True:
            status = httpx.get(f"{url}/v1/status", headers=auth, timeout=5).json()
            if status["governance"]["pending_approvals"] >= 1:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["ledger"]["size"] > 5
        assert status["boot"]["state"] == "ready"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log.read_text()

"""Principals, keys, approvals and policy commands, and `grace serve`, as real processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cli.test_audit_cli import grace

POLICIES = Path(__file__).resolve().parents[2] / "src" / "grace" / "governance" / "policies"


def test_principals_and_keys(tmp_path: Path) -> None:
    """A principal is added and listed; its key is printed once and then counted."""
    added = grace(
        "principals",
        "add",
        "alice",
        "--kind",
        "human",
        "--role",
        "approver",
        "-d",
        "d",
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    dup = grace("principals", "add", "alice", "--kind", "human", "-d", "d", cwd=tmp_path)
    assert dup.returncode == 2
    assert "already exists" in dup.stderr
    key = grace("keys", "create", "--principal", "alice", "-d", "d", cwd=tmp_path)
    assert key.returncode == 0
    assert key.stdout.startswith("grace_")
    listed = grace("principals", "list", "-d", "d", cwd=tmp_path)
    assert "alice" in listed.stdout
    key_id = key.stdout.strip().split("_")[1]
    assert grace("keys", "revoke", key_id, "-d", "d", cwd=tmp_path).returncode == 0
    assert grace("keys", "revoke", key_id, "-d", "d", cwd=tmp_path).returncode == 1


def test_policy_validate_reports_broken_files(tmp_path: Path) -> None:
    """The packaged constitution validates; a broken copy exits 2 naming the file."""
    ok = grace("policy", "validate", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    broken = tmp_path / "policies"
    shutil.copytree(POLICIES, broken)
    (broken / "oops.cedar").write_text("forbid (principal, action, resource) when {")
    bad = grace("policy", "validate", str(broken), cwd=tmp_path)
    assert bad.returncode == 2
    assert "oops.cedar" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_governs_and_stops_cleanly(tmp_path: Path) -> None:
    """`grace serve` answers /health, refuses anonymous calls, serves a keyed one, and exits
    on SIGINT leaving a verifiable ledger."""
    assert (
        grace(
            "principals",
            "add",
            "carol",
            "--kind",
            "human",
            "--role",
            "auditor",
            "-d",
            "d",
            cwd=tmp_path,
        ).returncode
        == 0
    )
    key = grace("keys", "create", "-p", "carol", "-d", "d", cwd=tmp_path).stdout.strip()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "grace", "serve", "--port", str(port), "-d", "d"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "grace serve did not come up"
            time.sleep(0.2)
        assert httpx.get(f"{url}/v1/approvals").status_code == 401
        ok = httpx.get(f"{url}/v1/approvals", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200, ok.text
        assert ok.json() == []
        assert httpx.get(f"{url}/ready").json()["state"] == "ready"
        status = grace("status", "--url", url, "--key", key, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        for component in ("boot", "ledger", "governance", "mesh", "trust"):
            assert component in status.stdout
        raw = grace("status", "--url", url, "--key", key, "--json", cwd=tmp_path)
        assert '"events_routed"' in raw.stdout
        refused = grace("status", "--url", url, "--key", "grace_bad_key", cwd=tmp_path)
        assert refused.returncode == 2
        assert "401" in refused.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log.read_text()
    verify = grace("audit", "verify", "-d", "d", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_boot_plan_lists_the_standard_chunks_without_starting_anything(tmp_path: Path) -> None:
    """`grace boot --plan` prints the chunks in boot order and creates no data."""
    plan = grace("boot", "--plan", "-d", "d", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    positions = [
        plan.stdout.index(c)
        for c in ("core", "mesh", "production_systems", "mesh_validators", "api")
    ]
    assert positions == sorted(positions)
    assert not (tmp_path / "d").exists()
    bare = grace("boot", cwd=tmp_path)
    assert bare.returncode == 2
    assert "--plan" in bare.stderr


def test_status_without_a_key_or_server_is_one_clear_error(tmp_path: Path) -> None:
    """No key: say how to give one; no server: say it cannot be reached."""
    no_key = grace("status", cwd=tmp_path)
    assert no_key.returncode == 2
    assert "needs an API key" in no_key.stderr
    down = grace("status", "--url", f"http://127.0.0.1:{_free_port()}", "--key", "k", cwd=tmp_path)
    assert down.returncode == 2
    assert "cannot reach" in down.stderr


CASES = Path(__file__).resolve().parents[2] / "policies" / "tests" / "constitution.yaml"


def test_policy_test_runs_the_shipped_cases(tmp_path: Path) -> None:
    """The shipped policy cases pass against the packaged constitution."""
    done = grace("policy", "test", str(CASES), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout


def test_policy_test_fails_on_a_wrong_expectation_and_bad_files(tmp_path: Path) -> None:
    """A case expecting the wrong outcome exits 1; a malformed case file exits 2."""
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "- name: rm is fine\n  principal: {id: a, kind: human}\n  action: POST:/x\n"
        "  context: {cmd: 'rm -rf /'}\n  expect: approved\n"
    )
    failed = grace("policy", "test", str(wrong), cwd=tmp_path)
    assert failed.returncode == 1
    assert "expected approved, got rejected" in failed.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- name: x\n  principal: {id: a, kind: robot}\n  action: y\n  expect: approved\n"
    )
    malformed = grace("policy", "test", str(bad), cwd=tmp_path)
    assert malformed.returncode == 2
    assert "case 1" in malformed.stderr


def test_policy_explain_names_the_deciding_policy(tmp_path: Path) -> None:
    """explain shows the facts, the outcome and the policy with its principle."""
    done = grace(
        "policy",
        "explain",
        "--action",
        "deploy_model",
        "--kind",
        "agent",
        "--tier",
        "2",
        "--autonomous",
        "--context",
        '{"reason": "x"}',
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "outcome: requires_approval" in done.stdout
    assert "[gradual_escalation]" in done.stdout


def test_principals_keys_and_approvals_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    """With --database-url the registry and approvals are the shared PostgreSQL ones."""
    db = ("--database-url", pg_dsn)
    added = grace("principals", "add", "pat", "--kind", "human", "--role", "approver", *db,
                  cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    key = grace("keys", "create", "-p", "pat", *db, cwd=tmp_path)
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("grace_")
    listed = grace("principals", "list", *db, cwd=tmp_path)
    assert "pat" in listed.stdout
    assert not (tmp_path / ".grace" / "principals.db").exists()
    approvals = grace("approvals", "list", *db, cwd=tmp_path)
    assert approvals.returncode == 0, approvals.stderr
    key_id = key.stdout.strip().split("_")[1]
    assert grace("keys", "revoke", key_id, *db, cwd=tmp_path).returncode == 0

"""Executors and the process supervisor act for real (real subprocesses, a real trust
store and ledger) or raise ExecutorError; nothing pretends."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from grace.errors import ExecutorError
from grace.immune.controls import ControlKind, IngressControls
from grace.immune.escalation import Escalator
from grace.immune.executors import (
    ActionContext,
    CircuitBreakerExecutor,
    EscalateExecutor,
    ExecutorRegistry,
    HttpWebhookExecutor,
    PythonCallableExecutor,
    QuarantineExecutor,
    RateLimitExecutor,
    RestartProcessExecutor,
    ShellCommandExecutor,
)
from grace.immune.supervisor import ProcessSpec, ProcessSupervisor
from grace.immune.taxonomy import AnomalyType, HealingAction, Severity
from grace.ledger import Ledger
from grace.testing import FakeClock
from grace.trust import TrustStore

SLEEPER = (sys.executable, "-c", "import time\nwhile True: time.sleep(1)")


def ctx(action: HealingAction = HealingAction.RESTART_SERVICE, **params: Any) -> ActionContext:
    """A context for resource 'api' with ``params``."""
    return ActionContext(
        action=action,
        resource="api",
        params=params,
        incident_id="inc_1",
        anomaly_id="an_1",
        anomaly_type=AnomalyType.SERVICE_DOWN,
        severity=Severity.MEDIUM,
        timeout_s=10,
    )


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (and is not a zombie we own)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_supervisor_restart_replaces_the_process(clock: FakeClock) -> None:
    """restart stops the old process for real and starts a new one."""
    supervisor = ProcessSupervisor(clock=clock)
    supervisor.register(ProcessSpec(name="sleeper", argv=SLEEPER, stop_timeout_s=2))
    try:
        old = await supervisor.start("sleeper")
        assert await supervisor.start("sleeper") == old  # already running: no second copy
        result = await RestartProcessExecutor(supervisor).execute(ctx(process="sleeper"))
        assert result.detail["old_pid"] == old
        new = result.detail["new_pid"]
        assert new != old
        assert not alive(old)
        status = supervisor.status("sleeper")
        assert (status.running, status.pid, status.restarts) == (True, new, 1)
    finally:
        await supervisor.stop_all()
    assert not supervisor.status("sleeper").running


async def test_supervisor_reports_a_crash_and_restarts_a_dead_process(clock: FakeClock) -> None:
    """A process that exited is reported with its code; restart brings it back."""
    supervisor = ProcessSupervisor(clock=clock)
    supervisor.register(ProcessSpec(name="quitter", argv=(sys.executable, "-c", "exit(3)")))
    try:
        await supervisor.start("quitter")
        for _ in range(200):
            if not supervisor.status("quitter").running:
                break
            await asyncio.sleep(0.01)
        assert supervisor.status("quitter").exit_code == 3
        result = await supervisor.restart("quitter")
        assert result.old_exit_code == 3
    finally:
        await supervisor.stop_all()


async def test_supervisor_refuses_unknown_and_unstartable(clock: FakeClock, tmp_path: Path) -> None:
    """Unknown names and missing binaries are ExecutorErrors; a name registers once."""
    supervisor = ProcessSupervisor(clock=clock)
    with pytest.raises(ExecutorError, match="no supervised process"):
        await supervisor.restart("ghost")
    supervisor.register(ProcessSpec(name="missing", argv=(str(tmp_path / "nope"),)))
    with pytest.raises(ExecutorError, match="cannot start process 'missing'"):
        await supervisor.start("missing")
    with pytest.raises(ExecutorError, match="already registered"):
        supervisor.register(ProcessSpec(name="missing", argv=("x",)))
    with pytest.raises(ValueError, match="process name"):
        ProcessSpec(name="bad name", argv=("x",))


async def test_restart_without_a_process_or_command_fails() -> None:
    """A process Grace neither supervises nor has a restart command for: ExecutorError."""
    with pytest.raises(ExecutorError, match="neither a supervised process"):
        await RestartProcessExecutor(None).execute(ctx(process="api"))


async def test_restart_command_runs_without_a_shell(tmp_path: Path) -> None:
    """A configured restart command runs as argv, with the resource substituted."""
    marker = tmp_path / "restarted"
    script = f"import pathlib,sys; pathlib.Path({str(marker)!r}).write_text(sys.argv[1])"
    executor = RestartProcessExecutor(
        None, commands={"api": (sys.executable, "-c", script, "{resource}")}
    )
    result = await executor.execute(ctx(process="api"))
    assert result.detail["exit_code"] == 0
    assert marker.read_text() == "api"


async def test_shell_command_runs_only_allow_listed_commands(tmp_path: Path) -> None:
    """Named commands run; an unlisted name, a failing command or a hung one raise."""
    executor = ShellCommandExecutor(
        {
            "echo": (sys.executable, "-c", "print('cleared')"),
            "fail": (sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(2)"),
            "hang": (sys.executable, "-c", "import time; time.sleep(30)"),
        }
    )
    result = await executor.execute(ctx(HealingAction.CLEAR_CACHE, command="echo"))
    assert result.detail["stdout"] == "cleared"
    with pytest.raises(ExecutorError, match="not on the allow-list"):
        await executor.execute(ctx(HealingAction.CLEAR_CACHE, command="rm -rf /"))
    with pytest.raises(ExecutorError, match="exited with 2: boom"):
        await executor.execute(ctx(HealingAction.CLEAR_CACHE, command="fail"))
    quick = dataclasses.replace(ctx(HealingAction.CLEAR_CACHE, command="hang"), timeout_s=0.2)
    with pytest.raises(ExecutorError, match="did not finish"):
        await executor.execute(quick)


async def test_rendered_arguments_cannot_become_options() -> None:
    """A placeholder that renders to something starting with '-' is refused."""
    executor = ShellCommandExecutor({"touch": (sys.executable, "-c", "pass", "{incident_id}")})
    fine = ctx(HealingAction.CLEAR_CACHE, command="touch")
    assert (await executor.execute(fine)).detail["argv"][-1] == "inc_1"
    sneaky = dataclasses.replace(fine, incident_id="--delete")
    with pytest.raises(ExecutorError, match="may not start with '-'"):
        await executor.execute(sneaky)


async def test_webhook_calls_allowed_urls_and_fails_on_errors() -> None:
    """2xx is success; non-2xx, unlisted URLs and credentials in URLs are failures."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500 if request.url.path.endswith("/broken") else 204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        executor = HttpWebhookExecutor(client, allowed_prefixes=["https://ops.example/hooks/"])
        result = await executor.execute(
            ctx(HealingAction.SCALE_UP, url="https://ops.example/hooks/scale")
        )
        assert result.detail["status"] == 204
        assert json.loads(seen[0].content)["incident_id"] == "inc_1"
        with pytest.raises(ExecutorError, match="answered 500"):
            await executor.execute(
                ctx(HealingAction.SCALE_UP, url="https://ops.example/hooks/broken")
            )
        for url in (
            "https://evil.example/hooks/",
            "https://u:p@ops.example/hooks/x",
            "ftp://x",
            "https://ops.example/hooks/../admin",
            "https://ops.example/hooks/%2E%2E/admin",
        ):
            with pytest.raises(ExecutorError):
                await executor.execute(ctx(HealingAction.SCALE_UP, url=url))
        refuse_all = HttpWebhookExecutor(client, allowed_prefixes=[])
        with pytest.raises(ExecutorError, match="not under an allowed prefix"):
            await refuse_all.execute(ctx(HealingAction.SCALE_UP, url="https://ops.example/hooks/"))
        assert len(seen) == 2
    with pytest.raises(ExecutorError, match="must be http"):
        HttpWebhookExecutor(client, allowed_prefixes=["https://ops.example"])


async def test_python_callable_by_name_and_its_failures() -> None:
    """A registered coroutine runs; an unknown name or an exception is an ExecutorError."""

    async def flush(c: ActionContext) -> dict[str, Any]:
        return {"flushed": c.resource}

    async def broken(c: ActionContext) -> None:
        raise RuntimeError("nope")

    executor = PythonCallableExecutor({"flush": flush, "broken": broken})
    result = await executor.execute(ctx(HealingAction.CLEAR_CACHE, callable="flush"))
    assert result.detail == {"callable": "flush", "returned": {"flushed": "api"}}
    with pytest.raises(ExecutorError, match="no registered callable"):
        await executor.execute(ctx(HealingAction.CLEAR_CACHE, callable="other"))
    with pytest.raises(ExecutorError, match="RuntimeError"):
        await executor.execute(ctx(HealingAction.CLEAR_CACHE, callable="broken"))


async def test_breaker_and_rate_limit_executors_set_and_clear_controls(clock: FakeClock) -> None:
    """The control executors change what the ingress enforces, and say which control."""
    controls = IngressControls(clock=clock)
    breaker = CircuitBreakerExecutor(controls)
    result = await breaker.execute(ctx(HealingAction.CIRCUIT_BREAKER, duration_s=30))
    assert result.control == (ControlKind.CIRCUIT_BREAKER, "component:api")
    assert controls.check("component:api") is not None
    await breaker.execute(ctx(HealingAction.CIRCUIT_BREAKER, mode="reset"))
    assert controls.check("component:api") is None
    limiter = RateLimitExecutor(controls)
    await limiter.execute(ctx(HealingAction.RATE_LIMIT, key="POST:/v1/x", rate_per_s=1, burst=1))
    assert controls.check("POST:/v1/x") is None
    assert controls.check("POST:/v1/x") is not None
    with pytest.raises(ExecutorError, match="rate_per_s"):
        await limiter.execute(ctx(HealingAction.RATE_LIMIT))
    with pytest.raises(ExecutorError, match="mode must be one of"):
        await breaker.execute(ctx(HealingAction.CIRCUIT_BREAKER, mode="half"))


async def test_quarantine_zeroes_trust_and_blocks_ingress(clock: FakeClock, tmp_path: Path) -> None:
    """Quarantine goes to the trust store (score 0) and the ingress (403); release undoes."""
    async with await Ledger.open(tmp_path / "ledger", clock=clock) as ledger:
        trust = await TrustStore.open(tmp_path / "trust.db", clock=clock, audit=ledger)
        try:
            controls = IngressControls(clock=clock)
            executor = QuarantineExecutor(controls, trust)
            result = await executor.execute(ctx(HealingAction.QUARANTINE_COMPONENT))
            assert result.subject == "api"
            assert trust.is_quarantined("api")
            assert await trust.score("api") == 0.0
            denied = controls.check("component:api")
            assert denied is not None
            assert denied.status_code == 403
            await executor.execute(ctx(HealingAction.QUARANTINE_COMPONENT, mode="release"))
            assert not trust.is_quarantined("api")
            assert controls.check("component:api") is None
        finally:
            await trust.close()


async def test_escalate_executor_writes_the_ledger(clock: FakeClock, tmp_path: Path) -> None:
    """escalate_to_human is a ledger entry (with its seq in the detail)."""
    async with await Ledger.open(tmp_path / "ledger", clock=clock) as ledger:
        executor = EscalateExecutor(Escalator(ledger=ledger, clock=clock))
        result = await executor.execute(ctx(HealingAction.ESCALATE_TO_HUMAN, reason="look"))
        entry = await ledger.get(result.detail["receipt_seq"])
        assert entry is not None
        assert (entry.action, entry.payload["reason"]) == ("escalate", "look")


def test_registry_refuses_duplicates_and_names_what_exists() -> None:
    """A name registers once; an unknown name lists the registered ones."""
    registry = ExecutorRegistry([ShellCommandExecutor({})])
    with pytest.raises(ExecutorError, match="already registered"):
        registry.register(ShellCommandExecutor({}))
    with pytest.raises(ExecutorError, match="registered: shell_command"):
        registry.get("ssh")

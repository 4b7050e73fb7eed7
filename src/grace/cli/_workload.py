"""``grace serve --demo``: the demo service under supervision and a light background
workload, so the web console has something live to show.

Every second: a governed read by alice, a latency sample of the demo service fed to the
metrics monitor, a ``task.created`` event. Every ``spike_every_s``: the demo service is
told to slow down, which the immune kernel detects and heals (a governed restart). Every
``approval_every_s``: an agent asks for a high-risk autonomous action, which waits in the
console's approvals.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from pathlib import Path

import httpx
import structlog

from grace.cli._story import DEMO_SERVICE
from grace.errors import AuthenticationError
from grace.governance.model import ActionRequest, Principal, RiskLevel
from grace.governance.principals import PrincipalRegistry
from grace.runtime import Grace

__all__ = ["console_key", "run_workload"]

log = structlog.get_logger(__name__)

KEY_FILE = "demo-console.key"


def console_key(registry: PrincipalRegistry, data_dir: Path, principal: str) -> str:
    """The console sign-in key for ``principal``: reused from ``data_dir`` while it still
    authenticates, else created (and kept there, mode 0600)."""
    path = data_dir / KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        try:
            if registry.authenticate_key(key).id == principal:
                return key
        except AuthenticationError:
            pass
    key = registry.create_key(principal)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


async def run_workload(
    grace: Grace,
    cast: dict[str, Principal],
    service_port: int,
    *,
    spike_every_s: float = 45.0,
    approval_every_s: float = 60.0,
) -> None:
    """Run until cancelled; failures are logged, never fatal."""
    base = f"http://127.0.0.1:{service_port}"
    publisher = grace.mesh.publisher("demo_workload")
    started = time.monotonic()
    last_spike = started
    last_approval = started - approval_every_s + 5
    async with httpx.AsyncClient(timeout=3) as client:
        for i in itertools.count():
            try:
                await grace.gate.decide(
                    ActionRequest(
                        request_id=f"load-{i}",
                        principal=cast["alice"],
                        action="GET:/v1/reports/{id}",
                        resource=f"reports/{i % 7}",
                        context={"reason": "dashboard refresh"},
                        source="demo",
                    )
                )
                with contextlib.suppress(httpx.HTTPError):
                    t0 = time.perf_counter()
                    answer = await client.get(f"{base}/work")
                    if answer.status_code == 200:
                        await grace.metrics.observe(
                            "demo_latency_ms",
                            (time.perf_counter() - t0) * 1000,
                            resource=DEMO_SERVICE,
                        )
                await publisher.try_emit("task.created", {"task": f"job-{i}"}, resource="queue")
                now = time.monotonic()
                if now - last_spike > spike_every_s:
                    last_spike = now
                    with contextlib.suppress(httpx.HTTPError):
                        await client.post(f"{base}/admin/slow", params={"ms": 400})
                if now - last_approval > approval_every_s:
                    last_approval = now
                    await grace.gate.decide(
                        ActionRequest(
                            request_id=f"load-approval-{i}",
                            principal=cast["agent-dev"],
                            action="scale_service",
                            resource="svc:checkout",
                            context={"reason": "traffic forecast", "replicas": 24},
                            is_autonomous=True,
                            # A large scale-out is a high-risk change: it waits for a human.
                            declared_risk=RiskLevel.HIGH,
                            source="demo",
                        )
                    )
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a demo workload must not stop the server
                log.warning("demo_workload_step_failed", error=repr(e))
            await asyncio.sleep(1.0)

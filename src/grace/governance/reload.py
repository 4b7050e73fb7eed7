"""Hot reload of the constitution: a changed policy directory is reloaded, never half-way.

The directory is polled (file names, sizes, modification times). A change is loaded as a
whole new :class:`Constitution`; only when that succeeds does the engine switch to it. An
invalid set is refused with its :class:`~grace.errors.PolicyError` and the last good
constitution stays in force. Both outcomes are recorded in the ledger.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from grace.errors import PolicyError
from grace.governance.engine import ConstitutionEngine
from grace.ledger.audit import AuditSink

__all__ = ["PolicyReloader"]

log = structlog.get_logger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


class PolicyReloader:
    """Watches a policy directory and swaps the engine's constitution when it changes."""

    def __init__(
        self,
        engine: ConstitutionEngine,
        directory: Path,
        *,
        audit: AuditSink,
        interval_s: float = 2.0,
    ) -> None:
        self.engine = engine
        self.directory = directory
        self.interval_s = interval_s
        self._audit = audit
        self._seen = self._fingerprint()

    def _fingerprint(self) -> Fingerprint:
        try:
            entries = sorted(self.directory.iterdir())
        except OSError:
            return ()
        out = []
        for path in entries:
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((path.name, st.st_size, st.st_mtime_ns))
        return tuple(out)

    async def check(self) -> bool | None:
        """Reload if the directory changed: True applied, False refused, None unchanged."""
        seen = await asyncio.to_thread(self._fingerprint)
        if seen == self._seen:
            return None
        self._seen = seen
        old = self.engine.constitution
        try:
            new = await asyncio.to_thread(old.reload, self.directory)
        except PolicyError as e:
            log.error("policy_reload_refused", directory=str(self.directory), error=str(e))  # noqa: TRY400
            await self._audit.append(
                subsystem="governance",
                actor="grace",
                action="policy_reload",
                resource=str(self.directory),
                result="refused",
                payload={"error": str(e), "kept_digest": old.digest},
            )
            return False
        self.engine.constitution = new
        log.info("policy_reloaded", directory=str(self.directory), digest=new.digest[:12])
        await self._audit.append(
            subsystem="governance",
            actor="grace",
            action="policy_reload",
            resource=str(self.directory),
            result="applied",
            payload={
                "old_digest": old.digest,
                "new_digest": new.digest,
                "policies": len(new.policies),
            },
        )
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception as e:  # noqa: BLE001 - a failed check must not stop watching
                log.error("policy_reload_check_failed", error=repr(e))  # noqa: TRY400

"""A changed policy directory is reloaded whole; an invalid one is refused, the old kept."""

from __future__ import annotations

import shutil
from pathlib import Path

from grace.governance.constitution import Constitution
from grace.governance.engine import ConstitutionEngine
from grace.governance.reload import PolicyReloader
from grace.ledger import Ledger

POLICIES = Path(__file__).resolve().parents[2] / "src" / "grace" / "governance" / "policies"
STAGED = (
    '@id("staged-reload-test")\n@principle("least_privilege")\n@severity("low")\n'
    '@description("added at run time")\n@mode("log")\n'
    "forbid (principal, action, resource)\nwhen { context.risk >= 3 };\n"
)


async def test_reload_applies_good_sets_and_refuses_broken_ones(tmp_path: Path) -> None:
    """A new valid rule is applied; a broken file is refused and the last good set stays."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(POLICIES, policy_dir)
    engine = ConstitutionEngine(Constitution(policy_dir))
    original = engine.constitution.digest
    async with await Ledger.open(tmp_path / "data") as ledger:
        reloader = PolicyReloader(engine, policy_dir, audit=ledger, interval_s=0.01)
        assert await reloader.check() is None
        (policy_dir / "staged.cedar").write_text(STAGED)
        assert await reloader.check() is True
        applied = engine.constitution.digest
        assert applied != original
        assert "staged-reload-test" in engine.constitution.policies
        (policy_dir / "broken.cedar").write_text("forbid (principal, action, resource) when {")
        assert await reloader.check() is False
        assert engine.constitution.digest == applied
        assert await reloader.check() is None  # the broken state is not retried in a loop
        page = await ledger.query(action="policy_reload")
    assert [(e.result, e.resource) for e in page.entries] == [
        ("applied", str(policy_dir)),
        ("refused", str(policy_dir)),
    ]
    assert "broken.cedar" in page.entries[1].payload["error"]

"""The web console in a real browser against a real ``grace serve``: sign-in, the live
event stream, approvals, and audit proofs checked in the page with WebCrypto — which must
agree with the Python verifier and fail on every tampered bundle."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

try:
    from playwright.sync_api import Page, Route, expect
except ImportError as e:  # gated like the browser itself (see conftest)
    if os.environ.get("GRACE_REQUIRE_BROWSER") == "1":
        raise
    pytest.skip(f"playwright for Python is not installed: {e}", allow_module_level=True)

from grace.errors import ProofError
from grace.ledger import (
    Checkpoint,
    Ledger,
    LedgerConfig,
    NoteSigner,
    NoteVerifier,
    ProofBundle,
    merkle,
    verify_bundle,
)

if TYPE_CHECKING:
    from tests.console.conftest import Server

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "src" / "grace" / "server" / "console"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

SVG_NAMESPACE = 'xmlns="http://www.w3.org/2000/svg"'
IMPORT = re.compile(r'^import .* from "([^"]+)";$', re.MULTILINE)

Bundle = dict[str, Any]


def sign_in(page: Page, server: Server, who: str = "alice") -> None:
    """Open the console and sign in with the keyboard only."""
    page.goto(server.url + "/")
    expect(page.locator("#api-key")).to_be_focused()
    page.keyboard.type(server.keys[who])
    page.keyboard.press("Enter")
    expect(page.locator("#whoami")).to_have_text(who)


def decide_pending_deploy(server: Server) -> str:
    """A PEP asks for agent-7's autonomous high-risk deploy: it needs a human approval."""
    r = server.call(
        "POST",
        "/v1/decide",
        "pep-gw",
        json={
            "principal_id": "agent-7",
            "action": "deploy_model",
            "resource": f"fraud-{uuid.uuid4().hex[:6]}",
            "context": {"reason": "new fraud model passed evaluation"},
            "is_autonomous": True,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "requires_approval"
    approval_id: str = r.json()["approval_id"]
    return approval_id


# --- the page itself -------------------------------------------------------------------


def test_console_files_reference_nothing_outside_the_server(server: Server) -> None:
    """No CDN or other origin anywhere in the console, and a CSP that allows only 'self'."""
    for path in CONSOLE_DIR.iterdir():
        # An XML namespace names, it does not fetch: the one allowed "URL".
        content = path.read_text(encoding="utf-8").replace(SVG_NAMESPACE, "")
        urls = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", content, re.IGNORECASE)
        assert urls == [], path.name
    index = server.client.get(server.url + "/")
    assert index.status_code == 200
    assert "default-src 'none'" in index.text
    assert "connect-src 'self'" in index.text
    # One module script, no inline one: the CSP's script-src 'self' allows nothing else.
    scripts = re.findall(r"<script\b[^>]*>", index.text)
    assert scripts == ['<script type="module" src="/console/app.js">'], scripts
    for module in sorted(CONSOLE_DIR.glob("*.js")):
        script = server.client.get(f"{server.url}/console/{module.name}")
        assert script.status_code == 200, module.name
        assert "javascript" in script.headers["content-type"], module.name
        for target in IMPORT.findall(module.read_text(encoding="utf-8")):
            assert target.startswith("./"), (module.name, target)
            assert (CONSOLE_DIR / target).is_file(), (module.name, target)


def test_sign_in_with_the_keyboard_shows_identity_log_key_and_boot(
    page: Page, server: Server
) -> None:
    """Typing the key and Enter signs in; the identity and roles are the server's answer to
    /v1/me, the log key shown is the server's, the boot is ready."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(urlsplit(request.url).path))
    sign_in(page, server)
    expect(page.locator("#whoami-roles")).to_have_text("roles: approver, operator")
    assert "/v1/me" in requested
    assert not [path for path in requested if path.startswith("/v1/decisions/")]
    key = server.call("GET", "/v1/audit/public-key", "alice").json()
    expect(page.locator("#key-vkey")).to_have_text(key["vkey"])
    expect(page.locator("#key-pinned")).to_contain_text("no:")
    expect(page.locator("#boot")).to_contain_text("ready")
    chunks = server.call("GET", "/v1/boot", "alice").json()["chunks"]
    expect(page.locator("#boot tbody tr")).to_have_count(len(chunks))
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")


def test_the_key_is_never_stored_and_sign_out_forgets_it(page: Page, server: Server) -> None:
    """The API key is kept in memory only; signing out closes the console and the stream."""
    sign_in(page, server)
    stored = page.evaluate("JSON.stringify([localStorage, sessionStorage, document.cookie])")
    assert server.keys["alice"] not in stored
    assert server.keys["alice"] not in page.url
    page.locator("#sign-out").press("Enter")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    expect(page.locator("#api-key")).to_be_focused()
    expect(page.locator("#api-key")).to_have_value("")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "off")


def test_an_unknown_key_is_refused(page: Page, server: Server) -> None:
    """A key the server does not know leaves the console closed with a clear error."""
    page.goto(server.url + "/")
    page.fill("#api-key", "grace_0123456789abcdef_not-a-real-secret")
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_contain_text("did not accept this key")
    expect(page.locator("#console")).to_be_hidden()


def test_a_pinned_log_key_that_differs_refuses_sign_in(page: Page, server: Server) -> None:
    """Pinning another log's key stops sign-in; pinning the right one is confirmed."""
    other = NoteSigner("grace.local/ledger", Ed25519PrivateKey.generate()).verifier.vkey
    page.goto(server.url + "/")
    page.fill("#pinned-vkey", other)
    page.fill("#api-key", server.keys["alice"])
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_contain_text("differs from the pinned key")
    expect(page.locator("#console")).to_be_hidden()
    right = server.call("GET", "/v1/audit/public-key", "alice").json()["vkey"]
    page.fill("#pinned-vkey", right)
    page.fill("#api-key", server.keys["alice"])
    page.keyboard.press("Enter")
    expect(page.locator("#key-pinned")).to_contain_text("matches the key you pinned")


# --- live events and approvals ------------------------------------------------------------


def test_an_emitted_event_arrives_live(page: Page, server: Server) -> None:
    """An event emitted over HTTP while the page watches appears in the live list."""
    sign_in(page, server)
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
    marker = uuid.uuid4().hex
    r = server.call(
        "POST",
        "/v1/events",
        "alice",
        json={"event_type": "task.created", "payload": {"marker": marker}, "resource": "t1"},
    )
    assert r.status_code == 200, r.text
    arrived = page.locator('#event-list li[data-type="task.created"]', has_text=marker)
    expect(arrived).to_be_visible()
    expect(arrived).to_contain_text("from alice")


def test_approve_a_pending_approval_with_the_keyboard(page: Page, server: Server) -> None:
    """Tab to the Approve button of a pending request, press Enter: the server records it."""
    approval_id = decide_pending_deploy(server)
    sign_in(page, server)
    expect(page.locator("#tab-overview")).to_be_focused()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-approvals")).to_have_attribute("aria-selected", "true")
    approve = page.locator(f'button.approve[aria-label^="Approve {approval_id}:"]')
    expect(approve).to_be_visible()
    expect(approve).to_be_enabled()
    expect(approve).not_to_have_attribute("title", re.compile(""))
    expect(page.locator("#approval-role-note")).to_be_hidden()
    for _ in range(30):  # keyboard only: Tab until the button has focus
        page.keyboard.press("Tab")
        if approve.evaluate("b => b === document.activeElement"):
            break
    else:
        pytest.fail("the Approve button cannot be reached with Tab")
    page.keyboard.press("Enter")
    row = page.locator("#approvals tr", has_text=approval_id)
    expect(row.locator(".state")).to_have_text("approved")
    expect(page.locator("#approval-status")).to_contain_text(f"{approval_id}: approved (1/1")
    stored = server.call("GET", f"/v1/approvals/{approval_id}", "alice").json()
    assert (stored["state"], stored["approvers"]) == ("approved", ["alice"])


def test_without_the_approver_role_the_vote_buttons_are_disabled(
    page: Page, server: Server
) -> None:
    """An auditor sees pending requests, but Approve and Reject are disabled with a tooltip
    naming the role needed; the server refuses the vote anyway."""
    approval_id = decide_pending_deploy(server)
    sign_in(page, server, "dave")
    expect(page.locator("#whoami-roles")).to_have_text("roles: auditor")
    page.locator("#tab-approvals").click()
    row = page.locator("#approvals tr", has_text=approval_id)
    expect(row.locator(".state")).to_have_text("pending")
    tooltip = "Needs the approver role (you have: auditor)"
    for verb in ("Approve", "Reject"):
        button = row.locator(f'button[aria-label^="{verb} {approval_id}:"]')
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("title", tooltip)
    expect(row.locator("input.comment")).to_be_disabled()
    expect(page.locator("#approval-role-note")).to_be_visible()
    expect(page.locator("#approval-role-note")).to_contain_text("approver")
    refused = server.call("POST", f"/v1/approvals/{approval_id}/approve", "dave", json={})
    assert refused.status_code == 403, refused.text
    stored = server.call("GET", f"/v1/approvals/{approval_id}", "alice").json()
    assert (stored["state"], stored["approvers"]) == ("pending", [])


# --- proofs in the page ---------------------------------------------------------------------


def test_verify_checks_the_proof_in_the_browser_and_passes(page: Page, server: Server) -> None:
    """Verify on audit entries and on a decision shows the in-browser proof check passing."""
    sign_in(page, server)
    server.call("POST", "/v1/events", "alice", json={"event_type": "task.completed"})
    page.locator("#tab-decisions").click()
    page.locator("#decisions button.verify").first.click()
    expect(page.locator("#decisions .verdict").first).to_have_attribute("data-verdict", "pass")
    page.locator("#tab-audit").click()
    verdicts = page.locator("#audit .verdict")
    buttons = page.locator("#audit button.verify")
    expect(buttons.first).to_be_visible()
    for i in (0, 3):
        buttons.nth(i).click()
        expect(verdicts.nth(i)).to_have_attribute("data-verdict", "pass")
        expect(verdicts.nth(i)).to_contain_text("verified in this browser")
    page.locator("#verify-ledger").click()
    expect(page.locator("#ledger-status")).to_contain_text("reports the ledger valid")
    page.locator("#tab-decisions").click()  # verdicts survive a tab switch
    expect(page.locator("#decisions .verdict").first).to_have_attribute("data-verdict", "pass")
    page.locator("#tab-audit").click()
    expect(verdicts.nth(3)).to_have_attribute("data-verdict", "pass")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console.png"))


def test_a_tampered_proof_from_the_server_fails_in_the_page(page: Page, server: Server) -> None:
    """A server that alters an entry's bytes in the proof (or lists another actor) is caught."""
    sign_in(page, server)

    def flip_entry_byte(route: Route) -> None:
        bundle = route.fetch().json()
        raw = bytearray(base64.b64decode(bundle["entry_canonical"]))
        raw[raw.index(b'"actor":"') + 9] ^= 0x01
        bundle["entry_canonical"] = base64.b64encode(raw).decode()
        route.fulfill(json=bundle)

    page.route("**/v1/audit/entries/*/proof", flip_entry_byte)
    page.locator("#tab-audit").click()
    page.locator("#audit button.verify").first.click()
    verdict = page.locator("#audit .verdict").first
    expect(verdict).to_have_attribute("data-verdict", "fail")
    expect(verdict).to_contain_text("does not lead to the signed root")
    page.unroute("**/v1/audit/entries/*/proof")

    def rename_actor(route: Route) -> None:
        listing = route.fetch().json()
        for entry in listing["entries"]:
            entry["actor"] = "mallory"
        route.fulfill(json=listing)

    page.route("**/v1/audit/entries?*", rename_actor)
    page.locator('#panel-audit [data-refresh="audit"]').click()
    expect(page.locator("#audit tbody tr").first).to_contain_text("mallory")
    page.locator("#audit button.verify").first.click()
    expect(verdict).to_have_attribute("data-verdict", "fail")
    expect(verdict).to_contain_text("the listed actor differs")


def test_incidents_render_generically_and_outages_do_not_break_the_page(
    page: Page, server: Server
) -> None:
    """Incidents show their timeline whatever their extra fields; a 503 shows "not available"."""
    incident = {
        "incident_id": "inc_1",
        "state": "healing",
        "anomaly_type": "latency_spike",
        "severity": "high",
        "resource": "checkout",
        "anomaly_count": 3,
        "timeline": [
            {"at": "2026-11-24T00:00:00Z", "step": "detected", "status": "open"},
            {"at": "2026-11-24T00:00:02Z", "action": "avn:restart_service", "outcome": "ok"},
        ],
    }
    page.route(
        "**/v1/immune/incidents?*", lambda route: route.fulfill(json={"incidents": [incident]})
    )
    page.route("**/v1/trust?*", lambda route: route.fulfill(status=503, json={"detail": "down"}))
    sign_in(page, server)
    page.locator("#tab-incidents").click()
    timeline = page.locator("#incidents .timeline li")
    expect(timeline).to_have_count(2)
    expect(timeline.nth(1)).to_contain_text("avn:restart_service")
    expect(page.locator("#incidents")).to_contain_text("anomaly_count")
    page.locator("#tab-trust").click()
    expect(page.locator("#trust .unavailable")).to_contain_text("not available")
    page.locator("#tab-overview").click()
    expect(page.locator("#boot")).to_contain_text("ready")


# --- proof.js against the Python implementation ---------------------------------------------

RUN_IN_PAGE = """async ([kind, args]) => {
  const proof = await import("/console/proof.js");
  const hex = proof.hexToBytes;
  if (kind === "bundles") {
    const verifiers = new Map();
    const out = [];
    for (const [vkey, bundle] of args) {
      if (!verifiers.has(vkey)) verifiers.set(vkey, await proof.loadVerifier(vkey));
      const r = await proof.verifyBundle(bundle, verifiers.get(vkey));
      out.push({ valid: r.valid, reason: r.reason });
    }
    return out;
  }
  const out = [];
  for (const c of args) {
    if (c.op === "inclusion") {
      const root = await proof.rootFromInclusionProof(
        hex(c.leaf), c.index, c.size, c.proof.map(hex));
      out.push(root === null ? null : proof.bytesToHex(root));
    } else {
      out.push(await proof.verifyConsistency(
        c.size1, c.size2, hex(c.root1), hex(c.root2), c.proof.map(hex)));
    }
  }
  return out;
}"""

SIZE = 13
CHECKPOINTS = (5, 9, SIZE)


def python_verdict(bundle: Bundle, ledger_verifier: NoteVerifier) -> tuple[bool, str]:
    """What the Python implementation says about a bundle."""
    try:
        parsed = ProofBundle.from_json(bundle)
    except ProofError as e:
        return False, str(e)
    check = verify_bundle(parsed, ledger_verifier)
    return check.valid, check.reason


def _in_thread(make: Callable[[], Any]) -> Any:
    # Playwright's sync API owns this thread's event loop; the ledger runs on its own.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class Case(NamedTuple):
    """A bundle, the vkey it is checked with, and whether it is genuine."""

    vkey: str
    bundle: Bundle
    genuine: bool


@pytest.fixture(scope="module")
def proof_cases(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    """Proof bundles from a real ledger (every entry, in several tree sizes, some needing a
    consistency proof), and tampered copies of them."""
    data_dir = tmp_path_factory.mktemp("ledger")

    async def make() -> tuple[str, list[Bundle]]:
        config = LedgerConfig(checkpoint_every=0, checkpoint_interval_s=0)
        async with await Ledger.open(data_dir, config=config) as ledger:
            for i in range(1, SIZE + 1):
                await ledger.append(
                    subsystem="console-test",
                    actor=f"actor-{i}",
                    action="probe",
                    resource="r\u00e9sum\u00e9 \U0001f680" if i % 3 == 0 else "",
                    result="ok",
                    payload={"i": i, "f": i / 7, "big": 2**53 - i, "nested": {"z": [1, None]}},
                )
                if i in CHECKPOINTS:
                    await ledger.checkpoint()
            bundles = []
            for seq in range(1, SIZE + 1):
                bundles.append((await ledger.prove(seq)).to_json())
                sizes = sorted({seq, (seq + SIZE) // 2, SIZE})
                bundles.extend([(await ledger.prove(seq, tree_size=n)).to_json() for n in sizes])
            return ledger.verifier.vkey, bundles

    vkey, bundles = _in_thread(make)
    return [
        *(Case(vkey, b, genuine=True) for b in bundles),
        *(Case(vkey, b, genuine=False) for b in tampered(bundles)),
        *resigned(bundles[0]),
    ]


def tampered(bundles: list[Bundle]) -> list[Bundle]:
    """Copies of real bundles, each altered in one way an attacker might try."""
    stranger = NoteSigner("grace.local/ledger", Ed25519PrivateKey.generate())
    out: list[Bundle] = []
    for n, b in enumerate(bundles):
        raw = bytearray(base64.b64decode(b["entry_canonical"]))
        raw[n % len(raw)] ^= 0x20
        out.append({**b, "entry_canonical": base64.b64encode(raw).decode()})
        if b["inclusion_proof"]:
            proof = list(b["inclusion_proof"])
            proof[n % len(proof)] = "00" * 32
            out.append({**b, "inclusion_proof": proof})
            out.append({**b, "inclusion_proof": proof[:-1]})
        if b["consistency_proof"]:
            proof = list(b["consistency_proof"])
            proof[-1] = proof[-1][:-2] + "ff"
            out.append({**b, "consistency_proof": proof})
            out.append({**b, "consistency_proof": []})
        if b["tree_size"] > 1:
            out.append({**b, "seq": b["seq"] % b["tree_size"] + 1})
        out.append({**b, "tree_size": b["tree_size"] + 1})
    first, other = bundles[0], bundles[-1]
    note, size = first["checkpoint"], first["tree_size"]
    body = note.split("\n\n")[0]
    out += [
        {**first, "checkpoint": note.replace(f"\n{size}\n", f"\n{size + 1}\n", 1)},
        {**first, "checkpoint": note.replace("\u2014 grace.local/ledger ", "\u2014 other ")},
        {**first, "checkpoint": body + "\n\n"},
        {**first, "checkpoint": stranger.sign_checkpoint(SIZE, b"\x00" * 32).note},
        {**first, "entry_canonical": other["entry_canonical"]},
        {**first, "format": "grace-ledger-proof/v0"},
        {**first, "inclusion_proof": ["zz"]},
        {**first, "entry_canonical": "not base64!"},
        {**first, "seq": -1},
    ]
    return out


def resigned(bundle: Bundle) -> list[Case]:
    """The bundle's checkpoint signed by another key of the same name: valid under that key,
    and — signed over a wrong root — invalid although its signature verifies."""
    signer = NoteSigner("grace.local/ledger", Ed25519PrivateKey.generate())
    signed = Checkpoint.from_note(bundle["checkpoint"])
    right = signer.sign_checkpoint(signed.tree_size, signed.root_hash).note
    wrong = signer.sign_checkpoint(signed.tree_size, merkle.leaf_hash(b"forged")).note
    vkey = signer.verifier.vkey
    return [
        Case(vkey, {**bundle, "checkpoint": right}, genuine=True),
        Case(vkey, {**bundle, "checkpoint": wrong}, genuine=False),
    ]


def test_proof_module_agrees_with_the_python_verifier(
    page: Page, server: Server, proof_cases: list[Case]
) -> None:
    """proof.js gives Python's verdict and reason on real bundles and on every tampered one."""
    page.goto(server.url + "/")
    in_browser = page.evaluate(RUN_IN_PAGE, ["bundles", [[c.vkey, c.bundle] for c in proof_cases]])
    verifiers = {vkey: NoteVerifier.from_vkey(vkey) for vkey, _, _ in proof_cases}
    in_python = [python_verdict(c.bundle, verifiers[c.vkey]) for c in proof_cases]
    assert [(r["valid"], r["reason"]) for r in in_browser] == in_python
    assert [ok for ok, _ in in_python] == [c.genuine for c in proof_cases]
    assert any(c.bundle["consistency_proof"] for c in proof_cases if c.genuine)
    # The last case is signed correctly over a wrong root: the root comparison catches it.
    assert in_python[-1] == (False, "inclusion proof does not lead to the signed root")


def test_merkle_functions_match_python_for_every_small_tree(page: Page, server: Server) -> None:
    """Inclusion roots and consistency checks agree with grace.ledger.merkle for sizes 1..16."""
    leaves = [merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(16)]
    cases: list[dict[str, Any]] = []
    expected: list[Any] = []
    for size in range(1, 17):
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, leaves)
            for p in (proof, proof[:-1], [*proof, leaves[0]]):
                cases.append(
                    {
                        "op": "inclusion",
                        "leaf": leaves[index].hex(),
                        "index": index,
                        "size": size,
                        "proof": [h.hex() for h in p],
                    }
                )
                root = merkle.root_from_inclusion_proof(leaves[index], index, size, p)
                expected.append(None if root is None else root.hex())
        for size1 in range(size + 1):
            proof = merkle.consistency_proof(size1, size, leaves)
            roots = (merkle.root_hash(leaves[:size1]), merkle.root_hash(leaves[:size]))
            bad = [*proof[:-1], leaves[0]] if proof else [leaves[0]]
            for p in (proof, bad):
                cases.append(
                    {
                        "op": "consistency",
                        "size1": size1,
                        "size2": size,
                        "root1": roots[0].hex(),
                        "root2": roots[1].hex(),
                        "proof": [h.hex() for h in p],
                    }
                )
                expected.append(merkle.verify_consistency(size1, size, *roots, p))
    page.goto(server.url + "/")
    assert page.evaluate(RUN_IN_PAGE, ["merkle", cases]) == expected
    assert {True, False, None} <= {e for e in expected if not isinstance(e, str)}


def test_reasons_quote_text_exactly_like_python(page: Page, server: Server) -> None:
    """proof.js spells quoted text in its reasons as Python's repr does."""
    samples = [
        "grace.local/ledger",
        "it's",
        'say "hi" it\'s',
        "tab\there\n",
        "\x00\x7f\x85",
        "\u00e9\u2028\u200b",
        "\U0001f680 \U000e0001",
        "back\\slash",
        "",
    ]
    page.goto(server.url + "/")
    got = page.evaluate(
        """async (samples) => {
          const proof = await import("/console/proof.js");
          return [...samples.map(proof.pyRepr), proof.pyRepr(null), proof.pyRepr(7)];
        }""",
        samples,
    )
    assert got == [*map(repr, samples), "None", "7"]

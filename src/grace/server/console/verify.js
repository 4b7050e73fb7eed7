// Audit proofs in the page: an entry's "Verify" fetches its proof bundle and checks it here
// with proof.js against the log key fetched at sign-in, so the page does not have to take
// the server's word that an entry is in the log. "Verify whole ledger" is the server's word,
// and says so.

import { api, session } from "./api.js";
import { $, announce, el } from "./dom.js";
import * as proof from "./proof.js";

/** A "Verify" button and the place its verdict appears, for one listed entry. */
export function verifyControl(entry) {
  const result = el("span", { class: "verdict", role: "status" });
  const button = el(
    "button",
    { type: "button", class: "verify secondary", "aria-label": `Verify the proof of entry ${entry.seq}` },
    "Verify",
  );
  button.addEventListener("click", () => verifyEntry(entry, button, result));
  return el("div", { class: "proof" }, button, result);
}

/** Fetch an entry's proof bundle and check it here: signed checkpoint, inclusion (and
 * consistency) proof, and that the listed entry is the one the proof covers. */
async function verifyEntry(listed, button, result) {
  button.disabled = true;
  result.dataset.verdict = "checking";
  result.className = "verdict";
  result.textContent = "checking…";
  let verdict;
  try {
    const { data } = await api(`/v1/audit/entries/${encodeURIComponent(listed.seq)}/proof`);
    verdict = await proof.verifyBundle(data, session.verifier);
    if (verdict.valid) {
      const same = proof.matchesListed(listed, verdict);
      if (!same.valid) verdict = same;
    }
  } catch (e) {
    verdict = { valid: false, reason: e.message || String(e) };
  } finally {
    button.disabled = false;
  }
  result.dataset.verdict = verdict.valid ? "pass" : "fail";
  result.className = `verdict ${verdict.valid ? "pass" : "fail"}`;
  result.textContent = verdict.valid
    ? `✓ verified in this browser: ${verdict.reason}`
    : `✗ proof check failed: ${verdict.reason}`;
  result.title = result.textContent;
  announce(result.textContent);
}

/** Ask the server to verify the whole ledger and show what it reports. */
export async function verifyLedger() {
  const status = $("ledger-status");
  const button = $("verify-ledger");
  button.disabled = true;
  status.className = "status";
  status.textContent = "the server is verifying the whole ledger…";
  try {
    const { data } = await api("/v1/audit/verify", { method: "POST" });
    status.className = `status ${data.valid ? "ok" : "bad"}`;
    status.textContent = data.valid
      ? `The server reports the ledger valid: ${data.entries_checked} entries, ` +
        `${data.checkpoints_checked} checkpoints, root ${String(data.root_hash).slice(0, 16)}…` +
        " (the server's word; use an entry's Verify to check a proof yourself)"
      : `The server reports the ledger INVALID at entry ${data.first_bad_seq}: ${data.reason}`;
  } catch (e) {
    status.className = "status bad";
    status.textContent = `could not verify: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

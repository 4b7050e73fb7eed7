// Approvals: the list of approval requests in a state, the pending count on the tab, and
// Approve / Reject with an optional comment. Voting needs the approver role; for a
// principal without it (GET /v1/me at sign-in says) the buttons are disabled with a
// tooltip saying so — only a courtesy: the server checks the role on every vote.

import { api, hasRole, session } from "./api.js";
import { $, badge, clear, el, render, table, text, ticket, timeCell } from "./dom.js";
import { unavailable } from "./views.js";

export const APPROVER_ROLE = "approver";

/** Why the signed-in principal cannot vote, or null when it can. */
function cannotVote() {
  if (hasRole(APPROVER_ROLE)) return null;
  const roles = session.principal ? session.principal.roles : [];
  const have = roles.length ? `you have: ${roles.join(", ")}` : "you have no roles";
  return `Needs the ${APPROVER_ROLE} role (${have})`;
}

export async function loadApprovals() {
  const target = $("approvals");
  const stale = ticket("approvals");
  const state = $("approval-state").value;
  $("approval-role-note").hidden = cannotVote() === null;
  try {
    const { data } = await api(`/v1/approvals?state=${encodeURIComponent(state)}`);
    if (stale()) return;
    const rows = Array.isArray(data) ? data : [];
    if (state === "pending") setPendingBadge(rows.length);
    render(
      target,
      table(
        `Approval requests (${state})`,
        [
          ["request", (a) => el("code", {}, text(a.approval_id))],
          ["requester", (a) => text(a.requester)],
          ["action", (a) => el("code", {}, text(a.action))],
          ["resource", (a) => text(a.resource)],
          ["risk", (a) => badge(a.summary && a.summary.risk)],
          ["why", (a) => text((a.summary && a.summary.reasons || []).join("; "))],
          ["votes", (a) => el("span", { class: "votes" }, `${(a.approvers || []).length}/${a.quorum}`)],
          ["state", (a) => el("span", { class: "state" }, badge(a.state))],
          ["expires", (a) => timeCell(a.expires_at)],
          ["decide", (a) => (a.state === "pending" ? voteControls(a) : "—")],
        ],
        rows,
        `no ${state} approval requests`,
      ),
    );
  } catch (e) {
    if (stale()) return;
    if (state === "pending") setPendingBadge(null);
    unavailable(target, e);
  }
}

function setPendingBadge(count) {
  const node = $("pending-badge");
  node.hidden = !count;
  node.textContent = count ? String(count) : "";
  node.setAttribute("aria-label", count ? `${count} pending` : "");
}

function voteControls(approval) {
  const id = approval.approval_id;
  const what = `${approval.action} on ${approval.resource || "—"} by ${approval.requester}`;
  const denied = cannotVote();
  const locked = { disabled: denied !== null, title: denied };
  const comment = el("input", {
    type: "text",
    class: "comment",
    placeholder: "comment (optional)",
    "aria-label": `Comment for ${id}`,
    maxlength: "2000",
    ...locked,
  });
  const approve = el(
    "button",
    { type: "button", class: "approve", "aria-label": `Approve ${id}: ${what}`, ...locked },
    "Approve",
  );
  const reject = el(
    "button",
    { type: "button", class: "reject danger", "aria-label": `Reject ${id}: ${what}`, ...locked },
    "Reject",
  );
  const vote = (verb) => async () => {
    approve.disabled = true;
    reject.disabled = true;
    const status = $("approval-status");
    try {
      const { data } = await api(`/v1/approvals/${encodeURIComponent(id)}/${verb}`, {
        method: "POST",
        body: { comment: comment.value },
      });
      const row = approve.closest("tr");
      clear(row.querySelector(".state"), badge(data.state));
      clear(row.querySelector(".votes"), `${(data.approvers || []).length}/${data.quorum}`);
      clear(approve.parentElement, el("span", { class: "muted" }, `${verb === "approve" ? "approved" : "rejected"} by you`));
      status.className = "status ok";
      status.textContent = `${id}: ${data.state} (${(data.approvers || []).length}/${data.quorum} approvals)`;
      status.focus();
      if (data.state !== "pending") {
        const badgeNode = $("pending-badge");
        setPendingBadge(Math.max(0, Number(badgeNode.textContent || 0) - 1));
      }
    } catch (e) {
      approve.disabled = false;
      reject.disabled = false;
      status.className = "status bad";
      status.textContent = `${id}: could not ${verb}: ${e.message}`;
      (verb === "approve" ? approve : reject).focus();
    }
  };
  approve.addEventListener("click", vote("approve"));
  reject.addEventListener("click", vote("reject"));
  return el("div", { class: "vote" }, comment, approve, reject);
}

// The console's read-only sections: boot report, immune counters, decisions, incidents
// and their healing timelines, trust scores, and the audit log. Each loader fetches its
// section and renders it (only the newest load of a section renders; a failed one says
// "not available" instead of breaking the page). Approvals live in approvals.js.

import { ApiError, api } from "./api.js";
import { $, badge, clear, el, render, table, text, ticket, timeCell } from "./dom.js";
import { verifyControl } from "./verify.js";

const AUDIT_PAGE = 25;

/** Show "not available" (or the error) in a section instead of breaking the page. */
export function unavailable(target, error) {
  const reason = error instanceof ApiError ? error.message : String(error);
  const status = error instanceof ApiError ? error.status : 0;
  const why = status === 404 || status === 503 ? "not available on this server" : "could not load";
  clear(target, el("p", { class: "muted unavailable", dataset: { status } }, `${why} (${reason})`));
}

// The decision and audit tables are not refreshed under the user's hands (a proof being
// checked would vanish): they count what is new since they were loaded instead.
const unseen = { decisions: 0, audit: 0 };

export function countNew(name) {
  unseen[name] += 1;
  const node = $(`${name}-new`);
  node.textContent = `${unseen[name]} new since loaded`;
}

export function seenAll(name) {
  unseen[name] = 0;
  $(`${name}-new`).textContent = "";
}

// --- sections ------------------------------------------------------------------------------

export const loaders = {
  async boot() {
    const target = $("boot");
    const stale = ticket("boot");
    try {
      const { data } = await api("/v1/boot");
      if (stale()) return;
      render(
        target,
        el(
          "p",
          {},
          "State ",
          badge(data.state),
          ` · started ${data.started_at ? new Date(data.started_at).toLocaleString() : "—"}`,
          ` · ${Number(data.duration_s || 0).toFixed(3)} s`,
          data.receipt_seq ? ` · ledger seq ${data.receipt_seq}` : "",
        ),
        table(
          "Boot chunks",
          [
            ["chunk", (c) => el("span", { title: text(c.name) }, text(c.chunk_id))],
            ["priority", (c) => text(c.priority)],
            ["status", (c) => badge(c.status)],
            ["attempts", (c) => text(c.attempts)],
            ["time", (c) => `${(Number(c.duration_s || 0) * 1000).toFixed(0)} ms`],
            ["issues", (c) => [...(c.issues || []), c.error].filter(Boolean).join("; ") || "—"],
          ],
          Array.isArray(data.chunks) ? data.chunks : [],
        ),
      );
    } catch (e) {
      if (!stale()) unavailable(target, e);
    }
  },

  async immune() {
    const target = $("immune-stats");
    const stale = ticket("immune");
    try {
      const { data } = await api("/v1/immune/stats");
      if (stale()) return;
      const entries = data && typeof data === "object" ? Object.entries(data) : [];
      render(
        target,
        entries.length
          ? el("dl", { class: "kv" }, entries.map(([k, v]) => [el("dt", {}, k), el("dd", {}, figure(v))]))
          : el("p", { class: "muted" }, "no counters yet"),
      );
    } catch (e) {
      if (!stale()) unavailable(target, e);
    }
  },

  async decisions() {
    const target = $("decisions");
    const stale = ticket("decisions");
    try {
      const { data } = await api("/v1/audit/entries?subsystem=governance&newest_first=true&limit=50");
      if (stale()) return;
      seenAll("decisions");
      render(
        target,
        table(
          "Governance decisions, newest first",
          [
            ["seq", (e) => String(e.seq)],
            ["time", (e) => timeCell(e.timestamp)],
            ["principal", (e) => text(e.actor)],
            ["action · resource", actionCell],
            ["outcome", (e) => badge(e.result)],
            ["reasons", (e) => reasonsOf(e.payload)],
            ["decision", (e) => el("code", { class: "small" }, text(e.payload && e.payload.decision_id))],
            ["proof", (e) => verifyControl(e)],
          ],
          (data.entries || []).filter((e) => e.payload && e.payload.event === "decision"),
          "no decisions recorded yet",
        ),
      );
    } catch (e) {
      if (!stale()) unavailable(target, e);
    }
  },

  async incidents() {
    const target = $("incidents");
    const stale = ticket("incidents");
    try {
      const { data } = await api("/v1/immune/incidents?limit=50");
      if (stale()) return;
      const incidents = data && Array.isArray(data.incidents) ? data.incidents : [];
      render(
        target,
        incidents.length
          ? el("ol", { class: "incidents" }, incidents.map(renderIncident))
          : el("p", { class: "muted" }, "no incidents"),
      );
    } catch (e) {
      if (!stale()) unavailable(target, e);
    }
  },

  async trust() {
    const target = $("trust");
    const stale = ticket("trust");
    try {
      const { data } = await api("/v1/trust?limit=100");
      if (stale()) return;
      const scores = data && Array.isArray(data.scores) ? data.scores : [];
      render(
        target,
        table(
          "Trust scores, least trusted first",
          [
            ["subject", (s) => el("code", {}, text(s.subject_id))],
            ["score", (s) => scoreCell(s.composite_score)],
            ["level", (s) => badge(s.level)],
            ["confidence", (s) => fixed(s.confidence)],
            ["evidence", (s) => text(s.evidence_count)],
            ["quarantined", (s) => (s.quarantined ? badge("quarantined") : "no")],
            ["updated", (s) => timeCell(s.updated_at)],
          ],
          scores,
          "no trust scores yet",
        ),
      );
    } catch (e) {
      if (!stale()) unavailable(target, e);
    }
  },

  async audit(cursor = auditCursor.current) {
    const target = $("audit");
    const stale = ticket("audit");
    const params = new URLSearchParams({ newest_first: "true", limit: String(AUDIT_PAGE) });
    if (cursor !== null) params.set("after", String(cursor));
    const subsystem = $("audit-subsystem").value.trim();
    if (subsystem) params.set("subsystem", subsystem);
    try {
      const { data } = await api(`/v1/audit/entries?${params}`);
      if (stale()) return;
      seenAll("audit");
      auditCursor.current = cursor;
      auditCursor.next = data.next_after;
      $("audit-older").disabled = data.next_after === null || data.next_after === undefined;
      $("audit-newer").disabled = cursor === null;
      render(
        target,
        el("p", { class: "muted" }, `The ledger holds ${data.size} entries.`),
        table(
          "Audit entries, newest first",
          [
            ["seq", (e) => String(e.seq)],
            ["time", (e) => timeCell(e.timestamp)],
            ["subsystem", (e) => text(e.subsystem)],
            ["actor", (e) => text(e.actor)],
            ["action · resource", actionCell],
            ["result", (e) => badge(e.result)],
            ["proof", (e) => verifyControl(e)],
          ],
          data.entries || [],
          "no entries",
        ),
      );
    } catch (e) {
      if (!stale()) unavailable(target, e);
    }
  },
};

const auditCursor = { current: null, next: null };

function actionCell(entry) {
  return el(
    "span",
    { class: "action" },
    el("code", {}, text(entry.action)),
    entry.resource && entry.resource !== entry.action
      ? el("span", { class: "muted small res" }, text(entry.resource))
      : null,
  );
}

function figure(value) {
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(3) : text(value);
}

function fixed(value) {
  return typeof value === "number" ? value.toFixed(3) : text(value);
}

function scoreCell(value) {
  if (typeof value !== "number") return text(value);
  return el(
    "span",
    { class: "score" },
    el("meter", { min: "0", max: "1", low: "0.5", high: "0.8", optimum: "1", value: String(value), "aria-hidden": "true" }),
    ` ${value.toFixed(3)}`,
  );
}

function reasonsOf(payload) {
  if (!payload) return "—";
  const reasons = Array.isArray(payload.reasons) ? payload.reasons : [];
  const policies = Array.isArray(payload.violated_policies) ? payload.violated_policies : [];
  if (!reasons.length && !policies.length) return "—";
  return el(
    "span",
    {},
    reasons.join("; "),
    policies.length ? el("span", { class: "muted small" }, ` (${policies.join(", ")})`) : null,
  );
}

/** Show the next (older) page of the audit log. */
export function olderAudit() {
  return loaders.audit(auditCursor.next);
}

// Incidents come from the immune system; their shape may grow, so anything beyond the
// well-known fields is shown generically rather than dropped.
const INCIDENT_HEAD = ["incident_id", "state", "severity", "anomaly_type", "resource", "timeline"];
const STEP_TIME = ["at", "time", "timestamp", "started_at"];
const STEP_TITLE = ["step", "action", "kind", "event", "name", "phase"];
const STEP_STATUS = ["status", "outcome", "result", "state"];

function pick(obj, keys) {
  for (const key of keys) if (obj[key] !== undefined && obj[key] !== null) return [key, obj[key]];
  return [null, undefined];
}

function renderIncident(incident) {
  if (!incident || typeof incident !== "object") return el("li", {}, text(incident));
  const rest = Object.entries(incident).filter(([k]) => !INCIDENT_HEAD.includes(k));
  const timeline = Array.isArray(incident.timeline) ? incident.timeline : [];
  return el(
    "li",
    { class: "card incident" },
    el(
      "h3",
      {},
      el("code", {}, text(incident.incident_id)),
      " ",
      badge(incident.state),
      " ",
      badge(incident.severity),
      ` ${text(incident.anomaly_type)} on ${text(incident.resource)}`,
    ),
    rest.length ? el("dl", { class: "kv" }, rest.map(([k, v]) => [el("dt", {}, k), el("dd", {}, text(v))])) : null,
    el("h4", {}, "Healing timeline"),
    timeline.length
      ? el("ol", { class: "timeline" }, timeline.map(renderStep))
      : el("p", { class: "muted" }, "no steps yet"),
  );
}

function renderStep(step) {
  if (!step || typeof step !== "object") return el("li", {}, text(step));
  const [timeKey, when] = pick(step, STEP_TIME);
  const [titleKey, title] = pick(step, STEP_TITLE);
  const [statusKey, status] = pick(step, STEP_STATUS);
  // A nested "detail" object reads better flattened into the line.
  const rest = Object.entries(step)
    .filter(([k]) => ![timeKey, titleKey, statusKey].includes(k))
    .flatMap(([k, v]) =>
      k === "detail" && v && typeof v === "object" && !Array.isArray(v) ? Object.entries(v) : [[k, v]],
    );
  return el(
    "li",
    {},
    when !== undefined ? [timeCell(String(when)), " "] : null,
    el("strong", {}, text(title)),
    status !== undefined ? [" ", badge(status)] : null,
    rest.length
      ? el("span", { class: "muted small" }, ` ${rest.map(([k, v]) => `${k}=${text(v)}`).join(" ")}`)
      : null,
  );
}

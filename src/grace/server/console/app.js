// The Grace web console: vanilla JS, no build step, nothing fetched from elsewhere.
//
// Security notes (why the code looks the way it does):
// - The API key lives only in this module's memory: never in storage, never in a URL.
//   That is also why the event stream is read with fetch() and parsed here: EventSource
//   cannot send an Authorization header.
// - Server data is rendered with textContent / DOM nodes only, never as HTML.
// - Audit proofs are checked here (proof.js) against the log key fetched once at sign-in,
//   so the page does not have to trust the server's word that an entry is in the log.
// - Every request carries an X-Request-Id starting with "console-": the console can then
//   tell its own decisions from others' and never refreshes because of itself (which
//   would record a new decision, announce it, refresh again, ...).

import * as proof from "./proof.js";

const REQUEST_PREFIX = "console-";
const MAX_EVENTS = 300;
const PINNED_KEY_STORAGE = "grace.console.pinnedVkey";
const AUDIT_PAGE = 25;

const $ = (id) => document.getElementById(id);

// --- small DOM helpers -----------------------------------------------------------------

/** An element with attributes and children; strings become text nodes, never HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function clear(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null));
}

/** Replace a section's content, keeping keyboard focus on the same control (found again by
 * its aria-label), so a live refresh never throws a keyboard user out of a table. */
function render(target, ...children) {
  const active = document.activeElement;
  const label = active && target.contains(active) ? active.getAttribute("aria-label") : null;
  clear(target, ...children);
  if (label) {
    const again = [...target.querySelectorAll("[aria-label]")].find(
      (node) => node.getAttribute("aria-label") === label,
    );
    if (again) again.focus();
  }
}

// Loads may overlap (a refresh while one is in flight): only the newest one renders.
const tickets = new Map();

function ticket(name) {
  const mine = (tickets.get(name) || 0) + 1;
  tickets.set(name, mine);
  return () => tickets.get(name) !== mine;
}

function text(value) {
  if (value === undefined || value === null || value === "") return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function timeCell(iso) {
  if (!iso) return "—";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  const today = when.toDateString() === new Date().toDateString();
  const shown = when.toLocaleString(undefined, {
    month: today ? undefined : "short",
    day: today ? undefined : "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  return el("time", { datetime: iso, title: iso }, shown);
}

function badge(value, kind = value) {
  return el("span", { class: `badge b-${String(kind).replace(/[^a-z_]/gi, "")}` }, text(value));
}

/** A table: columns are [label, (row) => Node|string]; empty rows give a message. */
function table(caption, columns, rows, empty = "nothing to show") {
  if (!rows.length) return el("p", { class: "muted" }, empty);
  const grid = el(
    "table",
    {},
    el("caption", { class: "visually-hidden" }, caption),
    el("thead", {}, el("tr", {}, columns.map(([label]) => el("th", { scope: "col" }, label)))),
    el(
      "tbody",
      {},
      rows.map((row) => el("tr", {}, columns.map(([, cell]) => el("td", {}, cell(row))))),
    ),
  );
  return el("div", { class: "table-wrap" }, grid);
}

function announce(message) {
  const region = $("announcer");
  region.textContent = "";
  // A new text node in a cleared live region is announced even if the text repeats.
  window.setTimeout(() => {
    region.textContent = message;
  }, 30);
}

// --- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  static from(status, body, raw) {
    let message = `HTTP ${status}`;
    if (body && typeof body === "object") {
      const detail = body.detail;
      if (typeof detail === "string") message += `: ${detail}`;
      else if (detail && typeof detail === "object") {
        message += `: ${detail.detail || detail.reason || JSON.stringify(detail)}`;
      }
      if (Array.isArray(body.reasons) && body.reasons.length) {
        const principles = body.reasons.map((r) => r.principle).filter(Boolean);
        if (principles.length) message += ` [${[...new Set(principles)].join(", ")}]`;
      }
      if (body.decision_id) message += ` (decision ${body.decision_id})`;
    } else if (raw) {
      message += `: ${raw.slice(0, 200)}`;
    }
    return new ApiError(status, message, body);
  }
}

const session = {
  key: null,
  verifier: null,
  principal: null,
  stream: null, // AbortController of the event stream
  counter: 0,
  tabId: Math.random().toString(36).slice(2, 10),
};

function requestId() {
  session.counter += 1;
  return `${REQUEST_PREFIX}${session.tabId}-${session.counter}`;
}

function authHeaders(extra = {}) {
  return { authorization: `Bearer ${session.key}`, "x-request-id": requestId(), ...extra };
}

/** Call the API as the signed-in principal; resolves to {data, response}; throws ApiError
 * for a non-2xx answer and for a problem+json one (e.g. 202 "approval required"). */
async function api(path, { method = "GET", body, signal } = {}) {
  if (!session.key) throw new ApiError(0, "not signed in");
  const headers = authHeaders({ accept: "application/json" });
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
  } catch (e) {
    throw new ApiError(0, `the server did not answer (${e.message || e})`);
  }
  const raw = await response.text();
  let data = null;
  try {
    data = raw ? JSON.parse(raw) : null;
  } catch {
    data = null;
  }
  const problem = (response.headers.get("content-type") || "").includes("problem+json");
  if (!response.ok || problem) throw ApiError.from(response.status, data, raw);
  return { data, response };
}

/** Show "not available" (or the error) in a section instead of breaking the page. */
function unavailable(target, error) {
  const reason = error instanceof ApiError ? error.message : String(error);
  const status = error instanceof ApiError ? error.status : 0;
  const why = status === 404 || status === 503 ? "not available on this server" : "could not load";
  clear(target, el("p", { class: "muted unavailable", dataset: { status } }, `${why} (${reason})`));
}

// --- sign-in -----------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const errorBox = $("signin-error");
  errorBox.textContent = "";
  const key = $("api-key").value.trim();
  const pinned = $("pinned-vkey").value.trim();
  if (!key) {
    errorBox.textContent = "Enter an API key.";
    $("api-key").focus();
    return;
  }
  if (/[\s\u0000-\u001f\u007f]/.test(key)) {
    errorBox.textContent = "An API key has no spaces or control characters.";
    $("api-key").focus();
    return;
  }
  const button = $("signin-button");
  button.disabled = true;
  session.key = key;
  try {
    const { data, response } = await api("/v1/audit/public-key");
    const verifier = await proof.loadVerifier(data);
    if (pinned) {
      let pin;
      try {
        pin = await proof.parseVkey(pinned);
      } catch (e) {
        throw new Error(`the pinned log key is malformed: ${e.message}`);
      }
      if (pin.name !== verifier.name || proof.bytesToHex(pin.publicKey) !==
          proof.bytesToHex(verifier.publicKey)) {
        throw new Error(
          `the server's log key ${verifier.vkey} differs from the pinned key ${pinned}: ` +
            "this may not be the Grace you expect",
        );
      }
      localStorage.setItem(PINNED_KEY_STORAGE, pinned);
    }
    session.verifier = verifier;
    session.principal = await whoAmI(response);
  } catch (e) {
    session.key = null;
    session.verifier = null;
    errorBox.textContent =
      e instanceof ApiError && e.status === 401
        ? `The server did not accept this key (${e.message}).`
        : `Sign-in failed: ${e.message || e}`;
    $("api-key").focus();
    return;
  } finally {
    button.disabled = false;
  }
  $("api-key").value = "";
  showConsole(Boolean(pinned));
}

/** The caller's principal id: the decision on our own request names it. */
async function whoAmI(response) {
  const decisionId = response.headers.get("grace-decision-id");
  if (!decisionId) return "(unknown)";
  try {
    const { data } = await api(`/v1/decisions/${encodeURIComponent(decisionId)}`);
    return data && data.principal ? String(data.principal) : "(unknown)";
  } catch {
    return "(unknown)";
  }
}

function showConsole(pinned) {
  const v = session.verifier;
  $("whoami").textContent = session.principal;
  $("log-key-summary").textContent = `log key ${v.name}+${proof.bytesToHex(v.keyId)}`;
  $("key-origin").textContent = v.name;
  $("key-vkey").textContent = v.vkey;
  $("key-fingerprint").textContent = v.fingerprint;
  $("key-pinned").textContent = pinned
    ? "yes: matches the key you pinned"
    : "no: compare the vkey above with grace audit export-key";
  $("signin").hidden = true;
  $("console").hidden = false;
  $("session").hidden = false;
  selectTab("overview");
  startStream();
  loaders.approvals(); // the pending badge matters wherever one looks
}

function signOut() {
  if (session.stream) session.stream.abort();
  session.stream = null;
  session.key = null;
  session.verifier = null;
  session.principal = null;
  tickets.clear(); // loads still in flight must not render after sign-out
  loadedTabs.clear();
  events.length = 0;
  eventCount = 0;
  seenAll("decisions");
  seenAll("audit");
  for (const id of ["event-list", "boot", "immune-stats", "decisions", "approvals", "incidents", "trust", "audit"]) {
    clear($(id));
  }
  $("approval-status").textContent = "";
  $("ledger-status").textContent = "";
  $("event-count").textContent = "0 events";
  setStreamState("off");
  $("console").hidden = true;
  $("session").hidden = true;
  $("signin").hidden = false;
  $("api-key").focus();
}

// --- tabs (WAI-ARIA tabs pattern, automatic activation) -------------------------------------

const TABS = ["overview", "decisions", "approvals", "incidents", "trust", "audit"];
let currentTab = "overview";

function selectTab(name) {
  currentTab = name;
  for (const tab of TABS) {
    const button = $(`tab-${tab}`);
    const selected = tab === name;
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
  }
  $(`tab-${name}`).focus();
  refreshTab(name);
}

// The decision and audit tables keep their proof verdicts across tab switches: they load
// once, then on "Refresh" (their "new since loaded" count says when that is worth it).
const KEEP = new Set(["decisions", "audit"]);
const loadedTabs = new Set();

function refreshTab(name) {
  if (KEEP.has(name) && loadedTabs.has(name)) return;
  loadedTabs.add(name);
  if (name === "overview") {
    loaders.boot();
    loaders.immune();
  } else {
    loaders[name]();
  }
}

function onTabKey(event) {
  const index = TABS.indexOf(currentTab);
  const moves = {
    ArrowRight: (index + 1) % TABS.length,
    ArrowLeft: (index - 1 + TABS.length) % TABS.length,
    Home: 0,
    End: TABS.length - 1,
  };
  if (event.key in moves) {
    event.preventDefault();
    selectTab(TABS[moves[event.key]]);
  }
}

// --- live events (SSE over fetch) ----------------------------------------------------------

/** A text/event-stream parser (WHATWG HTML §9.2.6): feed it text, it calls onEvent with
 * {event, data, id} per dispatched event and onRetry with a reconnection delay. */
function sseParser(onEvent, onRetry = () => {}) {
  let buffer = "";
  let data = [];
  let type = "";
  let lastId = "";
  const line = (l) => {
    if (l === "") {
      if (data.length) onEvent({ event: type || "message", data: data.join("\n"), id: lastId });
      data = [];
      type = "";
      return;
    }
    if (l.startsWith(":")) return; // a comment (keep-alive)
    const colon = l.indexOf(":");
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? "" : l.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") type = value;
    else if (field === "id" && !value.includes("\u0000")) lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) onRetry(Number(value));
  };
  return (chunk) => {
    buffer += chunk;
    const terminator = /\r\n|\r|\n/g;
    let start = 0;
    let m;
    while ((m = terminator.exec(buffer)) !== null) {
      // A lone CR at the end may be the first half of CRLF: wait for more text.
      if (m[0] === "\r" && m.index === buffer.length - 1) break;
      line(buffer.slice(start, m.index));
      start = terminator.lastIndex;
    }
    buffer = buffer.slice(start);
  };
}

function setStreamState(state, detail = "") {
  const node = $("stream-state");
  node.dataset.state = state;
  node.textContent = `stream: ${state}${detail ? ` (${detail})` : ""}`;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = window.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      window.clearTimeout(timer);
      resolve();
    });
  });
}

function startStream() {
  const controller = new AbortController();
  session.stream = controller;
  runStream(controller.signal);
}

async function runStream(signal) {
  let delay = 2000;
  while (!signal.aborted) {
    setStreamState("connecting");
    let why = "the stream ended";
    try {
      const response = await fetch("/v1/events/stream?pattern=%3E", {
        headers: authHeaders({ accept: "text/event-stream" }),
        signal,
        cache: "no-store",
        credentials: "omit",
      });
      if (!response.ok) {
        const raw = await response.text();
        let body = null;
        try {
          body = JSON.parse(raw);
        } catch {
          body = null;
        }
        const error = ApiError.from(response.status, body, raw);
        if (response.status === 401 || response.status === 403) {
          setStreamState("denied", error.message);
          return; // retrying cannot help; the key or its roles must change
        }
        throw error;
      }
      setStreamState("live");
      const feed = sseParser(onStreamEvent, (ms) => {
        delay = Math.min(Math.max(ms, 500), 60000);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        feed(value);
      }
    } catch (e) {
      why = e.message || String(e);
    }
    if (signal.aborted) return;
    setStreamState("reconnecting", why);
    await sleep(delay, signal);
  }
}

const events = [];
let eventCount = 0;
let paused = false;

function isOwnDecision(ce) {
  const requestId = ce && ce.data && ce.data.request_id;
  return ce.type === "governance.decision_made" && typeof requestId === "string" &&
    requestId.startsWith(REQUEST_PREFIX);
}

function onStreamEvent(message) {
  if (message.event === "dropped") {
    pushEvent({ dropped: Number(message.data) || 0, time: new Date().toISOString() });
    return;
  }
  if (message.event !== "grace") return;
  let ce;
  try {
    ce = JSON.parse(message.data);
  } catch {
    return; // not JSON: nothing to show
  }
  if (!ce || typeof ce !== "object") return;
  pushEvent(ce);
  react(ce);
}

function pushEvent(item) {
  events.unshift(item);
  if (events.length > MAX_EVENTS) events.length = MAX_EVENTS;
  eventCount += 1;
  $("event-count").textContent = `${eventCount} event${eventCount === 1 ? "" : "s"}`;
  if (paused || !visibleEvent(item)) return;
  const list = $("event-list");
  list.prepend(renderEvent(item));
  while (list.childElementCount > MAX_EVENTS) list.lastElementChild.remove();
}

function visibleEvent(item) {
  if (item.dropped) return true;
  if ($("hide-own").checked && isOwnDecision(item)) return false;
  const filter = $("event-filter").value.trim().toLowerCase();
  return !filter || String(item.type || "").toLowerCase().includes(filter);
}

function renderEvents() {
  clear($("event-list"), events.filter(visibleEvent).map(renderEvent));
}

function summarize(ce) {
  const d = ce.data;
  if (!d || typeof d !== "object") return text(d);
  if (ce.type === "governance.decision_made") {
    return `${d.outcome}: ${d.principal} ${d.action} (seq ${d.receipt_seq})`;
  }
  return Object.entries(d)
    .slice(0, 4)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" ")
    .slice(0, 160);
}

function renderEvent(item) {
  if (item.dropped) {
    return el("li", { class: "event dropped" }, `${item.dropped} events dropped: the stream was too slow`);
  }
  const outcome = item.data && typeof item.data === "object" ? item.data.outcome : undefined;
  return el(
    "li",
    { class: "event", dataset: { type: text(item.type) } },
    el(
      "details",
      {},
      el(
        "summary",
        {},
        timeCell(item.time),
        " ",
        el("code", { class: "etype" }, text(item.type)),
        outcome ? [" ", badge(outcome)] : null,
        el("span", { class: "esource" }, ` from ${text(item.source)}`),
        el("span", { class: "esummary" }, summarize(item)),
      ),
      el("pre", {}, JSON.stringify(item, null, 2)),
    ),
  );
}

// Refresh what an event concerns — at most once per second per section, and never for the
// console's own requests.
const pending = new Map();

function schedule(name, ms = 1000) {
  if (pending.has(name)) return;
  pending.set(
    name,
    window.setTimeout(() => {
      pending.delete(name);
      if (session.key) loaders[name]();
    }, ms),
  );
}

const unseen = { decisions: 0, audit: 0 };

function countNew(name) {
  unseen[name] += 1;
  const node = $(`${name}-new`);
  node.textContent = `${unseen[name]} new since loaded`;
}

function seenAll(name) {
  unseen[name] = 0;
  $(`${name}-new`).textContent = "";
}

function react(ce) {
  const type = String(ce.type || "");
  if (!isOwnDecision(ce)) countNew("audit");
  if (type === "governance.decision_made" && !isOwnDecision(ce)) {
    const d = ce.data || {};
    if (String(d.outcome || "").startsWith("requires_") ||
        String(d.action || "").startsWith("POST:/v1/approvals/")) {
      schedule("approvals");
    }
    // The decision and audit tables are not refreshed under the user's hands (a proof
    // being checked would vanish); they say how much is new instead.
    countNew("decisions");
  } else if (/^(avn|anomaly|incident|health)\./.test(type)) {
    schedule("immune");
    if (currentTab === "incidents") schedule("incidents");
  } else if (type.startsWith("trust.") && currentTab === "trust") {
    schedule("trust");
  }
}

// --- sections ------------------------------------------------------------------------------

const loaders = {
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

  async approvals() {
    const target = $("approvals");
    const stale = ticket("approvals");
    const state = $("approval-state").value;
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

function setPendingBadge(count) {
  const node = $("pending-badge");
  node.hidden = !count;
  node.textContent = count ? String(count) : "";
  node.setAttribute("aria-label", count ? `${count} pending` : "");
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

// --- approvals -----------------------------------------------------------------------------

function voteControls(approval) {
  const id = approval.approval_id;
  const what = `${approval.action} on ${approval.resource || "—"} by ${approval.requester}`;
  const comment = el("input", {
    type: "text",
    class: "comment",
    placeholder: "comment (optional)",
    "aria-label": `Comment for ${id}`,
    maxlength: "2000",
  });
  const approve = el("button", { type: "button", class: "approve", "aria-label": `Approve ${id}: ${what}` }, "Approve");
  const reject = el("button", { type: "button", class: "reject danger", "aria-label": `Reject ${id}: ${what}` }, "Reject");
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

// --- proofs --------------------------------------------------------------------------------

function verifyControl(entry) {
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

async function verifyLedger() {
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

// --- wiring --------------------------------------------------------------------------------

function init() {
  document.body.append(el("div", { id: "announcer", class: "visually-hidden", "aria-live": "polite" }));
  const remembered = localStorage.getItem(PINNED_KEY_STORAGE);
  if (remembered) $("pinned-vkey").value = remembered;
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  for (const tab of TABS) $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
  document.querySelector("[role=tablist]").addEventListener("keydown", onTabKey);
  for (const button of document.querySelectorAll("[data-refresh]")) {
    button.addEventListener("click", () => loaders[button.dataset.refresh]());
  }
  $("approval-state").addEventListener("change", () => loaders.approvals());
  $("audit-subsystem").addEventListener("change", () => loaders.audit(null));
  $("audit-older").addEventListener("click", () => loaders.audit(auditCursor.next));
  $("audit-newer").addEventListener("click", () => loaders.audit(null));
  $("verify-ledger").addEventListener("click", verifyLedger);
  $("event-filter").addEventListener("input", renderEvents);
  $("hide-own").addEventListener("change", renderEvents);
  $("pause-events").addEventListener("click", () => {
    paused = !paused;
    $("pause-events").setAttribute("aria-pressed", String(paused));
    $("pause-events").textContent = paused ? "Resume" : "Pause";
    if (!paused) renderEvents();
  });
  $("api-key").focus();
  document.body.dataset.ready = "true";
}

init();

// The Grace web console: vanilla JS modules, no build step, nothing fetched from elsewhere.
// This module is the entry point: sign-in and sign-out, the tabs, and the wiring of the
// live event stream to the sections it concerns.
//
//   api.js        the API as the signed-in principal (the key lives only there, in memory)
//   stream.js     the event stream: SSE over fetch (EventSource cannot send Authorization)
//   events.js     the live events panel
//   views.js      the read-only sections (boot, immune, decisions, incidents, trust, audit)
//   approvals.js  approval requests and voting
//   verify.js     audit proofs checked in this browser with proof.js
//   dom.js        DOM helpers: server data becomes text nodes, never HTML
//
// Every request carries an X-Request-Id starting with "console-": the console can then tell
// its own decisions from others' and never refreshes because of itself (which would record
// a new decision, announce it, refresh again, ...).

import { ApiError, api, session } from "./api.js";
import { loadApprovals } from "./approvals.js";
import { $, clear, dropTickets, el } from "./dom.js";
import * as events from "./events.js";
import * as proof from "./proof.js";
import { openStream } from "./stream.js";
import { countNew, loaders as views, olderAudit, seenAll } from "./views.js";
import { verifyLedger } from "./verify.js";

const PINNED_KEY_STORAGE = "grace.console.pinnedVkey";
const STREAM_URL = "/v1/events/stream?pattern=%3E";

const loaders = { ...views, approvals: loadApprovals };

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
    const { data } = await api("/v1/audit/public-key");
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
    session.principal = await whoAmI();
  } catch (e) {
    session.key = null;
    session.verifier = null;
    session.principal = null;
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

/** The caller as the server verified it: GET /v1/me → {id, kind, roles, autonomy_tier}. */
async function whoAmI() {
  const { data } = await api("/v1/me");
  if (!data || typeof data.id !== "string" || !data.id || !Array.isArray(data.roles)) {
    throw new Error("the server's answer to /v1/me does not name a principal");
  }
  return {
    id: data.id,
    kind: String(data.kind ?? ""),
    roles: data.roles.map(String),
    autonomyTier: data.autonomy_tier ?? null,
  };
}

function showConsole(pinned) {
  const v = session.verifier;
  const { id, roles } = session.principal;
  $("whoami").textContent = id;
  $("whoami-roles").textContent = roles.length ? `roles: ${roles.join(", ")}` : "no roles";
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
  session.stream = openStream(STREAM_URL, { onMessage, onState: events.showStreamState });
  loaders.approvals(); // the pending badge matters wherever one looks
}

function signOut() {
  if (session.stream) session.stream.abort();
  session.stream = null;
  session.key = null;
  session.verifier = null;
  session.principal = null;
  dropTickets(); // loads still in flight must not render after sign-out
  loadedTabs.clear();
  events.resetEvents();
  seenAll("decisions");
  seenAll("audit");
  for (const id of ["boot", "immune-stats", "decisions", "approvals", "incidents", "trust", "audit"]) {
    clear($(id));
  }
  $("whoami-roles").textContent = "";
  $("approval-status").textContent = "";
  $("ledger-status").textContent = "";
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

// --- what a live event refreshes -----------------------------------------------------------

function onMessage(message) {
  const ce = events.receive(message);
  if (ce) react(ce);
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

function react(ce) {
  const type = String(ce.type || "");
  const own = events.isOwnDecision(ce);
  if (!own) countNew("audit");
  if (type === "governance.decision_made" && !own) {
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
  $("audit-older").addEventListener("click", olderAudit);
  $("audit-newer").addEventListener("click", () => loaders.audit(null));
  $("verify-ledger").addEventListener("click", verifyLedger);
  $("event-filter").addEventListener("input", events.renderEvents);
  $("hide-own").addEventListener("change", events.renderEvents);
  $("pause-events").addEventListener("click", events.togglePause);
  $("api-key").focus();
  document.body.dataset.ready = "true";
}

init();

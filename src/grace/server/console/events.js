// The live events panel: the newest MAX_EVENTS CloudEvents from the stream, filtered by
// type, optionally paused, with the console's own decisions hidden on request; and the
// stream indicator in the header.

import { REQUEST_PREFIX } from "./api.js";
import { $, badge, clear, el, text, timeCell } from "./dom.js";

const MAX_EVENTS = 300;

const events = [];
let eventCount = 0;
let paused = false;

/** Whether a CloudEvent is the decision on one of this console's own requests. */
export function isOwnDecision(ce) {
  const requestId = ce && ce.data && ce.data.request_id;
  return ce.type === "governance.decision_made" && typeof requestId === "string" &&
    requestId.startsWith(REQUEST_PREFIX);
}

export function showStreamState(state, detail = "") {
  const node = $("stream-state");
  node.dataset.state = state;
  node.textContent = `stream: ${state}${detail ? ` (${detail})` : ""}`;
}

/** Take one SSE message: list it; return its CloudEvent (null for anything else). */
export function receive(message) {
  if (message.event === "dropped") {
    pushEvent({ dropped: Number(message.data) || 0, time: new Date().toISOString() });
    return null;
  }
  if (message.event !== "grace") return null;
  let ce;
  try {
    ce = JSON.parse(message.data);
  } catch {
    return null; // not JSON: nothing to show
  }
  if (!ce || typeof ce !== "object") return null;
  pushEvent(ce);
  return ce;
}

/** Forget every event (at sign-out). */
export function resetEvents() {
  events.length = 0;
  eventCount = 0;
  clear($("event-list"));
  $("event-count").textContent = "0 events";
  showStreamState("off");
}

export function togglePause() {
  paused = !paused;
  $("pause-events").setAttribute("aria-pressed", String(paused));
  $("pause-events").textContent = paused ? "Resume" : "Pause";
  if (!paused) renderEvents();
}

export function renderEvents() {
  clear($("event-list"), events.filter(visibleEvent).map(renderEvent));
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

// The live event stream: Server-Sent Events read with fetch(), because EventSource cannot
// send an Authorization header. Parsing and reconnecting only; no DOM here — the caller
// gets each message and each state change ("connecting", "live", "reconnecting",
// "denied") through callbacks.

import { ApiError, authHeaders } from "./api.js";

const FIRST_DELAY_MS = 2000;

/** A text/event-stream parser (WHATWG HTML §9.2.6): feed it text, it calls onEvent with
 * {event, data, id} per dispatched event and onRetry with a reconnection delay. */
export function sseParser(onEvent, onRetry = () => {}) {
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

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = window.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      window.clearTimeout(timer);
      resolve();
    });
  });
}

/** Open the stream at `url` as the signed-in principal and keep it open (reconnecting
 * after the server's retry delay) until the returned controller is aborted, or until the
 * server refuses the caller (401/403: retrying cannot help). */
export function openStream(url, { onMessage, onState }) {
  const controller = new AbortController();
  run(url, controller.signal, onMessage, onState);
  return controller;
}

async function run(url, signal, onMessage, onState) {
  let delay = FIRST_DELAY_MS;
  while (!signal.aborted) {
    onState("connecting");
    let why = "the stream ended";
    try {
      const response = await fetch(url, {
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
          onState("denied", error.message);
          return; // retrying cannot help; the key or its roles must change
        }
        throw error;
      }
      onState("live");
      const feed = sseParser(onMessage, (ms) => {
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
    onState("reconnecting", why);
    await sleep(delay, signal);
  }
}

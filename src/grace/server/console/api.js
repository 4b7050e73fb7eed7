// The Grace API as the signed-in principal.
//
// The API key lives only in this module's memory (the `session` object): never in
// storage, never in a URL. Every request carries an X-Request-Id starting with
// REQUEST_PREFIX, so the console can tell its own decisions from others' (see events.js).

export const REQUEST_PREFIX = "console-";

export class ApiError extends Error {
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

/** The signed-in state: the key, the log's verifier (proof.js), the principal as
 * GET /v1/me describes it ({id, kind, roles, autonomy_tier}), and the event stream. */
export const session = {
  key: null,
  verifier: null,
  principal: null,
  stream: null, // AbortController of the event stream
  counter: 0,
  tabId: Math.random().toString(36).slice(2, 10),
};

/** Whether the signed-in principal has a role (a courtesy for the UI: the server checks). */
export function hasRole(role) {
  return Boolean(session.principal && session.principal.roles.includes(role));
}

function requestId() {
  session.counter += 1;
  return `${REQUEST_PREFIX}${session.tabId}-${session.counter}`;
}

export function authHeaders(extra = {}) {
  return { authorization: `Bearer ${session.key}`, "x-request-id": requestId(), ...extra };
}

/** Call the API as the signed-in principal; resolves to {data, response}; throws ApiError
 * for a non-2xx answer and for a problem+json one (e.g. 202 "approval required"). */
export async function api(path, { method = "GET", body, signal } = {}) {
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

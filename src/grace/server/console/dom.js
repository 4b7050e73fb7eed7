// Small DOM helpers for the console. Server data is rendered with DOM nodes and text only,
// never parsed as HTML.

export const $ = (id) => document.getElementById(id);

/** An element with attributes and children; strings become text nodes, never HTML. */
export function el(tag, attrs = {}, ...children) {
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

export function clear(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null));
}

/** Replace a section's content, keeping keyboard focus on the same control (found again by
 * its aria-label), so a live refresh never throws a keyboard user out of a table. */
export function render(target, ...children) {
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

/** Start a load of `name`; the returned function says whether a newer load (or a sign-out)
 * has made this one stale. */
export function ticket(name) {
  const mine = (tickets.get(name) || 0) + 1;
  tickets.set(name, mine);
  return () => tickets.get(name) !== mine;
}

/** Make every load in flight stale (at sign-out). */
export function dropTickets() {
  tickets.clear();
}

export function text(value) {
  if (value === undefined || value === null || value === "") return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function timeCell(iso) {
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

export function badge(value, kind = value) {
  return el("span", { class: `badge b-${String(kind).replace(/[^a-z_]/gi, "")}` }, text(value));
}

/** A table: columns are [label, (row) => Node|string]; empty rows give a message. */
export function table(caption, columns, rows, empty = "nothing to show") {
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

/** Say something through the page's polite live region (made by app.js at start). */
export function announce(message) {
  const region = $("announcer");
  region.textContent = "";
  // A new text node in a cleared live region is announced even if the text repeats.
  window.setTimeout(() => {
    region.textContent = message;
  }, 30);
}

// DOM building with text only: every value becomes a text node or an attribute value,
// never markup (a notification's fields are user input).

// el("td", {class: "x", title: t, onclick: f}, "text", childNode, ...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "data") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

export function text(id, value) {
  document.getElementById(id).textContent = value ?? "";
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

// "2025-01-31 14:05:09" in local time (the full value in a title).
export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${day} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeCell(iso) {
  return el("td", { class: "time", title: iso ?? "" }, time(iso));
}

export function badge(state) {
  return el("span", { class: `badge state-${state ?? "unknown"}` }, state ?? "?");
}

// The table's header row, once.
export function head(table, names) {
  const thead = table.tHead;
  if (thead.rows.length === 0) thead.append(el("tr", {}, names.map((n) => el("th", {}, n))));
}

export function shorten(value, length = 80) {
  if (value === null || value === undefined) return "";
  const s = String(value);
  return s.length > length ? `${s.slice(0, length - 1)}…` : s;
}

// Options of a <select> (kept: the first, "any"; the current choice stays selected).
export function fillSelect(select, values) {
  const chosen = select.value;
  const known = new Set([...select.options].map((o) => o.value));
  for (const value of values) {
    if (!known.has(value)) select.append(el("option", { value }, value));
  }
  select.value = chosen;
}

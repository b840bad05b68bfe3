// The receiver's JSON API, called with the operator's key (kept in this tab only).
const KEY = "notifsvc.apiKey";
const unauthorized = new Set();

export function getKey() {
  return sessionStorage.getItem(KEY) ?? "";
}

export function setKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

// fn(result) runs on every 401 answer.
export function onUnauthorized(fn) {
  unauthorized.add(fn);
}

// One request: {status, ok, body, message}; never throws (status 0: no answer).
export async function call(method, path, { query, body } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    return { status: 0, ok: false, body: null, message: `no answer: ${err.message}` };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  const { status, ok } = response;
  const result = { status, ok, body: data, message: describe(response, data) };
  if (response.status === 401) for (const fn of unauthorized) fn(result);
  return result;
}

// "409 Conflict: the notification was sent" from a problem+json answer.
function describe(response, data) {
  const title = data?.title ?? response.statusText;
  const detail = !response.ok && data?.detail ? `: ${data.detail}` : "";
  return `${response.status} ${title ?? ""}${detail}`.trim();
}

// A datetime-local value as RFC 3339 (UTC), or "" when empty.
export function toRfc3339(local) {
  if (!local) return "";
  const when = new Date(local);
  return Number.isNaN(when.getTime()) ? "" : when.toISOString();
}

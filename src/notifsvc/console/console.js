// The operator's console: live figures, the notification list, a notification's detail
// (retry, cancel), the dead letters and replay jobs, all over the receiver's JSON API.
import { call, getKey, onUnauthorized, setKey, toRfc3339 } from "./api.js";
import { lineChart } from "./charts.js";
import { badge, el, fillSelect, head, replace, shorten, text, time, timeCell } from "./dom.js";

const STATS_EVERY_MS = 2000;
const DETAIL_EVERY_MS = 1000;
const JOB_EVERY_MS = 1000;
const WINDOW_MS = 5 * 60 * 1000;
const STATE_ORDER = ["received", "forwarded", "sending", "sent", "failed", "canceled"];
const FINISHED = new Set(["sent", "failed", "canceled"]);
const $ = (id) => document.getElementById(id);
const sum = (values) => values.reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------- API key

function setupKey() {
  $("api-key").value = getKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey($("api-key").value.trim());
    $("key-prompt").hidden = true;
    refreshAll();
  });
  $("key-forget").addEventListener("click", () => {
    setKey("");
    $("api-key").value = "";
  });
  onUnauthorized((result) => {
    const prompt = $("key-prompt");
    text("key-prompt-detail", `(${result.message})`);
    if (prompt.hidden) {
      prompt.hidden = false;
      $("api-key").focus();
    }
  });
}

// ---------------------------------------------------------------- live figures

const samples = []; // {t, sent (total sent so far), lag (total)}, oldest first

async function pollStats() {
  const result = await call("GET", "/stats");
  if (result.ok) showStats(result.body);
  else text("live", `figures: ${result.message}`);
  window.setTimeout(pollStats, STATS_EVERY_MS);
}

function showStats(stats) {
  const t = Date.parse(stats.at) || Date.now();
  const sent = stats.counts ? sum(Object.values(stats.counts).map((c) => c.sent ?? 0)) : null;
  const lag = stats.lag ? sum(Object.values(stats.lag)) : null;
  if (!samples.length || samples[samples.length - 1].t !== t) samples.push({ t, sent, lag });
  while (samples.length && samples[0].t < t - WINDOW_MS - STATS_EVERY_MS) samples.shift();
  if (stats.counts) renderCounts(stats.counts, stats.sent_last_minute ?? {});
  const dlq = stats.dlq ? String(stats.dlq.messages) : "?";
  text("dlq-size", dlq);
  text("dlq-size-2", dlq);
  text("lag-total", lag === null ? "?" : String(lag));
  const lags = samples.map((s) => ({ t: s.t, v: s.lag }));
  lineChart($("chart-throughput"), throughput(), { windowMs: WINDOW_MS, title: "sent per second" });
  lineChart($("chart-lag"), lags, { windowMs: WINDOW_MS, title: "consumer lag" });
  const missing = [stats.counts ? null : "database", stats.lag ? null : "broker"].filter(Boolean);
  const note = missing.length ? ` · unavailable: ${missing.join(", ")}` : "";
  text("live", `live · updated ${time(stats.at).slice(11)}${note}`);
  const names = Object.keys(stats.counts ?? {});
  for (const select of document.querySelectorAll("select[name=channel]")) fillSelect(select, names);
}

// Sends per second between successive samples (sent counts are cumulative).
function throughput() {
  const out = [];
  for (let i = 1; i < samples.length; i += 1) {
    const [a, b] = [samples[i - 1], samples[i]];
    const known = a.sent !== null && b.sent !== null && b.t > a.t;
    out.push({ t: b.t, v: known ? Math.max(0, (b.sent - a.sent) / ((b.t - a.t) / 1000)) : null });
  }
  return out;
}

function renderCounts(counts, perMinute) {
  const table = $("counts");
  const seen = new Set(Object.values(counts).flatMap((c) => Object.keys(c)));
  const extra = [...seen].filter((s) => !STATE_ORDER.includes(s));
  const states = [...STATE_ORDER.filter((s) => seen.has(s)), ...extra];
  const header = [el("th", {}, "channel"), states.map((s) => el("th", {}, s)), el("th", {}, "sent/min")];
  replace(table.tHead, el("tr", {}, header));
  const rows = Object.entries(counts).map(([channel, byState]) =>
    el(
      "tr",
      { data: { channel } },
      el("th", {}, channel),
      states.map((s) => countCell(channel, s, byState[s] ?? 0)),
      el("td", { class: "num" }, String(perMinute[channel] ?? 0)),
    ),
  );
  const total = (s) => String(sum(Object.values(counts).map((c) => c[s] ?? 0)));
  const totals = el(
    "tr",
    { class: "total" },
    el("th", {}, "all"),
    states.map((s) => el("td", { class: "num" }, total(s))),
    el("td", { class: "num" }, String(sum(Object.values(perMinute)))),
  );
  replace(table.tBodies[0], rows, totals);
}

// A count that filters the list to its channel and state when clicked.
function countCell(channel, state, n) {
  const show = () => {
    const form = $("filters");
    form.reset();
    form.elements.channel.value = channel;
    form.elements.state.value = state;
    selectTab("list");
    lists.list.load();
  };
  const title = `list the ${state} notifications of ${channel}`;
  const button = el("button", { type: "button", class: "count", title, onclick: show }, String(n));
  return el("td", { class: `num state-${state}${n ? "" : " zero"}` }, button);
}

// ---------------------------------------------------------------- lists

class NotificationList {
  constructor({ table, more, status, query, columns, cells, onPage }) {
    Object.assign(this, { table, more, status, query, columns, cells, onPage });
    this.items = [];
    this.cursor = null;
    this.asked = null;
    more.addEventListener("click", () => this.page());
  }

  async load() {
    this.items = [];
    this.cursor = null;
    this.asked = this.query();
    head(this.table, this.columns);
    this.table.tBodies[0].replaceChildren();
    this.status.textContent = "loading…";
    await this.page();
  }

  // The next page, after the cursor of the last one (same filter: the cursor is bound to it).
  async page() {
    const query = { ...this.asked, cursor: this.cursor ?? "" };
    const result = await call("GET", "/notifications", { query });
    if (!result.ok) {
      this.status.textContent = result.message;
      this.more.hidden = true;
      return;
    }
    const { items, next_cursor: next } = result.body;
    this.items.push(...items);
    this.cursor = next;
    this.table.tBodies[0].append(...items.map((item) => this.row(item)));
    this.more.hidden = !next;
    const shown = `${this.items.length} shown${next ? "; more below" : ""}`;
    this.status.textContent = this.items.length ? shown : "no notification matches";
    this.onPage?.(this.items);
  }

  row(item) {
    const open = () => openDetail(item.uuid);
    const keys = (event) => {
      if (event.key === "Enter") open();
    };
    const props = { data: { uuid: item.uuid }, tabindex: 0, onclick: open, onkeydown: keys };
    return el("tr", props, this.cells(item));
  }

  // A notification seen changed elsewhere (its detail): its row follows.
  update(item) {
    const index = this.items.findIndex((i) => i.uuid === item.uuid);
    if (index < 0) return;
    this.items[index] = item;
    const old = this.table.querySelector(`tr[data-uuid="${CSS.escape(item.uuid)}"]`);
    old?.replaceWith(this.row(item));
  }
}

function errorCell(item) {
  return el("td", { class: "error", title: item.last_error ?? "" }, shorten(item.last_error, 90));
}

function uuidCell(item) {
  return el("td", { class: "uuid" }, el("code", {}, item.uuid));
}

function listCells(item) {
  return [
    timeCell(item.received_at ?? item.accepted_at),
    el("td", {}, badge(item.state)),
    el("td", {}, item.channel),
    el("td", {}, item.priority ?? ""),
    el("td", { class: "num" }, String(item.attempts ?? 0)),
    el("td", {}, item.reason ?? ""),
    errorCell(item),
    uuidCell(item),
  ];
}

function dlqCells(item) {
  return [
    timeCell(item.failed_at),
    el("td", {}, item.channel),
    el("td", {}, item.reason ?? "—"),
    el("td", { class: "num" }, String(item.attempts ?? 0)),
    errorCell(item),
    uuidCell(item),
  ];
}

function filterQuery(form) {
  const query = {};
  for (const [name, value] of new FormData(form)) {
    query[name] = name === "since" || name === "until" ? toRfc3339(value) : value;
  }
  return query;
}

function showReasons(items) {
  const byReason = new Map();
  for (const item of items) {
    const reason = item.reason ?? "other (see the last error)";
    byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
  }
  const entries = [...byReason].sort((a, b) => b[1] - a[1]);
  const line = ([reason, n]) => el("li", {}, el("strong", {}, String(n)), ` ${reason}`);
  replace($("dlq-reasons"), entries.map(line));
}

const lists = {
  list: new NotificationList({
    table: $("list"),
    more: $("more"),
    status: $("list-status"),
    query: () => filterQuery($("filters")),
    columns: ["received", "state", "channel", "priority", "attempts", "reason", "last error", "uuid"],
    cells: listCells,
  }),
  dlq: new NotificationList({
    table: $("dlq-list"),
    more: $("dlq-more"),
    status: $("dlq-status"),
    query: () => ({ state: "failed" }),
    columns: ["failed", "channel", "reason", "attempts", "last error", "uuid"],
    cells: dlqCells,
    onPage: showReasons,
  }),
};

// ---------------------------------------------------------------- detail

const detail = { uuid: null, timer: null };

async function openDetail(uuid) {
  window.clearTimeout(detail.timer);
  detail.uuid = uuid;
  $("detail").hidden = false;
  text("detail-uuid", uuid);
  text("detail-state", "…");
  text("action-answer", "");
  $("cancel-confirm").hidden = true;
  await loadDetail();
}

function closeDetail() {
  window.clearTimeout(detail.timer);
  detail.uuid = null;
  $("detail").hidden = true;
}

// The notification and its attempts; asked again every second until it is finished. The
// attempts are asked after the notification: they are at least as new as the state shown.
async function loadDetail() {
  const uuid = detail.uuid;
  if (!uuid) return;
  window.clearTimeout(detail.timer);
  const path = `/notification/${encodeURIComponent(uuid)}`;
  const found = await call("GET", path);
  const attempts = await call("GET", `${path}/attempts`);
  if (uuid !== detail.uuid) return; // closed, or another one opened meanwhile
  if (found.ok) showNotification(found.body);
  else text("action-answer", found.message);
  showAttempts(attempts);
  if (!found.ok || !FINISHED.has(found.body.state)) {
    detail.timer = window.setTimeout(loadDetail, DETAIL_EVERY_MS);
  }
}

const FIELD_ORDER = [
  "state", "reason", "last_error", "channel", "priority", "to", "subject", "txt",
  "callback_url", "attempts", "conflicts",
];

function showNotification(n) {
  const state = $("detail-state");
  state.textContent = n.state;
  state.className = `badge state-${n.state}`;
  showFields(n);
  showTimeline(n);
  for (const list of Object.values(lists)) list.update(n);
}

function showFields(n) {
  const rest = Object.keys(n).filter(
    (k) => !FIELD_ORDER.includes(k) && k !== "uuid" && !k.endsWith("_at"),
  );
  const keys = [...FIELD_ORDER.filter((k) => k in n), ...rest.sort()];
  const pair = (k) => [
    el("dt", {}, k.replaceAll("_", " ")),
    el("dd", { data: { field: k } }, show(n[k])),
  ];
  replace($("detail-fields"), keys.map(pair));
}

// Each time the notification has (received, forwarded, sent, failed, canceled...), in order.
function showTimeline(n) {
  const steps = Object.entries(n)
    .filter(([k, v]) => k.endsWith("_at") && k !== "updated_at" && v)
    .map(([k, v]) => ({ name: k.slice(0, -3), at: v }))
    .sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  if (n.updated_at) steps.push({ name: "last change", at: n.updated_at });
  const step = (s) =>
    el(
      "li",
      { class: `step step-${s.name}` },
      el("span", { class: "step-name" }, s.name),
      " ",
      el("time", { datetime: s.at, title: s.at }, time(s.at)),
    );
  replace($("timeline"), steps.map(step));
}

function show(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function showAttempts(result) {
  const table = $("attempts");
  head(table, ["#", "outcome", "started", "ms", "provider", "status"]);
  const rows = result.ok ? result.body.attempts : [];
  const none = rows.length ? "" : "no attempt recorded yet";
  text("attempts-status", result.ok ? none : result.message);
  const took = (a) => String(Math.round(Date.parse(a.finished_at) - Date.parse(a.started_at)));
  // An attempt's error, when it has one, on a line of its own below it.
  const row = (a) => [
    el(
      "tr",
      { class: `attempt outcome-${a.outcome}` },
      el("td", { class: "num" }, String(a.attempt)),
      el("td", {}, a.outcome),
      timeCell(a.started_at),
      el("td", { class: "num" }, took(a)),
      el("td", {}, a.provider),
      el("td", {}, show(a.status_code)),
    ),
    a.error
      ? el("tr", { class: "attempt-error" }, el("td", {}), el("td", { colspan: 5, class: "error" }, a.error))
      : null,
  ];
  replace(table.tBodies[0], rows.map(row));
}

// Retry or cancel: the server's answer is shown as it is ("409 Conflict: ...").
async function act(method, suffix) {
  const uuid = detail.uuid;
  $("cancel-confirm").hidden = true;
  text("action-answer", "asking…");
  const result = await call(method, `/notification/${encodeURIComponent(uuid)}${suffix}`);
  if (uuid !== detail.uuid) return;
  const now = result.ok && result.body?.state ? `: now ${result.body.state}` : "";
  text("action-answer", `${result.message}${now}`);
  if (result.ok) showNotification(result.body);
  await loadDetail();
}

function setupDetail() {
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-refresh").addEventListener("click", loadDetail);
  $("retry").addEventListener("click", () => act("POST", "/retry"));
  $("cancel").addEventListener("click", () => {
    $("cancel-confirm").hidden = false;
    text("action-answer", "Canceling stops a notification that was not sent yet, for good.");
  });
  $("cancel-confirm").addEventListener("click", () => act("DELETE", ""));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("detail").hidden) closeDetail();
  });
}

// ---------------------------------------------------------------- replays

const jobs = new Map();
const tracked = new Set();

async function startReplay(event) {
  event.preventDefault();
  const body = Object.fromEntries(
    Object.entries(filterQuery($("replay-form"))).filter(([, value]) => value),
  );
  text("replay-answer", "asking…");
  const result = await call("POST", "/replays", { body });
  text("replay-answer", result.ok ? `${result.message}: job ${result.body.id}` : result.message);
  if (result.ok) {
    jobs.set(result.body.id, result.body);
    renderJobs();
    trackJob(result.body.id);
  }
}

async function loadJobs() {
  const result = await call("GET", "/replays");
  if (!result.ok) {
    text("replay-answer", result.message);
    return;
  }
  for (const job of result.body.items) {
    jobs.set(job.id, job);
    if (job.state !== "done") trackJob(job.id);
  }
  renderJobs();
}

// A job's progress, asked every second until it is done.
async function trackJob(id) {
  if (tracked.has(id)) return;
  tracked.add(id);
  while (jobs.get(id)?.state !== "done") {
    await new Promise((resolve) => window.setTimeout(resolve, JOB_EVERY_MS));
    const result = await call("GET", `/replays/${encodeURIComponent(id)}`);
    if (!result.ok) break;
    jobs.set(id, result.body);
    renderJobs();
  }
  tracked.delete(id);
  if (jobs.get(id)?.state === "done") refreshLists(); // the rows it requeued moved on
}

function jobRow(job) {
  const filter = Object.entries(job.filter ?? {}).map(([k, v]) => `${k}=${v}`).join(" ");
  const done = job.requeued + job.skipped;
  return el(
    "tr",
    { data: { job: job.id } },
    el("td", {}, el("code", {}, job.id)),
    el("td", {}, badge(job.state)),
    el("td", {}, filter),
    el("td", { class: "num" }, String(job.matched)),
    el("td", { class: "num requeued" }, String(job.requeued)),
    el("td", { class: "num" }, String(job.skipped)),
    el("td", {}, el("progress", { max: Math.max(job.matched, 1), value: done })),
    timeCell(job.created_at),
    timeCell(job.finished_at),
  );
}

function renderJobs() {
  const table = $("jobs");
  const columns = ["job", "state", "filter", "matched", "requeued", "skipped", "progress"];
  head(table, [...columns, "created", "finished"]);
  const newest = (a, b) => String(b.created_at).localeCompare(String(a.created_at));
  replace(table.tBodies[0], [...jobs.values()].sort(newest).map(jobRow));
}

// ---------------------------------------------------------------- tabs, filters, start

const loaded = new Set(["list"]);

function selectTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const body of document.querySelectorAll(".tab-body")) {
    body.hidden = body.id !== `tab-${name}`;
  }
  closeDetail();
  if (loaded.has(name)) return;
  loaded.add(name);
  if (name === "dlq") lists.dlq.load();
  if (name === "replays") loadJobs();
}

function setupForms() {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  }
  const filters = $("filters");
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    lists.list.load();
  });
  filters.addEventListener("reset", () => window.setTimeout(() => lists.list.load(), 0));
  $("replay-form").addEventListener("submit", startReplay);
}

// A query parameter's allowed values, from the API's own document.
function allowed(doc, name) {
  const parameters = doc?.paths?.["/notifications"]?.get?.parameters ?? [];
  const schema = parameters.find((p) => p.name === name)?.schema ?? {};
  const branches = schema.anyOf ?? schema.oneOf ?? [];
  const values = schema.enum ?? branches.flatMap((s) => s.enum ?? (s.const ? [s.const] : []));
  return values.filter((v) => typeof v === "string");
}

async function loadOptions() {
  const result = await call("GET", "/openapi.json");
  const doc = result.ok ? result.body : null;
  const known = doc?.components?.schemas?.State?.properties ?? {};
  const fallback = {
    state: known.state?.enum ?? STATE_ORDER,
    reason: known.reason?.enum ?? [],
    priority: ["high", "normal", "low"],
    channel: [],
  };
  for (const [name, values] of Object.entries(fallback)) {
    const found = allowed(doc, name);
    const options = (found.length ? found : values).filter((v) => typeof v === "string");
    for (const select of document.querySelectorAll(`select[name=${name}]`)) {
      fillSelect(select, options);
    }
  }
}

function refreshLists() {
  lists.list.load();
  if (loaded.has("dlq")) lists.dlq.load();
}

function refreshAll() {
  refreshLists();
  if (loaded.has("replays")) loadJobs();
  if (detail.uuid) loadDetail();
}

async function start() {
  setupKey();
  setupForms();
  setupDetail();
  pollStats();
  await loadOptions();
  await lists.list.load();
  document.body.dataset.ready = "true";
}

start();

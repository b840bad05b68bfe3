// Line charts as inline SVG, drawn with DOM calls (no library, no markup strings).
const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 90;
const SHORTEST_MS = 60 * 1000;
const PAD = { left: 34, right: 6, top: 8, bottom: 16 };

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function axis(x, y, text, anchor) {
  return svg("text", { x, y, class: "axis", "text-anchor": anchor }, text);
}

function niceMax(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function label(value) {
  if (value >= 1000) return `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// Runs of consecutive known values (a null, a part the server could not give, breaks it).
function runs(points) {
  const out = [];
  let run = [];
  for (const p of points) {
    if (p.v === null || p.v === undefined) {
      if (run.length) out.push(run);
      run = [];
    } else run.push(p);
  }
  if (run.length) out.push(run);
  return out;
}

function span(ms) {
  return ms >= 60000 ? `-${Math.round(ms / 60000)} min` : `-${Math.round(ms / 1000)} s`;
}

// points: [{t: ms since epoch, v: number|null}], oldest first. The x axis covers what was
// seen, at least a minute and at most windowMs; the width is the container's, in pixels.
export function lineChart(container, points, { windowMs, title }) {
  const WIDTH = Math.max(160, Math.round(container.clientWidth || 320));
  const now = points.length ? points[points.length - 1].t : Date.now();
  const seen = points.length ? now - points[0].t : 0;
  const spanMs = Math.min(windowMs, Math.max(SHORTEST_MS, seen));
  const start = now - spanMs;
  const shown = points.filter((p) => p.t >= start);
  const known = shown.map((p) => p.v).filter((v) => v !== null && v !== undefined);
  const top = niceMax(Math.max(0, ...known));
  const x = (t) => PAD.left + ((t - start) / spanMs) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "line-chart" });
  root.append(svg("title", {}, title));
  for (const v of [0, top / 2, top]) {
    const [left, right, at] = [PAD.left, WIDTH - PAD.right, y(v)];
    root.append(svg("line", { x1: left, x2: right, y1: at, y2: at, class: "rule" }));
    root.append(axis(left - 4, at + 3, label(v), "end"));
  }
  root.append(axis(PAD.left, HEIGHT - 3, span(spanMs), "start"));
  root.append(axis(WIDTH - PAD.right, HEIGHT - 3, "now", "end"));
  for (const run of runs(shown)) {
    const coords = run.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    if (run.length === 1) {
      root.append(svg("circle", { cx: x(run[0].t), cy: y(run[0].v), r: 1.5, class: "dot" }));
    } else root.append(svg("polyline", { points: coords, class: "series" }));
  }
  if (!known.length) {
    root.append(axis(WIDTH / 2, HEIGHT / 2, "no data yet", "middle"));
  }
  container.replaceChildren(root);
}

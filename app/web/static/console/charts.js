// Hand-written SVG charts: vertical bars (footfall), horizontal bars (funnel, delivery status).
// Each chart has a <title>/<desc> and a visually hidden table so screen readers get the numbers.

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function dataTable(caption, rows, headers) {
  const table = document.createElement("table");
  table.className = "sr-only";
  const cap = document.createElement("caption");
  cap.textContent = caption;
  table.append(cap);
  const head = table.insertRow();
  for (const hd of headers) {
    const th = document.createElement("th");
    th.textContent = hd;
    head.append(th);
  }
  for (const r of rows) {
    const tr = table.insertRow();
    for (const cell of r) tr.insertCell().textContent = cell === null ? "suppressed" : String(cell);
  }
  return table;
}

function empty(container, text) {
  container.replaceChildren();
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = text;
  container.append(p);
}

// points: [{label, value, extra?}] — value or extra null means suppressed (too few people to
// show); the optional `extra` (e.g. staff visits) is stacked on top in a second colour.
export function columnChart(container, title, points, { unit = "", legend = null } = {}) {
  if (!points.length) return empty(container, "No data yet.");
  const width = 960;
  const height = 240;
  const pad = { l: 36, r: 8, t: 12, b: 42 };
  const max = Math.max(1, ...points.map((p) => (p.value || 0) + (p.extra || 0)));
  const bw = (width - pad.l - pad.r) / points.length;
  const plotH = height - pad.t - pad.b;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  svg.append(s("line", { class: "axis", x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b }));
  const ticks = max < 4 ? [0, max] : [0, Math.round(max / 2), max];
  for (const tick of ticks) {
    const y = height - pad.b - (tick / max) * plotH;
    svg.append(s("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end" }, tick));
  }
  const every = Math.ceil(points.length / 12);
  points.forEach((p, i) => {
    const x = pad.l + i * bw;
    let top = height - pad.b;
    const bar = (value, cls, text) => {
      const bh = (value / max) * plotH;
      const rect = s("rect", { class: cls, x: x + 1, y: top - bh, width: Math.max(1, bw - 2), height: bh });
      rect.append(s("title", {}, text));
      svg.append(rect);
      top -= bh;
    };
    if (p.value) bar(p.value, "bar", `${p.label}: ${p.value}${unit}`);
    if (p.extra) bar(p.extra, "bar ok", `${p.label}: ${p.extra}${unit} (${legend ? legend[1] : "other"})`);
    if (p.value === null || p.extra === null) svg.append(s("text", { x: x + bw / 2, y: top - 4, "text-anchor": "middle" }, "·"));
    if (i % every === 0) {
      svg.append(s("text", { x: x + bw / 2, y: height - pad.b + 14, "text-anchor": "middle" }, p.label));
    }
  });
  const headers = legend ? ["when", ...legend] : ["when", "count"];
  const rows = points.map((p) => (legend ? [p.label, p.value, p.extra ?? 0] : [p.label, p.value]));
  container.replaceChildren(svg, dataTable(title, rows, headers));
  if (legend) {
    const key = document.createElement("p");
    key.className = "muted small legend";
    key.append(swatch("bar"), ` ${legend[0]}  `, swatch("bar ok"), ` ${legend[1]}`);
    container.append(key);
  }
  if (points.some((p) => p.value === null || p.extra === null)) {
    const note = document.createElement("p");
    note.className = "muted small";
    note.textContent = "· = fewer people than the privacy threshold: not shown.";
    container.append(note);
  }
}

function swatch(cls) {
  const svg = s("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" });
  svg.append(s("rect", { class: cls, width: 12, height: 12 }));
  return svg;
}

// rows: [{label, value, kind?}] drawn as horizontal bars, longest = 100 %.
export function barChart(container, title, rows, { unit = "", percentOf = null } = {}) {
  if (!rows.length) return empty(container, "No data yet.");
  const width = 420;
  const rowH = 30;
  const labelW = 80;
  const height = rows.length * rowH + 10;
  const max = Math.max(1, ...rows.map((r) => r.value || 0));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  rows.forEach((r, i) => {
    const y = 5 + i * rowH;
    const value = r.value ?? 0;
    const w = (value / max) * (width - labelW - 100);
    svg.append(s("text", { x: labelW - 8, y: y + rowH / 2 + 4, "text-anchor": "end" }, r.label));
    svg.append(s("rect", { class: `bar ${r.kind || ""}`, x: labelW, y: y + 4, width: Math.max(1, w), height: rowH - 10 }));
    let text = r.value === null || r.value === undefined ? "n/a" : `${value}${unit}`;
    if (percentOf && r.value !== null && percentOf > 0) text += ` (${Math.round((100 * value) / percentOf)}%)`;
    svg.append(s("text", { x: labelW + Math.max(1, w) + 6, y: y + rowH / 2 + 4 }, text));
  });
  container.replaceChildren(svg, dataTable(title, rows.map((r) => [r.label, r.value]), ["what", "value"]));
}

export function percentile(values, q) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx];
}

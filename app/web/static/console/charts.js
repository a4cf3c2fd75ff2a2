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

// points: [{label, value, note?}] — value null means suppressed (too few people to show).
export function columnChart(container, title, points, { unit = "" } = {}) {
  if (!points.length) return empty(container, "No data yet.");
  const width = 640;
  const height = 240;
  const pad = { l: 36, r: 8, t: 12, b: 42 };
  const max = Math.max(1, ...points.map((p) => p.value || 0));
  const bw = (width - pad.l - pad.r) / points.length;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  svg.append(s("line", { class: "axis", x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b }));
  for (const tick of [0, 0.5, 1]) {
    const y = height - pad.b - tick * (height - pad.t - pad.b);
    svg.append(s("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end" }, Math.round(max * tick)));
  }
  const every = Math.ceil(points.length / 12);
  points.forEach((p, i) => {
    const x = pad.l + i * bw;
    if (p.value === null) {
      svg.append(s("text", { x: x + bw / 2, y: height - pad.b - 4, "text-anchor": "middle" }, "·"));
    } else {
      const bh = (p.value / max) * (height - pad.t - pad.b);
      const rect = s("rect", { class: "bar", x: x + 1, y: height - pad.b - bh, width: Math.max(1, bw - 2), height: bh });
      rect.append(s("title", {}, `${p.label}: ${p.value}${unit}`));
      svg.append(rect);
    }
    if (i % every === 0) {
      svg.append(s("text", { x: x + bw / 2, y: height - pad.b + 14, "text-anchor": "middle" }, p.label));
    }
  });
  container.replaceChildren(svg, dataTable(title, points.map((p) => [p.label, p.value]), ["when", "count"]));
  if (points.some((p) => p.value === null)) {
    const note = document.createElement("p");
    note.className = "muted small";
    note.textContent = "· = fewer people than the privacy threshold: not shown.";
    container.append(note);
  }
}

// rows: [{label, value, kind?}] drawn as horizontal bars, longest = 100 %.
export function barChart(container, title, rows, { unit = "", percentOf = null } = {}) {
  if (!rows.length) return empty(container, "No data yet.");
  const width = 640;
  const rowH = 34;
  const labelW = 150;
  const height = rows.length * rowH + 10;
  const max = Math.max(1, ...rows.map((r) => r.value || 0));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  rows.forEach((r, i) => {
    const y = 5 + i * rowH;
    const value = r.value ?? 0;
    const w = (value / max) * (width - labelW - 110);
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

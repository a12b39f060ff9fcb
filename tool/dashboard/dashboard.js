// laurel dashboard: polls /api/state once a second and draws the history as SVG line charts.
// Plain JavaScript and SVG, no library: the page must load nothing from elsewhere, and six line
// charts are a few dozen lines of path drawing (docs/operations.md, "Dashboard").
"use strict";

const COLORS = ["#0969da", "#bf3989", "#1a7f37", "#bc4c00", "#8250df", "#57606a", "#0598bc",
                "#a40e26"];
const SVGNS = "http://www.w3.org/2000/svg";
const HEIGHT = 190, PAD_L = 46, PAD_R = 8, PAD_T = 8, PAD_B = 18;
const TOP_QUEUES = 7;

const CHARTS = [
  { id: "connections", title: "Open connections",
    series: [["conn_http", "HTTP"], ["conn_ws", "WebSocket"]] },
  { id: "messages", title: "Messages per second", unit: "/s",
    series: [["ws_in", "WebSocket in"], ["ws_out", "WebSocket out"],
             ["http", "HTTP responses"], ["worker", "worker messages"],
             ["layer_msgs", "layer sends"]] },
  { id: "latency", title: "Request latency", unit: "ms", scale: 1000,
    series: [["p50", "p50"], ["p90", "p90"], ["p99", "p99"], ["consumer_p99", "consumer p99"]] },
  { id: "queues", title: "Queue depth per channel", queues: true },
  { id: "full", title: "Channel full and failures per second", unit: "/s",
    series: [["full", "channel full"], ["worker_failed", "worker failed or dropped"]] },
  { id: "processes", title: "Processes and shards",
    series: [["interfaces", "interfaces"], ["processes", "worker processes"],
             ["shards_up", "shards up"], ["endpoints_up", "endpoints up"]] },
];

const state = { t: [], series: {}, queues: {}, history: 600, last: null, window: 300 };
let hover = null; // {chart, i}: the sample under the mouse, else the latest

function el(tag, attrs, parent, ns) {
  const e = ns ? document.createElementNS(SVGNS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v, unit) {
  if (v === null || v === undefined || !isFinite(v)) return "\u2013";
  const a = Math.abs(v);
  let s;
  if (a >= 1e6) s = (v / 1e6).toFixed(1) + "M";
  else if (a >= 1e4) s = (v / 1e3).toFixed(1) + "k";
  else if (a >= 100 || Number.isInteger(v)) s = String(Math.round(v));
  else if (a >= 10) s = v.toFixed(1);
  else s = v.toFixed(2);
  return unit ? s + " " + unit : s;
}

// A round upper bound for the y axis.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function build() {
  const root = document.getElementById("charts");
  for (const c of CHARTS) {
    const box = el("section", { class: "chart", id: "chart-" + c.id }, root);
    const h = el("h2", {}, box);
    el("span", { text: c.title }, h);
    c.timeLabel = el("span", { class: "muted" }, h);
    c.legend = el("div", { class: "legend" }, box);
    c.svg = el("svg", { "data-chart": c.id, "data-points": "0", role: "img",
                        "aria-label": c.title }, box, true);
    c.svg.addEventListener("mousemove", (ev) => onHover(c, ev));
    c.svg.addEventListener("mouseleave", () => { hover = null; render(); });
  }
  for (const b of document.querySelectorAll("#window button")) {
    b.addEventListener("click", () => {
      state.window = Number(b.dataset.window);
      for (const o of document.querySelectorAll("#window button")) o.classList.toggle("on", o === b);
      render();
    });
  }
}

// The series a chart draws now: fixed ones, or the busiest queues (and the rest summed).
function seriesOf(c) {
  const scale = c.scale || 1;
  if (!c.queues) {
    return c.series.map(([key, label]) => ({
      key, label, values: (state.series[key] || []).map((v) => (v === null ? null : v * scale)),
    }));
  }
  const first = firstVisible();
  const names = Object.keys(state.queues);
  const peak = (n) => Math.max(0, ...state.queues[n].slice(first));
  names.sort((a, b) => peak(b) - peak(a) || (a < b ? -1 : 1));
  const shown = names.filter((n) => peak(n) > 0).slice(0, TOP_QUEUES);
  const out = shown.map((n) => ({ key: "queue:" + n, label: n, values: state.queues[n] }));
  const rest = names.filter((n) => !shown.includes(n));
  if (rest.length) {
    out.push({ key: "queue:(rest)", label: rest.length + " more",
               values: state.t.map((_, i) => rest.reduce((s, n) => s + state.queues[n][i], 0)) });
  }
  return out;
}

// The time shown (ms): the chosen window, or less while the history is shorter (a page opened
// on a dashboard started a moment ago), but at least 30 s.
function span() {
  const have = state.t.length ? state.last - state.t[0] : 0;
  return Math.min(state.window * 1000, Math.max(30000, have));
}

function firstVisible() {
  const from = (state.last || 0) - span();
  let i = 0;
  while (i < state.t.length && state.t[i] < from) i++;
  return i;
}

function drawChart(c) {
  const svg = c.svg;
  const width = Math.max(200, svg.clientWidth || 560);
  svg.setAttribute("viewBox", "0 0 " + width + " " + HEIGHT);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const series = seriesOf(c);
  const first = firstVisible();
  const now = state.last || Date.now();
  const t0 = now - span();
  let max = 0;
  for (const s of series)
    for (let i = first; i < s.values.length; i++) if (s.values[i] > max) max = s.values[i];
  max = niceMax(max);
  const x = (t) => PAD_L + ((t - t0) / (now - t0)) * (width - PAD_L - PAD_R);
  const y = (v) => PAD_T + (1 - v / max) * (HEIGHT - PAD_T - PAD_B);
  for (const f of [0, 0.5, 1]) {
    el("line", { class: "grid", x1: PAD_L, x2: width - PAD_R, y1: y(max * f), y2: y(max * f) },
       svg, true);
    el("text", { class: "axis", x: PAD_L - 6, y: y(max * f) + 4, "text-anchor": "end",
                 text: fmt(max * f) }, svg, true);
  }
  const secs = (now - t0) / 1000;
  for (const f of [0, 0.5, 1]) {
    const ago = secs * (1 - f);
    const label = f === 1 ? "now" : "\u2212" + (secs < 120 ? fmt(Math.round(ago)) + " s"
                                                           : fmt(ago / 60) + " min");
    el("text", { class: "axis", x: PAD_L + f * (width - PAD_L - PAD_R), y: HEIGHT - 2,
                 "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle", text: label },
       svg, true);
  }
  c.legend.textContent = "";
  const at = hover && hover.chart === c ? hover.i : state.t.length - 1;
  series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    let d = "", pen = false, last = null;
    for (let i = first; i < s.values.length; i++) {
      const v = s.values[i];
      if (v === null || v === undefined) { pen = false; continue; }
      d += (pen ? "L" : "M") + x(state.t[i]).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
      last = v;
    }
    el("path", { class: "line", d, stroke: color, "data-series": s.key,
                 "data-last": last === null ? "" : String(last) }, svg, true);
    const item = el("span", { style: "--c:" + color }, c.legend);
    el("i", {}, item);
    item.appendChild(document.createTextNode(s.label));
    const v = at >= 0 ? s.values[at] : null;
    el("b", { class: "readout", "data-series": s.key, "data-value": v === null ? "" : String(v),
              text: fmt(v, c.unit) }, item);
  });
  if (hover && hover.chart === c && state.t[hover.i]) {
    const cx = x(state.t[hover.i]);
    el("line", { class: "cursor", x1: cx, x2: cx, y1: PAD_T, y2: HEIGHT - PAD_B }, svg, true);
  }
  c.timeLabel.textContent = hover && hover.chart === c && state.t[hover.i]
    ? new Date(state.t[hover.i]).toLocaleTimeString() : "";
  svg.setAttribute("data-points", String(state.t.length - first));
}

function onHover(c, ev) {
  const r = c.svg.getBoundingClientRect();
  const width = r.width;
  const now = state.last || Date.now();
  const t = now - span() + ((ev.clientX - r.left - PAD_L) / (width - PAD_L - PAD_R)) * span();
  let best = -1;
  for (let i = 0; i < state.t.length; i++)
    if (best < 0 || Math.abs(state.t[i] - t) < Math.abs(state.t[best] - t)) best = i;
  hover = best >= 0 ? { chart: c, i: best } : null;
  render();
}

function pill(list, cls, text, title, attrs) {
  const li = el("li", Object.assign({ class: "pill " + cls, title, text }, attrs), list);
  return li;
}

function renderStatus(st) {
  const shards = document.getElementById("shards");
  shards.textContent = "";
  st.layer.shards.forEach((s, i) => {
    pill(shards, s.up ? "up" : "down", "shard " + i + " " + s.url + (s.up ? "" : " down"),
         s.up ? "answers" : s.error, { "data-shard": String(i), "data-up": String(s.up) });
  });
  const eps = document.getElementById("endpoints");
  if (st.endpoints.length) eps.textContent = "";
  st.endpoints.forEach((e, i) => {
    let text = e.kind === "unknown" ? e.url : e.kind + " " + e.url;
    if (e.up && e.ready === 0) text += " (not ready)";
    if (!e.up) text += " down";
    pill(eps, e.up && e.ready !== 0 ? "up" : "down", text, e.up ? "" : e.error,
         { "data-endpoint": String(i), "data-up": String(e.up) });
  });
  const last = (k) => { const v = state.series[k] || []; return v.length ? v[v.length - 1] : null; };
  for (const [id, v] of [["n-interfaces", last("interfaces")], ["n-processes", last("processes")],
                         ["n-channels", st.layer.ok ? st.layer.channels_seen : null]]) {
    const b = document.getElementById(id);
    b.textContent = fmt(v);
    b.dataset.value = v === null ? "" : String(v);
  }
  const up = document.getElementById("updated");
  up.textContent = "updated " + new Date(st.now).toLocaleTimeString() + " \u00b7 census " +
    fmt(st.layer.census_ms, "ms");
  up.dataset.t = String(st.now);
}

function render() {
  for (const c of CHARTS) drawChart(c);
}

// Appends the samples of an answer to the history, trimmed to what the server keeps.
function merge(st) {
  const n = st.series.t.length, had = state.t.length;
  state.history = st.history;
  state.t.push(...st.series.t);
  for (const [k, v] of Object.entries(st.series)) {
    if (k === "t") continue;
    state.series[k] = (state.series[k] || new Array(had).fill(null)).concat(v);
  }
  for (const name of Object.keys(state.queues))
    if (!st.queues[name]) state.queues[name] = state.queues[name].concat(new Array(n).fill(0));
  for (const [name, v] of Object.entries(st.queues))
    state.queues[name] = (state.queues[name] || new Array(had).fill(0)).concat(v);
  const drop = state.t.length - state.history;
  if (drop > 0) {
    state.t.splice(0, drop);
    for (const k of Object.keys(state.series)) state.series[k].splice(0, drop);
    for (const k of Object.keys(state.queues)) {
      state.queues[k].splice(0, drop);
      if (!state.queues[k].some((v) => v > 0)) delete state.queues[k];
    }
  }
  if (state.t.length) state.last = state.t[state.t.length - 1];
}

async function poll() {
  try {
    const since = state.t.length ? "?since=" + state.t[state.t.length - 1] : "";
    const r = await fetch("/api/state" + since, { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const st = await r.json();
    merge(st);
    renderStatus(st);
    render();
    document.getElementById("stale").hidden = true;
  } catch (e) {
    document.getElementById("stale").hidden = false;
  }
  setTimeout(poll, 1000);
}

build();
poll();
window.addEventListener("resize", render);

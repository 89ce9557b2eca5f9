// fastflow dashboard: one chart per metric over recent windows, one line per
// key, current values, alerts, throughput and lag; live over /api/v1/stream.
// The topics and consumer groups, polled every 2 s.
"use strict";

const palette = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#e3b341", "#56d364", "#79c0ff"];
const keepWindows = 60;
// A pipeline grouped by a field of many values would draw a line per key:
// the page keeps the keys updated most recently (the server's windows API
// gives those first) and charts the first of them.
const keepKeys = 50;
const chartKeys = 10;

const state = {
  pipeline: null,   // the pipeline shown (the first one)
  metrics: [],
  groupBy: [],
  windows: new Map(), // key id -> Map(start ms -> window line), least recently updated first
  labels: new Map(),  // key id -> the key as shown
  charts: new Map(),  // metric -> uPlot
  chartLabels: "",    // the keys the charts draw, joined
  dirty: false,
};

const $ = (id) => document.getElementById(id);

// esc makes text safe in HTML: group-by values come from the events, a
// consumer group's name from any Kafka client, and a value such as
// <img src=x onerror=...> must show as text, not run.
function esc(v) {
  return String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// keyID tells keys apart: their values, typed, in order. (Their labels,
// joined with " / ", do not: "a / b","c" and "a","b / c", "null" and null.)
function keyID(key) {
  return JSON.stringify(Object.values(key || {}));
}

function keyLabel(key) {
  const vals = Object.values(key || {});
  return vals.length ? vals.map((v) => (v === null ? "null" : String(v))).join(" / ") : "all";
}

function fmt(v) {
  if (v === null || v === undefined) return "—";
  if (Number.isInteger(v)) return v.toLocaleString();
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function addWindow(w) {
  const id = keyID(w.key);
  const m = state.windows.get(id) || new Map();
  state.windows.delete(id); // a Map keeps insertion order: this key is now the most recent
  state.windows.set(id, m);
  state.labels.set(id, keyLabel(w.key));
  if (state.windows.size > keepKeys) {
    const oldest = state.windows.keys().next().value;
    state.windows.delete(oldest);
    state.labels.delete(oldest);
  }
  m.set(Date.parse(w.window_start), w); // a revision replaces its window
  if (m.size > keepWindows) {
    const starts = [...m.keys()].sort((a, b) => a - b);
    for (const s of starts.slice(0, m.size - keepWindows)) m.delete(s);
  }
  state.dirty = true;
}

function chartData(metric, ids) {
  const xs = new Set();
  for (const id of ids) for (const s of state.windows.get(id).keys()) xs.add(s);
  const x = [...xs].sort((a, b) => a - b);
  const data = [x.map((s) => s / 1000)];
  for (const id of ids) {
    const m = state.windows.get(id);
    data.push(x.map((s) => { const w = m.get(s); const v = w ? w.metrics[metric] : null; return v === undefined ? null : v; }));
  }
  return data;
}

function render() {
  if (!state.dirty) return;
  state.dirty = false;
  const byLabel = (a, b) => { const x = state.labels.get(a), y = state.labels.get(b); return x < y ? -1 : x > y ? 1 : 0; };
  const all = [...state.windows.keys()];
  const ids = all.slice(-chartKeys).sort(byLabel);
  const rebuild = JSON.stringify(ids) !== state.chartLabels;
  state.chartLabels = JSON.stringify(ids);
  const charts = $("charts");
  for (const metric of state.metrics) {
    const data = chartData(metric, ids);
    let u = state.charts.get(metric);
    if (u && rebuild) { u.destroy(); u.root.parentElement.remove(); u = null; }
    if (!u) {
      const box = document.createElement("section");
      box.className = "chart";
      box.dataset.metric = metric;
      box.innerHTML = `<h3>${esc(metric)}</h3>`;
      charts.appendChild(box);
      const width = Math.max(480, box.clientWidth - 28);
      u = new uPlot({
        width, height: 220,
        scales: { x: { time: true } },
        axes: [
          { stroke: "#8193a8", grid: { stroke: "#243042" }, ticks: { stroke: "#243042" } },
          { stroke: "#8193a8", grid: { stroke: "#243042" }, ticks: { stroke: "#243042" }, size: 60 },
        ],
        series: [{}].concat(ids.map((id, i) => ({ label: state.labels.get(id), stroke: palette[i % palette.length], width: 2, spanGaps: false,
          points: { show: data[0].length < 30 } }))),
      }, data, box);
      state.charts.set(metric, u);
    } else {
      u.setData(data);
    }
  }
  renderCurrent(all.sort(byLabel));
}

function renderCurrent(ids) {
  if (!ids.length) return;
  let html = `<table><tr><th>${esc(state.groupBy.join(" / ") || "key")}</th><th>window</th>`;
  for (const m of state.metrics) html += `<th>${esc(m)}</th>`;
  html += "</tr>";
  for (const id of ids) {
    const m = state.windows.get(id);
    const last = m.get(Math.max(...m.keys()));
    const t = new Date(last.window_start).toISOString().slice(11, 16);
    html += `<tr><td>${esc(state.labels.get(id))}</td><td>${t}${last.revision ? ` r${last.revision}` : ""}</td>`;
    for (const metric of state.metrics) html += `<td>${fmt(last.metrics[metric])}</td>`;
    html += "</tr>";
  }
  $("current").className = "";
  $("current").innerHTML = html + "</table>";
}

function alertHTML(a, showState) {
  const v = a.value === null ? "null" : fmt(a.value);
  const when = showState && a.resolved_at ? a.resolved_at : a.active_at;
  return `<div class="alert ${esc(a.severity)}"><span class="name">${esc(a.alert)}</span>
    ${showState ? `<span class="${esc(a.state)}">${esc(a.state)}</span>` : ""} — ${esc(keyLabel(a.key))}
    <div class="meta">${esc(a.metric)} = ${esc(v)} (threshold ${esc(a.threshold)}) · window ${a.window_start.slice(11, 16)}–${a.window_end.slice(11, 16)} · ${new Date(when).toLocaleTimeString()}</div></div>`;
}

async function loadAlerts() {
  const r = await fetch("/api/v1/alerts");
  const { active, recent } = await r.json();
  $("nactive").textContent = active.length;
  $("active").className = active.length ? "" : "empty";
  $("active").innerHTML = active.length ? active.map((a) => alertHTML(a, false)).join("") : "none";
  const last = recent.slice(0, 10);
  $("recent").className = last.length ? "" : "empty";
  $("recent").innerHTML = last.length ? last.map((a) => alertHTML(a, true)).join("") : "none yet";
}

function bytesText(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

// The log, as `fastflow topic describe` and `group describe` show it:
// records held and size per topic, lag per group and topic.
async function loadLog() {
  const topics = await (await fetch("/api/v1/topics")).json();
  let html = "<table><tr><th>topic</th><th>partitions</th><th>records</th><th>size</th></tr>";
  for (const t of topics) {
    const parts = t.partition_offsets || [];
    const held = parts.reduce((a, p) => a + p.high_watermark - p.log_start_offset, 0);
    const size = parts.reduce((a, p) => a + p.size_bytes, 0);
    html += `<tr><td>${esc(t.topic)}</td><td>${t.partitions}</td><td>${fmt(held)}</td><td>${bytesText(size)}</td></tr>`;
  }
  $("topics").className = topics.length ? "" : "empty";
  $("topics").innerHTML = topics.length ? html + "</table>" : "none";
  const rows = await (await fetch("/api/v1/groups")).json();
  const lag = new Map(); // JSON [group, topic] -> lag (a group's name may hold any character)
  for (const r of rows) {
    const k = JSON.stringify([r.group, r.topic]);
    lag.set(k, (lag.get(k) || 0) + (r.lag || 0));
  }
  html = "<table><tr><th>group</th><th>topic</th><th>lag</th></tr>";
  for (const [k, v] of lag) {
    const [g, t] = JSON.parse(k);
    html += `<tr><td>${esc(g)}</td><td>${esc(t)}</td><td>${fmt(v)}</td></tr>`;
  }
  $("groups").className = lag.size ? "" : "empty";
  $("groups").innerHTML = lag.size ? html + "</table>" : "none";
}

async function loadInitial() {
  const pipes = await (await fetch("/api/v1/pipelines")).json();
  if (!pipes.length) { $("pipeline").textContent = "no pipeline"; return; }
  const p = pipes[0];
  state.pipeline = p.name;
  state.metrics = p.metrics;
  state.groupBy = p.group_by;
  $("pipeline").textContent = p.name;
  const r = await fetch(`/api/v1/pipelines/${encodeURIComponent(p.name)}/windows?last=${keepWindows}&keys=${keepKeys}`);
  const { windows } = await r.json();
  for (const w of windows) addWindow(w);
  // The API lists keys by name: order them by their latest window, oldest first.
  const latest = (m) => Math.max(...m.keys());
  state.windows = new Map([...state.windows].sort((a, b) => latest(a[1]) - latest(b[1])));
  await loadAlerts();
  render();
}

function connect() {
  const es = new EventSource("/api/v1/stream");
  es.onopen = () => { $("conn").textContent = "live"; $("conn").className = ""; };
  es.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "down"; };
  es.addEventListener("window", (e) => { const w = JSON.parse(e.data); if (w.pipeline === state.pipeline) addWindow(w); });
  es.addEventListener("alert", () => loadAlerts());
  es.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    if (p.pipeline !== state.pipeline) return;
    $("rate").textContent = fmt(Math.round(p.records_per_second));
    $("lag").textContent = fmt(Object.values(p.lag || {}).reduce((a, b) => a + b, 0));
    $("wm").textContent = p.watermark ? new Date(p.watermark).toISOString().slice(11, 19) : "—";
  });
  // After a server restart the stream reconnects by itself; reload the state it missed.
  let first = true;
  es.addEventListener("open", () => { if (!first) loadInitial(); first = false; });
}

setInterval(render, 250);
setInterval(() => loadLog().catch(() => {}), 2000);
loadLog().catch(() => {});
loadInitial().catch((e) => { $("current").textContent = "cannot reach the server: " + e; }).finally(connect);

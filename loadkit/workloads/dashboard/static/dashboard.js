// loadkit fleet dashboard: WebSocket stream with backoff + jitter, HTTP polling fallback.
// No build step, no dependencies. Protocol: see loadkit/dashboard/protocol.py.
"use strict";

const RECONNECT_BASE_MS = 250;   // first retry within 0.25 s ...
const RECONNECT_CAP_MS = 10000;  // ... doubling up to 10 s, with full jitter
const FALLBACK_AFTER = 2;        // failed WebSocket attempts before polling starts
const POLL_INTERVAL_MS = 1000;
const CHART_SECONDS = 300;

const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";

const STATE_OF = {i: "idle", b: "busy", n: "new", d: "dead"};  // one letter on the wire

const view = {
  agents: new Map(),   // id -> state
  ids: [],             // agent ids in slot order: updates name agents by slot
  cells: new Map(),    // id -> grid element
  boot: null, seq: null, updates: 0, missed: 0,
  throughput: [],      // [time s, tasks/s] from the server
  fleetLatency: [],    // [time s, ms] allocation latency the fleet reports
  browserLatency: [],  // [time s, ms] measured here: server send -> receipt
  mode: "connecting",
};
window.dashboard = view;  // for people poking around in devtools (and the browser test)

let ws = null, failures = 0, reconnectTimer = null, pollTimer = null, etag = null;

function setMode(mode) {
  view.mode = mode;
  document.body.dataset.mode = mode;
  const el = document.getElementById("mode");
  el.className = "mode " + mode;
  el.textContent = {websocket: "live: WebSocket", polling: "fallback: HTTP polling",
                    connecting: "connecting…", offline: "offline: retrying"}[mode];
}

// -- WebSocket -----------------------------------------------------------------------
function backoffMs(attempt) {
  return Math.random() * Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** Math.min(attempt, 30));
}

function connect() {
  reconnectTimer = null;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  let opened = false;
  // Ask to resume after the last update applied: any server of this board that still
  // has the updates since then sends those instead of a whole snapshot.
  const resume = view.boot !== null && view.seq !== null ? "resume=" + view.boot + "-" + view.seq : "";
  const params = [query.slice(1), resume].filter((p) => p).join("&");
  try {
    ws = new WebSocket(scheme + location.host + "/ws" + (params ? "?" + params : ""));
  } catch (err) {
    return scheduleReconnect();
  }
  ws.onopen = () => { opened = true; failures = 0; stopPolling(); setMode("websocket"); };
  ws.onmessage = (ev) => handle(JSON.parse(ev.data), Date.now());
  ws.onclose = () => {
    ws = null;
    if (!opened) failures += 1;
    if (failures >= FALLBACK_AFTER || opened) startPolling();
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  if (reconnectTimer === null) reconnectTimer = setTimeout(connect, backoffMs(failures));
}

// -- HTTP polling ----------------------------------------------------------------------
function startPolling() {
  if (pollTimer !== null) return;
  setMode("polling");
  pollTimer = setInterval(poll, POLL_INTERVAL_MS);
  poll();
}

function stopPolling() {
  if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; }
}

async function poll() {
  try {
    const headers = etag ? {"If-None-Match": etag} : {};
    const resp = await fetch("/api/snapshot" + query, {headers, cache: "no-store"});
    if (pollTimer === null) return;  // the WebSocket came back meanwhile
    if (resp.status === 304) { setMode("polling"); return; }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    etag = resp.headers.get("ETag");
    setMode("polling");
    handle(await resp.json(), Date.now());
  } catch (err) {
    if (pollTimer !== null) setMode("offline");
  }
}

// -- messages --------------------------------------------------------------------------
// Updates name agents by slot (see loadkit/dashboard/board.py): a delta gives the changed
// slots as a hex bitmap ("m") or a list ("s") and their new state letters ("c"); a
// keyframe gives every slot's letter ("k"), and the ids in slot order ("ids") when
// agents joined or left.
function slotsOf(msg) {
  if (msg.s) return msg.s;
  const slots = [], bitmap = msg.m || "";
  for (let p = 0; p < bitmap.length; p++) {
    const nibble = parseInt(bitmap[p], 16);
    if (nibble) for (let b = 0; b < 4; b++) if (nibble & (8 >> b)) slots.push(4 * p + b);
  }
  return slots;
}

// Applies an update to view.agents; returns what changed, or null when it does not fit.
function applyUpdate(msg) {
  if (msg.k !== undefined) {
    const ids = msg.ids || view.ids;
    if (msg.k.length !== ids.length) return null;
    const fresh = new Map(), changed = [], removed = [];
    for (let s = 0; s < ids.length; s++) {
      const state = STATE_OF[msg.k[s]];
      fresh.set(ids[s], state);
      if (view.agents.get(ids[s]) !== state) changed.push([ids[s], state]);
    }
    for (const id of view.agents.keys()) if (!fresh.has(id)) removed.push(id);
    view.ids = ids; view.agents = fresh;
    return {changed, removed};
  }
  const slots = slotsOf(msg), letters = msg.c || "";
  if (slots.length !== letters.length || slots.some((s) => s >= view.ids.length)) return null;
  const changed = slots.map((s, i) => [view.ids[s], STATE_OF[letters[i]]]);
  for (const [id, state] of changed) view.agents.set(id, state);
  return {changed, removed: []};
}

function handle(msg, receivedMs) {
  if (msg.type === "snapshot") {
    if (msg.seq === view.seq && msg.boot === view.boot) return;  // a poll of the same data
    view.agents = new Map(Object.entries(msg.agents));
    view.ids = msg.ids || [...view.agents.keys()];
    view.boot = msg.boot; view.seq = msg.seq;
    view.throughput = []; view.fleetLatency = [];
    for (const point of msg.history) addPoint(point);
    view.updates += 1;
    if (view.mode === "polling") addLatency(receivedMs - msg.ts);
    renderAll(msg);
  } else if (msg.type === "update") {
    if (msg.boot !== view.boot) return resync();
    if (msg.seq <= view.seq) return;
    if (msg.seq > view.seq + 1) { view.missed += msg.seq - view.seq - 1; return resync(); }
    const applied = applyUpdate(msg);
    if (applied === null) return resync();
    view.seq = msg.seq;
    view.updates += 1;
    if (msg.point) addPoint(msg.point);
    addLatency(receivedMs - msg.ts);
    if (msg.ids) renderAll(msg); else renderChanges(msg, applied);
  }
}

function resync() {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "resync"}));
}

function addPoint([t, thr, lat]) {
  if (thr !== null && thr !== undefined) view.throughput.push([t, thr]);
  if (lat !== null && lat !== undefined) view.fleetLatency.push([t, lat]);
  trim(view.throughput, t); trim(view.fleetLatency, t);
}

function addLatency(ms) {
  const t = performance.now() / 1000;
  view.browserLatency.push([t, Math.max(0, ms)]);
  trim(view.browserLatency, t);
  const shown = Math.max(0, ms);
  document.getElementById("c-latency").textContent = shown.toFixed(shown < 10 ? 1 : 0) + " ms";
}

function trim(series, now) {
  while (series.length && series[0][0] < now - CHART_SECONDS) series.shift();
}

// -- rendering -------------------------------------------------------------------------
function renderAll(msg) {
  const grid = document.getElementById("grid");
  grid.replaceChildren();
  view.cells.clear();
  for (const [id, state] of view.agents) setCell(grid, id, state);
  renderCounters(msg);
}

function renderChanges(msg, applied) {
  const grid = document.getElementById("grid");
  for (const [id, state] of applied.changed) setCell(grid, id, state);
  for (const id of applied.removed) {
    const cell = view.cells.get(id);
    if (cell) { cell.remove(); view.cells.delete(id); }
  }
  renderCounters(msg);
}

function setCell(grid, id, state) {
  let cell = view.cells.get(id);
  if (!cell) {
    cell = document.createElement("span");
    cell.title = id;
    view.cells.set(id, cell);
    grid.appendChild(cell);
  }
  cell.className = "cell " + state;
}

function renderCounters(msg) {
  const counts = msg.counts || {};
  document.getElementById("c-agents").textContent = view.agents.size;
  for (const s of ["idle", "busy", "new", "dead"]) {
    document.getElementById("c-" + s).textContent = counts[s] || 0;
  }
  const thr = msg.stats && msg.stats.throughput_per_s;
  document.getElementById("c-throughput").textContent = thr === undefined ? "–" : thr.toFixed(0);
  document.getElementById("c-updates").textContent = view.updates;
  document.getElementById("c-missed").textContent = view.missed;
  document.getElementById("status").textContent =
    `seq ${view.seq} · server ${view.boot} · ${new Date().toLocaleTimeString()}`;
}

function drawChart(canvas, seriesList) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 4;
  ctx.clearRect(0, 0, w, h);
  let max = 1;
  for (const {data} of seriesList) for (const [, v] of data) max = Math.max(max, v);
  ctx.fillStyle = "#5b6470"; ctx.font = "10px system-ui";
  ctx.fillText(max < 10 ? max.toFixed(1) : max.toFixed(0), pad, 10);
  ctx.strokeStyle = "#e4e7eb"; ctx.beginPath(); ctx.moveTo(0, h - pad); ctx.lineTo(w, h - pad); ctx.stroke();
  // Each series is right-aligned at its own latest point (the server's clock and this
  // browser's differ); the window grows with the data from 10 s up to CHART_SECONDS.
  let span = 10;
  for (const {data} of seriesList) {
    if (data.length) span = Math.max(span, data[data.length - 1][0] - data[0][0]);
  }
  span = Math.min(span, CHART_SECONDS);
  ctx.fillText(span.toFixed(0) + " s", w - 34, h - 8);
  for (const {data, colour} of seriesList) {
    if (data.length < 2) continue;
    const t0 = data[data.length - 1][0] - span;
    ctx.strokeStyle = colour; ctx.lineWidth = 1.5; ctx.beginPath();
    data.forEach(([t, v], i) => {
      const x = ((t - t0) / span) * (w - 2 * pad) + pad, y = h - pad - (v / max) * (h - 2 * pad - 8);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function drawCharts() {
  drawChart(document.getElementById("chart-throughput"), [{data: view.throughput, colour: "#2f6fd6"}]);
  drawChart(document.getElementById("chart-latency"), [
    {data: view.browserLatency, colour: "#7a3fd1"}, {data: view.fleetLatency, colour: "#d08a12"}]);
}

setInterval(drawCharts, 1000);
setMode("connecting");
connect();

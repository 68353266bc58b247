// Veto console: plain DOM and SVG over the service's own HTTP API, no library, no build.
// Every value from the API is put in the page with textContent (never as HTML): ids and
// categories are client-written text. The API key lives in sessionStorage only (this tab).
"use strict";

// ?refresh=N polls every N seconds (at least 1); 5 by default.
const REFRESH_MS = Math.max(1, Number(new URLSearchParams(location.search).get("refresh")) || 5) * 1000;
const KEY_STORE = "veto.apiKey";
const $ = (id) => document.getElementById(id);
const state = { user: null, items: [], served: null, busy: false, pending: null };

// ---- HTTP -------------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

async function api(path, { method = "GET", body, keyed = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (keyed) headers["X-API-Key"] = apiKey();
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "same-origin",
    });
  } catch (err) {
    return { status: 0, body: null, error: "the service does not answer" };
  }
  let parsed = null;
  try { parsed = await response.json(); } catch (err) { parsed = null; }
  const error = parsed && parsed.error ? `${response.status} ${parsed.error.code}: ${parsed.error.message}` : null;
  return { status: response.status, body: parsed, error };
}

// ---- formatting -------------------------------------------------------------------------

function when(ts) {
  if (ts === null || ts === undefined) return "—";
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function shortWhen(ts) {
  return ts === null || ts === undefined ? "—" : new Date(ts * 1000).toISOString().slice(5, 19).replace("T", " ");
}

function ago(ts) {
  if (ts === null || ts === undefined) return "";
  return ` (${duration(Date.now() / 1000 - ts)} ago)`;
}

function duration(s) {
  if (s === null || s === undefined) return "—";
  s = Math.max(0, s);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function pct(x) {
  return `${Math.round(x * 100)} %`;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function say(id, text, kind = "") {
  const node = $(id);
  node.textContent = text;
  node.className = `message ${kind}`;
}

// ---- status, banner and the key -----------------------------------------------------------

function banner(text, kind) {
  const node = $("banner");
  node.hidden = !text;
  node.textContent = text || "";
  node.className = `banner ${kind || ""}`;
}

function showStatus(status) {
  const pill = $("status");
  if (status === null) {
    pill.textContent = "Service not answering";
    pill.className = "pill bad";
    banner("The service does not answer: is it running?", "bad");
    return;
  }
  const served = status.served;
  if (status.redis !== "ok") {
    pill.textContent = served ? `Degraded · serving v${served.version}` : "Degraded · starting";
    pill.className = "pill bad";
    banner("Degraded: Redis does not answer. Recommendations come without the users' history " +
      "(marked degraded); feedback and publishing are refused until it is back.", "bad");
  } else if (!served) {
    pill.textContent = "Starting · no model yet";
    pill.className = "pill warn";
    banner("Service starting: no model version is loaded yet. Recommendations answer 503 " +
      "until one is published and loaded.", "warn");
  } else {
    pill.textContent = `Serving v${served.version}`;
    pill.className = "pill ok";
    banner(null);
  }
}

function showKeyState() {
  $("key-state").textContent = apiKey() ? "key set (this tab only)" : "no key: read-only";
}

// ---- Try a user ---------------------------------------------------------------------------

async function categoryOf(itemId) {
  const r = await api(`../v1/items/${encodeURIComponent(itemId)}`);
  return r.status === 200 && r.body ? r.body.category : null;
}

async function fetchTop(user, k) {
  const r = await api(`../v1/users/${encodeURIComponent(user)}/recommendations?k=${k}`);
  if (r.status !== 200) return { error: r.error || `HTTP ${r.status}` };
  const cats = await Promise.all(r.body.items.map((x) => categoryOf(x.item_id)));
  const items = r.body.items.map((x, i) => ({ id: x.item_id, score: x.score, category: cats[i] }));
  return { items, version: r.body.model_version, degraded: r.body.degraded };
}

function share(items, category) {
  if (!items.length || category === null) return 0;
  return items.filter((x) => x.category === category).length / items.length;
}

function renderTop(user, result, previous) {
  const table = $("recs");
  const body = table.tBodies[0];
  body.replaceChildren();
  const before = new Set((previous || []).map((x) => x.id));
  result.items.forEach((item, i) => {
    const row = el("tr", { "data-item": item.id });
    const isNew = previous && !before.has(item.id);
    if (isNew) row.className = "new";
    row.append(el("td", { class: "num" }, String(i + 1)));
    const name = el("td", {}, item.id);
    if (isNew) name.append(el("span", { class: "tag" }, "new"));
    row.append(name, el("td", {}, item.category === null ? "—" : item.category));
    row.append(el("td", { class: "num" }, item.score.toFixed(3)));
    const actions = el("td", { class: "actions" });
    for (const [type, label] of [["like", "Like"], ["dislike", "Dislike"]]) {
      const button = el("button", {
        type: "button", class: type, "data-type": type, "aria-label": `${label} ${item.id}`,
      }, label);
      button.addEventListener("click", () => sendFeedback(item, type));
      actions.append(button);
    }
    row.append(actions);
    body.append(row);
  });
  const degraded = result.degraded ? " · degraded answer (no history: Redis is down)" : "";
  $("recs-caption").textContent =
    `Top ${result.items.length} for ${user} · model v${result.version}${degraded}`;
  table.hidden = false;
}

function renderMoved(previous, now, feedback) {
  const box = $("moved");
  box.replaceChildren();
  const nowIds = new Set(now.map((x) => x.id));
  const beforeIds = new Set(previous.map((x) => x.id));
  const gone = previous.filter((x) => !nowIds.has(x.id)).map((x) => x.id);
  const added = now.filter((x) => !beforeIds.has(x.id)).map((x) => x.id);
  box.append(el("p", {}, `After ${feedback.type} of ${feedback.item.id}:`));
  box.append(el("p", { id: "moved-gone" }, `Gone: ${gone.length ? gone.join(", ") : "none"}`));
  box.append(el("p", { id: "moved-new" }, `New: ${added.length ? added.join(", ") : "none"}`));
  const category = feedback.item.category;
  if (category !== null) {
    const text = `Category ${category}: ${pct(share(previous, category))} → ${pct(share(now, category))} of the list`;
    box.append(el("p", { id: "moved-share" }, text));
  }
  box.hidden = false;
}

async function showUser(event) {
  if (event) event.preventDefault();
  const user = $("user-id").value.trim();
  const k = Math.min(50, Math.max(1, parseInt($("top-k").value, 10) || 10));
  if (!user) return;
  say("try-message", "Loading…");
  const result = await fetchTop(user, k);
  if (result.error) {
    say("try-message", result.error, "bad");
    return;
  }
  state.user = user;
  state.items = result.items;
  $("moved").hidden = true;
  renderTop(user, result, null);
  say("try-message", "");
}

async function sendFeedback(item, type) {
  if (state.busy) return;
  if (!apiKey()) {
    say("try-message", "Type the API key above first: feedback is a write. Nothing was sent.", "bad");
    $("api-key").focus();
    return;
  }
  state.busy = true;
  document.querySelectorAll("#recs button").forEach((b) => { b.disabled = true; });
  try {
    const r = await api("../v1/feedback", {
      method: "POST", keyed: true,
      body: { events: [{ user_id: state.user, item_id: item.id, type }] },
    });
    if (r.status !== 200) {
      const why = r.status === 401 ? " — the key is missing or wrong." : "";
      say("try-message", `${r.error || `HTTP ${r.status}`}${why} Nothing was written.`, "bad");
      return;
    }
    const previous = state.items;
    const result = await fetchTop(state.user, previous.length || 10);
    if (result.error) {
      say("try-message", result.error, "bad");
      return;
    }
    state.items = result.items;
    renderTop(state.user, result, previous);
    renderMoved(previous, result.items, { type, item });
    say("try-message", `${type} of ${item.id} recorded (${r.body.accepted} event).`, "good");
  } finally {
    state.busy = false;
    document.querySelectorAll("#recs button").forEach((b) => { b.disabled = false; });
  }
}

// ---- Model --------------------------------------------------------------------------------

function renderModel(status) {
  const m = status.served;
  $("m-version").textContent = m ? `v${m.version} (${m.n_items} items, ${m.index_type}, dim ${m.dim})` : "none loaded yet";
  $("m-parent").textContent = m && m.parent !== null ? `v${m.parent}` : "—";
  $("m-created").textContent = m ? when(m.created_at) + ago(m.created_at) : "—";
  $("m-watermark").textContent = m ? (m.watermark_ingest_time === null ? "no live feedback yet" : when(m.watermark_ingest_time)) : "—";
  $("m-lag").textContent = m && m.feedback_to_model_lag_seconds !== null ? duration(m.feedback_to_model_lag_seconds) : "—";
  let pointer = status.published === null ? "—" : `v${status.published}`;
  if (status.redis !== "ok") pointer = "unknown (Redis down)";
  else if (m && status.published !== null && status.published !== m.version) pointer += ` (this replica serves v${m.version})`;
  $("m-published").textContent = pointer;
  state.served = m ? m.version : null;
}

function renderVersions(list) {
  const body = $("versions").tBodies[0];
  body.replaceChildren();
  for (const v of [...list.versions].reverse()) {
    const row = el("tr", { "data-version": String(v.version) });
    row.append(el("td", {}, `v${v.version}`));
    row.append(el("td", { class: "time" }, v.error ? "unreadable" : shortWhen(v.created_at)));
    row.append(el("td", { class: "num" }, v.n_items === null ? "—" : String(v.n_items)));
    const marks = [v.served ? "served" : "", v.published ? "published" : ""].filter(Boolean);
    row.append(el("td", {}, v.error ? v.error : marks.join(" · ") || "—"));
    const cell = el("td", { class: "actions" });
    // Nothing to offer for the version the pointer names, nor (pointer unknown) the served one.
    const current = v.published || (list.published === null && v.served);
    if (!current && !v.error) {
      const back = state.served !== null && v.version < state.served;
      const label = back ? `Roll back to v${v.version}` : `Publish v${v.version}`;
      const button = el("button", { type: "button", "data-publish": String(v.version), "aria-label": label },
        back ? "Roll back" : "Publish");
      button.addEventListener("click", () => askPublish(v.version, label));
      cell.append(button);
    }
    row.append(cell);
    body.append(row);
  }
}

function askPublish(version, label) {
  if (!apiKey()) {
    say("model-message", "Type the API key above first: publishing is a write. Nothing was sent.", "bad");
    $("api-key").focus();
    return;
  }
  state.pending = version;
  $("confirm-text").textContent = `${label}? Every replica swaps to it.`;
  $("confirm").hidden = false;
  $("confirm-yes").focus();
}

async function publish() {
  const version = state.pending;
  $("confirm").hidden = true;
  state.pending = null;
  if (version === null) return;
  say("model-message", `Publishing v${version}…`);
  const r = await api("../v1/admin/publish", { method: "POST", keyed: true, body: { version } });
  if (r.status !== 200) {
    const why = r.status === 401 ? " — the key is missing or wrong." : "";
    say("model-message", `${r.error || `HTTP ${r.status}`}${why} Nothing was published.`, "bad");
  } else {
    const was = r.body.previous === null ? "none" : `v${r.body.previous}`;
    say("model-message", `Published v${r.body.published} (pointer was ${was}); this replica serves v${r.body.served}.`, "good");
  }
  await refreshModel();
}

async function refreshModel() {
  const status = await api("../v1/admin/model");
  showStatus(status.status === 200 ? status.body : null);
  if (status.status !== 200) return;
  renderModel(status.body);
  const list = await api("../v1/admin/versions");
  if (list.status === 200) renderVersions(list.body);
}

// ---- Responsiveness now: sparklines in plain SVG --------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

// series: [{values: [number|null], cls}], over times `at` (seconds) from t0 to t1.
function sparkline(svg, at, series, { t0, t1, min, max, zero = false, label }) {
  const span = t1 - t0;
  const title = svg.querySelector("title");
  svg.replaceChildren(title);
  title.textContent = label;
  const W = 300, top = 6, bottom = 70;
  const all = series.flatMap((s) => s.values).filter((v) => v !== null);
  let lo = min !== undefined ? Math.min(min, ...all) : Math.min(...all, 0);
  let hi = max !== undefined ? Math.max(max, ...all) : Math.max(...all, 0);
  if (hi === lo) hi = lo + 1;
  const x = (t) => ((t - t0) / Math.max(1e-9, t1 - t0)) * W;
  const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
  svg.append(svgEl("line", { class: "axis", x1: 0, x2: W, y1: bottom, y2: bottom }));
  if (zero && lo < 0 && hi > 0) {
    svg.append(svgEl("line", { class: "zero", x1: 0, x2: W, y1: y(0), y2: y(0) }));
    const zeroText = svgEl("text", { x: W - 2, y: y(0) - 2, "text-anchor": "end" });
    zeroText.textContent = "0 = no change";
    svg.append(zeroText);
  }
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(2));
  const hiText = svgEl("text", { x: 2, y: top + 6 });
  hiText.textContent = fmt(hi);
  const loText = svgEl("text", { x: 2, y: bottom + 9 });
  loText.textContent = fmt(lo);
  const left = svgEl("text", { x: W - 2, y: bottom + 9, "text-anchor": "end" });
  left.textContent = span >= 120 ? `last ${Math.round(span / 60)} min` : `last ${Math.round(span)} s`;
  svg.append(hiText, loText, left);
  for (const s of series) {
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(at[i]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) svg.append(svgEl("path", { class: `line ${s.cls || ""}`, d }));
    // A lone point has no segment: mark it.
    s.values.forEach((v, i) => {
      const prev = i > 0 ? s.values[i - 1] : null;
      const next = i + 1 < s.values.length ? s.values[i + 1] : null;
      if (v !== null && prev === null && next === null) {
        svg.append(svgEl("circle", { cx: x(at[i]).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: `line ${s.cls || ""}` }));
      }
    });
  }
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] !== null) return values[i];
  return null;
}

function renderLive(live) {
  const points = live.points;
  const now = Date.now() / 1000;
  const t1 = points.length ? points[points.length - 1].at : now;
  // From the oldest point kept (at least a minute back) to the newest.
  const t0 = Math.max(t1 - live.window_seconds, Math.min(points.length ? points[0].at - live.interval_seconds : t1, t1 - 60));
  const at = points.map((p) => p.at);
  const minutes = Math.round(live.window_seconds / 60);
  $("live-note").textContent = `This replica's own metrics over the last ${minutes} min, one point every ${live.interval_seconds} s` +
    (points.length ? "." : " (collecting the first interval…).");

  const resp = points.map((p) => p.responsiveness_mean);
  const lastResp = lastValue(resp);
  const total = live.totals;
  $("v-responsiveness").textContent = lastResp !== null
    ? `${(lastResp * 100).toFixed(0)} %`
    : total.responsiveness_mean !== null ? `${(total.responsiveness_mean * 100).toFixed(0)} % (since start)` : "no dislike measured yet";
  sparkline($("chart-responsiveness").querySelector("svg"), at, [{ values: resp }],
    { t0, t1, min: -1, max: 0.2, zero: true, label: `Counterfactual responsiveness: ${$("v-responsiveness").textContent}; ${total.responsiveness_samples} dislikes measured since start` });

  const served = points.map((p) => p.disliked_served_total);
  $("v-disliked").textContent = String(total.disliked_served);
  $("v-disliked").className = total.disliked_served > 0 ? "big bad" : "big";
  sparkline($("chart-disliked").querySelector("svg"), at, [{ values: served, cls: total.disliked_served > 0 ? "bad" : "" }],
    { t0, t1, min: 0, max: 1, label: `Disliked items served since start: ${total.disliked_served}` });

  const rate = points.map((p) => p.api_requests_per_second);
  const lastRate = lastValue(rate);
  $("v-rate").textContent = lastRate === null ? "—" : `${lastRate.toFixed(1)} /s`;
  sparkline($("chart-rate").querySelector("svg"), at, [{ values: rate }],
    { t0, t1, min: 0, label: `API request rate: ${$("v-rate").textContent}` });

  const ms = (v) => (v === null ? null : v * 1000);
  const p50 = points.map((p) => ms(p.latency_p50_seconds));
  const p99 = points.map((p) => ms(p.latency_p99_seconds));
  const l50 = lastValue(p50), l99 = lastValue(p99);
  $("v-latency").textContent = l50 === null ? "no requests" : `p50 ${l50.toFixed(1)} ms · p99 ${l99.toFixed(1)} ms`;
  sparkline($("chart-latency").querySelector("svg"), at, [{ values: p50 }, { values: p99, cls: "second" }],
    { t0, t1, min: 0, label: `Recommendation latency: ${$("v-latency").textContent}` });
}

async function refreshLive() {
  const r = await api("../v1/admin/live");
  if (r.status === 200) renderLive(r.body);
}

// ---- wiring -------------------------------------------------------------------------------

function init() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value;
    if (key) sessionStorage.setItem(KEY_STORE, key);
    $("api-key").value = "";
    showKeyState();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    showKeyState();
  });
  $("user-form").addEventListener("submit", showUser);
  $("confirm-yes").addEventListener("click", publish);
  $("confirm-no").addEventListener("click", () => {
    state.pending = null;
    $("confirm").hidden = true;
  });
  const user = new URLSearchParams(location.search).get("user");
  if (user) {
    $("user-id").value = user;
    showUser();
  }
  showKeyState();
  const tick = () => Promise.all([refreshModel(), refreshLive()]);
  tick();
  setInterval(tick, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);

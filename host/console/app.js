"use strict";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("hookhost-token") || "";
let view = "events";
let openEvent = null;

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–"; }
function short(s, n) { s = String(s ?? ""); return s.length > n ? s.slice(0, n - 1) + "…" : s; }

async function api(path, method = "GET") {
  const r = await fetch(path, { method, headers: { Authorization: "Bearer " + token } });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) { signOut("The token was refused."); throw new Error("unauthorized"); }
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function signOut(message) {
  token = ""; sessionStorage.removeItem("hookhost-token");
  $("app").classList.add("hidden"); $("login").classList.remove("hidden");
  $("login-error").textContent = message || "";
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  try {
    await api("/admin/tenants");
    sessionStorage.setItem("hookhost-token", token);
    start();
  } catch (err) { $("login-error").textContent = err.message === "unauthorized" ? "The token was refused." : err.message; }
});
$("logout").addEventListener("click", () => signOut());

document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => {
  view = b.dataset.view;
  document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("active", x === b));
  for (const v of ["events", "dead", "plugins"]) $("view-" + v).classList.toggle("hidden", v !== view);
  refresh();
}));
$("tenant").addEventListener("change", () => { openEvent = null; $("detail").classList.add("hidden"); refresh(); });
$("state").addEventListener("change", refresh);
$("order").addEventListener("input", refresh);

async function start() {
  $("login").classList.add("hidden"); $("app").classList.remove("hidden");
  const { tenants } = await api("/admin/tenants");
  $("tenant").innerHTML = tenants.map((t) => `<option>${esc(t.name)}</option>`).join("");
  await refresh();
  setInterval(refresh, 2000);
}

let refreshing = false;
async function refresh() {
  if (!token || refreshing) return;
  refreshing = true;
  try {
    const tenant = $("tenant").value;
    if (!tenant) return;
    const { counts } = await api(`/admin/tenants/${encodeURIComponent(tenant)}/counts`);
    $("counters").innerHTML = ["pending", "running", "done", "skipped", "dead"].map((k) =>
      `<div class="counter" data-state="${k}"><b>${counts[k] ?? 0}</b><span>${k}</span></div>`).join("");
    if (view === "events") await showEvents(tenant);
    if (view === "dead") await showDead(tenant);
    if (view === "plugins") await showPlugins();
    if (openEvent !== null && view === "events") await showDetail(openEvent, false);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    $("updated").textContent = "error: " + err.message;
  } finally { refreshing = false; }
}

async function showEvents(tenant) {
  const state = $("state").value;
  const order = $("order").value.trim();
  const page = await api(`/admin/tenants/${encodeURIComponent(tenant)}/events?limit=100${state ? "&state=" + state : ""}${order ? "&order=" + encodeURIComponent(order) : ""}`);
  $("events").innerHTML = page.events.map((e) => `
    <tr class="event" data-seq="${e.seq}">
      <td>${e.seq}</td><td class="state state-${esc(e.state)}">${esc(e.state)}</td><td>${e.attempts}</td>
      <td>${esc(e.source)}</td><td>${esc(e.event.order_id ?? "–")}</td><td>${esc(e.event.raw_status ?? e.event.status)}</td>
      <td>${when(e.received_at_ms)}</td><td class="error">${esc(short(e.last_error, 80))}</td>
    </tr>`).join("") || `<tr><td colspan="8" class="muted">No events yet.</td></tr>`;
  document.querySelectorAll("tr.event").forEach((row) =>
    row.addEventListener("click", () => showDetail(Number(row.dataset.seq), true)));
}

async function showDetail(seq, scroll) {
  openEvent = seq;
  const e = await api(`/admin/events/${seq}`);
  const attempts = e.attempts_detail.map((a) => {
    const result = a.outcome === "error" ? `<span class="error">error: ${esc(a.message)}</span>`
      : a.outcome === "skipped" ? `skipped: ${esc(a.reason)}`
      : a.outcome === "retry-after" ? `retry after ${a.seconds} s` : esc(a.outcome);
    const logs = a.logs.map((l) => `[${esc(l.level)}] ${esc(l.message)}`).join("\n");
    return `<div class="attempt"><b>Attempt ${a.attempt}</b> · version <code>${esc(a.plugin_version)}</code> ·
      ${when(a.started_at_ms)} · ${a.duration_us} µs · ${result}
      <pre class="logs">${logs || "(no log lines)"}${a.logs_dropped ? `\n(${a.logs_dropped} lines dropped)` : ""}</pre></div>`;
  }).join("");
  const finished = ["done", "skipped", "dead"].includes(e.state);
  $("detail").innerHTML = `
    <h2>Event ${e.seq} · <span class="state state-${esc(e.state)}">${esc(e.state)}</span>
      ${finished ? `<button id="replay-one" data-seq="${e.seq}">Replay</button>` : ""}</h2>
    <div class="muted">tenant ${esc(e.tenant)} · source ${esc(e.source)} · received ${when(e.received_at_ms)}
      ${e.duplicates ? ` · ${e.duplicates} duplicate deliveries` : ""}</div>
    <h3>Raw payload</h3><pre id="raw">${esc(e.body)}</pre>
    <h3>Normalized event</h3><pre id="normalized">${esc(JSON.stringify(e.event, null, 2))}</pre>
    <h3>Attempts</h3>${attempts || `<p class="muted">No attempt yet.</p>`}`;
  $("detail").classList.remove("hidden");
  const replay = $("replay-one");
  if (replay) replay.addEventListener("click", async () => {
    await api(`/admin/events/${seq}/replay`, "POST"); refresh();
  });
  if (scroll) $("detail").scrollIntoView({ behavior: "smooth" });
}

async function showDead(tenant) {
  const page = await api(`/admin/tenants/${encodeURIComponent(tenant)}/dead-letters?limit=100`);
  $("dead").innerHTML = page.events.map((e) => `
    <tr data-seq="${e.seq}"><td>${e.seq}</td><td>${e.attempts}</td><td>${esc(e.event.order_id ?? "–")}</td>
      <td>${esc(e.event.raw_status ?? e.event.status)}</td><td>${when(e.finished_at_ms)}</td>
      <td class="error">${esc(short(e.last_error, 100))}</td>
      <td><button class="replay" data-seq="${e.seq}">Replay</button></td></tr>`).join("")
    || `<tr><td colspan="7" class="muted">No dead letters.</td></tr>`;
  document.querySelectorAll("button.replay").forEach((b) => b.addEventListener("click", async () => {
    const r = await api(`/admin/events/${b.dataset.seq}/replay`, "POST");
    $("replay-result").textContent = `replayed event ${r.replayed.join(", ")}`;
    refresh();
  }));
}
$("replay-all").addEventListener("click", async () => {
  const r = await api(`/admin/tenants/${encodeURIComponent($("tenant").value)}/dead-letters/replay`, "POST");
  $("replay-result").textContent = r.replayed.length ? `replayed ${r.replayed.length}: ${r.replayed.join(", ")}` : "nothing to replay";
  refresh();
});

async function showPlugins() {
  const { tenants } = await api("/admin/tenants");
  $("plugins").innerHTML = tenants.map((t) => {
    const p = t.plugin || {};
    const history = (p.history || []).slice(-5).map((h) =>
      `${when(h.at_ms)} ${esc(h.result)}${h.version ? " " + esc(h.version) : ""}${h.error ? ": " + esc(short(h.error, 80)) : ""}`).join("<br>");
    return `<tr><td>${esc(t.name)}</td><td><code>${esc(p.version ?? "(none: events wait)")}</code></td>
      <td>${when(p.loaded_at_ms)}</td><td>${t.sources.map((s) => esc(s.name + " (" + s.provider + ")")).join(", ")}</td>
      <td class="error">${esc(short(p.last_error, 120))}</td><td class="muted">${history}</td></tr>`;
  }).join("");
}

if (token) start().catch(() => signOut());

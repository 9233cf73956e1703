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

let me = { role: "operator" };
let kvAfter = null;
function can(scope) { return me.role === "operator" || (me.token?.scopes || []).includes(scope); }

async function api(path, method = "GET", body = undefined, type = "application/json") {
  const headers = { Authorization: "Bearer " + token };
  if (body !== undefined) headers["Content-Type"] = type;
  const r = await fetch(path, { method, headers, body });
  const answer = await r.json().catch(() => ({}));
  if (r.status === 401) { signOut("The token was refused."); throw new Error("unauthorized"); }
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
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
  for (const v of ["events", "dead", "plugins", "versions", "shadow", "kv"]) $("view-" + v).classList.toggle("hidden", v !== view);
  kvAfter = null;
  refresh();
}));
$("tenant").addEventListener("change", () => { openEvent = null; $("detail").classList.add("hidden"); refresh(); });
$("state").addEventListener("change", refresh);
$("order").addEventListener("input", refresh);

async function start() {
  $("login").classList.add("hidden"); $("app").classList.remove("hidden");
  me = await api("/admin/whoami");
  $("whoami").textContent = me.role === "operator" ? "operator"
    : `merchant · ${me.tenant} · ${(me.token.scopes || []).join(", ")} · token ${me.token.name}`;
  document.querySelectorAll(".needs-deploy").forEach((el) => el.classList.toggle("hidden", !can("deploy")));
  $("replay-all").classList.toggle("hidden", !can("replay"));
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
    if (view === "versions") await showVersions(tenant);
    if (view === "shadow") await showShadow(tenant);
    if (view === "kv" && kvAfter === null) await showKv(tenant, false);
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
      ${finished && can("replay") ? `<button id="replay-one" data-seq="${e.seq}">Replay</button>` : ""}</h2>
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
      <td>${can("replay") ? `<button class="replay" data-seq="${e.seq}">Replay</button>` : ""}</td></tr>`).join("")
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

function tenantPath(rest) { return `/admin/tenants/${encodeURIComponent($("tenant").value)}${rest}`; }

async function showVersions(tenant) {
  const h = await api(`/admin/tenants/${encodeURIComponent(tenant)}/plugin/versions?limit=100`);
  $("versions").innerHTML = h.deploys.map((d) => {
    const what = d.kind === "refused" ? `<span class="error">refused: ${esc(short(d.message, 160))}</span>`
      : d.kind === "rollback" ? `rollback to v${d.reactivates}` : d.kind === "promote" ? `promoted v${d.reactivates}` : esc(d.kind);
    const active = d.number === h.active;
    const back = can("deploy") && !active && d.kind !== "refused"
      ? `<button class="rollback" data-to="${d.number}">Make active</button>
         <button class="shadow-it" data-number="${d.number}">Shadow</button>` : "";
    return `<tr class="version" data-number="${d.number}"><td><b>v${d.number}</b>${active ? ' <span class="state state-done">active</span>' : ""}</td>
      <td>${what}</td><td><code>${esc(d.digest.slice(0, 16))}</code></td><td>${d.size}</td><td>${when(d.at_ms)}</td><td>${esc(d.by)}</td><td>${back}</td></tr>`;
  }).join("") || `<tr><td colspan="7" class="muted">No deploys: the tenant serves its plugin file, if any.</td></tr>`;
  document.querySelectorAll("button.shadow-it").forEach((b) => b.addEventListener("click", () =>
    act(() => api(tenantPath("/plugin/shadow"), "PUT",
      JSON.stringify({ version: Number(b.dataset.number), share: Number($("shadow-share").value) / 100 })),
      (r) => `v${r.shadow.number} shadows the active version on ${Math.round(r.shadow.share * 100)}% of attempts (see the Shadow tab)`)));
  document.querySelectorAll("button.rollback").forEach((b) => b.addEventListener("click", () =>
    act(() => api(tenantPath("/plugin/rollback"), "POST", JSON.stringify({ to: Number(b.dataset.to) })),
      (r) => `v${r.deploy.reactivates} is active again (as v${r.deploy.number})`)));
}

async function act(call, describe, where = "deploy-result") {
  $(where).textContent = "working…";
  try { const r = await call(); $(where).textContent = describe(r); }
  catch (err) { $(where).textContent = "refused: " + err.message; }
  refresh();
}

$("deploy-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("deploy-file").files[0];
  if (!file) return;
  const stage = $("deploy-stage").checked;
  await act(() => api(tenantPath(stage ? "/plugin?activate=false" : "/plugin"), "PUT", file, "application/wasm"),
    (r) => r.deploy.kind === "staged" ? `staged v${r.deploy.number} (not active: shadow it from the Shadow tab or the CLI)`
      : `deployed v${r.deploy.number} (version ${r.version}) in ${r.timings_ms.total} ms`);
});
$("rollback-previous").addEventListener("click", () =>
  act(() => api(tenantPath("/plugin/rollback"), "POST"), (r) => `v${r.deploy.reactivates} is active again (as v${r.deploy.number})`));

function differences(c) {
  if (c.verdict === "inconclusive") return esc(c.reason);
  return (c.differences || []).map((d) =>
    `<div><b>${esc(d.in)}</b>: active <code>${esc(short(JSON.stringify(d.serving), 160))}</code> · shadow <code>${esc(short(JSON.stringify(d.candidate), 160))}</code></div>`).join("");
}

async function showShadow(tenant) {
  const s = await api(`/admin/tenants/${encodeURIComponent(tenant)}/plugin/shadow`);
  const live = s.shadow !== null;
  document.querySelectorAll("#shadow-promote, #shadow-discard").forEach((b) => { b.disabled = !live; });
  if (!live) {
    $("shadow-summary").textContent = "No shadow. Stage a version on the Versions tab, then: hookhost shadow start --tenant " + tenant + " --version N";
    $("shadow-runs").innerHTML = "";
    return;
  }
  const c = s.counts || {};
  $("shadow-summary").textContent = `v${s.shadow.number} shadows the active version on ${Math.round(s.shadow.share * 100)}% of attempts since ${when(s.shadow.since_ms)}: `
    + `${c.same || 0} same, ${c.differs || 0} different, ${c.inconclusive || 0} inconclusive`;
  $("shadow-runs").innerHTML = s.differing.map((r) => `<tr class="shadow-run" data-seq="${r.seq}"><td>${r.seq}</td><td>${r.attempt}</td>
    <td class="${r.verdict === "differs" ? "error" : "muted"}">${esc(r.verdict)}</td><td>${(r.serving_us / 1000).toFixed(1)}</td><td>${(r.shadow_us / 1000).toFixed(1)}</td>
    <td>${differences(r.comparison)}</td></tr>`).join("") || `<tr><td colspan="6" class="muted">No differences so far.</td></tr>`;
}
$("shadow-promote").addEventListener("click", () =>
  act(() => api(tenantPath("/plugin/shadow/promote"), "POST"),
    (r) => `promoted: v${r.deploy.reactivates} is active as v${r.deploy.number}`, "shadow-result"));
$("shadow-discard").addEventListener("click", () =>
  act(() => api(tenantPath("/plugin/shadow"), "DELETE"), () => "the shadow was discarded", "shadow-result"));

async function showKv(tenant, more) {
  const prefix = $("kv-prefix").value;
  const after = more && kvAfter ? "&after=" + encodeURIComponent(kvAfter) : "";
  const page = await api(`/admin/tenants/${encodeURIComponent(tenant)}/kv?limit=100&prefix=${encodeURIComponent(prefix)}${after}`);
  const rows = page.entries.map((e) => `<tr class="kv-entry"><td><code>${esc(e.key)}</code></td>
    <td><code>${esc(short(e.value ?? ("base64:" + e.value_base64), 200))}</code></td><td>${when(e.updated_at_ms)}</td></tr>`).join("");
  $("kv").innerHTML = (more ? $("kv").innerHTML : "") + rows || `<tr><td colspan="3" class="muted">No keys${prefix ? " with this prefix" : ""}.</td></tr>`;
  kvAfter = page.next_after || "";
  $("kv-more").disabled = !page.next_after;
}
$("kv-prefix").addEventListener("input", () => showKv($("tenant").value, false));
$("kv-more").addEventListener("click", () => showKv($("tenant").value, true));

if (token) start().catch(() => signOut());

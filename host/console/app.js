"use strict";
// The hookhost console: one page, every view addressed by its URL (#/..., so that any view or
// event can be shared), data from the admin API with the signed-in token. Updates happen in
// place (rows and attempts are added or replaced one by one; the payload is drawn once), so a
// refresh never takes away the reader's selection, focus or scroll.
const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
const CHART_REFRESH_MS = 15000;
let token = sessionStorage.getItem("hookhost-token") || "";
let me = { role: "operator" };
let tenants = [];
let route = { view: "overview", params: new URLSearchParams() };
let timer = null;

// ---------------------------------------------------------------------------------------------
// Formatting

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const absolute = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  hour12: false, timeZoneName: "short",
});
/** Hours and minutes on a 24-hour clock (chart axes). */
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
/** A time with its zone, e.g. "12/01/2026, 06:31:02 UTC". */
function when(ms) { return ms ? absolute.format(new Date(ms)) : "–"; }
/** "3 min ago", with the absolute time (and zone) on hover. */
function ago(ms) {
  if (!ms) return "–";
  return `<time data-ms="${ms}" datetime="${new Date(ms).toISOString()}" title="${esc(when(ms))}">${esc(relative(ms))}</time>`;
}
function relative(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 0) return "in " + age(-s);
  return s < 5 ? "just now" : age(s) + " ago";
}
/** A duration in seconds, for people: "42 s", "3 min", "2 h 5 min". */
function age(s) {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
/** Microseconds as milliseconds. */
function ms(us) { return us == null ? "–" : `${(us / 1000).toFixed(us < 10000 ? 2 : 1)} ms`; }
function short(s, n) { s = String(s ?? ""); return s.length > n ? s.slice(0, n - 1) + "…" : s; }
function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}
function can(scope) { return me.role === "operator" || (me.token?.scopes || []).includes(scope); }
function enc(s) { return encodeURIComponent(s); }

// ---------------------------------------------------------------------------------------------
// The admin API, and what the page says when it cannot be reached

class Unreachable extends Error {}

async function api(path, method = "GET", body = undefined, type = "application/json") {
  const headers = { Authorization: "Bearer " + token };
  if (body !== undefined) headers["Content-Type"] = type;
  let r;
  try { r = await fetch(path, { method, headers, body }); } catch (err) {
    throw new Unreachable(String(err.message || err));
  }
  const answer = await r.json().catch(() => ({}));
  if (r.status === 401) {
    signOut(token ? "The host refused the token: it expired, was revoked or is wrong. Sign in again." : "");
    throw new Error("unauthorized");
  }
  if (!r.ok) throw new Error(answer.error || `${r.status} ${r.statusText}`);
  banner(null);
  return answer;
}

let lastGood = null;
function banner(message) {
  $("banner").classList.toggle("hidden", !message);
  $("banner").textContent = message || "";
  $("main").classList.toggle("stale", !!message && !!lastGood);
  if (!message) lastGood = Date.now();
}
function unreachable(err) {
  banner(`Cannot reach hookhost at ${location.origin} (${err.message}).`
    + (lastGood ? ` What you see is from ${when(lastGood)}.` : "") + " Retrying every 2 s…");
}

function signOut(message) {
  token = ""; sessionStorage.removeItem("hookhost-token");
  clearInterval(timer); timer = null;
  $("app").classList.add("hidden"); $("login").classList.remove("hidden");
  $("login-error").textContent = message || "";
  banner(message || null);
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  try {
    await api("/admin/whoami");
    sessionStorage.setItem("hookhost-token", token);
    $("token").value = "";
    await start();
  } catch (err) {
    if (err instanceof Unreachable) $("login-error").textContent = `Cannot reach hookhost at ${location.origin}.`;
    else if (err.message !== "unauthorized") $("login-error").textContent = err.message;
    else $("login-error").textContent = "The token was refused.";
  }
});
$("logout").addEventListener("click", () => signOut());

async function start() {
  $("login").classList.add("hidden"); $("app").classList.remove("hidden");
  me = await api("/admin/whoami");
  $("whoami").textContent = me.role === "operator" ? "operator"
    : `merchant · ${me.tenant} · ${(me.token.scopes || []).join(", ")} · token ${me.token.name}`;
  document.querySelectorAll(".needs-deploy").forEach((el) => el.classList.toggle("hidden", !can("deploy")));
  $("replay-all").classList.toggle("hidden", !can("replay"));
  tenants = (await api("/admin/tenants")).tenants;
  $("tenant").innerHTML = tenants.map((t) => `<option>${esc(t.name)}</option>`).join("");
  await navigate();
  clearInterval(timer);
  timer = setInterval(() => refresh(false), REFRESH_MS);
}

// ---------------------------------------------------------------------------------------------
// Routes: #/ · #/search?q= · #/plugins · #/t/{tenant}/{events|dead|versions|shadow|kv}[/{seq}][?filters]

function parseRoute() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  if (parts[0] === "t" && parts[1]) {
    return { view: parts[2] || "events", tenant: parts[1], seq: parts[3] ? Number(parts[3]) : null, params };
  }
  if (parts[0] === "search") return { view: "search", params };
  if (parts[0] === "plugins") return { view: "plugins", params };
  return { view: "overview", params };
}
function tenantUrl(tenant, view, seq, params) {
  const q = params && [...params].length ? "?" + params.toString() : "";
  return `#/t/${enc(tenant)}/${view}${seq != null ? "/" + seq : ""}${q}`;
}
function go(url) { if (location.hash !== url) location.hash = url; }

window.addEventListener("hashchange", () => { if (token) navigate(); });

const VIEWS = ["overview", "search", "events", "dead", "versions", "shadow", "kv", "plugins"];
let pageStack = [];

async function navigate() {
  const previous = route;
  route = parseRoute();
  if (route.tenant && !tenants.some((t) => t.name === route.tenant)) {
    showOnly("overview");
    $("overview").innerHTML = `<tr><td colspan="8" class="empty">No tenant named “${esc(route.tenant)}” (or not one this token may see). <a href="#/">All tenants</a></td></tr>`;
    return;
  }
  const tenant = route.tenant || (previous.tenant ?? tenants[0]?.name);
  if (tenant) $("tenant").value = tenant;
  document.querySelectorAll("#tabs a[data-tab]").forEach((a) => {
    const tab = a.dataset.tab;
    if (!["overview", "plugins"].includes(tab)) a.href = tenant ? tenantUrl(tenant, tab) : "#/";
    a.classList.toggle("active", tab === route.view);
  });
  const listChanged = previous.view !== route.view || previous.tenant !== route.tenant
    || stripSeq(previous.params) !== stripSeq(route.params);
  if (listChanged) {
    resetList();
    if (previous.tenant !== route.tenant || previous.view !== route.view) pageStack = [];
  }
  showOnly(route.view);
  if (route.view !== "search" && document.activeElement !== $("search")) $("search").value = "";
  if (route.view === "events") fillFilters();
  if (route.seq == null) closeDetail(); else if (detailSeq !== route.seq) openDetail(route.seq);
  await refresh(true);
}
function stripSeq(params) { const p = new URLSearchParams(params); p.delete("before"); return p.toString() + "|" + (params.get("before") || ""); }

function showOnly(view) {
  for (const v of VIEWS) $("view-" + v).classList.toggle("hidden", v !== view);
}

$("tenant").addEventListener("change", () => {
  const view = ["events", "dead", "versions", "shadow", "kv"].includes(route.view) ? route.view : "events";
  go(tenantUrl($("tenant").value, view));
});

// ---------------------------------------------------------------------------------------------
// Refresh: what the current view shows, every 2 s (charts every 15 s)

let refreshing = false;
let chartsAt = 0;
let overviewAt = 0;
const OVERVIEW_REFRESH_MS = 10000;
async function refresh(full) {
  if (!token || refreshing) return;
  refreshing = true;
  try {
    const r = route;
    // The overview reads every tenant's last hour: every 10 s is enough for a glance.
    if (r.view === "overview" && (full || Date.now() - overviewAt > OVERVIEW_REFRESH_MS)) {
      overviewAt = Date.now();
      await showOverview();
    }
    if (r.view === "search") await showSearch();
    if (r.view === "plugins") await showPlugins();
    if (r.tenant) {
      if (r.view === "events") {
        await Promise.all([showCounters(r.tenant), showEvents(r.tenant)]);
        if (full || Date.now() - chartsAt > CHART_REFRESH_MS) { chartsAt = Date.now(); await showCharts(r.tenant); }
      }
      if (r.view === "dead") await showDead(r.tenant);
      if (r.view === "versions") await showVersions(r.tenant);
      if (r.view === "shadow") await showShadow(r.tenant);
      if (r.view === "kv" && (full || kvAfter === null)) await showKv(r.tenant, false);
    }
    if (detailSeq != null) await updateDetail();
    await watchReplays();
    $("updated").textContent = "updated " + new Date().toLocaleTimeString(undefined, { hour12: false });
  } catch (err) {
    if (err instanceof Unreachable) unreachable(err);
    else if (err.message !== "unauthorized") $("updated").textContent = "error: " + err.message;
  } finally { refreshing = false; }
}

// ---------------------------------------------------------------------------------------------
// Lists updated row by row: a row is replaced only when what it shows changed, new rows are
// inserted, gone ones removed; nothing else is touched.

function syncRows(tbody, rows, empty) {
  const existing = new Map([...tbody.querySelectorAll("tr[data-key]")].map((tr) => [tr.dataset.key, tr]));
  tbody.querySelectorAll("tr:not([data-key])").forEach((tr) => tr.remove());
  const wanted = [];
  for (const { key, html: fullHtml, href } of rows) {
    // A relative time ("9 s ago") changes every refresh: it is not a change of the row (the
    // times are brought up to date in place below).
    const html = fullHtml.replace(/(<time[^>]*>)[^<]*(<\/time>)/g, "$1$2");
    let tr = existing.get(key);
    if (!tr || tr.dataset.html !== html) {
      const fresh = document.createElement("tr");
      fresh.dataset.key = key; fresh.dataset.html = html; fresh.innerHTML = fullHtml;
      if (href) { fresh.dataset.href = href; fresh.tabIndex = 0; fresh.className = "row"; }
      if (tr) { const focused = tr.contains(document.activeElement); tr.replaceWith(fresh); if (focused) fresh.focus(); }
      tr = fresh;
    }
    wanted.push(tr);
    existing.delete(key);
  }
  existing.forEach((tr) => tr.remove());
  let at = tbody.firstElementChild;
  for (const tr of wanted) {
    if (tr === at) at = at.nextElementSibling; else tbody.insertBefore(tr, at);
  }
  tbody.querySelectorAll("time[data-ms]").forEach((t) => {
    const text = relative(Number(t.dataset.ms));
    if (t.textContent !== text) t.textContent = text;
  });
  const emptyRow = `<tr><td colspan="12" class="empty">${empty}</td></tr>`;
  if (!rows.length && tbody.dataset.empty !== emptyRow) tbody.innerHTML = emptyRow;
  tbody.dataset.empty = rows.length ? "" : emptyRow;
  markSelected();
}
function markSelected() {
  document.querySelectorAll("tr.row").forEach((tr) => {
    const on = detailSeq != null && tr.dataset.key === String(detailSeq);
    tr.classList.toggle("selected", on);
    tr.setAttribute("aria-selected", on ? "true" : "false");
  });
}
function resetList() {
  for (const id of ["events", "dead", "search-results"]) $(id).innerHTML = "";
}

document.addEventListener("click", (e) => {
  const tr = e.target.closest("tr.row[data-href]");
  if (!tr || e.target.closest("a, button, input, select")) return;
  if (window.getSelection().toString()) return; // selecting text in a row is not opening it
  go(tr.dataset.href);
});

// ---------------------------------------------------------------------------------------------
// Overview: every tenant at a glance

async function showOverview() {
  const o = await api("/admin/overview");
  syncRows($("overview"), o.tenants.map((t) => {
    const c = t.counts || {};
    const p = t.plugin || {};
    const url = tenantUrl(t.name, "events");
    const plugin = p.last_error ? `<span class="error" title="${esc(p.last_error)}">error: ${esc(short(p.last_error, 120))}</span>`
      : p.version ? `<code>${esc(p.version.slice(0, 12))}</code>` : `<span class="muted">none: events wait</span>`;
    const stateLink = (state, n) => `<a href="${tenantUrl(t.name, "events", null, new URLSearchParams({ state }))}">${n}</a>`;
    const html = `<td><a href="${url}"><b>${esc(t.name)}</b></a></td><td>${plugin}</td>
      <td class="num">${t.received_per_minute.toFixed(1)}</td><td class="num wide">${t.last_hour.received}</td>
      <td class="num ${t.last_hour.failed ? "error" : ""}">${t.last_hour.failed}</td>
      <td class="num">${stateLink("pending", c.pending ?? 0)}</td>
      <td class="num"><a class="${c.dead ? "error" : ""}" href="${tenantUrl(t.name, "dead")}">${c.dead ?? 0}</a></td>
      <td class="wide">${t.oldest_unfinished_age_s == null ? "–" : age(t.oldest_unfinished_age_s)}</td>`;
    return { key: t.name, html, href: url };
  }), "No tenants: add one to the config (<code>[tenants.NAME]</code>).");
}

// ---------------------------------------------------------------------------------------------
// Search across tenants

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("search").value.trim();
  if (q) go("#/search?" + new URLSearchParams({ q }).toString());
});

async function showSearch() {
  const q = route.params.get("q") || "";
  if (document.activeElement !== $("search")) $("search").value = q;
  $("search-title").textContent = `Events matching “${q}”`;
  if (!q) { syncRows($("search-results"), [], "Type an event number, event id, order id or merchant reference."); return; }
  const found = await api("/admin/search?" + new URLSearchParams({ q }).toString());
  syncRows($("search-results"), found.events.map((e) => {
    const url = tenantUrl(e.tenant, "events", e.seq);
    return { key: String(e.seq), href: url, html: `<td><a href="${url}">#${e.seq}</a></td><td>${esc(e.tenant)}</td>
      <td class="state state-${esc(e.state)}">${esc(e.state)}</td><td>${esc(e.event.order_id ?? e.event.merchant_ref ?? "–")}</td>
      <td class="wide">${esc(e.source)}</td><td>${ago(e.received_at_ms)}</td>` };
  }), `Nothing matches “${esc(q)}” in ${me.role === "operator" ? "any tenant" : "your tenant"}: search takes an event number (12 or #12), a provider event id, an order id or a merchant reference, exactly.`);
  if (found.more) $("search-title").textContent += " (the newest 50)";
}

// ---------------------------------------------------------------------------------------------
// Events of a tenant: counters, charts, filters (in the URL), cursor pages

const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };

function fillFilters() {
  const p = route.params;
  const tenant = tenants.find((t) => t.name === route.tenant);
  const sources = (tenant?.sources || []).map((s) => s.name);
  $("f-source").innerHTML = `<option value="">any</option>` + sources.map((s) => `<option>${esc(s)}</option>`).join("");
  $("f-state").value = p.get("state") || "";
  $("f-source").value = p.get("source") || "";
  const custom = p.has("since") || p.has("until");
  $("f-range").value = custom ? "custom" : (p.get("range") || "");
  $("f-custom").classList.toggle("hidden", !custom);
  $("f-since").value = p.get("since") || "";
  $("f-until").value = p.get("until") || "";
  if (document.activeElement !== $("f-order")) $("f-order").value = p.get("order") || "";
  $("f-clear").classList.toggle("hidden", !filtersOf(p).length);
  $("f-clear").href = tenantUrl(route.tenant, "events");
  const windowParams = (w) => { const q = new URLSearchParams(p); q.delete("before"); if (w === "hour") q.delete("window"); else q.set("window", w); return q; };
  $("window-hour").href = tenantUrl(route.tenant, "events", route.seq, windowParams("hour"));
  $("window-day").href = tenantUrl(route.tenant, "events", route.seq, windowParams("day"));
  $("window-hour").classList.toggle("active", p.get("window") !== "day");
  $("window-day").classList.toggle("active", p.get("window") === "day");
}
function filtersOf(p) {
  return ["state", "source", "range", "since", "until", "order"].filter((k) => p.get(k)).map((k) => `${k} ${p.get(k)}`);
}

/** The filters in the form, as the URL of the list (the open event closes: it may not match). */
function applyFilters() {
  const q = new URLSearchParams();
  if ($("f-state").value) q.set("state", $("f-state").value);
  if ($("f-source").value) q.set("source", $("f-source").value);
  const range = $("f-range").value;
  $("f-custom").classList.toggle("hidden", range !== "custom");
  if (range === "custom") {
    if ($("f-since").value) q.set("since", $("f-since").value);
    if ($("f-until").value) q.set("until", $("f-until").value);
  } else if (range) q.set("range", range);
  if ($("f-order").value.trim()) q.set("order", $("f-order").value.trim());
  if (route.params.get("window")) q.set("window", route.params.get("window"));
  go(tenantUrl(route.tenant, "events", null, q));
}
for (const id of ["f-state", "f-source", "f-range", "f-since", "f-until"]) $(id).addEventListener("change", applyFilters);
let orderTyping = null;
$("f-order").addEventListener("input", () => { clearTimeout(orderTyping); orderTyping = setTimeout(applyFilters, 300); });
$("filters").addEventListener("submit", (e) => { e.preventDefault(); applyFilters(); });

function eventQuery(p) {
  const q = new URLSearchParams({ limit: "50" });
  for (const k of ["state", "source", "order"]) if (p.get(k)) q.set(k, p.get(k));
  if (p.get("range") && RANGES[p.get("range")]) q.set("since_ms", String(Date.now() - RANGES[p.get("range")]));
  if (p.get("since")) q.set("since_ms", String(new Date(p.get("since")).getTime()));
  if (p.get("until")) q.set("until_ms", String(new Date(p.get("until")).getTime()));
  if (p.get("before")) q.set("before", p.get("before"));
  return q;
}

async function showCounters(tenant) {
  const { counts } = await api(`/admin/tenants/${enc(tenant)}/counts`);
  const current = route.params.get("state") || "";
  const html = ["pending", "running", "done", "skipped", "dead"].map((k) => {
    const url = tenantUrl(tenant, "events", null, new URLSearchParams(k === current ? {} : { state: k }));
    return `<a class="counter${k === current ? " active" : ""}" data-state="${k}" href="${url}" title="${k === current ? "show every state" : "show only " + k}"><b>${counts[k] ?? 0}</b><span>${k}</span></a>`;
  }).join("");
  if ($("counters").dataset.html !== html) { $("counters").innerHTML = html; $("counters").dataset.html = html; }
}

let nextBefore = null;
async function showEvents(tenant) {
  const p = route.params;
  const page = await api(`/admin/tenants/${enc(tenant)}/events?${eventQuery(p).toString()}`);
  if (route.tenant !== tenant || route.params !== p) return;
  nextBefore = page.next_before;
  const filters = filtersOf(p);
  const empty = filters.length
    ? `No events match ${esc(filters.join(" · "))}. <a href="${tenantUrl(tenant, "events")}">Clear the filters</a>`
    : p.get("before") ? `No older events. <a href="${tenantUrl(tenant, "events")}">Newest</a>`
    : `No events yet for ${esc(tenant)}. Send one with <code>hookhost send</code> or from your provider's dashboard; it appears here within 2 s.`;
  syncRows($("events"), page.events.map((e) => {
    const url = tenantUrl(tenant, "events", e.seq, withoutBefore(p, true));
    const html = `<td><a href="${url}">#${e.seq}</a></td><td class="state state-${esc(e.state)}">${esc(e.state)}</td>
      <td class="num wide">${e.attempts}</td><td class="wide">${esc(e.source)}</td><td>${esc(e.event.order_id ?? e.event.merchant_ref ?? "–")}</td>
      <td class="wide">${esc(e.event.raw_status ?? e.event.status)}</td><td>${ago(e.received_at_ms)}</td>
      <td class="error cut wide" title="${esc(e.last_error ?? "")}">${esc(short(e.last_error, 80))}</td>`;
    return { key: String(e.seq), html, href: url };
  }), empty);
  $("page-newest").classList.toggle("hidden", !p.get("before"));
  $("page-newest").href = tenantUrl(tenant, "events", null, withoutBefore(p));
  $("page-newer").classList.toggle("hidden", !p.get("before"));
  $("page-older").disabled = nextBefore == null;
  $("page-note").textContent = p.get("before") ? `events before #${p.get("before")} (this page does not update with new events)` : "newest first · updates every 2 s";
}
function withoutBefore(p, keep) { const q = new URLSearchParams(p); if (!keep) q.delete("before"); return q; }
$("page-older").addEventListener("click", () => {
  if (nextBefore == null) return;
  pageStack.push(route.params.get("before"));
  const q = new URLSearchParams(route.params); q.set("before", String(nextBefore));
  go(tenantUrl(route.tenant, "events", null, q));
});
$("page-newer").addEventListener("click", () => {
  const before = pageStack.pop();
  const q = new URLSearchParams(route.params);
  if (before) q.set("before", before); else q.delete("before");
  go(tenantUrl(route.tenant, "events", null, q));
});

// Charts (uPlot): events per minute by outcome, attempt duration p50/p95, backlog age.
const charts = {};
function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
async function showCharts(tenant) {
  const w = route.params.get("window") === "day" ? "day" : "hour";
  const a = await api(`/admin/tenants/${enc(tenant)}/activity?window=${w}`);
  const perMinute = 60000 / a.bucket_ms;
  const rate = (series) => series.map((v) => v * perMinute);
  $("charts-note").textContent = (w === "day" ? "per 15 min, as a rate per minute" : "per minute")
    + ` · ${a.totals.received} received, ${a.totals.done} done, ${a.totals.failed} failed attempts`
    + (a.truncated ? " · the oldest part is missing (more events than a chart reads)" : "");
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line") }, ticks: { stroke: cssVar("--line") } };
  const line = (label, color, extra = {}) => ({ label, stroke: cssVar(color), width: 1.5, points: { show: false }, ...extra });
  // Durations exist only for buckets with attempts: a point for each, so a lone minute is seen.
  const dots = { points: { show: true, size: 5 } };
  draw("rate", [a.t, rate(a.received), rate(a.done), rate(a.skipped), rate(a.retried), rate(a.failed)],
    [line("received", "--accent"), line("done", "--done"), line("skipped", "--skipped"), line("retried", "--retry"), line("failed", "--dead")], axis);
  draw("duration", [a.t, a.p50_ms, a.p95_ms], [line("p50 ms", "--accent", dots), line("p95 ms", "--pending", dots)], axis);
  draw("backlog", [a.t, a.backlog_age_s], [line("oldest waiting (s)", "--pending", { fill: "rgba(154,103,0,0.12)" })], axis);
}
function draw(name, data, series, axis) {
  const el = $("chart-" + name);
  const width = Math.max(200, el.clientWidth);
  const dark = matchMedia("(prefers-color-scheme: dark)").matches;
  const key = series.map((s) => s.label).join() + dark;
  if (charts[name] && charts[name].key === key) {
    charts[name].plot.setData(data);
    if (Math.abs(charts[name].plot.width - width) > 2) charts[name].plot.setSize({ width, height: 150 });
    return;
  }
  charts[name]?.plot.destroy();
  el.innerHTML = "";
  const time = { label: "time", value: (u, v) => (v == null ? "–" : when(v * 1000)) };
  const xAxis = { ...axis, values: (u, splits) => splits.map((v) => clock.format(new Date(v * 1000))) };
  const plot = new uPlot({
    width, height: 150, series: [time, ...series], axes: [xAxis, { ...axis, size: 44 }],
    legend: { show: true }, cursor: { drag: { x: false, y: false } }, scales: { x: { time: true } },
  }, data, el);
  charts[name] = { plot, key };
}
window.addEventListener("resize", () => { chartsAt = 0; });
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { chartsAt = 0; });

// ---------------------------------------------------------------------------------------------
// Event detail: a side panel (full screen when narrow), drawn once, then updated in place

let detailSeq = null;
let detailShown = null; // what the panel shows: { seq, attempts, state, duplicates }

function listUrl() {
  const q = new URLSearchParams(route.params);
  return tenantUrl(route.tenant, route.view === "dead" ? "dead" : "events", null, q);
}
function closeDetail() {
  detailSeq = null; detailShown = null;
  $("detail").classList.add("hidden");
  $("detail").innerHTML = "";
  markSelected();
}
async function openDetail(seq) {
  detailSeq = seq; detailShown = null;
  $("detail").classList.remove("hidden");
  $("detail").innerHTML = `<p class="muted">Loading event #${seq}…</p>`;
  markSelected();
}

async function updateDetail() {
  const seq = detailSeq;
  let e;
  try { e = await api(`/admin/events/${seq}`); } catch (err) {
    if (err instanceof Unreachable || err.message === "unauthorized") throw err;
    if (detailSeq === seq) $("detail").innerHTML = `<h2>Event #${seq}<button class="close" type="button" data-close>Close</button></h2><p class="error">${esc(err.message)}</p>`;
    return;
  }
  if (detailSeq !== seq) return;
  if (e.tenant !== route.tenant) { go(tenantUrl(e.tenant, "events", seq)); return; }
  const sig = { seq, attempts: e.attempts_detail.length, state: e.state, duplicates: e.duplicates };
  if (!detailShown || detailShown.seq !== seq) { drawDetail(e); detailShown = sig; return; }
  if (JSON.stringify(sig) === JSON.stringify(detailShown)) return;
  // What changed is added in place: the state line, and the attempts that are new.
  $("detail-state").className = `state state-${e.state}`;
  $("detail-state").textContent = e.state;
  $("detail-duplicates").textContent = e.duplicates ? ` · ${e.duplicates} duplicate deliveries` : "";
  const list = $("attempts");
  if (!detailShown.attempts && e.attempts_detail.length) list.innerHTML = "";
  for (let i = detailShown.attempts; i < e.attempts_detail.length; i++) {
    list.insertAdjacentHTML("beforeend", attemptHtml(e.attempts_detail[i], e.attempts_detail[i - 1]));
  }
  replayButton(e);
  detailShown = sig;
}

function drawDetail(e) {
  let headers = e.headers || [];
  const headerRows = headers.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("");
  const attempts = e.attempts_detail.map((a, i) => attemptHtml(a, e.attempts_detail[i - 1])).join("")
    || `<p class="muted">No attempt yet${e.state === "pending" ? ": it waits for its plugin (or its order's earlier events)" : ""}.</p>`;
  $("detail").innerHTML = `
    <h2>Event <a href="${tenantUrl(e.tenant, "events", e.seq)}" id="detail-link">#${e.seq}</a>
      <span id="detail-state" class="state state-${esc(e.state)}">${esc(e.state)}</span>
      <span id="replay-slot"></span>
      <button class="copy" type="button" data-copy-text="${esc(location.origin + location.pathname + tenantUrl(e.tenant, "events", e.seq))}">Copy link</button>
      <button class="close" type="button" data-close title="Close (Esc)">Close</button></h2>
    <div class="muted">tenant ${esc(e.tenant)} · source ${esc(e.source)} · event id <code>${esc(e.event.id)}</code>
      · received ${esc(when(e.received_at_ms))}<span id="detail-duplicates">${e.duplicates ? ` · ${e.duplicates} duplicate deliveries` : ""}</span></div>
    <p id="replay-outcome" class="result hidden" role="status"></p>
    <h3>Payload <button class="copy" type="button" data-copy="raw">Copy</button></h3><pre id="raw">${esc(pretty(e.body))}</pre>
    <h3>Headers kept <button class="copy" type="button" data-copy="headers-text">Copy</button></h3>
    ${headerRows ? `<table class="headers"><tbody>${headerRows}</tbody></table>` : `<p class="muted">None kept.</p>`}
    <pre id="headers-text" class="hidden">${esc(headers.map(([k, v]) => `${k}: ${v}`).join("\n"))}</pre>
    <h3>Normalized event <button class="copy" type="button" data-copy="normalized">Copy</button></h3><pre id="normalized">${esc(JSON.stringify(e.event, null, 2))}</pre>
    <h3>Attempts</h3><div id="attempts">${attempts}</div>`;
  replayButton(e);
  showReplayOutcome(e);
  markSelected();
}

function outcomeText(a) {
  return a.outcome === "error" ? `error: ${a.message}` : a.outcome === "skipped" ? `skipped: ${a.reason}`
    : a.outcome === "retry-after" ? `retry after ${a.seconds} s` : a.outcome;
}
function effectsLines(a) {
  const fx = a.effects || {};
  return [...(fx.kv || []).map((k) => `kv ${k.value_sha256 ? "set" : "delete"} ${k.key}`),
    ...(fx.requests || []).map((r) => `http ${r.method} ${r.host}${r.path}`)];
}
function attemptHtml(a, before) {
  const result = a.outcome === "error" ? `<span class="full-error">${esc(outcomeText(a))}</span>` : esc(outcomeText(a));
  const logs = a.logs.map((l) => `[${l.level}] ${l.message}`);
  const fx = effectsLines(a);
  return `<div class="attempt" data-attempt="${a.attempt}"><b>Attempt ${a.attempt}</b> · version <code>${esc(a.plugin_version.slice(0, 12))}</code> ·
      <span title="${esc(when(a.started_at_ms))}">${esc(when(a.started_at_ms))}</span> · ${ms(a.duration_us)} · ${result}
      ${before ? diffHtml(before, a) : ""}
      <pre class="logs">${esc(logs.join("\n")) || "(no log lines)"}${a.logs_dropped ? `\n(${a.logs_dropped} lines dropped)` : ""}</pre>
      ${fx.length ? `<div class="muted">effects: ${esc(fx.join(" · "))}</div>` : ""}</div>`;
}
/** What changed from the attempt before: version, outcome, duration, and the log lines and
 * effects that differ (− only before, + only now). */
function diffHtml(b, a) {
  const changes = [];
  if (b.plugin_version !== a.plugin_version) changes.push(`version <code>${esc(b.plugin_version.slice(0, 12))}</code> → <code>${esc(a.plugin_version.slice(0, 12))}</code>`);
  if (outcomeText(b) !== outcomeText(a)) changes.push(`outcome “${esc(short(outcomeText(b), 80))}” → “${esc(short(outcomeText(a), 80))}”`);
  changes.push(`duration ${ms(b.duration_us)} → ${ms(a.duration_us)}`);
  const lines = (x) => [...x.logs.map((l) => `[${l.level}] ${l.message}`), ...effectsLines(x)];
  const before = lines(b), now = lines(a);
  const gone = before.filter((l) => !now.includes(l)), added = now.filter((l) => !before.includes(l));
  const body = [...gone.map((l) => `<del>− ${esc(l)}</del>`), ...added.map((l) => `<ins>+ ${esc(l)}</ins>`)].join("");
  return `<div class="diff"><span class="muted">since attempt ${b.attempt}:</span> ${changes.join(" · ")}
    ${body || `<span class="muted"> · same log lines and effects</span>`}</div>`;
}

// Replays: the button, then the outcome once the new attempt has finished.
const replays = new Map(); // seq -> { from: attempts before the replay, at }
function replayButton(e) {
  const finished = ["done", "skipped", "dead"].includes(e.state);
  const waiting = replays.has(e.seq);
  $("replay-slot").innerHTML = finished && can("replay") && !waiting
    ? `<button id="replay-one" type="button" title="Run it again with the version serving now">Replay</button>` : "";
}
document.addEventListener("click", async (ev) => {
  const t = ev.target;
  if (t.id === "replay-one") {
    const seq = detailSeq;
    t.disabled = true;
    try {
      const e = await api(`/admin/events/${seq}`);
      await api(`/admin/events/${seq}/replay`, "POST");
      replays.set(seq, { from: e.attempts_detail.length });
      showReplayOutcome(null);
      refresh(false);
    } catch (err) { outcome(`Not replayed: ${err.message}`, "error"); t.disabled = false; }
  }
  if (t.dataset.close !== undefined && t.closest("#detail")) go(listUrl());
  if (t.classList.contains("copy")) {
    const text = t.dataset.copyText ?? $(t.dataset.copy)?.textContent ?? "";
    try { await navigator.clipboard.writeText(text); t.textContent = "Copied"; }
    catch { t.textContent = "Copy failed: select the text"; }
    setTimeout(() => { t.textContent = t.dataset.copyText ? "Copy link" : "Copy"; }, 1500);
  }
});
function outcome(text, cls) {
  const el = $("replay-outcome");
  if (!el) return;
  el.className = "result " + (cls || "");
  el.textContent = text;
}
function showReplayOutcome(e) {
  const watch = replays.get(detailSeq);
  if (!watch || !$("replay-outcome")) return;
  if (!e) { outcome(`Replaying #${detailSeq} with the version serving now…`, "muted"); return; }
  const fresh = e.attempts_detail.slice(watch.from);
  const last = fresh[fresh.length - 1];
  if (["done", "skipped", "dead"].includes(e.state) && last) {
    const verdict = e.state === "dead" ? `failed again and is dead: ${outcomeText(last)}` : `${e.state} (${outcomeText(last)})`;
    outcome(`Replay finished: ${verdict} · attempt ${last.attempt} · ${ms(last.duration_us)} · version ${last.plugin_version.slice(0, 12)}`, e.state === "dead" ? "error" : "");
    replays.delete(detailSeq);
    replayButton(e);
  } else if (last) {
    outcome(`Replaying: attempt ${last.attempt} ended “${short(outcomeText(last), 120)}”; it will be tried again…`, "muted");
  } else outcome(`Replaying #${detailSeq}: waiting for its attempt…`, "muted");
}

// ---------------------------------------------------------------------------------------------
// Dead letters: open like events, full errors, replay after a confirmation, with a summary

let deadBefore = null;
async function showDead(tenant) {
  const page = await api(`/admin/tenants/${enc(tenant)}/dead-letters?limit=100`);
  deadBefore = page.next_before;
  $("dead-more").classList.toggle("hidden", deadBefore == null);
  syncRows($("dead"), page.events.map((e) => {
    const url = tenantUrl(tenant, "dead", e.seq);
    return { key: String(e.seq), href: url, html: `<td><a href="${url}">#${e.seq}</a></td><td class="num wide">${e.attempts}</td>
      <td>${esc(e.event.order_id ?? e.event.merchant_ref ?? "–")}</td><td>${ago(e.finished_at_ms)}</td>
      <td class="full-error">${esc(e.last_error)}</td>
      <td>${can("replay") ? `<button class="replay" type="button" data-seq="${e.seq}">Replay…</button>` : ""}</td>` };
  }), "No dead letters: every event either succeeded, was skipped or is still being tried.");
  $("replay-all").disabled = !page.events.length;
  $("replay-all").dataset.count = page.next_before == null ? String(page.events.length) : `${page.events.length}+`;
}
$("dead-more").addEventListener("click", () => go(tenantUrl(route.tenant, "events", null, new URLSearchParams({ state: "dead", before: String(deadBefore) }))));

function confirmReplay(text) {
  return new Promise((resolve) => {
    $("confirm-text").textContent = text;
    const d = $("confirm");
    d.returnValue = "";
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
    $("confirm-ok").focus();
  });
}
const version = () => tenants.find((t) => t.name === route.tenant)?.plugin?.version?.slice(0, 12) || "the serving version";
document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button.replay");
  if (!b) return;
  const seq = Number(b.dataset.seq);
  if (!(await confirmReplay(`Replay dead letter #${seq} of ${route.tenant} with ${version()}? It gets a fresh retry budget.`))) return;
  await replayBatch(() => api(`/admin/events/${seq}/replay`, "POST"));
});
$("replay-all").addEventListener("click", async () => {
  const n = $("replay-all").dataset.count;
  if (!(await confirmReplay(`Replay every dead letter of ${route.tenant} (${n}) with ${version()}? Each gets a fresh retry budget.`))) return;
  await replayBatch(() => api(`/admin/tenants/${enc(route.tenant)}/dead-letters/replay`, "POST"));
});

let batch = null; // the last replay from the dead letters view: { seqs, tenant }
async function replayBatch(call) {
  const el = $("replay-result");
  el.classList.remove("hidden"); el.className = "result"; el.textContent = "Replaying…";
  try {
    const r = await call();
    batch = { seqs: r.replayed, tenant: route.tenant, states: {} };
    el.textContent = r.replayed.length ? `Replayed ${r.replayed.length}: waiting for their attempts…` : "Nothing to replay.";
    refresh(false);
  } catch (err) { el.className = "result error"; el.textContent = "Not replayed: " + err.message; }
}
async function watchReplays() {
  if (detailSeq != null && replays.has(detailSeq) && $("replay-outcome")) {
    showReplayOutcome(await api(`/admin/events/${detailSeq}`));
  }
  if (!batch || batch.done || route.view !== "dead") return;
  const states = { done: 0, skipped: 0, dead: 0, waiting: 0 };
  for (const seq of batch.seqs.slice(0, 100)) {
    const e = await api(`/admin/events/${seq}`);
    if (e.state in states) states[e.state] += 1; else states.waiting += 1;
  }
  const finished = states.waiting === 0;
  batch.done = finished;
  $("replay-result").className = "result" + (states.dead ? " error" : "");
  $("replay-result").textContent = `Replayed ${batch.seqs.length} (#${batch.seqs.slice(0, 10).join(", #")}${batch.seqs.length > 10 ? ", …" : ""}): `
    + `${states.done} done, ${states.skipped} skipped, ${states.dead} dead again`
    + (finished ? "." : `, ${states.waiting} still running or waiting…`);
}

// ---------------------------------------------------------------------------------------------
// Plugins, versions, shadows, kv

async function showPlugins() {
  const list = (await api("/admin/tenants")).tenants;
  tenants = list;
  $("plugins").innerHTML = list.map((t) => {
    const p = t.plugin || {};
    const history = (p.history || []).slice(-5).map((h) =>
      `${esc(when(h.at_ms))} ${esc(h.result)}${h.version ? " " + esc(h.version.slice(0, 12)) : ""}${h.error ? ": " + esc(short(h.error, 80)) : ""}`).join("<br>");
    return `<tr><td><a href="${tenantUrl(t.name, "events")}">${esc(t.name)}</a></td><td><code>${esc(p.version ?? "(none: events wait)")}</code></td>
      <td>${ago(p.loaded_at_ms)}</td><td class="wide">${t.sources.map((s) => esc(s.name + " (" + s.provider + ")")).join(", ")}</td>
      <td class="full-error">${esc(p.last_error ?? "")}</td><td class="muted wide">${history}</td></tr>`;
  }).join("") || `<tr><td colspan="6" class="empty">No tenants.</td></tr>`;
}

function tenantPath(rest) { return `/admin/tenants/${enc(route.tenant)}${rest}`; }

async function showVersions(tenant) {
  const h = await api(`/admin/tenants/${enc(tenant)}/plugin/versions?limit=100`);
  $("versions").innerHTML = h.deploys.map((d) => {
    const what = d.kind === "refused" ? `<span class="full-error">refused: ${esc(d.message)}</span>`
      : d.kind === "rollback" ? `rollback to v${d.reactivates}` : d.kind === "promote" ? `promoted v${d.reactivates}` : esc(d.kind);
    const active = d.number === h.active;
    const back = can("deploy") && !active && d.kind !== "refused"
      ? `<button class="rollback" data-to="${d.number}" type="button">Make active</button>
         <button class="shadow-it" data-number="${d.number}" type="button">Shadow</button>` : "";
    return `<tr class="version" data-number="${d.number}"><td><b>v${d.number}</b>${active ? ' <span class="state state-done">active</span>' : ""}</td>
      <td>${what}</td><td class="wide"><code>${esc(d.digest.slice(0, 16))}</code></td><td class="wide">${(d.size / 1024).toFixed(0)} KiB</td><td>${ago(d.at_ms)}</td><td class="wide">${esc(d.by)}</td><td>${back}</td></tr>`;
  }).join("") || `<tr><td colspan="7" class="empty">No deploys: the tenant serves its plugin file, if any.</td></tr>`;
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
  tenants = (await api("/admin/tenants").catch(() => ({ tenants }))).tenants;
  refresh(true);
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
  const s = await api(`/admin/tenants/${enc(tenant)}/plugin/shadow`);
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
  $("shadow-runs").innerHTML = s.differing.map((r) => `<tr class="shadow-run" data-seq="${r.seq}"><td><a href="${tenantUrl(tenant, "events", r.seq)}">#${r.seq}</a></td><td>${r.attempt}</td>
    <td class="${r.verdict === "differs" ? "error" : "muted"}">${esc(r.verdict)}</td><td class="num">${(r.serving_us / 1000).toFixed(2)}</td><td class="num">${(r.shadow_us / 1000).toFixed(2)}</td>
    <td>${differences(r.comparison)}</td></tr>`).join("") || `<tr><td colspan="6" class="empty">No differences so far.</td></tr>`;
}
$("shadow-promote").addEventListener("click", () =>
  act(() => api(tenantPath("/plugin/shadow/promote"), "POST"),
    (r) => `promoted: v${r.deploy.reactivates} is active as v${r.deploy.number}`, "shadow-result"));
$("shadow-discard").addEventListener("click", () =>
  act(() => api(tenantPath("/plugin/shadow"), "DELETE"), () => "the shadow was discarded", "shadow-result"));

let kvAfter = null;
async function showKv(tenant, more) {
  const prefix = $("kv-prefix").value;
  const after = more && kvAfter ? "&after=" + enc(kvAfter) : "";
  const page = await api(`/admin/tenants/${enc(tenant)}/kv?limit=100&prefix=${enc(prefix)}${after}`);
  const rows = page.entries.map((e) => `<tr class="kv-entry"><td><code>${esc(e.key)}</code></td>
    <td><code>${esc(short(e.value ?? ("base64:" + e.value_base64), 200))}</code></td><td>${ago(e.updated_at_ms)}</td></tr>`).join("");
  $("kv").innerHTML = (more ? $("kv").innerHTML : "") + rows || `<tr><td colspan="3" class="empty">No keys${prefix ? " with this prefix" : ""}.</td></tr>`;
  kvAfter = page.next_after || "";
  $("kv-more").disabled = !page.next_after;
}
$("kv-prefix").addEventListener("input", () => showKv(route.tenant, false));
$("kv-more").addEventListener("click", () => showKv(route.tenant, true));

// ---------------------------------------------------------------------------------------------
// Keyboard: / search · j/k or arrows move between rows · Enter opens · Esc closes

document.addEventListener("keydown", (e) => {
  if ($("app").classList.contains("hidden") || $("confirm").open) return;
  const typing = e.target.closest("input, select, textarea");
  if (e.key === "Escape") {
    if (typing) { e.target.blur(); return; }
    if (detailSeq != null) { e.preventDefault(); const seq = detailSeq; go(listUrl()); focusRow(seq); }
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "/") { e.preventDefault(); $("search").focus(); $("search").select(); return; }
  const down = e.key === "j" || e.key === "ArrowDown", up = e.key === "k" || e.key === "ArrowUp";
  if (down || up) {
    const section = document.querySelector("main section:not(.hidden)");
    const rows = [...(section?.querySelectorAll("tr.row") || [])];
    if (!rows.length) return;
    e.preventDefault();
    const at = rows.indexOf(document.activeElement.closest?.("tr.row"));
    const next = at < 0 ? (down ? 0 : rows.length - 1) : Math.max(0, Math.min(rows.length - 1, at + (down ? 1 : -1)));
    rows[next].focus();
    return;
  }
  if (e.key === "Enter") {
    const tr = document.activeElement.closest?.("tr.row[data-href]");
    if (tr) { e.preventDefault(); go(tr.dataset.href); }
  }
});
function focusRow(seq) {
  setTimeout(() => document.querySelector(`main section:not(.hidden) tr.row[data-key="${seq}"]`)?.focus(), 0);
}

/** Starts with the token kept for this tab; while the host cannot be reached, tries again. */
function resume() {
  start().catch((err) => {
    if (err instanceof Unreachable) { unreachable(err); setTimeout(resume, REFRESH_MS); } else if (err.message !== "unauthorized") signOut(err.message);
  });
}
if (token) resume();

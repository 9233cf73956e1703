// Drives the hookhost console in a real browser (Debian's headless Chromium through
// playwright-core) the way an operator would: the all-tenants overview, search across tenants,
// a tenant's charts and filters (kept in the URL), an event opened by its URL, a replay and its
// outcome, dead letters replayed after a confirmation, the keyboard, the banners for an
// unreachable host and a revoked token, dark mode, a 420 px screen. Saves a screenshot of each
// step. Any unmet expectation exits 1.
//
// node drive.mjs BASE_URL ADMIN_TOKEN WEBHOOK_PATH WEBHOOK_AUTH SCREENSHOT_PREFIX DEAD_SEQ DONE_SEQ
// The host serves tenants rogue (an event done, DONE_SEQ, and a dead one, DEAD_SEQ, order o-bad),
// quiet (one event done) and broken (its plugin file is not WebAssembly).
import { chromium } from "playwright-core";

const [base, token, webhookPath, webhookAuth, shots, deadArg, doneArg] = process.argv.slice(2);
const deadSeq = Number(deadArg), doneSeq = Number(doneArg);
const timeout = 20_000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: "UTC", locale: "en-GB" });
await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
const page = await context.newPage();
page.setDefaultTimeout(timeout);
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
const fail = async (message) => {
  console.error("console test failed: " + message);
  await page.screenshot({ path: `${shots}-failed.png`, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
};
const expect = async (condition, message) => { if (!condition) await fail(message); };
const waitText = (selector, part) =>
  page.waitForFunction(([s, p]) => (document.querySelector(s)?.textContent || "").includes(p), [selector, part]);
const hash = () => page.evaluate(() => decodeURIComponent(location.hash));
const api = (path, method = "GET", body) => fetch(base + path, {
  method, body, headers: { authorization: "Bearer " + token, "content-type": "application/json" },
}).then((r) => r.json());
const send = async (order, misbehave) => {
  const r = await fetch(base + webhookPath, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: webhookAuth },
    body: JSON.stringify({ orderId: order, status: "pending", statusUpdatedDate: Date.now(), misbehave }),
  });
  if (!r.ok) await fail(`the webhook for ${order} was refused: ${r.status}`);
  return (await r.json()).event;
};
/** Waits for `n` of the console's refreshes (its "updated HH:MM:SS" line changes each time). */
const refreshes = async (n) => {
  for (let i = 0; i < n; i++) {
    const before = await page.textContent("#updated");
    await page.waitForFunction((b) => document.querySelector("#updated").textContent !== b, before);
  }
};
const noSideways = async (what) => {
  const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  await expect(scroll <= width, `${what}: the page is ${scroll} px wide on a ${width} px screen`);
};

try {
  await page.goto(base + "/console");

  // A wrong token is refused, and says so.
  await page.fill("#token", "not-the-token");
  await page.click("#login-form button");
  await waitText("#login-error", "refused");

  // Signed in, the landing page is the overview of every tenant.
  await page.fill("#token", token);
  await page.click("#login-form button");
  await page.waitForSelector("#app:not(.hidden)");
  await page.waitForSelector('#overview tr[data-key="broken"]');
  const names = await page.$$eval("#overview tr[data-key]", (rows) => rows.map((r) => r.dataset.key));
  await expect(JSON.stringify(names) === '["broken","quiet","rogue"]', "overview tenants: " + names);
  const broken = await page.textContent('#overview tr[data-key="broken"]');
  await expect(broken.includes("error: plugin"), "broken plugin: " + broken);
  const brokenTitle = await page.getAttribute('#overview tr[data-key="broken"] .error', "title");
  await expect(brokenTitle.includes("the file is not WebAssembly: it starts with 7b 22"), "broken plugin's error: " + brokenTitle);
  await expect(!brokenTitle.includes("[") && !brokenTitle.includes("\n"), "a load error with byte arrays: " + brokenTitle);
  await page.waitForFunction(() => document.querySelector('#overview tr[data-key="rogue"] td:nth-child(7)')?.textContent.trim() === "1");
  await page.screenshot({ path: `${shots}-overview.png`, fullPage: true });

  // "/" searches every tenant; an order id finds its event, which opens by its URL.
  await page.keyboard.press("/");
  await expect(await page.evaluate(() => document.activeElement.id) === "search", "/ does not focus the search");
  await page.keyboard.type("o-quiet");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#search-results tr.row");
  await expect((await hash()) === "#/search?q=o-quiet", "search URL: " + await hash());
  const found = await page.textContent("#search-results");
  await expect(found.includes("quiet") && !found.includes("rogue"), "search results: " + found);
  await page.click("#search-results tr.row");
  await page.waitForSelector("#detail:not(.hidden) #raw");
  await expect((await hash()).startsWith("#/t/quiet/events/"), "search result URL: " + await hash());
  await page.fill("#search", "no-such-order");
  await page.press("#search", "Enter");
  await waitText("#search-results", "Nothing matches “no-such-order”");

  // A tenant: counters, charts drawn from the activity endpoint, live rows.
  await page.click('nav a[data-tab="overview"]');
  await page.click('#overview tr[data-key="rogue"] a');
  await page.waitForSelector(`#events tr[data-key="${doneSeq}"]`);
  await page.waitForSelector("#chart-rate canvas");
  await page.waitForSelector("#chart-duration canvas");
  await page.waitForSelector("#chart-backlog canvas");
  await waitText("#chart-rate", "received");
  await waitText("#charts-note", "2 received");
  const liveSeq = await send("live-1", "none");
  await page.waitForSelector(`#events tr[data-key="${liveSeq}"] .state-done`);
  await page.click("#window-day");
  await page.waitForFunction(() => location.hash.includes("window=day"));
  await waitText("#charts-note", "per 15 min");
  await page.screenshot({ path: `${shots}-events.png`, fullPage: true });

  // Counters filter (and say so in the URL); a filter that matches nothing says that, not
  // "no events yet"; an open event closes when the filters change.
  await page.click('.counter[data-state="dead"]');
  await page.waitForFunction(() => location.hash.includes("state=dead"));
  await page.waitForFunction((seq) => {
    const rows = [...document.querySelectorAll("#events tr[data-key]")];
    return rows.length === 1 && rows[0].dataset.key === String(seq);
  }, deadSeq);
  await page.selectOption("#f-source", "fc");
  await page.waitForFunction(() => location.hash.includes("source=fc") && location.hash.includes("state=dead"));
  await page.click(`#events tr[data-key="${deadSeq}"]`);
  await page.waitForSelector("#detail:not(.hidden) #raw");
  await expect((await hash()).includes(`/events/${deadSeq}?`), "event URL keeps the filters: " + await hash());
  await page.fill("#f-order", "zzz-nothing");
  await waitText("#events", "No events match");
  await expect(await page.isHidden("#detail"), "the detail of a filtered-out event stays open");
  await expect((await page.textContent("#events")).includes("order zzz-nothing"), "the empty state names the filter");
  await page.click("#f-clear");
  await page.waitForFunction(() => !location.hash.includes("state="));
  await page.waitForSelector(`#events tr[data-key="${doneSeq}"]`);

  // An event by its URL (a shared link): pretty payload, kept headers, copy, times with a zone.
  await page.goto(`${base}/console#/t/rogue/events/${liveSeq}`);
  await page.waitForSelector("#detail:not(.hidden) #raw");
  await page.waitForSelector(`#events tr.selected[data-key="${liveSeq}"]`);
  const raw = await page.textContent("#raw");
  await expect(raw.includes('"orderId": "live-1"') && raw.includes("\n"), "payload not pretty-printed: " + raw);
  const headers = await page.textContent("#detail table.headers");
  await expect(headers.toLowerCase().includes("content-type"), "headers: " + headers);
  const detailText = (await page.textContent("#detail")).replace(/\s+/g, " ");
  await expect(/received \d\d\/\d\d\/\d{4}, \d\d:\d\d:\d\d UTC/.test(detailText), "received time without its zone: " + detailText);
  await expect(/Attempt 1 · version [0-9a-f]+ · .* · \d+\.\d+ ms · done/.test(detailText), "attempt line: " + detailText);
  await page.click('#detail button.copy[data-copy="raw"]');
  await waitText('#detail button.copy[data-copy="raw"]', "Copied");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  await expect(copied === raw, "the clipboard holds: " + copied);

  // A selection in the payload survives the 2 s refreshes (nothing is redrawn in place of it).
  await page.evaluate((seq) => {
    document.querySelector(`#events tr[data-key="${seq}"]`).kept = true;
    const pre = document.getElementById("raw");
    pre.dataset.marker = "kept";
    const range = document.createRange();
    range.selectNodeContents(pre);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }, doneSeq);
  await refreshes(2);
  const kept = await page.evaluate((seq) => [getSelection().toString().length, document.getElementById("raw").dataset.marker,
    document.querySelector(`#events tr[data-key="${seq}"]`).kept], doneSeq);
  await expect(kept[0] > 10 && kept[1] === "kept", "the selection was lost across refreshes: " + kept);
  await expect(kept[2] === true, "an unchanged row was redrawn by a refresh (its relative time should update in place)");
  await page.evaluate(() => getSelection().removeAllRanges());

  // Replay from the event's panel: the outcome is shown when the new attempt has finished.
  await page.goto(`${base}/console#/t/rogue/events/${deadSeq}`);
  await page.waitForSelector("#detail #replay-one");
  await page.click("#detail #replay-one");
  await waitText("#replay-outcome", "Replay finished: failed again and is dead");
  await page.waitForSelector('#attempts .attempt[data-attempt="2"] .diff');
  await waitText('#attempts .attempt[data-attempt="2"] .diff', "since attempt 1");
  await page.screenshot({ path: `${shots}-detail.png`, fullPage: true });

  // Keyboard: Esc closes, j/k move between rows, Enter opens.
  await page.keyboard.press("Escape");
  await page.waitForSelector("#detail", { state: "hidden" });
  await page.evaluate(() => document.activeElement.blur());
  await page.keyboard.press("j");
  const first = await page.evaluate(() => document.activeElement.dataset.key);
  await page.keyboard.press("j");
  const second = await page.evaluate(() => document.activeElement.dataset.key);
  await page.keyboard.press("k");
  const back = await page.evaluate(() => document.activeElement.dataset.key);
  await expect(first && second && first !== second && back === first, `j/k focus: ${first} ${second} ${back}`);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#detail:not(.hidden) #raw");
  await expect((await hash()).includes(`/events/${first}`), "Enter opened: " + await hash());
  await page.keyboard.press("Escape");
  await page.waitForSelector("#detail", { state: "hidden" });

  // Dead letters: full error, opened like an event; replay all asks first, then sums up.
  await page.click('nav a[data-tab="dead"]');
  await page.waitForSelector(`#dead tr[data-key="${deadSeq}"]`);
  const error = await page.textContent(`#dead tr[data-key="${deadSeq}"] .full-error`);
  const stored = (await api(`/admin/events/${deadSeq}`)).last_error;
  await expect(error === stored, `the dead letter's error is cut: ${error} vs ${stored}`);
  await page.click("#replay-all");
  await page.waitForSelector("#confirm[open]");
  await waitText("#confirm-text", "Replay every dead letter of rogue (1)");
  await page.click('#confirm button[value="cancel"]');
  await page.waitForSelector("#confirm", { state: "hidden" });
  await refreshes(1);
  await expect((await api(`/admin/events/${deadSeq}`)).attempts === 2, "a cancelled replay replayed");
  await page.click("#replay-all");
  await page.waitForSelector("#confirm[open]");
  await page.click("#confirm-ok");
  await waitText("#replay-result", `Replayed 1 (#${deadSeq}): 0 done, 0 skipped, 1 dead again.`);
  await page.click(`#dead tr[data-key="${deadSeq}"]`);
  await page.waitForSelector("#detail:not(.hidden) #raw");
  await expect((await hash()) === `#/t/rogue/dead/${deadSeq}`, "dead letter URL: " + await hash());
  await page.screenshot({ path: `${shots}-dead.png`, fullPage: true });

  // Plugins: versions, and the broken tenant's error on one readable line.
  await page.click('nav a[data-tab="plugins"]');
  await page.waitForFunction(() => /[0-9a-f]{16}/.test(document.querySelector("#plugins")?.textContent || ""));
  await waitText("#plugins", "not WebAssembly");

  // The host cannot be reached: a banner says so (and since when), and goes when it is back.
  await page.click('nav a[data-tab="events"]');
  await page.waitForSelector(`#events tr[data-key="${doneSeq}"]`);
  await page.route("**/admin/**", (r) => r.abort());
  await waitText("#banner", "Cannot reach hookhost");
  await expect(await page.isVisible("#banner"), "no banner while unreachable");
  await page.unroute("**/admin/**");
  await page.waitForSelector("#banner", { state: "hidden" });

  // Dark mode from the system preference.
  await page.emulateMedia({ colorScheme: "dark" });
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await expect(background === "rgb(17, 21, 26)", "dark mode background: " + background);
  await page.goto(`${base}/console#/t/rogue/events/${liveSeq}`);
  await page.waitForSelector("#detail:not(.hidden) #raw");
  await page.waitForSelector("#chart-rate canvas");
  await page.screenshot({ path: `${shots}-dark.png`, fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });

  // 420 px: nothing runs off the side; the event opens over the list.
  await page.setViewportSize({ width: 420, height: 860 });
  await page.goto(`${base}/console#/`);
  await page.waitForSelector('#overview tr[data-key="rogue"]');
  await noSideways("the overview");
  await page.goto(`${base}/console#/t/rogue/events`);
  await page.waitForSelector(`#events tr[data-key="${liveSeq}"]`);
  await page.waitForSelector("#chart-rate canvas");
  await noSideways("the events");
  await page.click(`#events tr[data-key="${liveSeq}"]`);
  await page.waitForSelector("#detail:not(.hidden) #raw");
  await noSideways("an event");
  await page.screenshot({ path: `${shots}-narrow.png` });
  await page.setViewportSize({ width: 1280, height: 900 });

  // A token revoked while it is in use: the console says so and asks to sign in again.
  const minted = await api("/admin/tenants/quiet/tokens", "POST", JSON.stringify({ name: "console test", scopes: ["read"] }));
  const merchant = await context.newPage();
  merchant.on("pageerror", (e) => errors.push(String(e)));
  await merchant.goto(base + "/console");
  await merchant.fill("#token", minted.token);
  await merchant.click("#login-form button");
  await merchant.waitForSelector('#overview tr[data-key="quiet"]');
  const merchantNames = await merchant.$$eval("#overview tr[data-key]", (rows) => rows.map((r) => r.dataset.key));
  await expect(JSON.stringify(merchantNames) === '["quiet"]', "a merchant sees: " + merchantNames);
  await fetch(`${base}/admin/tokens/${minted.id}`, { method: "DELETE", headers: { authorization: "Bearer " + token } });
  await merchant.waitForSelector("#login:not(.hidden)");
  const why = await merchant.textContent("#banner");
  await expect(why.includes("expired, was revoked"), "after revoking: " + why);

  if (errors.length) await fail("script errors: " + errors.join("; "));
  console.log(JSON.stringify({ live_event: liveSeq, replayed: deadSeq }));
} catch (e) {
  await fail(String(e.stack || e));
}
await browser.close();

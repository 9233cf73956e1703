// Drives the hookhost console in a real browser (Debian's headless Chromium through
// playwright-core) the way an operator would: sign in, watch webhooks appear live, open one,
// replay a dead letter, look at the plugins; saves a screenshot. Any unmet expectation exits 1.
//
// node drive.mjs BASE_URL ADMIN_TOKEN WEBHOOK_PATH WEBHOOK_AUTH SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [base, token, webhookPath, webhookAuth, screenshot] = process.argv.slice(2);
const timeout = 20_000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const fail = async (page, message) => {
  console.error("console test failed: " + message);
  if (page) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
};
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.setDefaultTimeout(timeout);
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
try {
  await page.goto(base + "/console");

  // A wrong token is refused, and says so.
  await page.fill("#token", "not-the-token");
  await page.click("#login-form button");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("refused"));

  await page.fill("#token", token);
  await page.click("#login-form button");
  await page.waitForSelector("#app:not(.hidden)");
  await page.waitForFunction(() => document.querySelectorAll("tr.event").length >= 2);

  // A webhook sent now appears without reloading the page.
  const sent = await fetch(base + webhookPath, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: webhookAuth },
    body: JSON.stringify({ orderId: "live-1", status: "pending", statusUpdatedDate: 2, misbehave: "none" }),
  });
  if (!sent.ok) await fail(page, "the live webhook was refused: " + sent.status);
  const newSeq = (await sent.json()).event;
  await page.waitForSelector(`tr.event[data-seq="${newSeq}"]`);
  await page.waitForSelector(`tr.event[data-seq="${newSeq}"] .state-done`);

  // The order filter narrows the list.
  await page.fill("#order", "o-bad");
  await page.waitForFunction(() => document.querySelectorAll("tr.event").length === 1);
  await page.fill("#order", "");
  await page.waitForFunction(() => document.querySelectorAll("tr.event").length >= 3);

  // The counters count by state.
  await page.waitForFunction(() => Number(document.querySelector('.counter[data-state="dead"] b')?.textContent) >= 1);

  // Open the live event: raw payload, normalized form, its attempt with the plugin's version.
  await page.click(`tr.event[data-seq="${newSeq}"]`);
  await page.waitForSelector("#detail:not(.hidden) .attempt");
  const raw = await page.textContent("#raw");
  const normalized = await page.textContent("#normalized");
  const attempt = await page.textContent("#detail .attempt");
  if (!raw.includes('"orderId":"live-1"')) await fail(page, "raw payload missing: " + raw);
  if (!normalized.includes('"order_id": "live-1"')) await fail(page, "normalized event missing: " + normalized);
  if (!/Attempt 1 · version \S+/.test(attempt.replace(/\s+/g, " "))) await fail(page, "attempt missing: " + attempt);
  await page.screenshot({ path: screenshot, fullPage: true });

  // Dead letters: replay one with its button.
  await page.click('nav button[data-view="dead"]');
  await page.waitForSelector("#view-dead:not(.hidden) button.replay");
  const deadSeq = Number(await page.getAttribute("#view-dead button.replay", "data-seq"));
  await page.click("#view-dead button.replay");
  await page.waitForFunction((seq) => document.querySelector("#replay-result").textContent === `replayed event ${seq}`, deadSeq);

  // Plugins: the serving version.
  await page.click('nav button[data-view="plugins"]');
  await page.waitForFunction(() => /[0-9a-f]{16}/.test(document.querySelector("#plugins")?.textContent || ""));

  if (consoleErrors.length) await fail(page, "script errors: " + consoleErrors.join("; "));
  console.log(JSON.stringify({ live_event: newSeq, replayed: deadSeq }));
} catch (e) {
  await fail(page, String(e));
}
await browser.close();

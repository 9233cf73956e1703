// Drives the hookhost console as a merchant would, signed in with a merchant token: only its
// tenant is visible (another tenant's events answer 404 even when asked for directly), a plugin
// is deployed by upload, an earlier version made active again, a version staged and set to
// shadow the active one, and the shadow's differences appear once webhooks arrive. Saves a
// screenshot of each step. Any unmet expectation exits 1.
//
// node merchant.mjs BASE_URL MERCHANT_TOKEN OTHER_TENANT WEBHOOK_PATH WEBHOOK_AUTH COMPONENT_A COMPONENT_B SCREENSHOT_PREFIX
import { chromium } from "playwright-core";

const [base, token, otherTenant, webhookPath, webhookAuth, componentA, componentB, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.setDefaultTimeout(20_000);
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
const fail = async (message) => {
  console.error("merchant console test failed: " + message);
  await page.screenshot({ path: `${shots}-failed.png`, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
};
const text = (selector) => page.textContent(selector);
const waitText = (selector, part) =>
  page.waitForFunction(([s, p]) => (document.querySelector(s)?.textContent || "").includes(p), [selector, part]);
try {
  await page.goto(base + "/console");
  await page.fill("#token", token);
  await page.click("#login-form button");
  await page.waitForSelector("#app:not(.hidden)");
  await waitText("#whoami", "merchant · rogue");

  // Only its own tenant, in the picker and in the API.
  const tenants = await page.$$eval("#tenant option", (o) => o.map((x) => x.textContent));
  if (JSON.stringify(tenants) !== '["rogue"]') await fail("tenants shown: " + JSON.stringify(tenants));
  const foreign = await page.evaluate(async ([t, other]) => {
    const r = await fetch(`/admin/tenants/${other}/events`, { headers: { Authorization: "Bearer " + t } });
    return [r.status, await r.text()];
  }, [token, otherTenant]);
  if (foreign[0] !== 404 || !foreign[1].includes(`no tenant named \\"${otherTenant}\\"`)) await fail("another tenant answered: " + foreign);
  const foreignEvent = await page.evaluate(async ([t]) => (await fetch("/admin/events/1", { headers: { Authorization: "Bearer " + t } })).status, [token]);
  if (foreignEvent !== 404) await fail("another tenant's event 1 answered " + foreignEvent);

  // Deploy by upload, twice; then make the first active again.
  await page.click('nav a[data-tab="versions"]');
  await page.setInputFiles("#deploy-file", componentA);
  await page.click("#deploy-form button[type=submit]");
  await waitText("#deploy-result", "deployed v1");
  await page.setInputFiles("#deploy-file", componentB);
  await page.click("#deploy-form button[type=submit]");
  await waitText("#deploy-result", "deployed v2");
  await page.waitForSelector('tr.version[data-number="2"] .state-done');
  await page.click('tr.version[data-number="1"] button.rollback');
  await waitText("#deploy-result", "v1 is active again (as v3)");
  await page.waitForSelector('tr.version[data-number="3"] .state-done');
  await page.screenshot({ path: `${shots}-versions.png`, fullPage: true });

  // Stage the other version and let it shadow the active one on every attempt.
  await page.check("#deploy-stage");
  await page.setInputFiles("#deploy-file", componentB);
  await page.click("#deploy-form button[type=submit]");
  await waitText("#deploy-result", "staged v4");
  await page.waitForSelector('tr.version[data-number="4"] button.shadow-it');
  await page.click('tr.version[data-number="4"] button.shadow-it');
  await waitText("#deploy-result", "v4 shadows the active version on 100%");

  for (let i = 0; i < 3; i++) {
    const r = await fetch(base + webhookPath, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: webhookAuth },
      body: JSON.stringify({ orderId: `shadowed-${i}`, status: "pending", statusUpdatedDate: 3 + i, misbehave: "none" }),
    });
    if (!r.ok) await fail("a webhook was refused: " + r.status);
  }
  await page.click('nav a[data-tab="shadow"]');
  await page.waitForFunction(() => document.querySelectorAll("tr.shadow-run").length >= 3);
  const diff = await text("tr.shadow-run");
  if (!diff.includes("differs") || !diff.includes("kv")) await fail("the shadow's difference: " + diff);
  await waitText("#shadow-summary", "3 different");
  await page.screenshot({ path: `${shots}-shadow.png`, fullPage: true });

  // The kv browser shows the tenant's keys.
  await page.click('nav a[data-tab="kv"]');
  await page.waitForSelector("tr.kv-entry");

  if (errors.length) await fail("script errors: " + errors.join("; "));
  console.log(JSON.stringify({ shadowed: 3 }));
} catch (e) {
  await fail(String(e));
}
await browser.close();

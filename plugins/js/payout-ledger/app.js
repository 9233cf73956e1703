// payout-ledger in JavaScript: one ledger entry per payout (Juspay payouts, FinchPay transactions)
// with its amount and full status history; alerts the merchant (POST to `alert-url`) once per
// payout and status when a payout needs a human. Same contract, same behaviour as
// plugins/payout-ledger (Rust).
import { plugin, kv, http, config, log, done, skipped } from "../../../guest-sdk/js/hookhost.js";

/** Raw statuses that need a human: money moved differently from what the merchant was told. */
const ALERT_ON = new Set(["REVERSED", "CONFLICTED", "ERROR", "FAILURE", "FULFILLMENTS_FAILURE"]);

export const handler = plugin((event) => {
  const payout = event.orderKey ?? event.id;
  const key = `ledger/${payout}`;
  const entry = kv.getJson(key) ?? { amount: null, currency: null, status: "", history: [] };
  if (entry.history.some((step) => step.event_id === event.id)) {
    return skipped(`event ${event.id} already in the ledger`);
  }
  const raw = event.rawStatus ?? "";
  if (event.amount) {
    entry.amount = event.amount.amount;
    entry.currency = event.amount.currency ?? entry.currency;
  }
  entry.status = event.status;
  entry.history.push({ raw_status: raw, status: event.status, event_id: event.id, at_ms: event.at });
  kv.setJson(key, entry);
  if (ALERT_ON.has(raw.toUpperCase()) && kv.setIfAbsent(`alerted/${payout}/${raw}`)) {
    const alert = { payout, status: raw, amount: entry.amount, currency: entry.currency, eventId: event.id };
    http.postJson(config.require("alert-url"), alert).errorForStatus();
    log.warn(`payout ${payout} is ${raw}: merchant alerted`);
  }
  return done();
});

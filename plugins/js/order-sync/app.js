// order-sync in JavaScript: keeps each order's latest status in kv and tells the merchant's
// backend, once per order, when the order is delivered (canonical status `succeeded`). Same
// contract, same behaviour as plugins/order-sync (Rust).
import { plugin, kv, http, config, log, done, skipped } from "../../../guest-sdk/js/hookhost.js";

export const handler = plugin((event) => {
  const order = event.orderKey;
  if (order === undefined) throw new Error("event carries no order id");
  // Providers may deliver an older status after a newer one: keep the newest.
  const stored = kv.getJson(`order/${order}`);
  if (stored !== undefined && stored.occurred_at_ms > event.at) {
    return skipped(`older than stored status of ${order}`);
  }
  kv.setJson(`order/${order}`, {
    status: event.status,
    raw_status: event.rawStatus ?? null,
    sub_status: event.rawSubStatus ?? null,
    reason: event.reason ?? null,
    occurred_at_ms: event.at,
    event_id: event.id,
  });
  if (event.status === "succeeded" && kv.setIfAbsent(`notified/${order}`)) {
    const body = { order, status: event.status, subStatus: event.rawSubStatus ?? null, eventId: event.id };
    http.postJson(config.require("backend-url"), body).errorForStatus();
    log.info(`told the backend that order ${order} succeeded`);
  }
  return done();
});

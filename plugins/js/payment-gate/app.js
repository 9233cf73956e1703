// payment-gate in JavaScript: an order is released (marked delivered in kv, and at the merchant's
// backend once when `backend-url` is configured) only when its payment is PAID. Same contract,
// same behaviour as plugins/payment-gate (Rust).
import { plugin, kv, http, config, log, done, skipped } from "../../../guest-sdk/js/hookhost.js";

export const handler = plugin((event) => {
  if (event.kind !== "payment") return skipped(`not a payment event (${event.kind})`);
  const order = event.orderKey;
  if (order === undefined) throw new Error("payment event carries no order id");
  const payment = event.rawStatus ?? "";
  kv.setJson(`payment/${order}`, { status: payment, eventId: event.id, amount: event.amount?.amount ?? null });
  if (event.status !== "succeeded") {
    log.info(`order ${order}: payment is ${payment}, order stays held`);
    return done();
  }
  if (kv.setIfAbsent(`order/${order}`, '{"state":"delivered"}')) {
    const url = config.get("backend-url");
    if (url !== undefined) {
      http.postJson(url, { order, state: "delivered", eventId: event.id }).errorForStatus();
    }
    log.info(`order ${order} paid: marked delivered`);
  }
  return done();
});

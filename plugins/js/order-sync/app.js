// order-sync in JavaScript: keeps each order's latest status in kv and tells the merchant's
// backend, once per order, when the order is delivered (canonical status `succeeded`). Same
// contract, same behaviour as plugins/order-sync (Rust).
import * as kv from "hookhost:plugin/kv@0.1.0";
import * as http from "hookhost:plugin/http@0.1.0";
import * as config from "hookhost:plugin/config@0.1.0";
import { write as log } from "hookhost:plugin/log@0.1.0";

const text = new TextEncoder();
const untext = new TextDecoder();

export const handler = {
  handle(event) {
    const order = event.merchantRef ?? event.orderId;
    if (order === undefined) throw "event carries no order id";
    const key = `order/${order}`;
    const occurred = event.occurredAtMs ?? event.receivedAtMs;
    // Providers may deliver an older status after a newer one: keep the newest.
    const stored = kv.get(key);
    if (stored !== undefined && JSON.parse(untext.decode(stored)).occurred_at_ms > occurred) {
      return { tag: "skipped", val: `older than stored status of ${order}` };
    }
    const state = {
      status: event.status,
      raw_status: event.rawStatus ?? null,
      sub_status: event.rawSubStatus ?? null,
      reason: event.reason ?? null,
      occurred_at_ms: Number(occurred),
      event_id: event.id,
    };
    kv.set(key, text.encode(JSON.stringify(state)));
    if (event.status === "succeeded" && kv.setIfAbsent(`notified/${order}`, text.encode("1"))) {
      const url = config.get(`backend-url`);
      if (url === undefined) throw "config value backend-url is missing";
      const body = { order, status: event.status, subStatus: event.rawSubStatus ?? null, eventId: event.id };
      const response = http.send({
        method: "post",
        url,
        headers: [["content-type", "application/json"]],
        body: text.encode(JSON.stringify(body)),
      });
      if (response.status >= 300) throw `backend answered ${response.status}`;
      log("info", `told the backend that order ${order} succeeded`);
    }
    return { tag: "done" };
  },
};

// Benchmark plugin (JavaScript): the kv-set reaction of bench/plugins/kv-set (Rust) — read the
// event, record the order's latest status with one kv set — through the guest helpers.
import { plugin, kv, done } from "../../../../guest-sdk/js/hookhost.js";

export const handler = plugin((event) => {
  kv.set(`status/${event.orderKey ?? event.id}`, event.rawStatus ?? "");
  return done();
});

// Test plugin: misbehaves as the payload's `misbehave` field says, so the tests can show that a
// JavaScript plugin is contained like a Rust one. "none" records `ok` and succeeds; "count" records
// how many events this instance has handled.
import * as kv from "hookhost:plugin/kv@0.1.0";

// Events this instance has handled: 1 on every event with a fresh instance per event; counts up
// when the tenant reuses instances (`limits.instance_reuse`). Mode "count" records it.
let handled = 0;

export const handler = {
  handle(event) {
    handled += 1;
    const mode = JSON.parse(event.payload).misbehave ?? "none";
    if (mode === "count") {
      kv.set(`count/${event.id}`, new TextEncoder().encode(String(handled)));
      return { tag: "done" };
    }
    kv.set(`touched/${event.id}`, new TextEncoder().encode("1"));
    if (mode === "throw") throw "misbehave: deliberate exception";
    if (mode === "loop") { for (;;) {} }
    if (mode === "alloc") {
      const hoard = [];
      for (;;) hoard.push(new Array(1 << 20).fill(1));
    }
    kv.set("ok", new TextEncoder().encode("1"));
    return { tag: "done" };
  },
};

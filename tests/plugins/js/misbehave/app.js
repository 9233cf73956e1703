// Test plugin: misbehaves as the payload's `misbehave` field says, so the tests can show that a
// JavaScript plugin is contained like a Rust one. "none" records `ok` and succeeds.
import * as kv from "hookhost:plugin/kv@0.1.0";

export const handler = {
  handle(event) {
    const mode = JSON.parse(event.payload).misbehave ?? "none";
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

"""Test plugin: misbehaves as the payload's `misbehave` field says, so the tests can show that a
Python plugin is contained like a Rust one. "none" records `ok` and succeeds; "count" records how
many events this instance has handled."""
import json

from wit_world import exports
from wit_world.imports import kv, types


# Events this instance has handled: 1 on every event with a fresh instance per event; counts up
# when the tenant reuses instances (`limits.instance_reuse`). Mode "count" records it.
handled = 0


class Handler(exports.Handler):
    def handle(self, event: types.Event) -> types.Outcome:
        global handled
        handled += 1
        mode = json.loads(event.payload).get("misbehave", "none")
        if mode == "count":
            kv.set(f"count/{event.id}", str(handled).encode())
            return types.Outcome_Done()
        kv.set(f"touched/{event.id}", b"1")
        if mode == "throw":
            raise RuntimeError("misbehave: deliberate exception")
        if mode == "loop":
            while True:
                pass
        if mode == "alloc":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        kv.set("ok", b"1")
        return types.Outcome_Done()

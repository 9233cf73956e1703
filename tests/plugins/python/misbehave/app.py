"""Test plugin: misbehaves as the payload's `misbehave` field says, so the tests can show that a
Python plugin is contained like a Rust one. "none" records `ok` and succeeds."""
import json

from wit_world import exports
from wit_world.imports import kv, types


class Handler(exports.Handler):
    def handle(self, event: types.Event) -> types.Outcome:
        mode = json.loads(event.payload).get("misbehave", "none")
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

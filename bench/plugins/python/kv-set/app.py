"""Benchmark plugin (Python): the kv-set reaction of bench/plugins/kv-set (Rust) — read the event,
record the order's latest status with one kv set — through the guest helpers."""
from hookhost import Event, done, kv, plugin


def handle(event: Event):
    kv.set(f"status/{event.order_key or event.id}", event.raw_status or "")
    return done()


Handler = plugin(handle)

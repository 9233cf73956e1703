"""order-sync in Python: keeps each order's latest status in kv and tells the merchant's backend,
once per order, when the order is delivered (canonical status `succeeded`). Same contract, same
behaviour as plugins/order-sync (Rust)."""
from hookhost import Event, config, done, http, kv, log, plugin, skipped


def handle(event: Event):
    order = event.order_key
    if order is None:
        raise ValueError("event carries no order id")
    # Providers may deliver an older status after a newer one: keep the newest.
    stored = kv.get_json(f"order/{order}")
    if stored is not None and stored["occurred_at_ms"] > event.at:
        return skipped(f"older than stored status of {order}")
    kv.set_json(f"order/{order}", {
        "status": event.status,
        "raw_status": event.raw_status,
        "sub_status": event.raw_sub_status,
        "reason": event.reason,
        "occurred_at_ms": event.at,
        "event_id": event.id,
    })
    if event.status == "succeeded" and kv.set_if_absent(f"notified/{order}"):
        body = {"order": order, "status": event.status, "subStatus": event.raw_sub_status, "eventId": event.id}
        http.post_json(config.require("backend-url"), body).error_for_status()
        log.info(f"told the backend that order {order} succeeded")
    return done()


Handler = plugin(handle)

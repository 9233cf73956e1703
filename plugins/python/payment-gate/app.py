"""payment-gate in Python: an order is released (marked delivered in kv, and at the merchant's
backend once when `backend-url` is configured) only when its payment is PAID. Same contract, same
behaviour as plugins/payment-gate (Rust)."""
from hookhost import Event, config, done, http, kv, log, plugin, skipped


def handle(event: Event):
    if event.kind != "payment":
        return skipped(f"not a payment event ({event.kind})")
    order = event.order_key
    if order is None:
        raise ValueError("payment event carries no order id")
    payment = event.raw_status or ""
    kv.set_json(f"payment/{order}", {"status": payment, "eventId": event.id, "amount": event.amount})
    if event.status != "succeeded":
        log.info(f"order {order}: payment is {payment}, order stays held")
        return done()
    if kv.set_if_absent(f"order/{order}", '{"state":"delivered"}'):
        url = config.get("backend-url")
        if url is not None:
            http.post_json(url, {"order": order, "state": "delivered", "eventId": event.id}).error_for_status()
        log.info(f"order {order} paid: marked delivered")
    return done()


Handler = plugin(handle)

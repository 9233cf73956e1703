"""payout-ledger in Python: one ledger entry per payout (Juspay payouts, FinchPay transactions)
with its amount and full status history; alerts the merchant (POST to `alert-url`) once per payout
and status when a payout needs a human. Same contract, same behaviour as plugins/payout-ledger
(Rust)."""
from hookhost import Event, config, done, http, kv, log, plugin, skipped

# Raw statuses that need a human: money moved differently from what the merchant was told.
ALERT_ON = {"REVERSED", "CONFLICTED", "ERROR", "FAILURE", "FULFILLMENTS_FAILURE"}


def handle(event: Event):
    payout = event.order_key or event.id
    key = f"ledger/{payout}"
    entry = kv.get_json(key) or {"amount": None, "currency": None, "status": "", "history": []}
    if any(step["event_id"] == event.id for step in entry["history"]):
        return skipped(f"event {event.id} already in the ledger")
    raw = event.raw_status or ""
    if event.amount is not None:
        entry["amount"] = event.amount
        entry["currency"] = event.currency or entry["currency"]
    entry["status"] = event.status
    entry["history"].append({"raw_status": raw, "status": event.status, "event_id": event.id, "at_ms": event.at})
    kv.set_json(key, entry)
    if raw.upper() in ALERT_ON and kv.set_if_absent(f"alerted/{payout}/{raw}"):
        alert = {"payout": payout, "status": raw, "amount": entry["amount"], "currency": entry["currency"],
                 "eventId": event.id}
        http.post_json(config.require("alert-url"), alert).error_for_status()
        log.warn(f"payout {payout} is {raw}: merchant alerted")
    return done()


Handler = plugin(handle)

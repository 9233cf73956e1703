"""order-sync in Python: keeps each order's latest status in kv and tells the merchant's backend,
once per order, when the order is delivered (canonical status `succeeded`). Same contract, same
behaviour as plugins/order-sync (Rust)."""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, http, kv, log, types


def status_name(status: types.CanonicalStatus) -> str:
    return status.name.lower().replace("_", "-")


class Handler(exports.Handler):
    def handle(self, event: types.Event) -> types.Outcome:
        order = event.merchant_ref if event.merchant_ref is not None else event.order_id
        if order is None:
            raise Err("event carries no order id")
        key = f"order/{order}"
        occurred = event.occurred_at_ms if event.occurred_at_ms is not None else event.received_at_ms
        # Providers may deliver an older status after a newer one: keep the newest.
        stored = kv.get(key)
        if stored is not None and json.loads(stored)["occurred_at_ms"] > occurred:
            return types.Outcome_Skipped(f"older than stored status of {order}")
        status = status_name(event.status)
        state = {
            "status": status,
            "raw_status": event.raw_status,
            "sub_status": event.raw_sub_status,
            "reason": event.reason,
            "occurred_at_ms": occurred,
            "event_id": event.id,
        }
        kv.set(key, json.dumps(state).encode())
        if event.status == types.CanonicalStatus.SUCCEEDED and kv.set_if_absent(f"notified/{order}", b"1"):
            url = config.get("backend-url")
            if url is None:
                raise Err("config value backend-url is missing")
            body = {"order": order, "status": status, "subStatus": event.raw_sub_status, "eventId": event.id}
            response = http.send(
                http.Request(
                    method=http.Method.POST,
                    url=url,
                    headers=[("content-type", "application/json")],
                    body=json.dumps(body).encode(),
                    timeout_ms=None,
                )
            )
            if response.status >= 300:
                raise Err(f"backend answered {response.status}")
            log.write(log.Level.INFO, f"told the backend that order {order} succeeded")
        return types.Outcome_Done()

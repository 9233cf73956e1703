//! order-sync: keeps each order's latest status in kv and tells the merchant's backend, once per
//! order, when the order is delivered (canonical status `succeeded`).
use hookhost_guest::prelude::*;

struct OrderSync;

impl Plugin for OrderSync {
    fn handle(event: Event) -> Result<Outcome> {
        let order = event
            .order_key()
            .context("event carries no order id")?
            .to_string();
        let key = format!("order/{order}");
        // Providers may deliver an older status after a newer one: keep the newest.
        if let Some(stored) = kv::get_json::<OrderState>(&key)? {
            if stored.occurred_at_ms > event.occurred_at_ms.unwrap_or(event.received_at_ms) {
                return Ok(Outcome::Skipped(format!(
                    "older than stored status of {order}"
                )));
            }
        }
        kv::set_json(&key, &OrderState::of(&event))?;
        if event.status == CanonicalStatus::Succeeded
            && kv::set_if_absent(&format!("notified/{order}"), b"1")?
        {
            let url = config::require("backend-url")?;
            http::post_json(
                &url,
                &json!({ "order": order, "status": event.status.to_string(),
                "subStatus": event.raw_sub_status, "eventId": event.id }),
            )?
            .error_for_status()?;
            info!("told the backend that order {order} succeeded");
        }
        Ok(Outcome::Done)
    }
}

/// What order-sync keeps per order under `order/<key>`.
#[derive(Serialize, Deserialize)]
struct OrderState {
    status: String,
    raw_status: Option<String>,
    sub_status: Option<String>,
    reason: Option<String>,
    occurred_at_ms: u64,
    event_id: String,
}

impl OrderState {
    fn of(e: &Event) -> OrderState {
        OrderState {
            status: e.status.to_string(),
            raw_status: e.raw_status.clone(),
            sub_status: e.raw_sub_status.clone(),
            reason: e.reason.clone(),
            occurred_at_ms: e.occurred_at_ms.unwrap_or(e.received_at_ms),
            event_id: e.id.clone(),
        }
    }
}

export_plugin!(OrderSync);

//! payment-gate: when an order's payment is PAID, marks the order delivered (in kv, and at the
//! merchant's backend once when `backend-url` is configured). Any other payment status is recorded
//! and does not release the order.
use hookhost_guest::prelude::*;

struct PaymentGate;

impl Plugin for PaymentGate {
    fn handle(event: Event) -> Result<Outcome> {
        if event.kind != EventKind::Payment {
            return Ok(Outcome::Skipped(format!(
                "not a payment event ({:?})",
                event.kind
            )));
        }
        let order = event
            .order_key()
            .context("payment event carries no order id")?
            .to_string();
        let payment = event.raw_status.clone().unwrap_or_default();
        kv::set_json(
            &format!("payment/{order}"),
            &json!({ "status": payment, "eventId": event.id,
            "amount": event.amount.as_ref().map(|m| &m.amount) }),
        )?;
        if event.status != CanonicalStatus::Succeeded {
            info!("order {order}: payment is {payment}, order stays held");
            return Ok(Outcome::Done);
        }
        if kv::set_if_absent(&format!("order/{order}"), br#"{"state":"delivered"}"#)? {
            if let Some(url) = config::get("backend-url") {
                http::post_json(
                    &url,
                    &json!({ "order": order, "state": "delivered", "eventId": event.id }),
                )?
                .error_for_status()?;
            }
            info!("order {order} paid: marked delivered");
        }
        Ok(Outcome::Done)
    }
}

export_plugin!(PaymentGate);

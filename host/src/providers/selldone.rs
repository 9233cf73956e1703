//! Selldone online-order webhooks (`shared/providers/selldone-online-order.md`).
//!
//! Authentication: a bearer token per source and, when a sign key is configured, the
//! `Selldone-Sign-Id` (a UTC timestamp) / `Selldone-Sign-Hash` (bcrypt of `{key}:{sign-id}`) pair.
//! The token is checked first, so unauthenticated callers never cost a bcrypt verification.
//!
//! Payload `{event, action, shop, basket, user, customer}`. The order is `basket` (its `id`,
//! `status` Open/Reserved/Payed/Canceled/COD, `delivery_state`, `price`, `currency`,
//! `updated_at`). Selldone retries until it gets a 200, so the dedupe key (basket id, action,
//! basket update time) makes its retries duplicates.

use serde_json::Value;

use super::auth::{AuthCheck, TokenLocation};
use super::{body_digest, status_key, Fields, NormalizeError, Provider, WebhookRequest};
use crate::config::Secrets;
use crate::event::{CanonicalStatus, EventKind, Money, NormalizedEvent};

/// Selldone's normalizer.
pub struct Selldone;

/// Selldone's authentication: bearer token, then (optionally) the sign hash.
/// Selldone's authentication: the bearer token first (so unauthenticated callers never cost a
/// bcrypt), then the sign hash when a sign key is configured. Sign keys too long to leave room for
/// the timestamp in bcrypt's 72 bytes, and costs outside 4-15, are refused.
pub fn checks(
    tokens: Secrets,
    sign_key: Option<Secrets>,
    tolerance_secs: u64,
    sign_cost: u32,
) -> anyhow::Result<Vec<AuthCheck>> {
    let mut checks = vec![AuthCheck::Token {
        tokens,
        location: TokenLocation::Header("authorization".into()),
    }];
    if let Some(keys) = sign_key {
        if keys
            .0
            .iter()
            .any(|k| k.expose().len() > super::auth::MAX_SELLDONE_KEY_BYTES)
        {
            anyhow::bail!(
                "a Selldone sign_key is longer than {} bytes: bcrypt reads only 72 bytes of `key:timestamp`, so the timestamp would not be signed",
                super::auth::MAX_SELLDONE_KEY_BYTES
            );
        }
        if !(4..=15).contains(&sign_cost) {
            anyhow::bail!("sign_cost must be a bcrypt cost from 4 to 15 (Selldone signs with 10)");
        }
        checks.push(AuthCheck::SelldoneSign {
            keys,
            tolerance_secs,
            cost: sign_cost,
        });
    }
    Ok(checks)
}

/// The canonical status from the trigger and the basket's status.
fn canonical(action: &str, basket_status: Option<&str>) -> CanonicalStatus {
    if basket_status.map(status_key).as_deref() == Some("CANCELED") {
        return CanonicalStatus::Cancelled;
    }
    match status_key(action).as_str() {
        "CHECKOUTORDER" => CanonicalStatus::Pending,
        "PAYMENTORDER" => CanonicalStatus::Succeeded,
        "ORDERCONFIRM" | "PREPARINGORDER" | "SENTORDER" | "CANCELPRODUCT" => {
            CanonicalStatus::Processing
        }
        "TOCUSTOMER" => CanonicalStatus::Succeeded,
        "RETURNORDER" => CanonicalStatus::Refunded,
        "DELIVERYCANCELED" | "DELIVERYCANCELLED" => CanonicalStatus::Cancelled,
        _ => match basket_status.map(status_key).as_deref() {
            Some("OPEN" | "RESERVED") => CanonicalStatus::Pending,
            Some("PAYED" | "PAID" | "COD") => CanonicalStatus::Processing,
            _ => CanonicalStatus::Unknown,
        },
    }
}

impl Provider for Selldone {
    fn name(&self) -> &'static str {
        "selldone"
    }

    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let action = f.required_text("action")?;
        let basket_id = f.required_text("basket.id")?;
        let basket_status = f.text("basket.status")?;
        let updated = f.text("basket.updated_at")?;
        let kind = match status_key(&action).as_str() {
            "PAYMENTORDER" => EventKind::Payment,
            "CHECKOUTORDER" | "ORDERCONFIRM" | "PREPARINGORDER" | "SENTORDER" | "TOCUSTOMER"
            | "RETURNORDER" | "DELIVERYCANCELED" | "CANCELPRODUCT" => EventKind::OrderStatusChanged,
            _ => EventKind::Other,
        };
        let id = format!(
            "{basket_id}|{action}|{}",
            updated.clone().unwrap_or_else(|| body_digest(request.body))
        );
        Ok(NormalizedEvent {
            id,
            provider: self.name().into(),
            kind,
            status: canonical(&action, basket_status.as_deref()),
            order_id: Some(basket_id),
            merchant_ref: f.text("basket.label")?,
            raw_status: Some(action),
            raw_sub_status: match (basket_status, f.text("basket.delivery_state")?) {
                (Some(s), Some(d)) => Some(format!("{s}/{d}")),
                (s, d) => s.or(d),
            },
            reason: f.text("basket.reject")?,
            amount: f.amount("basket.price")?.map(|amount| Money {
                amount,
                currency: f.text("basket.currency").ok().flatten(),
            }),
            occurred_at_ms: f.time_ms("basket.updated_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn normalize(body: &str) -> Result<NormalizedEvent, NormalizeError> {
        let headers = HeaderMap::new();
        let req = WebhookRequest {
            headers: &headers,
            body: body.as_bytes(),
            query: None,
            path_token: None,
            peer: None,
        };
        Selldone.normalize(&req, &serde_json::from_str(body).unwrap())
    }

    fn payload(action: &str, status: &str, delivery: &str) -> String {
        serde_json::json!({"event": "OnlineOrder", "action": action,
            "shop": {"id": 1, "name": "pajuhaan", "title": "Rocketiox", "domain": "http://localhost:9000/@pajuhaan"},
            "basket": {"id": 9019, "type": "PHYSICAL", "status": status, "delivery_state": delivery, "price": 599.95,
                "currency": "USD", "reserved_at": "2024-08-17T16:29:26.000000Z", "updated_at": "2024-08-31T16:40:08.000000Z"},
            "user": {"id": 2, "name": "A", "email": null, "phone": null}, "customer": null})
        .to_string()
    }

    #[test]
    fn triggers_map_to_kinds_and_statuses() {
        let paid = normalize(&payload("PaymentOrder", "Payed", "CheckQueue")).unwrap();
        assert_eq!(
            (paid.kind, paid.status),
            (EventKind::Payment, CanonicalStatus::Succeeded)
        );
        assert_eq!(paid.order_id.as_deref(), Some("9019"));
        assert_eq!(
            paid.amount,
            Some(Money {
                amount: "599.95".into(),
                currency: Some("USD".into())
            })
        );
        assert_eq!(paid.raw_sub_status.as_deref(), Some("Payed/CheckQueue"));
        assert_eq!(paid.id, "9019|PaymentOrder|2024-08-31T16:40:08.000000Z");
        let checkout = normalize(&payload("CheckoutOrder", "Reserved", "CheckQueue")).unwrap();
        assert_eq!(
            (checkout.kind, checkout.status),
            (EventKind::OrderStatusChanged, CanonicalStatus::Pending)
        );
        assert_eq!(
            normalize(&payload("ToCustomer", "Payed", "ToCustomer"))
                .unwrap()
                .status,
            CanonicalStatus::Succeeded
        );
        assert_eq!(
            normalize(&payload("SentOrder", "COD", "SentOrder"))
                .unwrap()
                .status,
            CanonicalStatus::Processing
        );
        assert_eq!(
            normalize(&payload("CancelProduct", "Canceled", "CheckQueue"))
                .unwrap()
                .status,
            CanonicalStatus::Cancelled
        );
        assert_eq!(
            normalize(&payload("DeliveryCanceled", "Payed", "SentOrder"))
                .unwrap()
                .status,
            CanonicalStatus::Cancelled
        );
        let future = normalize(&payload("GiftWrapped", "Payed", "PreparingOrder")).unwrap();
        assert_eq!(
            (future.kind, future.raw_status.as_deref()),
            (EventKind::Other, Some("GiftWrapped"))
        );
    }

    #[test]
    fn basket_id_is_required() {
        assert_eq!(
            normalize(
                r##"{"event":"OnlineOrder","action":"PaymentOrder","basket":"Order object"}"##
            ),
            Err(NormalizeError::MissingField("basket.id".into()))
        );
        assert_eq!(
            normalize(r##"{"event":"OnlineOrder","basket":{"id":1}}"##),
            Err(NormalizeError::MissingField("action".into()))
        );
    }
}

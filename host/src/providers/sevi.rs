//! Sevi order payment webhooks (`shared/providers/order-payment.md`).
//!
//! Authentication: the source's token in a header (default `Authorization`).
//!
//! Payload: Sevi has sent two shapes. The order-payment document describes an `orderPayment`
//! status (a string, or an object with `status`); the current reference sends
//! `{"order": {"id", "referenceNumber", "paymentStatus", ...}, "customer": {...}}`. Both are
//! read. `PAID` means paid (canonical `succeeded`); any other status does not (`PENDING` →
//! pending, failures → failed, unknown values pass through as `unknown`). Sevi sends no event id:
//! the dedupe key is the order id, the payment status and the update time (or, without one, a
//! digest of the body).

use serde_json::Value;

use super::auth::{AuthCheck, TokenLocation};
use super::{body_digest, status_key, Fields, NormalizeError, Provider, WebhookRequest};
use crate::config::Secrets;
use crate::event::{CanonicalStatus, EventKind, Money, NormalizedEvent};

/// Sevi's normalizer.
pub struct Sevi;

/// Sevi's authentication: the token in `header`.
pub fn checks(tokens: Secrets, header: &str) -> Vec<AuthCheck> {
    vec![AuthCheck::Token {
        tokens,
        location: TokenLocation::Header(header.to_ascii_lowercase()),
    }]
}

fn canonical(status: &str) -> CanonicalStatus {
    match status_key(status).as_str() {
        "PAID" => CanonicalStatus::Succeeded,
        "PENDING" | "UNPAID" | "AWAITING_PAYMENT" | "CREATED" => CanonicalStatus::Pending,
        "PROCESSING" | "AUTHORIZED" | "PARTIALLY_PAID" => CanonicalStatus::Processing,
        "FAILED" | "DECLINED" | "REJECTED" | "EXPIRED" => CanonicalStatus::Failed,
        "CANCELLED" | "CANCELED" | "VOIDED" => CanonicalStatus::Cancelled,
        "REFUNDED" | "PARTIALLY_REFUNDED" => CanonicalStatus::Refunded,
        _ => CanonicalStatus::Unknown,
    }
}

impl Provider for Sevi {
    fn name(&self) -> &'static str {
        "sevi"
    }

    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let order_id = f
            .first_text(&["order.id", "orderId", "order_id", "id"])?
            .ok_or_else(|| NormalizeError::MissingField("order.id".into()))?;
        let status = f
            .first_text(&[
                "orderPayment.status",
                "orderPayment",
                "order.paymentStatus",
                "order.orderPayment.status",
                "order.orderPayment",
                "paymentStatus",
            ])?
            .ok_or_else(|| NormalizeError::MissingField("orderPayment".into()))?;
        let updated = f.first_text(&[
            "order.updatedAt",
            "updatedAt",
            "orderPayment.updatedAt",
            "order.paidAt",
        ])?;
        let occurred_at_ms = match &updated {
            Some(_) => f
                .time_ms("order.updatedAt")
                .or_else(|_| f.time_ms("updatedAt"))
                .ok()
                .flatten(),
            None => None,
        };
        let amount = match f
            .amount("order.totalAmount")
            .or_else(|_| f.amount("order.total"))?
        {
            Some(a) => Some(a),
            None => f.amount("amount")?,
        };
        let id = match &updated {
            Some(at) => format!("{order_id}|{}|{at}", status_key(&status)),
            None => format!(
                "{order_id}|{}|{}",
                status_key(&status),
                body_digest(request.body)
            ),
        };
        Ok(NormalizedEvent {
            id,
            provider: self.name().into(),
            kind: EventKind::Payment,
            order_id: Some(order_id),
            merchant_ref: f.first_text(&[
                "order.platformReference",
                "order.referenceNumber",
                "referenceNumber",
                "refNumber",
            ])?,
            status: canonical(&status),
            raw_status: Some(status),
            raw_sub_status: f.first_text(&["order.status", "orderStatus"])?,
            reason: f.first_text(&[
                "orderPayment.reason",
                "order.paymentFailureReason",
                "reason",
            ])?,
            amount: amount.map(|amount| Money {
                amount,
                currency: f.first_text(&["order.currency", "currency"]).ok().flatten(),
            }),
            occurred_at_ms,
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
        Sevi.normalize(&req, &serde_json::from_str(body).unwrap())
    }

    #[test]
    fn both_payload_shapes() {
        let documented = normalize(
            r##"{"orderId": "ord-1", "orderPayment": {"status": "PAID"}, "amount": "150.00"}"##,
        )
        .unwrap();
        assert_eq!(
            (documented.status, documented.kind),
            (CanonicalStatus::Succeeded, EventKind::Payment)
        );
        assert_eq!(documented.order_id.as_deref(), Some("ord-1"));
        assert_eq!(documented.amount.unwrap().amount, "150.00");
        let current = normalize(
            r##"{"order": {"id": "6650", "referenceNumber": "ORD-123456", "platformReference": "#1001", "status": "CONFIRMED",
                "paymentStatus": "PENDING", "totalAmount": 99.5, "currency": "EGP", "updatedAt": "2025-01-02T03:04:05Z"},
                "customer": {"name": "x"}}"##,
        )
        .unwrap();
        assert_eq!(current.status, CanonicalStatus::Pending);
        assert_eq!(current.merchant_ref.as_deref(), Some("#1001"));
        assert_eq!(current.raw_sub_status.as_deref(), Some("CONFIRMED"));
        assert_eq!(
            current.amount,
            Some(Money {
                amount: "99.5".into(),
                currency: Some("EGP".into())
            })
        );
        assert_eq!(current.id, "6650|PENDING|2025-01-02T03:04:05Z");
        assert_eq!(current.occurred_at_ms, Some(1735787045000));
    }

    #[test]
    fn only_paid_is_paid_and_unknown_passes_through() {
        let with = |s: &str| {
            normalize(&format!(r##"{{"orderId": "o", "orderPayment": "{s}"}}"##)).unwrap()
        };
        assert_eq!(with("paid").status, CanonicalStatus::Succeeded);
        assert_eq!(with("FAILED").status, CanonicalStatus::Failed);
        assert_eq!(with("PENDING").status, CanonicalStatus::Pending);
        let odd = with("ON_HOLD_BY_BANK");
        assert_eq!(
            (odd.status, odd.raw_status.as_deref()),
            (CanonicalStatus::Unknown, Some("ON_HOLD_BY_BANK"))
        );
    }

    #[test]
    fn missing_fields_are_named() {
        assert_eq!(
            normalize(r##"{"orderPayment": "PAID"}"##),
            Err(NormalizeError::MissingField("order.id".into()))
        );
        assert_eq!(
            normalize(r##"{"order": {"id": "1"}}"##),
            Err(NormalizeError::MissingField("orderPayment".into()))
        );
    }
}

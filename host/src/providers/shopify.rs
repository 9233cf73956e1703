//! Shopify webhooks (`X-Shopify-Hmac-Sha256`, verified in [`super::auth`]).

use serde_json::Value;

use super::{required_header, status_key, Fields, NormalizeError, Provider, WebhookRequest};
use crate::event::{CanonicalStatus, EventKind, Money, NormalizedEvent};

/// Shopify webhooks: the topic and event id come in headers.
pub struct Shopify;

impl Provider for Shopify {
    fn name(&self) -> &'static str {
        "shopify"
    }

    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let id = match required_header(request, "x-shopify-event-id") {
            Ok(id) => id.to_string(),
            Err(e) => required_header(request, "x-shopify-webhook-id")
                .map_err(|_| e)?
                .to_string(),
        };
        let topic = required_header(request, "x-shopify-topic")?.to_string();
        let is_order = topic.starts_with("orders/");
        let kind = match topic.as_str() {
            "orders/updated" | "orders/edited" => EventKind::OrderUpdated,
            "orders/paid" | "refunds/create" => EventKind::Payment,
            t if t.starts_with("orders/") || t.starts_with("fulfillments/") => {
                EventKind::OrderStatusChanged
            }
            _ => EventKind::Other,
        };
        let financial = f.text("financial_status")?;
        let status = if f.value("cancelled_at").is_some() || topic == "orders/cancelled" {
            CanonicalStatus::Cancelled
        } else if topic == "refunds/create" {
            CanonicalStatus::Refunded
        } else {
            match financial.as_deref().map(status_key).as_deref() {
                Some("PAID") => CanonicalStatus::Succeeded,
                Some("PENDING" | "AUTHORIZED") => CanonicalStatus::Pending,
                Some("PARTIALLY_PAID") => CanonicalStatus::Processing,
                Some("REFUNDED" | "PARTIALLY_REFUNDED") => CanonicalStatus::Refunded,
                Some("VOIDED") => CanonicalStatus::Cancelled,
                _ => CanonicalStatus::Unknown,
            }
        };
        let sub_status = match (financial, f.text("fulfillment_status")?) {
            (Some(a), Some(b)) => Some(format!("{a}/{b}")),
            (a, b) => a.or(b),
        };
        Ok(NormalizedEvent {
            id,
            provider: self.name().into(),
            kind,
            order_id: if is_order {
                f.text("id")?
            } else {
                f.text("order_id")?
            },
            merchant_ref: if is_order {
                f.first_text(&["name", "order_number"])?
            } else {
                None
            },
            status,
            raw_status: Some(topic),
            raw_sub_status: sub_status,
            reason: f.text("cancel_reason")?,
            amount: f.amount("total_price")?.map(|amount| Money {
                amount,
                currency: f.text("currency").ok().flatten(),
            }),
            occurred_at_ms: f.time_ms("updated_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::normalize;

    #[test]
    fn shopify_order_paid() {
        let body = r##"{"id": 820982911946154508, "name": "#9999", "financial_status": "paid", "fulfillment_status": null,
            "total_price": "403.00", "currency": "USD", "updated_at": "2021-12-31T19:00:00-05:00", "cancelled_at": null}"##;
        let e = normalize(
            &Shopify,
            &[
                ("x-shopify-event-id", "evt-77"),
                ("x-shopify-topic", "orders/paid"),
            ],
            body,
        )
        .unwrap();
        assert_eq!(
            (e.id.as_str(), e.kind, e.status),
            ("evt-77", EventKind::Payment, CanonicalStatus::Succeeded)
        );
        assert_eq!(
            e.order_id.as_deref(),
            Some("820982911946154508"),
            "large ids stay exact"
        );
        assert_eq!(e.merchant_ref.as_deref(), Some("#9999"));
        assert_eq!(e.amount.unwrap().amount, "403.00");
        assert_eq!(
            normalize(&Shopify, &[("x-shopify-topic", "orders/paid")], body),
            Err(NormalizeError::MissingHeader("x-shopify-event-id"))
        );
    }
}

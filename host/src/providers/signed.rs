//! Normalizers for the common signed-webhook senders: Stripe, Shopify and GitHub (their signature
//! schemes are in [`super::auth`]). Standard Webhooks senders use [`super::generic`] with the
//! `webhook-id` header as the id.

use serde_json::Value;

use super::{required_header, status_key, Fields, NormalizeError, Provider, WebhookRequest};
use crate::config::MappingConfig;
use crate::event::{CanonicalStatus, EventKind, Money, NormalizedEvent};

/// The default mapping of a Standard Webhooks source: id from `webhook-id`, status from `type`,
/// time from `timestamp` (the spec's recommended payload shape).
pub fn standard_webhooks_mapping(mapping: Option<MappingConfig>) -> MappingConfig {
    let mut m = mapping.unwrap_or_default();
    if m.id.is_none() && m.id_header.is_none() {
        m.id_header = Some("webhook-id".into());
    }
    if m.status.is_none() {
        m.status = Some("type".into());
    }
    if m.occurred_at.is_none() {
        m.occurred_at = Some("timestamp".into());
    }
    m
}

/// Converts an amount in a currency's minor unit (Stripe's cents) to an exact decimal string.
pub fn minor_to_decimal(minor: &str, currency: Option<&str>) -> Option<String> {
    let exponent = match currency.map(|c| c.to_ascii_uppercase()).as_deref() {
        Some(
            "BIF" | "CLP" | "DJF" | "GNF" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG" | "RWF" | "UGX"
            | "VND" | "VUV" | "XAF" | "XOF" | "XPF",
        ) => 0,
        Some("BHD" | "JOD" | "KWD" | "OMR" | "TND") => 3,
        _ => 2,
    };
    let (negative, digits) = match minor.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, minor),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sign = if negative { "-" } else { "" };
    if exponent == 0 {
        return Some(format!("{sign}{digits}"));
    }
    let padded = format!("{digits:0>width$}", width = exponent + 1);
    let (units, fraction) = padded.split_at(padded.len() - exponent);
    Some(format!("{sign}{units}.{fraction}"))
}

/// Stripe events (`evt_...`).
pub struct Stripe;

impl Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn normalize(
        &self,
        _request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let id = f.required_text("id")?;
        let event_type = f.required_text("type")?;
        let (prefix, _) = event_type.split_once('.').unwrap_or((&event_type, ""));
        let kind = match prefix {
            "payment_intent" | "charge" | "checkout" | "invoice" | "refund" => EventKind::Payment,
            "payout" => EventKind::Payout,
            "transfer" | "balance" => EventKind::Transaction,
            _ => EventKind::Other,
        };
        let t = event_type.as_str();
        let status = if t.ends_with(".refunded")
            || t.starts_with("charge.refund")
            || t.starts_with("refund.")
        {
            CanonicalStatus::Refunded
        } else if t.ends_with(".succeeded")
            || t.ends_with(".paid")
            || t.ends_with(".completed")
            || t.ends_with("payment_succeeded")
        {
            CanonicalStatus::Succeeded
        } else if t.ends_with(".payment_failed") || t.ends_with(".failed") {
            CanonicalStatus::Failed
        } else if t.ends_with(".canceled") || t.ends_with(".expired") {
            CanonicalStatus::Cancelled
        } else if t.ends_with(".processing") {
            CanonicalStatus::Processing
        } else if t.ends_with(".created")
            || t.ends_with(".requires_action")
            || t.ends_with(".pending")
        {
            CanonicalStatus::Pending
        } else {
            CanonicalStatus::Unknown
        };
        let currency = f.text("data.object.currency")?;
        let amount = f
            .first_text(&[
                "data.object.amount_received",
                "data.object.amount",
                "data.object.amount_total",
            ])?
            .and_then(|minor| minor_to_decimal(&minor, currency.as_deref()));
        Ok(NormalizedEvent {
            id,
            provider: self.name().into(),
            kind,
            order_id: f.first_text(&["data.object.payment_intent", "data.object.id"])?,
            merchant_ref: f.first_text(&[
                "data.object.metadata.order_id",
                "data.object.metadata.order",
                "data.object.client_reference_id",
            ])?,
            status,
            raw_status: Some(event_type),
            raw_sub_status: f.text("data.object.status")?,
            reason: f.first_text(&[
                "data.object.last_payment_error.message",
                "data.object.failure_message",
                "data.object.cancellation_reason",
            ])?,
            amount: amount.map(|amount| Money {
                amount,
                currency: currency.map(|c| c.to_ascii_uppercase()),
            }),
            occurred_at_ms: f.time_ms("created")?,
        })
    }
}

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

/// GitHub webhooks: the event name and delivery id come in headers.
pub struct GitHub;

impl Provider for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let id = required_header(request, "x-github-delivery")?.to_string();
        let event = required_header(request, "x-github-event")?.to_string();
        let action = f.text("action")?;
        let conclusion = f.first_text(&[
            &format!("{event}.conclusion"),
            &format!("{event}.state"),
            "conclusion",
            "state",
        ])?;
        let status = match conclusion.as_deref().map(status_key).as_deref() {
            Some("SUCCESS") => CanonicalStatus::Succeeded,
            Some("FAILURE" | "TIMED_OUT" | "ERROR" | "STARTUP_FAILURE") => CanonicalStatus::Failed,
            Some("CANCELLED") => CanonicalStatus::Cancelled,
            Some("PENDING" | "QUEUED" | "IN_PROGRESS") => CanonicalStatus::Processing,
            _ => CanonicalStatus::Unknown,
        };
        Ok(NormalizedEvent {
            id,
            provider: self.name().into(),
            kind: EventKind::Other,
            order_id: None,
            merchant_ref: None,
            status,
            raw_status: Some(match &action {
                Some(a) => format!("{event}.{a}"),
                None => event,
            }),
            raw_sub_status: conclusion,
            reason: None,
            amount: None,
            occurred_at_ms: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    fn normalize(
        p: &dyn Provider,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let req = WebhookRequest {
            headers: &h,
            body: body.as_bytes(),
            query: None,
            path_token: None,
            peer: None,
        };
        p.normalize(&req, &serde_json::from_str(body).unwrap())
    }

    #[test]
    fn minor_units_become_exact_decimals() {
        assert_eq!(
            minor_to_decimal("2000", Some("usd")).as_deref(),
            Some("20.00")
        );
        assert_eq!(minor_to_decimal("5", Some("EUR")).as_deref(), Some("0.05"));
        assert_eq!(minor_to_decimal("500", Some("jpy")).as_deref(), Some("500"));
        assert_eq!(
            minor_to_decimal("1234", Some("KWD")).as_deref(),
            Some("1.234")
        );
        assert_eq!(
            minor_to_decimal("-150", Some("usd")).as_deref(),
            Some("-1.50")
        );
        assert_eq!(minor_to_decimal("1.5", Some("usd")), None);
    }

    #[test]
    fn stripe_payment_intent() {
        let body = r##"{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "created": 1700000000,
            "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 2000, "amount_received": 2000,
            "currency": "usd", "status": "succeeded", "metadata": {"order_id": "#1001"}}}}"##;
        let e = normalize(&Stripe, &[], body).unwrap();
        assert_eq!(
            (e.id.as_str(), e.kind, e.status),
            ("evt_1", EventKind::Payment, CanonicalStatus::Succeeded)
        );
        assert_eq!(
            (e.order_id.as_deref(), e.merchant_ref.as_deref()),
            (Some("pi_1"), Some("#1001"))
        );
        assert_eq!(
            e.amount,
            Some(Money {
                amount: "20.00".into(),
                currency: Some("USD".into())
            })
        );
        let refund = normalize(
            &Stripe,
            &[],
            &body.replace("payment_intent.succeeded", "charge.refunded"),
        )
        .unwrap();
        assert_eq!(refund.status, CanonicalStatus::Refunded);
        let odd = normalize(
            &Stripe,
            &[],
            &body.replace(
                "payment_intent.succeeded",
                "radar.early_fraud_warning.created",
            ),
        )
        .unwrap();
        assert_eq!(
            (odd.kind, odd.raw_status.as_deref()),
            (EventKind::Other, Some("radar.early_fraud_warning.created"))
        );
    }

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

    #[test]
    fn github_delivery() {
        let body = r##"{"action": "completed", "workflow_run": {"conclusion": "failure"}}"##;
        let e = normalize(
            &GitHub,
            &[
                ("x-github-delivery", "d-1"),
                ("x-github-event", "workflow_run"),
            ],
            body,
        )
        .unwrap();
        assert_eq!(
            (e.id.as_str(), e.raw_status.as_deref(), e.status),
            (
                "d-1",
                Some("workflow_run.completed"),
                CanonicalStatus::Failed
            )
        );
        assert_eq!(
            normalize(&GitHub, &[("x-github-event", "push")], "{}"),
            Err(NormalizeError::MissingHeader("x-github-delivery"))
        );
    }
}

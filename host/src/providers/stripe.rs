//! Stripe events (`Stripe-Signature`, verified in [`super::auth`]).

use serde_json::Value;

use super::{Fields, NormalizeError, Provider, WebhookRequest};
use crate::event::{CanonicalStatus, EventKind, Money, NormalizedEvent};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::normalize;

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
}

//! FinchPay transaction webhooks (`shared/providers/finchpay-transaction.md`).
//!
//! FinchPay documents no authentication, so a FinchPay source must carry its own secret: a token
//! in the webhook URL (query or path) or a header, and/or an IP allow-list. The dedupe key is the
//! transaction id plus its status (each status change is one event). Statuses FinchPay adds
//! (HOLD, EXPIRED, REJECTED_BY_ANTI_FRAUD, ...) pass through; amounts stay exact decimal strings.

use serde_json::Value;

use super::auth::{AuthCheck, TokenLocation};
use super::{status_key, Fields, NormalizeError, Provider, WebhookRequest};
use crate::config::{Secrets, TokenIn};
use crate::event::{CanonicalStatus, EventKind, Money, NormalizedEvent};

/// FinchPay's normalizer.
pub struct FinchPay;

/// The token check for a FinchPay source, if it has a token.
pub fn checks(
    token: Option<Secrets>,
    token_in: TokenIn,
    token_name: Option<&str>,
) -> Vec<AuthCheck> {
    let Some(tokens) = token else {
        return Vec::new();
    };
    let location = match token_in {
        TokenIn::Query => TokenLocation::Query(token_name.unwrap_or("token").to_string()),
        TokenIn::Path => TokenLocation::Path,
        TokenIn::Header => {
            TokenLocation::Header(token_name.unwrap_or("authorization").to_ascii_lowercase())
        }
    };
    vec![AuthCheck::Token { tokens, location }]
}

fn canonical(status: &str) -> CanonicalStatus {
    match status_key(status).as_str() {
        "CREATED" => CanonicalStatus::Pending,
        "RECEIVED" | "PROCESSING" | "SENDING" | "HOLD" => CanonicalStatus::Processing,
        "COMPLETE" | "COMPLETED" => CanonicalStatus::Succeeded,
        "ERROR" | "FAILED" | "REJECTED_BY_ANTI_FRAUD" => CanonicalStatus::Failed,
        "EXPIRED" | "CANCELLED" | "CANCELED" => CanonicalStatus::Cancelled,
        "REFUNDED" => CanonicalStatus::Refunded,
        _ => CanonicalStatus::Unknown,
    }
}

impl Provider for FinchPay {
    fn name(&self) -> &'static str {
        "finchpay"
    }

    fn normalize(
        &self,
        _request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let id = f.required_text("id")?;
        let status = f.required_text("status")?;
        Ok(NormalizedEvent {
            id: format!("{id}|{}", status_key(&status)),
            provider: self.name().into(),
            kind: EventKind::Transaction,
            order_id: Some(id),
            merchant_ref: f.text("external_id")?,
            status: canonical(&status),
            raw_status: Some(status),
            raw_sub_status: None,
            reason: f.first_text(&["error", "error_message", "reason"])?,
            amount: f.amount("amount_from")?.map(|amount| Money {
                amount,
                currency: f.text("asset_from").ok().flatten(),
            }),
            occurred_at_ms: f.time_ms("event_time")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    /// The document's sample (its `//` comments removed).
    const SAMPLE: &str = r##"{"id": "c158f7dd-c2a6-49d0-96bf-4f9fd38c0376", "status": "COMPLETE", "partner_key": "6794e41ed645",
        "amount_from": "100", "asset_from": "EUR", "asset_from_extra": null, "amount_to": "109.58", "asset_to": "USDT",
        "asset_network_to": "TRC20", "asset_to_extra": null, "partner_profit_amount": "2.38", "partner_profit_currency": "EUR",
        "event_time": "2023-10-11T10:14:14.491786009Z", "external_id": "your_generated_external_id", "transaction_hash": "blockchain_tx_hash"}"##;

    fn normalize(body: &str) -> Result<NormalizedEvent, NormalizeError> {
        let headers = HeaderMap::new();
        let req = WebhookRequest {
            headers: &headers,
            body: body.as_bytes(),
            query: None,
            path_token: None,
            peer: None,
        };
        FinchPay.normalize(&req, &serde_json::from_str(body).unwrap())
    }

    #[test]
    fn sample_normalizes() {
        let e = normalize(SAMPLE).unwrap();
        assert_eq!(e.id, "c158f7dd-c2a6-49d0-96bf-4f9fd38c0376|COMPLETE");
        assert_eq!(
            (e.kind, e.status),
            (EventKind::Transaction, CanonicalStatus::Succeeded)
        );
        assert_eq!(
            e.amount,
            Some(Money {
                amount: "100".into(),
                currency: Some("EUR".into())
            })
        );
        assert_eq!(
            e.merchant_ref.as_deref(),
            Some("your_generated_external_id")
        );
        assert_eq!(e.occurred_at_ms, Some(1697019254491));
    }

    #[test]
    fn newer_statuses_pass_through() {
        for (status, canonical) in [
            ("HOLD", CanonicalStatus::Processing),
            ("EXPIRED", CanonicalStatus::Cancelled),
            ("REJECTED_BY_ANTI_FRAUD", CanonicalStatus::Failed),
            ("QUANTUM_LIMBO", CanonicalStatus::Unknown),
        ] {
            let e = normalize(&SAMPLE.replace("\"COMPLETE\"", &format!("\"{status}\""))).unwrap();
            assert_eq!(
                (e.status, e.raw_status.as_deref()),
                (canonical, Some(status))
            );
        }
    }
}

//! Juspay payout webhooks (`shared/providers/juspay-payout.md`).
//!
//! Authentication: HTTP Basic is mandatory (Juspay forbids `@` in the user name, and `:` cannot
//! appear in one), plus any custom headers configured at Juspay.
//!
//! Payload `{id, category, label, value, info}`: `id` is the dedupe key (required), `label` gives
//! the kind, `value` the status. Statuses may move backwards (SUCCESS then REVERSED): every one is
//! accepted and passed on in order. Amounts are kept exactly as sent.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::Value;

use super::auth::AuthCheck;
use super::{status_key, Fields, NormalizeError, Provider, WebhookRequest};
use crate::config::{Secret, Secrets};
use crate::event::{CanonicalStatus, EventKind, Money, NormalizedEvent};

/// Juspay's normalizer.
pub struct Juspay;

/// Juspay's authentication: Basic, plus required headers.
pub fn checks(
    username: &str,
    passwords: Secrets,
    required_headers: &BTreeMap<String, Secret>,
) -> anyhow::Result<Vec<AuthCheck>> {
    if username.is_empty() || username.contains('@') || username.contains(':') {
        bail!("Juspay user name {username:?} must be non-empty without '@' (Juspay rejects it) or ':' (Basic auth cannot carry it)");
    }
    let mut checks = vec![AuthCheck::Basic {
        username: username.to_string(),
        passwords,
    }];
    if !required_headers.is_empty() {
        checks.push(AuthCheck::RequiredHeaders(
            required_headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        ));
    }
    Ok(checks)
}

/// `label` → kind.
fn kind(label: Option<&str>) -> EventKind {
    match label.map(status_key).as_deref() {
        Some("ORDER" | "FULFILLMENT_ORDER" | "FULFILLMENT_TXN") => EventKind::Payout,
        _ => EventKind::Other,
    }
}

/// `value` → canonical status. REVERSED is a failure even after a success; CONFLICTED is a
/// success even after a failure.
fn canonical(value: &str) -> CanonicalStatus {
    match status_key(value).as_str() {
        "READY_FOR_FULFILLMENT" | "INITIATED" | "PENDING" | "CREATED" => CanonicalStatus::Pending,
        "FULFILLMENTS_SCHEDULED"
        | "FULFILLED_PARTIALLY"
        | "MANUAL_REVIEW"
        | "FULFILLMENTS_MANUAL_REVIEW"
        | "GATEWAY_SWITCHED" => CanonicalStatus::Processing,
        "SUCCESS" | "FULFILLMENTS_SUCCESSFUL" | "CONFLICTED" | "VALID" => {
            CanonicalStatus::Succeeded
        }
        "FAILURE" | "FULFILLMENTS_FAILURE" | "REVERSED" | "INVALID" | "ERROR" => {
            CanonicalStatus::Failed
        }
        "DISCARDED" | "CANCELLED" | "FULFILLMENTS_CANCELLED" => CanonicalStatus::Cancelled,
        _ => CanonicalStatus::Unknown,
    }
}

/// The Juspay order a fulfillment (`<order>-f1`) or transaction (`<order>-f1-t1`) belongs to, so
/// all events of one payout order are delivered in order.
fn order_of(id: &str) -> &str {
    let mut base = id;
    for marker in ['t', 'f'] {
        if let Some(pos) = base.rfind(&format!("-{marker}")) {
            let suffix = &base[pos + 2..];
            if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
                base = &base[..pos];
            }
        }
    }
    base
}

impl Provider for Juspay {
    fn name(&self) -> &'static str {
        "juspay"
    }

    fn normalize(
        &self,
        _request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let id = f.required_text("id")?;
        let value = f.required_text("value")?;
        let label = f.text("label")?;
        let entity = f.first_text(&[
            "info.orderId",
            "info.FulfillmentId",
            "info.fulfillmentId",
            "info.id",
        ])?;
        let amount = match f.amount("info.amount")? {
            Some(a) => Some(a),
            None => f.amount("info.txnResponse.amount")?,
        };
        Ok(NormalizedEvent {
            id,
            provider: self.name().into(),
            kind: kind(label.as_deref()),
            order_id: entity.as_deref().map(|e| order_of(e).to_string()),
            merchant_ref: f.text("info.merchantOrderId")?,
            status: canonical(&value),
            raw_status: Some(value),
            raw_sub_status: match (label, f.text("info.status")?) {
                (Some(l), Some(s)) => Some(format!("{l}/{s}")),
                (l, s) => l.or(s),
            },
            reason: f.first_text(&[
                "info.responseMessage",
                "info.txnResponse.responseMessage",
                "info.errorMessage",
            ])?,
            amount: amount.map(|amount| Money {
                amount,
                currency: f.text("info.currency").ok().flatten(),
            }),
            occurred_at_ms: f
                .time_ms("info.statusUpdatedAt")
                .ok()
                .flatten()
                .or(f.time_ms("info.updatedAt").ok().flatten()),
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
        Juspay.normalize(&req, &serde_json::from_str(body).unwrap())
    }

    #[test]
    fn order_and_transaction_samples() {
        let order = normalize(r##"{"value": "FULFILLMENTS_SUCCESSFUL", "label": "ORDER", "info": {"updatedAt": "2020-05-29T07:26:03Z",
            "status": "FULFILLMENTS_SUCCESSFUL", "orderType": "PAY_AND_FULFILL", "merchantOrderId": "6lQuvBOixfADPpmD",
            "merchantCustomerId": "shubham", "id": "95eb968ccdd4f2d9ef31c3e972ca40", "createdAt": "2020-05-29T07:24:13Z", "amount": 10},
            "id": "12d83c7fbc041c2b1290106e6d963f", "category": "INFO"}"##).unwrap();
        assert_eq!(order.id, "12d83c7fbc041c2b1290106e6d963f");
        assert_eq!(
            (order.kind, order.status),
            (EventKind::Payout, CanonicalStatus::Succeeded)
        );
        assert_eq!(order.merchant_ref.as_deref(), Some("6lQuvBOixfADPpmD"));
        assert_eq!(
            order.order_id.as_deref(),
            Some("95eb968ccdd4f2d9ef31c3e972ca40")
        );
        assert_eq!(order.amount.unwrap().amount, "10");
        assert_eq!(order.occurred_at_ms, Some(1590737163000));
        let txn = normalize(r##"{"value": "REVERSED", "label": "FULFILLMENT_TXN", "info": {"status": "REVERSED",
            "id": "95eb968ccdd4f2d9ef31c3e972ca40-f1-t1", "FulfillmentId": "95eb968ccdd4f2d9ef31c3e972ca40-f1", "amount": 10.50},
            "id": "e0dbf4b217e4530bf202091bb1f654", "category": "INFO"}"##).unwrap();
        assert_eq!(txn.status, CanonicalStatus::Failed);
        assert_eq!(
            txn.order_id.as_deref(),
            Some("95eb968ccdd4f2d9ef31c3e972ca40"),
            "same ordering key as its order"
        );
        assert_eq!(txn.amount.unwrap().amount, "10.50");
        assert_eq!(
            txn.raw_sub_status.as_deref(),
            Some("FULFILLMENT_TXN/REVERSED")
        );
    }

    #[test]
    fn statuses_and_kinds() {
        assert_eq!(canonical("CONFLICTED"), CanonicalStatus::Succeeded);
        assert_eq!(canonical("MANUAL_REVIEW"), CanonicalStatus::Processing);
        assert_eq!(canonical("FAILURE"), CanonicalStatus::Failed);
        assert_eq!(canonical("DISCARDED"), CanonicalStatus::Cancelled);
        assert_eq!(canonical("SOMETHING_NEW"), CanonicalStatus::Unknown);
        assert_eq!(kind(Some("VALIDATION_V2")), EventKind::Other);
        assert_eq!(kind(Some("SR_BASED_ROUTING")), EventKind::Other);
        assert_eq!(order_of("abc-f12-t3"), "abc");
        assert_eq!(order_of("abc-fine"), "abc-fine");
    }

    #[test]
    fn id_is_required_and_usernames_are_checked() {
        // The document's "Validation_V2 VALID" sample is an API error, not a webhook.
        assert_eq!(
            normalize(r##"{"success":false,"message":"No Data found for the given path"}"##),
            Err(NormalizeError::MissingField("id".into()))
        );
        assert!(checks("a@b", Secrets(vec![Secret::new("p")]), &BTreeMap::new()).is_err());
        assert!(checks("a:b", Secrets(vec![Secret::new("p")]), &BTreeMap::new()).is_err());
        assert_eq!(
            checks(
                "acme",
                Secrets(vec![Secret::new("p")]),
                &[("X-Env".to_string(), Secret::new("prod"))].into()
            )
            .unwrap()
            .len(),
            2
        );
    }
}

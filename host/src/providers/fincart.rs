//! Fincart order status webhooks (`shared/providers/fincart-order-status.md`).
//!
//! Authentication: the `Authorization` header carries the source's webhook token verbatim (a
//! `Bearer ` prefix is tolerated); see [`checks`]. Fincart sends no event id, so the dedupe key is derived from the
//! order id, the action, status, sub-status and `statusUpdatedDate`; an "Order Updated" (details
//! changed, status not) also includes a digest of the body, since its status fields repeat.

use serde_json::Value;

use super::auth::{AuthCheck, TokenLocation};
use super::{body_digest, Fields, NormalizeError, Provider, WebhookRequest};
use crate::config::Secrets;
use crate::event::{CanonicalStatus, EventKind, NormalizedEvent};

/// Fincart's normalizer.
pub struct Fincart;

/// Fincart's authentication: the token in `Authorization`.
pub fn checks(tokens: Secrets) -> Vec<AuthCheck> {
    vec![AuthCheck::Token {
        tokens,
        location: TokenLocation::Header("authorization".into()),
    }]
}

/// Fincart's main status to the canonical one. Sub-statuses refine but never change it.
fn canonical(status: &str) -> CanonicalStatus {
    match status.trim().to_ascii_lowercase().as_str() {
        "pending" => CanonicalStatus::Pending,
        "processing" => CanonicalStatus::Processing,
        "successful" => CanonicalStatus::Succeeded,
        "unsuccessful" => CanonicalStatus::Failed,
        "cancelled" | "canceled" => CanonicalStatus::Cancelled,
        _ => CanonicalStatus::Unknown,
    }
}

impl Provider for Fincart {
    fn name(&self) -> &'static str {
        "fincart"
    }

    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let order_id = f.required_text("orderId")?;
        let status = f.required_text("status")?;
        let sub_status = f.text("subStatus")?;
        let updated_at = f.time_ms("statusUpdatedDate")?;
        // The dedupe key uses the value as sent, whatever its unit.
        let updated_raw = f.text("statusUpdatedDate")?;
        let action = f.text("action")?;
        let kind = match action.as_deref().map(|a| a.trim().to_ascii_lowercase()) {
            None => EventKind::OrderStatusChanged,
            Some(a) if a == "order status changed" => EventKind::OrderStatusChanged,
            Some(a) if a == "order updated" => EventKind::OrderUpdated,
            Some(_) => EventKind::Other,
        };
        let mut id = format!(
            "{order_id}|{}|{status}|{}|{}",
            action.as_deref().unwrap_or(""),
            sub_status.as_deref().unwrap_or(""),
            updated_raw.unwrap_or_default()
        );
        if kind != EventKind::OrderStatusChanged || updated_at.is_none() {
            id.push('|');
            id.push_str(&body_digest(request.body));
        }
        Ok(NormalizedEvent {
            id,
            provider: self.name().to_string(),
            kind,
            status: canonical(&status),
            order_id: Some(order_id),
            merchant_ref: f.text("refNumber")?,
            raw_status: Some(status),
            raw_sub_status: sub_status,
            reason: f.text("rejectionReason")?,
            amount: None,
            occurred_at_ms: updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::providers::AuthFailure;
    use axum::http::{HeaderMap, HeaderValue};

    /// The sample payload from Fincart's document, with its comments removed.
    pub const SAMPLE: &str = r##"{
      "status": "processing",
      "subStatus": "out for delivery",
      "rejectionReason": null,
      "supportNote": "Customer requested a delay",
      "trackingNumber": "ARX123456XXX",
      "returnTrackingNumber": null,
      "statusUpdatedDate": 1738336796675,
      "orderId": "67387ce18aa2230090e0XXXX",
      "orderNumber": "ZZZ-DR-0013XXX",
      "courier": "J&T",
      "courierLogo": "logo",
      "action": "Order Updated",
      "invoiced": true,
      "invoicedAt": 1738336796675,
      "refNumber": "#1123"
    }"##;

    fn normalize(body: &str) -> Result<NormalizedEvent, NormalizeError> {
        let headers = HeaderMap::new();
        let req = WebhookRequest {
            headers: &headers,
            body: body.as_bytes(),
            query: None,
            path_token: None,
            peer: None,
        };
        Fincart.normalize(&req, &serde_json::from_str(body).unwrap())
    }

    #[test]
    fn sample_normalizes() {
        let e = normalize(SAMPLE).unwrap();
        assert_eq!(e.kind, EventKind::OrderUpdated);
        assert_eq!(e.status, CanonicalStatus::Processing);
        assert_eq!(e.order_id.as_deref(), Some("67387ce18aa2230090e0XXXX"));
        assert_eq!(e.merchant_ref.as_deref(), Some("#1123"));
        assert_eq!(e.raw_sub_status.as_deref(), Some("out for delivery"));
        assert_eq!(e.reason, None);
        assert_eq!(e.occurred_at_ms, Some(1738336796675));
        assert!(e.id.starts_with(
            "67387ce18aa2230090e0XXXX|Order Updated|processing|out for delivery|1738336796675|"
        ));
    }

    #[test]
    fn statuses_map_and_unknown_passes_through() {
        let with = |status: &str, sub: &str| {
            let body = serde_json::json!({"orderId": "o1", "status": status, "subStatus": sub,
                "statusUpdatedDate": 1, "action": "Order Status Changed", "rejectionReason": "no answer"});
            normalize(&body.to_string()).unwrap()
        };
        assert_eq!(
            with("successful", "delivered to customer").status,
            CanonicalStatus::Succeeded
        );
        let returned = with("successful", "returned to merchant");
        assert_eq!(returned.status, CanonicalStatus::Succeeded);
        assert_eq!(
            returned.raw_sub_status.as_deref(),
            Some("returned to merchant")
        );
        assert_eq!(
            with("unsuccessful", "problematic").status,
            CanonicalStatus::Failed
        );
        assert_eq!(
            with("Cancelled", "cancelled").status,
            CanonicalStatus::Cancelled
        );
        assert_eq!(with("pending", "new").status, CanonicalStatus::Pending);
        let odd = with("on hold", "awaiting customs");
        assert_eq!(odd.status, CanonicalStatus::Unknown);
        assert_eq!(odd.raw_status.as_deref(), Some("on hold"));
        assert_eq!(odd.reason.as_deref(), Some("no answer"));
        assert_eq!(odd.kind, EventKind::OrderStatusChanged);
        assert_eq!(odd.id, "o1|Order Status Changed|on hold|awaiting customs|1");
    }

    #[test]
    fn dedupe_key_is_stable_and_distinguishes_changes() {
        assert_eq!(normalize(SAMPLE).unwrap().id, normalize(SAMPLE).unwrap().id);
        let changed = SAMPLE.replace("ARX123456XXX", "ARX999");
        assert_ne!(
            normalize(SAMPLE).unwrap().id,
            normalize(&changed).unwrap().id
        );
    }

    #[test]
    fn missing_order_id_names_the_field() {
        assert_eq!(
            normalize(r#"{"status":"pending"}"#),
            Err(NormalizeError::MissingField("orderId".into()))
        );
        assert_eq!(
            normalize(r#"{"orderId":"x"}"#),
            Err(NormalizeError::MissingField("status".into()))
        );
        assert!(matches!(
            normalize(r#"{"orderId":"x","status":"pending","statusUpdatedDate":"yesterday"}"#),
            Err(NormalizeError::WrongType { field, .. }) if field == "statusUpdatedDate"
        ));
    }

    #[test]
    fn token_must_match_one_of_the_active_tokens() {
        let check = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert("authorization", HeaderValue::from_str(v).unwrap());
            }
            let req = WebhookRequest {
                headers: &headers,
                body: b"{}",
                query: None,
                path_token: None,
                peer: None,
            };
            checks(Secrets(vec![Secret::new("tok-1"), Secret::new("tok-2")]))[0].check(&req, 0)
        };
        assert_eq!(check(Some("tok-1")), Ok(()));
        assert_eq!(check(Some("tok-2")), Ok(()));
        assert_eq!(check(Some("Bearer tok-2")), Ok(()));
        assert_eq!(check(Some("tok-3")), Err(AuthFailure("wrong token")));
        assert_eq!(check(None), Err(AuthFailure("token missing")));
    }
}

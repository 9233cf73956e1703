//! The declarative provider: an operator describes a JSON provider in the config (JSON paths for
//! each field and a status table) and adds it without writing Rust. Standard Webhooks sources use
//! it too, since their payloads are the sender's own.

use serde_json::Value;

use super::{body_digest, header, status_key, Fields, NormalizeError, Provider, WebhookRequest};
use crate::config::MappingConfig;
use crate::event::{CanonicalStatus, EventKind, Money, NormalizedEvent};

/// A provider described by a [`MappingConfig`].
pub struct Generic {
    name: &'static str,
    mapping: MappingConfig,
    /// Status table with normalized keys.
    statuses: Vec<(String, CanonicalStatus)>,
    kinds: Vec<(String, EventKind)>,
}

impl Generic {
    /// A provider named `name` (shown in events) reading payloads by `mapping`.
    pub fn new(name: &'static str, mapping: MappingConfig) -> Generic {
        let statuses = mapping
            .statuses
            .iter()
            .map(|(k, v)| (status_key(k), *v))
            .collect();
        let kinds = mapping
            .kinds
            .iter()
            .map(|(k, v)| (status_key(k), *v))
            .collect();
        Generic {
            name,
            mapping,
            statuses,
            kinds,
        }
    }

    fn path(
        &self,
        f: &Fields<'_>,
        path: &Option<String>,
    ) -> Result<Option<String>, NormalizeError> {
        match path {
            Some(p) => f.text(p),
            None => Ok(None),
        }
    }
}

impl Provider for Generic {
    fn name(&self) -> &'static str {
        self.name
    }

    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let f = Fields::of(payload)?;
        let m = &self.mapping;
        for required in &m.required {
            if f.value(required).is_none() {
                return Err(NormalizeError::MissingField(required.clone()));
            }
        }
        let id = match (&m.id, &m.id_header) {
            (Some(path), _) => f.required_text(path)?,
            (None, Some(name)) => header(request, name)
                // Standard Webhooks' headers also come under Svix's names (`svix-id`).
                .or_else(|| {
                    let alias = format!("svix-{}", name.strip_prefix("webhook-")?);
                    header(request, &alias)
                })
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| NormalizeError::MissingField(format!("header {name}")))?,
            (None, None) => body_digest(request.body),
        };
        let raw_status = self.path(&f, &m.status)?;
        let status = match &raw_status {
            Some(s) => {
                let key = status_key(s);
                self.statuses
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| *v)
                    .unwrap_or(CanonicalStatus::Unknown)
            }
            None => CanonicalStatus::Unknown,
        };
        let kind = match &m.kind_path {
            Some(p) => f
                .text(p)?
                .and_then(|v| {
                    self.kinds
                        .iter()
                        .find(|(k, _)| *k == status_key(&v))
                        .map(|(_, kind)| *kind)
                })
                .unwrap_or(m.kind.unwrap_or(EventKind::Other)),
            None => m.kind.unwrap_or(EventKind::Other),
        };
        let amount = match &m.amount {
            Some(p) => f.amount(p)?,
            None => None,
        };
        Ok(NormalizedEvent {
            id,
            provider: self.name.to_string(),
            kind,
            order_id: self.path(&f, &m.order_id)?,
            merchant_ref: self.path(&f, &m.merchant_ref)?,
            status,
            raw_status,
            raw_sub_status: self.path(&f, &m.sub_status)?,
            reason: self.path(&f, &m.reason)?,
            amount: amount.map(|amount| Money {
                amount,
                currency: self.path(&f, &m.currency).ok().flatten(),
            }),
            occurred_at_ms: match &m.occurred_at {
                Some(p) => f.time_ms(p)?,
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn mapping() -> MappingConfig {
        toml::from_str(
            r##"
            id = "event.id"
            kind_path = "event.type"
            kinds = { "order.paid" = "payment", "order.shipped" = "order-status-changed" }
            order_id = "data.order.id"
            merchant_ref = "data.order.ref"
            status = "data.order.state"
            amount = "data.order.total"
            currency = "data.order.currency"
            occurred_at = "event.at"
            required = ["data.order"]
            [statuses]
            "paid" = "succeeded"
            "in transit" = "processing"
            "##,
        )
        .unwrap()
    }

    fn normalize(
        g: &Generic,
        body: &str,
        headers: &HeaderMap,
    ) -> Result<NormalizedEvent, NormalizeError> {
        let req = WebhookRequest {
            headers,
            body: body.as_bytes(),
            query: None,
            path_token: None,
            peer: None,
        };
        g.normalize(&req, &serde_json::from_str(body).unwrap())
    }

    #[test]
    fn reads_by_paths_and_tables() {
        let g = Generic::new("acme-pay", mapping());
        let body = r##"{"event": {"id": "ev_1", "type": "order.paid", "at": 1700000000}, "data": {"order": {"id": 77, "ref": "#9",
            "state": "PAID", "total": "12.30", "currency": "EUR"}}, "extra": true}"##;
        let e = normalize(&g, body, &HeaderMap::new()).unwrap();
        assert_eq!(
            (e.id.as_str(), e.kind, e.status),
            ("ev_1", EventKind::Payment, CanonicalStatus::Succeeded)
        );
        assert_eq!(
            (e.order_id.as_deref(), e.merchant_ref.as_deref()),
            (Some("77"), Some("#9"))
        );
        assert_eq!(
            e.amount,
            Some(Money {
                amount: "12.30".into(),
                currency: Some("EUR".into())
            })
        );
        assert_eq!(e.occurred_at_ms, Some(1_700_000_000_000));
        assert_eq!(e.provider, "acme-pay");
        let unknown = normalize(
            &g,
            &body
                .replace("PAID", "LOST")
                .replace("order.paid", "order.lost"),
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(
            (unknown.status, unknown.kind),
            (CanonicalStatus::Unknown, EventKind::Other)
        );
    }

    #[test]
    fn missing_required_and_id_are_named() {
        let g = Generic::new("acme-pay", mapping());
        assert_eq!(
            normalize(&g, r##"{"event": {"id": "x"}}"##, &HeaderMap::new()),
            Err(NormalizeError::MissingField("data.order".into()))
        );
        assert_eq!(
            normalize(&g, r##"{"data": {"order": {}}}"##, &HeaderMap::new()),
            Err(NormalizeError::MissingField("event.id".into()))
        );
        let by_header = Generic::new(
            "h",
            MappingConfig {
                id_header: Some("webhook-id".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            normalize(&by_header, "{}", &HeaderMap::new()),
            Err(NormalizeError::MissingField("header webhook-id".into()))
        );
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_static("msg_1"));
        assert_eq!(normalize(&by_header, "{}", &h).unwrap().id, "msg_1");
    }
}

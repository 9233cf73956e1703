//! `hookhost send --fresh`: the same payload as a new event. Sending a sample twice is a
//! duplicate (same provider event id), so the newly built version never sees it; a fresh copy
//! changes the one field that makes the provider's event id differ while the order, its status
//! and the kind of event stay, found by asking the provider's own normalizer (so it works for
//! every provider, whatever its id is made of).

use anyhow::{bail, Context, Result};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::event::NormalizedEvent;
use crate::providers::{Provider, WebhookRequest};

/// What `--fresh` changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshened {
    /// The changed field, as a JSON pointer (`/data/object/id`).
    pub field: String,
    /// Its value before.
    pub from: Value,
    /// Its value now.
    pub to: Value,
}

/// The most leaves of a payload tried (bounded work on a large file).
const MAX_LEAVES: usize = 500;

/// `body` changed into a new event of the same order, status and kind, or why it cannot be.
pub fn freshen(
    provider: &dyn Provider,
    body: &[u8],
    headers: &[(String, String)],
    salt: &str,
) -> Result<(Vec<u8>, Freshened)> {
    let payload: Value = serde_json::from_slice(body)
        .context("--fresh needs a JSON payload (it changes the field the event id is made of)")?;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(n, v);
        }
    }
    let normalize = |payload: &Value| -> Option<NormalizedEvent> {
        let bytes = serde_json::to_vec(payload).ok()?;
        let request = WebhookRequest {
            headers: &map,
            body: &bytes,
            query: None,
            path_token: None,
            peer: None,
        };
        provider.normalize(&request, payload).ok()
    };
    let Some(original) = normalize(&payload) else {
        bail!(
            "--fresh: the {} normalizer does not take this payload as it is",
            provider.name()
        );
    };
    let mut leaves = Vec::new();
    collect_leaves(&payload, String::new(), &mut leaves);
    // Times first (a later update of the same order), then ids, then anything else.
    leaves.sort_by_key(|(pointer, _)| {
        let name = pointer
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_lowercase();
        if ["date", "time", "updated", "created", "timestamp", "_at"]
            .iter()
            .any(|w| name.contains(w))
        {
            0
        } else if name.contains("id") {
            1
        } else {
            2
        }
    });
    for (pointer, value) in leaves.into_iter().take(MAX_LEAVES) {
        let Some(changed) = changed_value(&value, salt) else {
            continue;
        };
        let mut candidate = payload.clone();
        if let Some(slot) = candidate.pointer_mut(&pointer) {
            *slot = changed.clone();
        }
        let Some(event) = normalize(&candidate) else {
            continue;
        };
        let same_story = event.order_id == original.order_id
            && event.merchant_ref == original.merchant_ref
            && event.status == original.status
            && event.kind == original.kind
            && event.amount == original.amount;
        if event.id != original.id && same_story {
            let bytes = serde_json::to_vec(&candidate).context("serialize the fresh payload")?;
            return Ok((
                bytes,
                Freshened {
                    field: pointer,
                    from: value,
                    to: changed,
                },
            ));
        }
    }
    bail!(
        "--fresh: no field of this payload gives a new {name} event id without changing its order, status or amount ({name} tells events apart by what they say: the same order in the same status is the same event); send another status with --file, or run the event again with `hookhost replay --event N`",
        name = provider.name()
    )
}

fn collect_leaves(value: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                collect_leaves(v, format!("{pointer}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_leaves(v, format!("{pointer}/{i}"), out);
            }
        }
        Value::Number(_) | Value::String(_) => out.push((pointer, value.clone())),
        _ => {}
    }
}

/// A value like `value` but different: a number one more, a time a second later, a text with a
/// suffix.
fn changed_value(value: &Value, salt: &str) -> Option<Value> {
    use time::format_description::well_known::Rfc3339;
    match value {
        Value::Number(n) => n
            .as_u64()
            .map(|n| Value::from(n + 1))
            .or_else(|| n.as_i64().map(|n| Value::from(n + 1)))
            .or_else(|| n.as_f64().map(|n| Value::from(n + 1.0))),
        Value::String(s) => match time::OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => (t + time::Duration::seconds(1))
                .format(&Rfc3339)
                .ok()
                .map(Value::from),
            Err(_) if s.parse::<u64>().is_ok() => s
                .parse::<u64>()
                .ok()
                .map(|n| Value::from((n + 1).to_string())),
            Err(_) => Some(Value::from(format!("{s}-{salt}"))),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devloop::samples;

    fn provider(name: &str) -> Box<dyn Provider> {
        use crate::providers::*;
        match name {
            "fincart" => Box::new(fincart::Fincart),
            "sevi" => Box::new(sevi::Sevi),
            "juspay" => Box::new(juspay::Juspay),
            "finchpay" => Box::new(finchpay::FinchPay),
            "selldone" => Box::new(selldone::Selldone),
            "stripe" => Box::new(stripe::Stripe),
            "shopify" => Box::new(shopify::Shopify),
            "github" => Box::new(github::GitHub),
            "standard-webhooks" => Box::new(generic::Generic::new(
                "standard-webhooks",
                standard_webhooks::default_mapping(None),
            )),
            other => panic!("a sample of an unknown provider {other}"),
        }
    }

    #[test]
    fn a_fincart_sample_becomes_a_later_update_of_the_same_order() {
        let sample = samples::of("fincart").next().unwrap();
        let (body, changed) =
            freshen(&*provider("fincart"), sample.body.as_bytes(), &[], "x1").unwrap();
        assert_eq!(changed.field, "/statusUpdatedDate", "{changed:?}");
        let before: Value = serde_json::from_str(sample.body).unwrap();
        let after: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(after["orderId"], before["orderId"]);
        assert_eq!(after["status"], before["status"]);
        assert_eq!(
            after["statusUpdatedDate"].as_u64(),
            before["statusUpdatedDate"].as_u64().map(|v| v + 1)
        );
    }

    #[test]
    fn every_shipped_json_sample_can_be_sent_fresh_or_says_why_not() {
        for sample in samples::SAMPLES {
            let provider = provider(sample.provider);
            let headers: Vec<(String, String)> = sample
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        v.replace("{id}", "d1")
                            .replace("{now}", "2026-12-01T00:00:00Z"),
                    )
                })
                .collect();
            match freshen(&*provider, sample.body.as_bytes(), &headers, "x1") {
                Ok((_, changed)) => assert_ne!(changed.from, changed.to, "{}", sample.name),
                Err(e) => assert!(e.to_string().starts_with("--fresh"), "{}: {e}", sample.name),
            }
        }
    }

    #[test]
    fn a_payload_that_is_not_json_is_refused_with_the_reason() {
        let err = freshen(&*provider("fincart"), b"not json", &[], "x1").unwrap_err();
        assert!(err.to_string().contains("needs a JSON payload"), "{err}");
    }
}

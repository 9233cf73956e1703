//! Providers: how each provider's requests are authenticated and how its payload becomes a
//! [`NormalizedEvent`]. One file per provider; authentication schemes are composable checks in
//! [`auth`] (the receiving side; `hookhost send` signs with `devloop::signing`); shared helpers
//! (constant-time comparison, lenient JSON field access) live here.
//!
//! A configured [`Source`] ([`source`]) is a provider's normalizer plus the checks its requests
//! must pass, built from the config by the one mapping of [`source::build`].

use std::net::IpAddr;

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secrets;
use crate::event::NormalizedEvent;

pub mod auth;
pub mod fincart;
pub mod finchpay;
pub mod generic;
pub mod github;
pub mod juspay;
pub mod selldone;
pub mod sevi;
pub mod shopify;
pub mod source;
pub mod standard_webhooks;
pub mod stripe;

pub use auth::AuthCheck;
pub use source::{build, RefusalLog, Source};

/// What a provider sees of an incoming webhook: the raw bytes exactly as received (signatures are
/// computed over them), the headers, the query string, a token from the path and the caller.
pub struct WebhookRequest<'a> {
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The token segment of `/hooks/{tenant}/{source}/{token}`, if used.
    pub path_token: Option<&'a str>,
    /// The TCP peer's address.
    pub peer: Option<IpAddr>,
}

/// Why a request was not authenticated. The reason is for logs and metrics only: callers get a
/// generic 401 so that an attacker learns nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure(pub &'static str);

/// Why an authenticated payload cannot be normalized (422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalizeError {
    /// A field the provider always sends is missing or null (named by its JSON path).
    MissingField(String),
    /// A header the provider always sends is missing.
    MissingHeader(&'static str),
    /// A field has a type that cannot be read.
    WrongType {
        /// The field's JSON path.
        field: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The body is JSON but not an object.
    NotAnObject,
}

impl std::fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NormalizeError::MissingField(field) => {
                write!(f, "required field `{field}` is missing or null")
            }
            NormalizeError::MissingHeader(name) => write!(f, "required header `{name}` is missing"),
            NormalizeError::WrongType { field, expected } => {
                write!(f, "field `{field}` must be {expected}")
            }
            NormalizeError::NotAnObject => f.write_str("the payload must be a JSON object"),
        }
    }
}

/// Turns a provider's payload into the normalized event.
pub trait Provider: Send + Sync {
    /// The provider's name, as in the config and the normalized event.
    fn name(&self) -> &'static str;
    /// Normalizes the (already parsed, already authenticated) payload.
    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError>;
}

/// Whether `presented` equals any of `secrets`, in time independent of where they differ and of
/// their lengths (both sides are hashed first), and of which secret matched.
pub fn matches_any_secret(presented: &[u8], secrets: &Secrets) -> bool {
    let presented = Sha256::digest(presented);
    let mut matched = subtle::Choice::from(0);
    for secret in &secrets.0 {
        let expected = Sha256::digest(secret.expose().as_bytes());
        matched |= presented.ct_eq(&expected);
    }
    matched.into()
}

/// A header's value as text, if present and visible ASCII.
pub fn header<'a>(request: &'a WebhookRequest<'_>, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A required header, or a 422 naming it.
pub fn required_header<'a>(
    request: &'a WebhookRequest<'_>,
    name: &'static str,
) -> Result<&'a str, NormalizeError> {
    header(request, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(NormalizeError::MissingHeader(name))
}

/// The value at a dotted path (`order.items.0.id`); numeric segments index arrays.
pub fn at_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(value, |v, segment| match v {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// Reads a JSON payload's fields leniently: providers change number/string types and add fields,
/// so a text field also accepts a number, unknown fields are ignored, and paths may be dotted.
pub struct Fields<'a>(&'a Value);

impl<'a> Fields<'a> {
    /// The payload, which must be an object.
    pub fn of(payload: &'a Value) -> Result<Fields<'a>, NormalizeError> {
        if payload.is_object() {
            Ok(Fields(payload))
        } else {
            Err(NormalizeError::NotAnObject)
        }
    }

    /// The raw value at `path`, if present and not null.
    pub fn value(&self, path: &str) -> Option<&'a Value> {
        at_path(self.0, path).filter(|v| !v.is_null())
    }

    /// A text field (numbers and booleans become text, numbers exactly as sent); `None` if
    /// absent, null or blank.
    pub fn text(&self, path: &str) -> Result<Option<String>, NormalizeError> {
        match self.value(path) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            // No store keeps it as text (PostgreSQL refuses it), and no provider sends it.
            Some(Value::String(s)) if s.contains('\0') => Err(NormalizeError::WrongType {
                field: path.to_string(),
                expected: "text without NUL characters",
            }),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(NormalizeError::WrongType {
                field: path.to_string(),
                expected: "a string",
            }),
        }
    }

    /// The first of several paths that has text (providers rename fields across versions).
    pub fn first_text(&self, paths: &[&str]) -> Result<Option<String>, NormalizeError> {
        for path in paths {
            if let Some(v) = self.text(path)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// A text field the provider always sends.
    pub fn required_text(&self, path: &str) -> Result<String, NormalizeError> {
        self.text(path)?
            .ok_or_else(|| NormalizeError::MissingField(path.to_string()))
    }

    /// A decimal amount, kept exactly as sent (a JSON number's literal text, or a numeric string).
    pub fn amount(&self, path: &str) -> Result<Option<String>, NormalizeError> {
        let wrong = || NormalizeError::WrongType {
            field: path.to_string(),
            expected: "a decimal number",
        };
        match self.value(path) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                let digits = s.strip_prefix('-').unwrap_or(s);
                let valid = !digits.is_empty()
                    && digits.split('.').count() <= 2
                    && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                    && !digits.starts_with('.')
                    && !digits.ends_with('.');
                valid.then(|| Some(s.to_string())).ok_or_else(wrong)
            }
            Some(_) => Err(wrong()),
        }
    }

    /// A point in time as milliseconds since the epoch, from a number (seconds or milliseconds,
    /// told apart by size), a numeric string, or an RFC 3339 / ISO 8601 date-time string.
    pub fn time_ms(&self, path: &str) -> Result<Option<u64>, NormalizeError> {
        let wrong = || NormalizeError::WrongType {
            field: path.to_string(),
            expected: "a timestamp",
        };
        let from_number = |n: f64| -> Option<u64> {
            // Below 10^11 it is seconds (until the year 5138), above it milliseconds.
            let ms = if n < 100_000_000_000.0 { n * 1000.0 } else { n };
            (n.is_finite() && n >= 0.0).then_some(ms as u64)
        };
        match self.value(path) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().and_then(from_number).map(Some).ok_or_else(wrong),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                if let Ok(n) = s.parse::<f64>() {
                    return from_number(n).map(Some).ok_or_else(wrong);
                }
                parse_datetime_ms(s).map(Some).ok_or_else(wrong)
            }
            Some(_) => Err(wrong()),
        }
    }
}

/// Parses RFC 3339 (`2023-10-11T10:14:14.491786009Z`, `2020-05-29T07:24:57+05:30`), also with a
/// space instead of `T` or without a zone (taken as UTC, as providers that omit it mean).
pub fn parse_datetime_ms(s: &str) -> Option<u64> {
    use time::format_description::well_known::Rfc3339;
    let normalized = s.replacen(' ', "T", 1);
    let parsed = time::OffsetDateTime::parse(&normalized, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{normalized}Z"), &Rfc3339))
        .ok()?;
    u64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A short, stable digest of the raw body, for dedupe keys of providers that send no id.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(&Sha256::digest(body)[..12])
}

/// Upper-cased, trimmed status text for matching status tables.
pub fn status_key(status: &str) -> String {
    status.trim().to_ascii_uppercase().replace([' ', '-'], "_")
}

/// What provider tests share.
#[cfg(test)]
pub mod testing {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    use super::{NormalizeError, Provider, WebhookRequest};
    use crate::event::NormalizedEvent;

    /// Normalizes `body` sent with `headers` by `p`, as ingress would after authentication.
    pub fn normalize(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn secret_matching_accepts_any_active_secret_only() {
        let secrets = Secrets(vec![Secret::new("old-token"), Secret::new("new-token")]);
        assert!(matches_any_secret(b"old-token", &secrets));
        assert!(matches_any_secret(b"new-token", &secrets));
        assert!(!matches_any_secret(b"new-token ", &secrets));
        assert!(!matches_any_secret(b"", &secrets));
        assert!(!matches_any_secret(b"NEW-TOKEN", &secrets));
    }

    #[test]
    fn fields_are_read_leniently() {
        let v: Value = serde_json::from_str(
            r#"{"a": 12, "b": " ", "c": null, "d": "1738336796675", "e": [1], "o": {"items": [{"id": "x"}]}, "m": 599.95, "big": 12345678901234567890.10}"#,
        )
        .unwrap();
        let f = Fields::of(&v).unwrap();
        assert_eq!(f.text("a").unwrap().as_deref(), Some("12"));
        assert_eq!(f.text("b").unwrap(), None);
        assert_eq!(
            f.required_text("c"),
            Err(NormalizeError::MissingField("c".into()))
        );
        assert_eq!(f.time_ms("d").unwrap(), Some(1738336796675));
        assert!(matches!(f.text("e"), Err(NormalizeError::WrongType { .. })));
        let nul: Value = serde_json::from_str(r#"{"id": "evt\u0000x"}"#).unwrap();
        assert_eq!(
            Fields::of(&nul)
                .unwrap()
                .text("id")
                .unwrap_err()
                .to_string(),
            "field `id` must be text without NUL characters"
        );
        assert_eq!(f.text("o.items.0.id").unwrap().as_deref(), Some("x"));
        assert_eq!(
            f.first_text(&["nope", "o.items.0.id"]).unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(f.amount("m").unwrap().as_deref(), Some("599.95"));
        assert_eq!(
            f.amount("big").unwrap().as_deref(),
            Some("12345678901234567890.10"),
            "amounts must stay exact"
        );
        assert_eq!(
            Fields::of(&serde_json::json!([1])).err(),
            Some(NormalizeError::NotAnObject)
        );
    }

    #[test]
    fn amounts_and_times() {
        let v = serde_json::json!({"s": "109.58", "bad": "1e5", "neg": "-5.10", "t1": "2023-10-11T10:14:14.491786009Z",
            "t2": "2020-05-29T07:24:57+05:30", "t3": 1614265330, "t4": "2024-08-17 16:29:26", "t5": "yesterday"});
        let f = Fields::of(&v).unwrap();
        assert_eq!(f.amount("s").unwrap().as_deref(), Some("109.58"));
        assert_eq!(f.amount("neg").unwrap().as_deref(), Some("-5.10"));
        assert!(f.amount("bad").is_err());
        assert_eq!(f.time_ms("t1").unwrap(), Some(1697019254491));
        assert_eq!(f.time_ms("t2").unwrap(), Some(1590717297000));
        assert_eq!(f.time_ms("t3").unwrap(), Some(1614265330000));
        assert_eq!(f.time_ms("t4").unwrap(), Some(1723912166000));
        assert!(f.time_ms("t5").is_err());
    }
}

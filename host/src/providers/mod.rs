//! Providers: how each provider's requests are authenticated and how its payload becomes a
//! [`NormalizedEvent`]. One file per provider; shared helpers (constant-time comparison, JSON field
//! access) live here.

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Secrets, SourceConfig};
use crate::event::NormalizedEvent;

pub mod fincart;

/// What a provider sees of an incoming webhook: the raw bytes exactly as received (signatures are
/// computed over them), the headers, and the query string.
pub struct WebhookRequest<'a> {
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
    /// The raw query string, if any.
    pub query: Option<&'a str>,
}

/// Why a request was not authenticated. The reason is for logs and metrics only: callers get a
/// generic 401 so that an attacker learns nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure(pub &'static str);

/// Why an authenticated payload cannot be normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalizeError {
    /// A field the provider always sends is missing or null (422 naming it).
    MissingField(&'static str),
    /// A field has a type that cannot be read (422 naming it and the expected type).
    WrongType {
        /// The field.
        field: &'static str,
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
            NormalizeError::WrongType { field, expected } => {
                write!(f, "field `{field}` must be {expected}")
            }
            NormalizeError::NotAnObject => f.write_str("the payload must be a JSON object"),
        }
    }
}

/// A provider as configured for one source: it holds that source's credentials.
pub trait Provider: Send + Sync {
    /// The provider's name, as in the config and the normalized event.
    fn name(&self) -> &'static str;
    /// Checks the request's credentials against the source's secrets, over the raw bytes.
    fn authenticate(&self, request: &WebhookRequest<'_>) -> Result<(), AuthFailure>;
    /// Turns the (already parsed) payload into the normalized event.
    fn normalize(
        &self,
        request: &WebhookRequest<'_>,
        payload: &Value,
    ) -> Result<NormalizedEvent, NormalizeError>;
}

/// Builds the provider for a configured source.
pub fn from_config(source: &SourceConfig) -> Box<dyn Provider> {
    match source {
        SourceConfig::Fincart { token } => Box::new(fincart::Fincart::new(token.clone())),
    }
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

/// Reads a JSON object's fields leniently: providers change number/string types and add fields,
/// so a string field also accepts a number, and unknown fields are ignored.
pub struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl<'a> Fields<'a> {
    /// The payload's top-level object.
    pub fn of(payload: &'a Value) -> Result<Fields<'a>, NormalizeError> {
        payload
            .as_object()
            .map(Fields)
            .ok_or(NormalizeError::NotAnObject)
    }

    /// A text field (numbers and booleans are turned into text); `None` if absent, null or empty.
    pub fn text(&self, field: &'static str) -> Result<Option<String>, NormalizeError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(NormalizeError::WrongType {
                field,
                expected: "a string",
            }),
        }
    }

    /// A text field the provider always sends.
    pub fn required_text(&self, field: &'static str) -> Result<String, NormalizeError> {
        self.text(field)?.ok_or(NormalizeError::MissingField(field))
    }

    /// A millisecond timestamp given as a number or numeric string.
    pub fn millis(&self, field: &'static str) -> Result<Option<u64>, NormalizeError> {
        let wrong = NormalizeError::WrongType {
            field,
            expected: "a timestamp in milliseconds",
        };
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| *f >= 0.0 && f.is_finite())
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or(wrong),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| wrong),
            Some(_) => Err(wrong),
        }
    }
}

/// A short, stable digest of the raw body, for dedupe keys of providers that send no id.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(&Sha256::digest(body)[..12])
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
        let v: Value =
            serde_json::json!({"a": 12, "b": " ", "c": null, "d": "1738336796675", "e": [1]});
        let f = Fields::of(&v).unwrap();
        assert_eq!(f.text("a").unwrap().as_deref(), Some("12"));
        assert_eq!(f.text("b").unwrap(), None);
        assert_eq!(f.required_text("c"), Err(NormalizeError::MissingField("c")));
        assert_eq!(f.millis("d").unwrap(), Some(1738336796675));
        assert!(matches!(
            f.text("e"),
            Err(NormalizeError::WrongType { field: "e", .. })
        ));
        assert_eq!(
            Fields::of(&serde_json::json!([1])).err(),
            Some(NormalizeError::NotAnObject)
        );
    }
}

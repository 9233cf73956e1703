//! Providers: how each provider's requests are authenticated and how its payload becomes a
//! [`NormalizedEvent`]. One file per provider; authentication schemes are composable checks in
//! [`auth`]; shared helpers (constant-time comparison, lenient JSON field access) live here.
//!
//! A configured [`Source`] is a provider's normalizer plus the checks its requests must pass.

use std::net::IpAddr;

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Secrets, SourceConfig};
use crate::event::NormalizedEvent;

pub mod auth;
pub mod fincart;
pub mod finchpay;
pub mod generic;
pub mod juspay;
pub mod selldone;
pub mod sevi;
pub mod sign;
pub mod signed;

pub use auth::AuthCheck;

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

/// A configured webhook source: a provider and the checks its requests must pass.
pub struct Source {
    /// Normalizes payloads.
    pub provider: Box<dyn Provider>,
    /// Every check must pass (at least one is always configured).
    pub checks: Vec<AuthCheck>,
    /// The headers its checks read credentials from (lowercase), never journaled.
    pub credential_headers: Vec<String>,
    /// Its ingest metrics.
    pub metrics: crate::telemetry::SourceMetrics,
    /// Throttles the log line written per refused request.
    pub refusals_logged: RefusalLog,
}

impl Source {
    /// Runs every check; the first failure is returned.
    pub fn authenticate(&self, request: &WebhookRequest<'_>) -> Result<(), AuthFailure> {
        let now_secs = crate::now_ms() / 1000;
        for check in &self.checks {
            check.check(request, now_secs)?;
        }
        Ok(())
    }

    /// Whether authenticating a body of `body_len` bytes may take long enough that it must run
    /// off the async workers (see [`AuthCheck::is_cpu_heavy`]).
    pub fn authentication_is_cpu_heavy(&self, body_len: usize) -> bool {
        self.checks.iter().any(|c| c.is_cpu_heavy(body_len))
    }

    /// Whether `name` (lowercase) is a header this source's authentication reads.
    pub fn is_credential_header(&self, name: &str) -> bool {
        self.credential_headers.iter().any(|h| h == name)
    }
}

/// How often a source logs refused requests: the first refusal at once, then at most one line
/// per [`RefusalLog::INTERVAL_MS`] saying how many were refused since, so an unauthenticated flood
/// cannot flood the log (the metric counts every one).
#[derive(Debug, Default)]
pub struct RefusalLog {
    last_logged_ms: std::sync::atomic::AtomicU64,
    unlogged: std::sync::atomic::AtomicU64,
}

impl RefusalLog {
    /// At most one line per this many milliseconds per source.
    pub const INTERVAL_MS: u64 = 10_000;

    /// Counts a refusal at `now_ms`; returns how many refusals the line to write now should
    /// report (this one included), or `None` when this one is only counted.
    pub fn record(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        self.unlogged.fetch_add(1, Relaxed);
        let last = self.last_logged_ms.load(Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < Self::INTERVAL_MS {
            return None;
        }
        // One thread wins the slot; the others keep counting.
        self.last_logged_ms
            .compare_exchange(last, now_ms.max(1), Relaxed, Relaxed)
            .ok()?;
        Some(self.unlogged.swap(0, Relaxed).max(1))
    }
}

/// Builds a configured source: its provider's normalizer and every check its requests must pass.
/// Refuses sources that would accept anyone (no credential and no IP allow-list).
pub fn build(
    config: &SourceConfig,
    metrics: crate::telemetry::SourceMetrics,
) -> anyhow::Result<Source> {
    use crate::config::{AuthConfig, HmacAlgorithm, HmacEncoding, ProviderConfig as P};
    let standard_keys = |secret: &Secrets| -> anyhow::Result<Vec<Vec<u8>>> {
        secret.0.iter().map(auth::decode_standard_secret).collect()
    };
    let (provider, mut checks): (Box<dyn Provider>, Vec<AuthCheck>) = match &config.provider {
        P::Fincart { token } => (Box::new(fincart::Fincart), fincart::checks(token.clone())),
        P::Sevi { token, header } => (Box::new(sevi::Sevi), sevi::checks(token.clone(), header)),
        P::Juspay {
            username,
            password,
            required_headers,
        } => (
            Box::new(juspay::Juspay),
            juspay::checks(username, password.clone(), required_headers)?,
        ),
        P::Finchpay {
            token,
            token_in,
            token_name,
        } => (
            Box::new(finchpay::FinchPay),
            finchpay::checks(token.clone(), *token_in, token_name.as_deref()),
        ),
        P::Selldone {
            token,
            sign_key,
            tolerance_secs,
            sign_cost,
        } => (
            Box::new(selldone::Selldone),
            selldone::checks(token.clone(), sign_key.clone(), *tolerance_secs, *sign_cost)?,
        ),
        P::StandardWebhooks {
            secret,
            tolerance_secs,
            mapping,
        } => (
            Box::new(generic::Generic::new(
                "standard-webhooks",
                signed::standard_webhooks_mapping(mapping.clone()),
            )),
            vec![AuthCheck::StandardWebhooks {
                keys: standard_keys(secret)?,
                tolerance_secs: *tolerance_secs,
            }],
        ),
        P::Stripe {
            secret,
            tolerance_secs,
        } => (
            Box::new(signed::Stripe),
            vec![AuthCheck::Stripe {
                secrets: secret.clone(),
                tolerance_secs: *tolerance_secs,
            }],
        ),
        P::Shopify { secret } => (
            Box::new(signed::Shopify),
            vec![AuthCheck::Shopify(secret.clone())],
        ),
        P::Github { secret } => (
            Box::new(signed::GitHub),
            vec![AuthCheck::GitHub(secret.clone())],
        ),
        P::Generic { auth, mapping } => {
            let check = match auth {
                AuthConfig::Token {
                    token,
                    token_in,
                    name,
                } => Some(AuthCheck::Token {
                    tokens: token.clone(),
                    location: match token_in {
                        crate::config::TokenIn::Header => auth::TokenLocation::Header(
                            name.as_deref()
                                .unwrap_or("authorization")
                                .to_ascii_lowercase(),
                        ),
                        crate::config::TokenIn::Query => auth::TokenLocation::Query(
                            name.clone().unwrap_or_else(|| "token".into()),
                        ),
                        crate::config::TokenIn::Path => auth::TokenLocation::Path,
                    },
                }),
                AuthConfig::Basic { username, password } => {
                    if username.contains(':') {
                        anyhow::bail!("a Basic user name cannot contain ':'");
                    }
                    Some(AuthCheck::Basic {
                        username: username.clone(),
                        passwords: password.clone(),
                    })
                }
                AuthConfig::Hmac {
                    secret,
                    header,
                    algorithm,
                    encoding,
                    prefix,
                    template,
                    timestamp_header,
                    tolerance_secs,
                } => {
                    if template.contains("{timestamp}") && timestamp_header.is_none() {
                        anyhow::bail!(
                            "the signing template uses {{timestamp}}: set timestamp_header"
                        );
                    }
                    Some(AuthCheck::Hmac(auth::HmacScheme {
                        secrets: secret.clone(),
                        algorithm: match algorithm {
                            HmacAlgorithm::Sha256 => auth::Algorithm::Sha256,
                            HmacAlgorithm::Sha512 => auth::Algorithm::Sha512,
                        },
                        encoding: match encoding {
                            HmacEncoding::Hex => auth::Encoding::Hex,
                            HmacEncoding::Base64 => auth::Encoding::Base64,
                        },
                        header: header.to_ascii_lowercase(),
                        prefix: prefix.clone(),
                        template: template.clone(),
                        timestamp_header: timestamp_header.as_ref().map(|h| h.to_ascii_lowercase()),
                        tolerance_secs: *tolerance_secs,
                    }))
                }
                AuthConfig::StandardWebhooks {
                    secret,
                    tolerance_secs,
                } => Some(AuthCheck::StandardWebhooks {
                    keys: standard_keys(secret)?,
                    tolerance_secs: *tolerance_secs,
                }),
                AuthConfig::Stripe {
                    secret,
                    tolerance_secs,
                } => Some(AuthCheck::Stripe {
                    secrets: secret.clone(),
                    tolerance_secs: *tolerance_secs,
                }),
                AuthConfig::Shopify { secret } => Some(AuthCheck::Shopify(secret.clone())),
                AuthConfig::Github { secret } => Some(AuthCheck::GitHub(secret.clone())),
                AuthConfig::None => None,
            };
            (
                Box::new(generic::Generic::new("generic", mapping.clone())),
                check.into_iter().collect(),
            )
        }
    };
    if !config.allow_ips.is_empty() {
        let networks = parse_networks("allow_ips", &config.allow_ips)?;
        let proxy = match (&config.trusted_proxy_header, config.trusted_proxies.is_empty()) {
            (None, true) => None,
            (Some(header), false) => Some(auth::TrustedProxy {
                header: header.to_ascii_lowercase(),
                proxies: parse_networks("trusted_proxies", &config.trusted_proxies)?,
            }),
            (Some(_), true) => anyhow::bail!(
                "trusted_proxy_header needs trusted_proxies: the addresses of your reverse proxies (the header is read only from them; anyone else could forge it)"
            ),
            (None, false) => {
                anyhow::bail!("trusted_proxies needs trusted_proxy_header (e.g. \"X-Forwarded-For\")")
            }
        };
        checks.push(AuthCheck::IpAllowList { networks, proxy });
    } else if config.trusted_proxy_header.is_some() || !config.trusted_proxies.is_empty() {
        anyhow::bail!("trusted_proxy_header and trusted_proxies only make sense with allow_ips");
    }
    if checks.is_empty() {
        anyhow::bail!("this source would accept anyone: give it a token or secret, or restrict it with allow_ips");
    }
    let mut credential_headers: Vec<String> = checks
        .iter()
        .flat_map(AuthCheck::credential_headers)
        .collect();
    credential_headers.sort();
    credential_headers.dedup();
    Ok(Source {
        provider,
        checks,
        credential_headers,
        metrics,
        refusals_logged: RefusalLog::default(),
    })
}

fn parse_networks(key: &str, entries: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    entries
        .iter()
        .map(|n| {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!("{key} entry {n:?} is not an IP address or CIDR network")
                })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn refused_requests_are_logged_once_per_interval_with_a_count() {
        let log = RefusalLog::default();
        assert_eq!(log.record(1_000), Some(1));
        for t in 1_001..1_500 {
            assert_eq!(log.record(t), None);
        }
        assert_eq!(
            log.record(1_000 + RefusalLog::INTERVAL_MS),
            Some(500),
            "the line after the interval reports every refusal since the last line"
        );
        assert_eq!(log.record(1_001 + RefusalLog::INTERVAL_MS), None);
    }

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

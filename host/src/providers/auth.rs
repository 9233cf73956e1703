//! Authentication schemes, each a check over the raw request. A source passes when every one of
//! its checks passes. All secret comparisons are constant-time (MACs through `subtle`, tokens
//! through [`super::matches_any_secret`]); every scheme accepts several active secrets so
//! operators can rotate without downtime. Failure reasons go to the log, never to the caller.
//!
//! Work per unauthenticated request is bounded: a MAC is computed once per secret whatever the
//! number of signatures presented, presented signatures of the wrong length are dropped before
//! any hashing, at most [`MAX_SIGNATURE_CANDIDATES`] entries of a signature header are looked at,
//! and bcrypt runs only at the operator's configured cost.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{header, matches_any_secret, AuthFailure, WebhookRequest};
use crate::config::{Secret, Secrets};

/// Default tolerance for signed timestamps (Standard Webhooks, Stripe): five minutes either way.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Signature entries of one header looked at (Stripe's `v1=`, Standard Webhooks' `v1,`). Senders
/// present one per active secret (two during a rotation); the rest are ignored, so a header with
/// thousands of entries costs no more than one with a handful.
pub const MAX_SIGNATURE_CANDIDATES: usize = 8;

/// Bodies at least this large make a MAC check worth moving off the async workers.
pub const HEAVY_BODY_BYTES: usize = 64 * 1024;

/// `X-Forwarded-For` entries looked at, from the right.
const MAX_FORWARDED_HOPS: usize = 32;

/// Where a token is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    /// In a header (a `Bearer ` prefix is accepted).
    Header(String),
    /// In a query parameter.
    Query(String),
    /// As the last path segment: `/hooks/{tenant}/{source}/{token}`.
    Path,
}

/// HMAC digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase or uppercase hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// A generic HMAC scheme: which header carries the signature and what is signed.
#[derive(Debug, Clone)]
pub struct HmacScheme {
    /// Signing secrets (any may match).
    pub secrets: Secrets,
    /// Digest.
    pub algorithm: Algorithm,
    /// Signature encoding.
    pub encoding: Encoding,
    /// Header carrying the signature.
    pub header: String,
    /// Text before the signature in the header (e.g. `sha256=`).
    pub prefix: Option<String>,
    /// What is signed: `{body}`, `{timestamp}` (the timestamp header's value) and
    /// `{header:Name}` are replaced; e.g. `{timestamp}.{body}`. Default `{body}`.
    pub template: String,
    /// Header carrying a timestamp (seconds or milliseconds since the epoch) that is checked
    /// against `tolerance_secs`.
    pub timestamp_header: Option<String>,
    /// Largest accepted clock difference for the timestamp.
    pub tolerance_secs: u64,
}

/// One authentication check.
#[derive(Debug, Clone)]
pub enum AuthCheck {
    /// A shared token.
    Token {
        /// Accepted tokens.
        tokens: Secrets,
        /// Where it is presented.
        location: TokenLocation,
    },
    /// HTTP Basic authentication.
    Basic {
        /// The expected user name.
        username: String,
        /// Accepted passwords.
        passwords: Secrets,
    },
    /// Headers that must carry given values (e.g. Juspay's custom headers).
    RequiredHeaders(Vec<(String, Secret)>),
    /// A generic HMAC signature.
    Hmac(HmacScheme),
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks {
        /// Signing keys, decoded from `whsec_<base64>`.
        keys: Vec<Vec<u8>>,
        /// Timestamp tolerance.
        tolerance_secs: u64,
    },
    /// Stripe (`Stripe-Signature: t=...,v1=...`).
    Stripe {
        /// Endpoint secrets (`whsec_...`, used as given).
        secrets: Secrets,
        /// Timestamp tolerance.
        tolerance_secs: u64,
    },
    /// Shopify (`X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the body).
    Shopify(Secrets),
    /// GitHub (`X-Hub-Signature-256: sha256=<hex>`).
    GitHub(Secrets),
    /// Selldone's `Selldone-Sign-Id` / `Selldone-Sign-Hash`: a bcrypt hash of `{key}:{sign-id}`,
    /// the sign id being the request's UTC timestamp.
    SelldoneSign {
        /// Sign keys.
        keys: Secrets,
        /// Sign id (timestamp) tolerance.
        tolerance_secs: u64,
        /// The bcrypt cost Selldone signs with; a hash of any other cost is refused before
        /// hashing (the cost is the caller's choice otherwise, up to hours of CPU).
        cost: u32,
    },
    /// The caller's address must be in one of these networks. The address is the TCP peer's;
    /// when the peer is one of the operator's trusted proxies, it is read from the proxy's header.
    IpAllowList {
        /// Allowed networks.
        networks: Vec<IpNet>,
        /// The reverse proxies in front of hookhost and the header they set, if any.
        proxy: Option<TrustedProxy>,
    },
}

/// Reverse proxies the operator runs in front of hookhost, and the header they append the
/// caller's address to (e.g. `X-Forwarded-For`). The header is read only from these peers, and the
/// caller is its rightmost address that is not one of them: entries further left were written by
/// whoever sent the request, so anyone could forge them.
#[derive(Debug, Clone)]
pub struct TrustedProxy {
    /// The header's name, lowercase.
    pub header: String,
    /// The proxies' networks.
    pub proxies: Vec<IpNet>,
}

impl TrustedProxy {
    fn is_proxy(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|n| n.contains(&unmapped(ip)))
    }

    /// The caller's address: the peer's when the peer is not a trusted proxy; else the rightmost
    /// address of the header that is not a trusted proxy (`None` if the header is missing or
    /// that entry is not an address).
    pub fn caller(&self, request: &WebhookRequest<'_>) -> Option<IpAddr> {
        let peer = unmapped(request.peer?);
        if !self.is_proxy(peer) {
            return Some(peer);
        }
        // Several header lines are one list, in order (RFC 9110 5.3).
        let lines: Vec<&str> = request
            .headers
            .get_all(self.header.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let mut last = None;
        for entry in lines
            .iter()
            .rev()
            .flat_map(|l| l.rsplit(','))
            .take(MAX_FORWARDED_HOPS)
        {
            let ip = unmapped(parse_forwarded_address(entry)?);
            if !self.is_proxy(ip) {
                return Some(ip);
            }
            last = Some(ip);
        }
        // Every hop looked at is a proxy: the leftmost of them is the caller.
        last
    }
}

/// An address as proxies write it: `203.0.113.9`, `2001:db8::1`, `[2001:db8::1]:443`,
/// `203.0.113.9:443`.
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim().trim_matches('"');
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// An IPv4-mapped IPv6 address as IPv4, so `::ffff:203.0.113.9` matches `203.0.113.0/24`.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl AuthCheck {
    /// Whether the request passes this check, at `now_secs`.
    pub fn check(&self, request: &WebhookRequest<'_>, now_secs: u64) -> Result<(), AuthFailure> {
        match self {
            AuthCheck::Token { tokens, location } => {
                let presented = match location {
                    TokenLocation::Header(name) => header(request, name)
                        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string()),
                    TokenLocation::Query(name) => query_param(request.query, name),
                    TokenLocation::Path => request.path_token.map(str::to_string),
                };
                let presented = presented.ok_or(AuthFailure("token missing"))?;
                matches_any_secret(presented.as_bytes(), tokens)
                    .then_some(())
                    .ok_or(AuthFailure("wrong token"))
            }
            AuthCheck::Basic {
                username,
                passwords,
            } => check_basic(request, username, passwords),
            AuthCheck::RequiredHeaders(required) => {
                for (name, value) in required {
                    let presented =
                        header(request, name).ok_or(AuthFailure("a required header is missing"))?;
                    if !matches_any_secret(presented.as_bytes(), &Secrets(vec![value.clone()])) {
                        return Err(AuthFailure("a required header has the wrong value"));
                    }
                }
                Ok(())
            }
            AuthCheck::Hmac(scheme) => check_hmac(request, scheme, now_secs),
            AuthCheck::StandardWebhooks {
                keys,
                tolerance_secs,
            } => check_standard(request, keys, *tolerance_secs, now_secs),
            AuthCheck::Stripe {
                secrets,
                tolerance_secs,
            } => check_stripe(request, secrets, *tolerance_secs, now_secs),
            AuthCheck::Shopify(secrets) => {
                let presented = header(request, "x-shopify-hmac-sha256")
                    .ok_or(AuthFailure("signature header missing"))?;
                let sig = B64
                    .decode(presented.trim())
                    .map_err(|_| AuthFailure("signature is not base64"))?;
                any_mac(secrets, Algorithm::Sha256, &[request.body], &[sig])
            }
            AuthCheck::GitHub(secrets) => {
                let presented = header(request, "x-hub-signature-256")
                    .ok_or(AuthFailure("signature header missing"))?;
                let hex_sig = presented
                    .trim()
                    .strip_prefix("sha256=")
                    .ok_or(AuthFailure("signature lacks the sha256= prefix"))?;
                let sig = hex::decode(hex_sig).map_err(|_| AuthFailure("signature is not hex"))?;
                any_mac(secrets, Algorithm::Sha256, &[request.body], &[sig])
            }
            AuthCheck::SelldoneSign {
                keys,
                tolerance_secs,
                cost,
            } => check_selldone(request, keys, *tolerance_secs, *cost, now_secs),
            AuthCheck::IpAllowList { networks, proxy } => {
                let ip = match proxy {
                    Some(proxy) => proxy.caller(request),
                    None => request.peer.map(unmapped),
                };
                let ip = ip.ok_or(AuthFailure("caller address unknown"))?;
                networks
                    .iter()
                    .any(|n| n.contains(&ip))
                    .then_some(())
                    .ok_or(AuthFailure("caller address not allowed"))
            }
        }
    }
}

impl AuthCheck {
    /// The request headers this check reads a credential from (lowercase): they are never
    /// journaled, whatever the operator named them.
    pub fn credential_headers(&self) -> Vec<String> {
        let fixed = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        match self {
            AuthCheck::Token {
                location: TokenLocation::Header(name),
                ..
            } => vec![name.clone()],
            AuthCheck::Token { .. } | AuthCheck::IpAllowList { .. } => Vec::new(),
            AuthCheck::Basic { .. } => fixed(&["authorization"]),
            AuthCheck::RequiredHeaders(required) => {
                required.iter().map(|(name, _)| name.clone()).collect()
            }
            AuthCheck::Hmac(scheme) => vec![scheme.header.clone()],
            AuthCheck::StandardWebhooks { .. } => fixed(&["webhook-signature", "svix-signature"]),
            AuthCheck::Stripe { .. } => fixed(&["stripe-signature"]),
            AuthCheck::Shopify(_) => fixed(&["x-shopify-hmac-sha256"]),
            AuthCheck::GitHub(_) => fixed(&["x-hub-signature-256", "x-hub-signature"]),
            AuthCheck::SelldoneSign { .. } => fixed(&["selldone-sign-hash"]),
        }
    }

    /// Whether checking a request with a body of `body_len` bytes may take long enough (a MAC
    /// over a large body, any bcrypt) that it must not run on an async worker.
    pub fn is_cpu_heavy(&self, body_len: usize) -> bool {
        match self {
            AuthCheck::SelldoneSign { .. } => true,
            AuthCheck::Hmac(_)
            | AuthCheck::StandardWebhooks { .. }
            | AuthCheck::Stripe { .. }
            | AuthCheck::Shopify(_)
            | AuthCheck::GitHub(_) => body_len >= HEAVY_BODY_BYTES,
            AuthCheck::Token { .. }
            | AuthCheck::Basic { .. }
            | AuthCheck::RequiredHeaders(_)
            | AuthCheck::IpAllowList { .. } => false,
        }
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn check_basic(
    request: &WebhookRequest<'_>,
    username: &str,
    passwords: &Secrets,
) -> Result<(), AuthFailure> {
    let value =
        header(request, "authorization").ok_or(AuthFailure("Authorization header missing"))?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or(AuthFailure("not Basic authentication"))?;
    let decoded = B64
        .decode(encoded.trim())
        .map_err(|_| AuthFailure("Basic credentials are not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| AuthFailure("Basic credentials are not UTF-8"))?;
    // The user name cannot contain ':' (RFC 7617), so the first ':' separates the password.
    let (user, password) = decoded
        .split_once(':')
        .ok_or(AuthFailure("Basic credentials lack a ':'"))?;
    let user_ok = matches_any_secret(user.as_bytes(), &Secrets(vec![Secret::new(username)]));
    let password_ok = matches_any_secret(password.as_bytes(), passwords);
    (user_ok & password_ok)
        .then_some(())
        .ok_or(AuthFailure("wrong Basic credentials"))
}

/// Whether any of `candidates` is the HMAC of the concatenated `parts` under any of `secrets`.
fn any_mac(
    secrets: &Secrets,
    algorithm: Algorithm,
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Result<(), AuthFailure> {
    let keys: Vec<&[u8]> = secrets.0.iter().map(|s| s.expose().as_bytes()).collect();
    any_mac_keys(&keys, algorithm, parts, candidates)
}

/// The MAC is computed once per key, never per candidate; candidates that cannot be a MAC of
/// this algorithm (wrong length) are dropped before any hashing, so a request full of junk
/// signatures costs nothing but the parsing. Comparisons are constant-time, and every key and
/// candidate is compared (no early exit revealing which matched).
fn any_mac_keys(
    keys: &[&[u8]],
    algorithm: Algorithm,
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Result<(), AuthFailure> {
    let length = match algorithm {
        Algorithm::Sha256 => 32,
        Algorithm::Sha512 => 64,
    };
    let candidates: Vec<&[u8]> = candidates
        .iter()
        .map(Vec::as_slice)
        .filter(|c| c.len() == length)
        .take(MAX_SIGNATURE_CANDIDATES)
        .collect();
    if candidates.is_empty() {
        return Err(AuthFailure("no signature of the expected length"));
    }
    let mut matched = subtle::Choice::from(0);
    for key in keys {
        let expected = mac(algorithm, key, parts);
        for candidate in &candidates {
            matched |= expected.as_slice().ct_eq(candidate);
        }
    }
    bool::from(matched)
        .then_some(())
        .ok_or(AuthFailure("signature does not match"))
}

/// The HMAC of the concatenated `parts` under `key` (the body is never copied into one message).
/// The verifier and the sender's side ([`super::sign`]) both use it.
pub fn mac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match algorithm {
        Algorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            parts.iter().for_each(|p| mac.update(p));
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
            parts.iter().for_each(|p| mac.update(p));
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// Checks a seconds-or-milliseconds timestamp against the tolerance (stale or from the future).
fn check_timestamp(value: &str, tolerance_secs: u64, now_secs: u64) -> Result<u64, AuthFailure> {
    let raw: u64 = value
        .trim()
        .parse()
        .map_err(|_| AuthFailure("timestamp is not a number"))?;
    let secs = if raw > 100_000_000_000 {
        raw / 1000
    } else {
        raw
    };
    if secs + tolerance_secs < now_secs {
        return Err(AuthFailure("timestamp too old"));
    }
    if secs > now_secs + tolerance_secs {
        return Err(AuthFailure("timestamp in the future"));
    }
    Ok(secs)
}

fn check_hmac(
    request: &WebhookRequest<'_>,
    scheme: &HmacScheme,
    now_secs: u64,
) -> Result<(), AuthFailure> {
    let presented = header(request, &scheme.header)
        .ok_or(AuthFailure("signature header missing"))?
        .trim();
    let presented = match &scheme.prefix {
        Some(prefix) => presented
            .strip_prefix(prefix.as_str())
            .ok_or(AuthFailure("signature lacks its prefix"))?,
        None => presented,
    };
    let signature = match scheme.encoding {
        Encoding::Hex => hex::decode(presented).map_err(|_| AuthFailure("signature is not hex"))?,
        Encoding::Base64 => B64
            .decode(presented)
            .map_err(|_| AuthFailure("signature is not base64"))?,
    };
    let timestamp = match &scheme.timestamp_header {
        Some(name) => {
            let value = header(request, name).ok_or(AuthFailure("timestamp header missing"))?;
            check_timestamp(value, scheme.tolerance_secs, now_secs)?;
            Some(value)
        }
        None => None,
    };
    let parts = render_template(&scheme.template, request, timestamp)?;
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_ref()).collect();
    any_mac(&scheme.secrets, scheme.algorithm, &parts, &[signature])
}

/// The signed content of a generic HMAC scheme, as byte pieces (the body is never copied).
fn render_template<'a>(
    template: &str,
    request: &'a WebhookRequest<'_>,
    timestamp: Option<&'a str>,
) -> Result<Vec<std::borrow::Cow<'a, [u8]>>, AuthFailure> {
    use std::borrow::Cow;
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        parts.push(Cow::Owned(rest.as_bytes()[..start].to_vec()));
        let end = rest[start..]
            .find('}')
            .ok_or(AuthFailure("signing template is malformed"))?
            + start;
        let name = &rest[start + 1..end];
        match name {
            "body" => parts.push(Cow::Borrowed(request.body)),
            "timestamp" => parts.push(Cow::Borrowed(
                timestamp
                    .ok_or(AuthFailure(
                        "template uses {timestamp} without a timestamp header",
                    ))?
                    .as_bytes(),
            )),
            other => match other.strip_prefix("header:") {
                Some(h) => parts.push(Cow::Owned(
                    header(request, h)
                        .ok_or(AuthFailure("a signed header is missing"))?
                        .as_bytes()
                        .to_vec(),
                )),
                None => return Err(AuthFailure("signing template names an unknown field")),
            },
        }
        rest = &rest[end + 1..];
    }
    parts.push(Cow::Owned(rest.as_bytes().to_vec()));
    Ok(parts)
}

/// Decodes a Standard Webhooks secret (`whsec_<base64>`; a bare base64 key is accepted too).
pub fn decode_standard_secret(secret: &Secret) -> anyhow::Result<Vec<u8>> {
    let text = secret.expose();
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    B64.decode(b64).map_err(|_| {
        anyhow::anyhow!("a Standard Webhooks secret must be `whsec_` followed by base64")
    })
}

/// Standard Webhooks, also under the `svix-` header names that senders built on Svix use (the
/// same scheme; `webhook-` names win when both are present).
fn check_standard(
    request: &WebhookRequest<'_>,
    keys: &[Vec<u8>],
    tolerance_secs: u64,
    now_secs: u64,
) -> Result<(), AuthFailure> {
    let prefix = if header(request, "webhook-id").is_some() {
        "webhook"
    } else {
        "svix"
    };
    let named = |suffix: &str| header(request, &format!("{prefix}-{suffix}"));
    let id = named("id").ok_or(AuthFailure("webhook-id missing"))?;
    let timestamp = named("timestamp").ok_or(AuthFailure("webhook-timestamp missing"))?;
    check_timestamp(timestamp, tolerance_secs, now_secs)?;
    let signatures = named("signature").ok_or(AuthFailure("webhook-signature missing"))?;
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let parts: [&[u8]; 5] = [
        id.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        request.body,
    ];
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .take(MAX_SIGNATURE_CANDIDATES)
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|sig| B64.decode(sig).ok())
        .collect();
    any_mac_keys(&keys, Algorithm::Sha256, &parts, &candidates)
        .map_err(|_| AuthFailure("no webhook-signature entry matches"))
}

fn check_stripe(
    request: &WebhookRequest<'_>,
    secrets: &Secrets,
    tolerance_secs: u64,
    now_secs: u64,
) -> Result<(), AuthFailure> {
    let value =
        header(request, "stripe-signature").ok_or(AuthFailure("Stripe-Signature missing"))?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    // `t=` plus one `v1=` per active secret (and possibly `v0=`): a handful of items at most.
    for item in value.split(',').take(MAX_SIGNATURE_CANDIDATES + 2) {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", s)) => candidates.extend(hex::decode(s).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(AuthFailure("Stripe-Signature has no timestamp"))?;
    check_timestamp(timestamp, tolerance_secs, now_secs)?;
    let parts: [&[u8]; 3] = [timestamp.as_bytes(), b".", request.body];
    any_mac(secrets, Algorithm::Sha256, &parts, &candidates)
        .map_err(|_| AuthFailure("no v1 signature matches"))
}

/// The longest sign key: bcrypt reads 72 bytes of `{key}:{sign-id}`, and the sign id (a
/// timestamp in seconds or milliseconds) needs up to 13 of them plus the colon. A longer key would
/// silently stop binding the timestamp.
pub const MAX_SELLDONE_KEY_BYTES: usize = 72 - 1 - 13;

fn check_selldone(
    request: &WebhookRequest<'_>,
    keys: &Secrets,
    tolerance_secs: u64,
    cost: u32,
    now_secs: u64,
) -> Result<(), AuthFailure> {
    let id = header(request, "selldone-sign-id").ok_or(AuthFailure("Selldone-Sign-Id missing"))?;
    let hash =
        header(request, "selldone-sign-hash").ok_or(AuthFailure("Selldone-Sign-Hash missing"))?;
    check_timestamp(id, tolerance_secs, now_secs)?;
    // `$2b$10$` + 53 characters of salt and hash: the cost is checked before any hashing.
    let mut fields = hash.splitn(4, '$');
    let (empty, version, presented_cost, rest) =
        (fields.next(), fields.next(), fields.next(), fields.next());
    let well_formed = empty == Some("")
        && matches!(version, Some("2a" | "2b" | "2y"))
        && rest.is_some_and(|r| r.len() == 53);
    if !well_formed {
        return Err(AuthFailure("Selldone sign hash is not a bcrypt hash"));
    }
    if presented_cost.and_then(|c| c.parse::<u32>().ok()) != Some(cost) {
        return Err(AuthFailure(
            "Selldone sign hash has an unexpected bcrypt cost",
        ));
    }
    let mut matched = false;
    for key in &keys.0 {
        matched |=
            bcrypt::non_truncating_verify(format!("{}:{id}", key.expose()), hash).unwrap_or(false);
    }
    matched
        .then_some(())
        .ok_or(AuthFailure("Selldone sign hash does not match"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    fn request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            headers,
            body,
            query: None,
            path_token: None,
            peer: None,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn secrets(list: &[&str]) -> Secrets {
        Secrets(list.iter().map(|s| Secret::new(*s)).collect())
    }

    /// The published Standard Webhooks example (standardwebhooks.com / svix docs), checked with
    /// `openssl dgst -sha256 -mac HMAC` when written: not computed by this code.
    #[test]
    fn standard_webhooks_published_vector() {
        let key =
            decode_standard_secret(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bm9ldHZhbGlk v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let body = br#"{"test": 2432232314}"#;
        let check = AuthCheck::StandardWebhooks {
            keys: vec![key],
            tolerance_secs: 300,
        };
        assert_eq!(check.check(&request(&h, body), 1614265330 + 10), Ok(()));
        assert_eq!(
            check.check(&request(&h, body), 1614265330 + 301),
            Err(AuthFailure("timestamp too old"))
        );
        assert_eq!(
            check.check(&request(&h, body), 1614265330 - 301),
            Err(AuthFailure("timestamp in the future"))
        );
        assert!(check
            .check(&request(&h, br#"{"test": 2432232315}"#), 1614265330)
            .is_err());
    }

    #[test]
    fn basic_checks_user_and_password() {
        let check = AuthCheck::Basic {
            username: "merchant".into(),
            passwords: secrets(&["old", "new"]),
        };
        let with = |user_pass: &str| {
            let h = headers(&[("authorization", &format!("Basic {}", B64.encode(user_pass)))]);
            check.check(&request(&h, b""), 0)
        };
        assert_eq!(with("merchant:new"), Ok(()));
        assert_eq!(with("merchant:old"), Ok(()));
        assert_eq!(
            with("merchant:pass:with:colons"),
            Err(AuthFailure("wrong Basic credentials"))
        );
        assert_eq!(
            with("other:new"),
            Err(AuthFailure("wrong Basic credentials"))
        );
        assert_eq!(
            with("merchantnew"),
            Err(AuthFailure("Basic credentials lack a ':'"))
        );
        let h = headers(&[("authorization", "Bearer x")]);
        assert_eq!(
            check.check(&request(&h, b""), 0),
            Err(AuthFailure("not Basic authentication"))
        );
    }

    #[test]
    fn tokens_in_query_and_path() {
        let check = AuthCheck::Token {
            tokens: secrets(&["t0k"]),
            location: TokenLocation::Query("key".into()),
        };
        let h = HeaderMap::new();
        let mut r = request(&h, b"");
        r.query = Some("a=1&key=t0k");
        assert_eq!(check.check(&r, 0), Ok(()));
        r.query = Some("key=nope");
        assert_eq!(check.check(&r, 0), Err(AuthFailure("wrong token")));
        let path = AuthCheck::Token {
            tokens: secrets(&["t0k"]),
            location: TokenLocation::Path,
        };
        r.path_token = Some("t0k");
        assert_eq!(path.check(&r, 0), Ok(()));
    }

    #[test]
    fn ip_allow_list_reads_the_proxy_header_only_from_trusted_proxies() {
        let nets = vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let direct = AuthCheck::IpAllowList {
            networks: nets.clone(),
            proxy: None,
        };
        let proxied = AuthCheck::IpAllowList {
            networks: nets,
            proxy: Some(TrustedProxy {
                header: "x-forwarded-for".into(),
                proxies: vec!["10.0.0.0/8".parse().unwrap()],
            }),
        };
        let check = |check: &AuthCheck, peer: &str, forwarded: &[&str]| {
            let mut h = HeaderMap::new();
            for line in forwarded {
                h.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
            }
            let mut r = request(&h, b"");
            r.peer = Some(peer.parse().unwrap());
            check.check(&r, 0)
        };
        // The review's case: a direct caller (not a proxy) writes an allowed address first.
        assert!(check(&direct, "127.0.0.1", &["203.0.113.9, 127.0.0.1"]).is_err());
        assert!(
            check(&proxied, "127.0.0.1", &["203.0.113.9, 127.0.0.1"]).is_err(),
            "header trusted from a peer that is not a proxy"
        );
        // Through the proxy: the rightmost address the proxy did not add is the caller.
        assert_eq!(check(&proxied, "10.0.0.5", &["203.0.113.9"]), Ok(()));
        assert_eq!(
            check(
                &proxied,
                "10.0.0.5",
                &["198.51.100.1, 203.0.113.9, 10.0.0.7"]
            ),
            Ok(())
        );
        assert!(
            check(&proxied, "10.0.0.5", &["203.0.113.9, 198.51.100.1"]).is_err(),
            "leftmost (forgeable) entry trusted"
        );
        // Several header lines are one list; ports and brackets as proxies write them.
        assert_eq!(
            check(&proxied, "10.0.0.5", &["198.51.100.1", "[2001:db8::1]:443"]),
            Ok(())
        );
        assert!(check(&proxied, "10.0.0.5", &["203.0.113.9, junk"]).is_err());
        assert!(check(&proxied, "10.0.0.5", &[]).is_err(), "no header");
        // Direct callers are judged by their own address, IPv4-mapped or not.
        assert_eq!(check(&proxied, "::ffff:203.0.113.7", &[]), Ok(()));
        assert_eq!(check(&direct, "2001:db8::1", &[]), Ok(()));
    }

    fn stripe_signature(secret: &[u8], t: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signature_entries_beyond_a_handful_are_not_looked_at() {
        let check = AuthCheck::Stripe {
            secrets: secrets(&["whsec_a", "whsec_b"]),
            tolerance_secs: 300,
        };
        let body = b"{}";
        let good = stripe_signature(b"whsec_b", "1700000000", body);
        let with = |value: String| {
            let h = headers(&[("stripe-signature", &value)]);
            check.check(&request(&h, body), 1700000000)
        };
        assert_eq!(with(format!("t=1700000000,v1={good}")), Ok(()));
        assert_eq!(
            with(format!("t=1700000000,v1={},v1={good}", "ab".repeat(32))),
            Ok(()),
            "a rotation's second signature"
        );
        let flood = "v1=,".repeat(60_000);
        assert!(with(format!("t=1700000000,{flood}v1={good}")).is_err());
        // Entries of the wrong length never reach the MAC.
        assert_eq!(
            any_mac(&secrets(&["k"]), Algorithm::Sha256, &[body], &[vec![0; 31]]),
            Err(AuthFailure("no signature of the expected length"))
        );
        let std_check = AuthCheck::StandardWebhooks {
            keys: vec![b"k".to_vec()],
            tolerance_secs: 300,
        };
        let h = headers(&[
            ("webhook-id", "m"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &"v1, ".repeat(60_000)),
        ]);
        assert!(std_check.check(&request(&h, body), 1700000000).is_err());
    }

    /// The published example again, signed under the `svix-` names Svix-based senders use.
    #[test]
    fn standard_webhooks_accept_the_svix_header_names() {
        let key =
            decode_standard_secret(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        let h = headers(&[
            ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("svix-timestamp", "1614265330"),
            (
                "svix-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let check = AuthCheck::StandardWebhooks {
            keys: vec![key],
            tolerance_secs: 300,
        };
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(check.check(&request(&h, body), 1614265330), Ok(()));
        assert!(check
            .check(&request(&h, br#"{"test": 1}"#), 1614265330)
            .is_err());
        assert!(check
            .credential_headers()
            .contains(&"svix-signature".to_string()));
    }

    #[test]
    fn generic_hmac_template_with_timestamp() {
        let scheme = HmacScheme {
            secrets: secrets(&["k"]),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            header: "x-sig".into(),
            prefix: Some("v1=".into()),
            template: "{timestamp}:{header:x-id}:{body}".into(),
            timestamp_header: Some("x-ts".into()),
            tolerance_secs: 60,
        };
        let mut mac = Hmac::<Sha512>::new_from_slice(b"k").unwrap();
        mac.update(b"1700000000:abc:{}");
        let sig = format!("v1={}", B64.encode(mac.finalize().into_bytes()));
        let h = headers(&[("x-sig", &sig), ("x-ts", "1700000000"), ("x-id", "abc")]);
        let check = AuthCheck::Hmac(scheme);
        assert_eq!(check.check(&request(&h, b"{}"), 1700000030), Ok(()));
        assert_eq!(
            check.check(&request(&h, b"{} "), 1700000030),
            Err(AuthFailure("signature does not match"))
        );
        assert_eq!(
            check.check(&request(&h, b"{}"), 1700000100),
            Err(AuthFailure("timestamp too old"))
        );
    }

    #[test]
    fn selldone_sign_is_a_bcrypt_of_key_and_sign_id() {
        let hash = bcrypt::hash("sign-key:1700000000", 4).unwrap();
        let h = headers(&[
            ("selldone-sign-id", "1700000000"),
            ("selldone-sign-hash", &hash),
        ]);
        let check = AuthCheck::SelldoneSign {
            keys: secrets(&["other", "sign-key"]),
            tolerance_secs: 300,
            cost: 4,
        };
        assert_eq!(check.check(&request(&h, b""), 1700000100), Ok(()));
        let wrong = AuthCheck::SelldoneSign {
            keys: secrets(&["nope"]),
            tolerance_secs: 300,
            cost: 4,
        };
        assert!(wrong.check(&request(&h, b""), 1700000100).is_err());
        assert_eq!(
            check.check(&request(&h, b""), 1700001000),
            Err(AuthFailure("timestamp too old"))
        );
    }

    #[test]
    fn selldone_hashes_of_another_cost_are_refused_before_hashing() {
        let check = AuthCheck::SelldoneSign {
            keys: secrets(&["sign-key"]),
            tolerance_secs: 300,
            cost: 4,
        };
        let with = |hash: &str| {
            let h = headers(&[
                ("selldone-sign-id", "1700000000"),
                ("selldone-sign-hash", hash),
            ]);
            check.check(&request(&h, b""), 1700000000)
        };
        let five = bcrypt::hash("sign-key:1700000000", 5).unwrap();
        assert_eq!(
            with(&five),
            Err(AuthFailure(
                "Selldone sign hash has an unexpected bcrypt cost"
            ))
        );
        // The review's case: cost 31 would take hours; it is refused without hashing.
        let thirty_one = format!("$2b$31${}", &five[7..]);
        assert_eq!(
            with(&thirty_one),
            Err(AuthFailure(
                "Selldone sign hash has an unexpected bcrypt cost"
            ))
        );
        assert_eq!(
            with("$2b$04$short"),
            Err(AuthFailure("Selldone sign hash is not a bcrypt hash"))
        );
        assert!(check.is_cpu_heavy(0));
    }
}

//! Authentication schemes, each a check over the raw request. A source passes when every one of
//! its checks passes. All secret comparisons are constant-time (MACs through `Mac::verify_slice`,
//! tokens through [`super::matches_any_secret`]); every scheme accepts several active secrets so
//! operators can rotate without downtime. Failure reasons go to the log, never to the caller.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::{Sha256, Sha512};

use super::{header, matches_any_secret, AuthFailure, WebhookRequest};
use crate::config::{Secret, Secrets};

/// Default tolerance for signed timestamps (Standard Webhooks, Stripe): five minutes either way.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

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
    },
    /// The caller's address must be in one of these networks. The address is the TCP peer's,
    /// or the first address of `trusted_header` when the operator says a proxy sets it.
    IpAllowList {
        /// Allowed networks.
        networks: Vec<IpNet>,
        /// A header set by a trusted reverse proxy (e.g. `X-Forwarded-For`).
        trusted_header: Option<String>,
    },
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
                any_mac(secrets, Algorithm::Sha256, &[request.body], &sig)
            }
            AuthCheck::GitHub(secrets) => {
                let presented = header(request, "x-hub-signature-256")
                    .ok_or(AuthFailure("signature header missing"))?;
                let hex_sig = presented
                    .trim()
                    .strip_prefix("sha256=")
                    .ok_or(AuthFailure("signature lacks the sha256= prefix"))?;
                let sig = hex::decode(hex_sig).map_err(|_| AuthFailure("signature is not hex"))?;
                any_mac(secrets, Algorithm::Sha256, &[request.body], &sig)
            }
            AuthCheck::SelldoneSign {
                keys,
                tolerance_secs,
            } => {
                let id = header(request, "selldone-sign-id")
                    .ok_or(AuthFailure("Selldone-Sign-Id missing"))?;
                let hash = header(request, "selldone-sign-hash")
                    .ok_or(AuthFailure("Selldone-Sign-Hash missing"))?;
                check_timestamp(id, *tolerance_secs, now_secs)?;
                let ok = keys
                    .0
                    .iter()
                    .any(|k| bcrypt::verify(format!("{}:{id}", k.expose()), hash).unwrap_or(false));
                ok.then_some(())
                    .ok_or(AuthFailure("Selldone sign hash does not match"))
            }
            AuthCheck::IpAllowList {
                networks,
                trusted_header,
            } => {
                let ip = match trusted_header {
                    Some(name) => header(request, name)
                        .and_then(|v| v.split(',').next())
                        .and_then(|v| v.trim().parse::<IpAddr>().ok()),
                    None => request.peer,
                };
                let ip = ip.ok_or(AuthFailure("caller address unknown"))?;
                let ip = match ip {
                    IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .map(IpAddr::V4)
                        .unwrap_or(IpAddr::V6(v6)),
                    v4 => v4,
                };
                networks
                    .iter()
                    .any(|n| n.contains(&ip))
                    .then_some(())
                    .ok_or(AuthFailure("caller address not allowed"))
            }
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

/// Verifies `signature` against an HMAC of the concatenated `parts` under any of `secrets`.
fn any_mac(
    secrets: &Secrets,
    algorithm: Algorithm,
    parts: &[&[u8]],
    signature: &[u8],
) -> Result<(), AuthFailure> {
    let keys: Vec<&[u8]> = secrets.0.iter().map(|s| s.expose().as_bytes()).collect();
    any_mac_keys(&keys, algorithm, parts, signature)
}

fn any_mac_keys(
    keys: &[&[u8]],
    algorithm: Algorithm,
    parts: &[&[u8]],
    signature: &[u8],
) -> Result<(), AuthFailure> {
    let mut matched = false;
    for key in keys {
        let ok = match algorithm {
            Algorithm::Sha256 => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                parts.iter().for_each(|p| mac.update(p));
                mac.verify_slice(signature).is_ok()
            }
            Algorithm::Sha512 => {
                let mut mac =
                    Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
                parts.iter().for_each(|p| mac.update(p));
                mac.verify_slice(signature).is_ok()
            }
        };
        matched |= ok;
    }
    matched
        .then_some(())
        .ok_or(AuthFailure("signature does not match"))
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
    any_mac(&scheme.secrets, scheme.algorithm, &parts, &signature)
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

fn check_standard(
    request: &WebhookRequest<'_>,
    keys: &[Vec<u8>],
    tolerance_secs: u64,
    now_secs: u64,
) -> Result<(), AuthFailure> {
    let id = header(request, "webhook-id").ok_or(AuthFailure("webhook-id missing"))?;
    let timestamp =
        header(request, "webhook-timestamp").ok_or(AuthFailure("webhook-timestamp missing"))?;
    check_timestamp(timestamp, tolerance_secs, now_secs)?;
    let signatures =
        header(request, "webhook-signature").ok_or(AuthFailure("webhook-signature missing"))?;
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let parts: [&[u8]; 5] = [
        id.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        request.body,
    ];
    for entry in signatures.split(' ') {
        let Some(sig) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(sig) = B64.decode(sig) else { continue };
        if any_mac_keys(&keys, Algorithm::Sha256, &parts, &sig).is_ok() {
            return Ok(());
        }
    }
    Err(AuthFailure("no webhook-signature entry matches"))
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
    let mut signatures = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", s)) => signatures.extend(hex::decode(s).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(AuthFailure("Stripe-Signature has no timestamp"))?;
    check_timestamp(timestamp, tolerance_secs, now_secs)?;
    let parts: [&[u8]; 3] = [timestamp.as_bytes(), b".", request.body];
    for sig in &signatures {
        if any_mac(secrets, Algorithm::Sha256, &parts, sig).is_ok() {
            return Ok(());
        }
    }
    Err(AuthFailure("no v1 signature matches"))
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
    fn ip_allow_list_uses_the_proxy_header_only_when_told() {
        let nets = vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let direct = AuthCheck::IpAllowList {
            networks: nets.clone(),
            trusted_header: None,
        };
        let proxied = AuthCheck::IpAllowList {
            networks: nets,
            trusted_header: Some("x-forwarded-for".into()),
        };
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.1")]);
        let mut r = request(&h, b"");
        r.peer = Some("127.0.0.1".parse().unwrap());
        assert!(direct.check(&r, 0).is_err(), "spoofable header trusted");
        assert_eq!(proxied.check(&r, 0), Ok(()));
        r.peer = Some("::ffff:203.0.113.7".parse().unwrap());
        assert_eq!(direct.check(&r, 0), Ok(()));
        r.peer = Some("2001:db8::1".parse().unwrap());
        assert_eq!(direct.check(&r, 0), Ok(()));
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
        };
        assert_eq!(check.check(&request(&h, b""), 1700000100), Ok(()));
        let wrong = AuthCheck::SelldoneSign {
            keys: secrets(&["nope"]),
            tolerance_secs: 300,
        };
        assert!(wrong.check(&request(&h, b""), 1700000100).is_err());
        assert_eq!(
            check.check(&request(&h, b""), 1700001000),
            Err(AuthFailure("timestamp too old"))
        );
    }
}

//! The sender's side of every authentication scheme: what a provider adds to a webhook so that
//! [`AuthCheck::check`] accepts it. `hookhost send` uses it to exercise a source with correct
//! credentials (current timestamps, fresh ids), so a merchant can try a plugin without the
//! provider. The first configured secret of each list is the one used.

use anyhow::{bail, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::config::Secrets;
use crate::providers::auth::{Algorithm, AuthCheck, Encoding, TokenLocation};

/// What authentication adds to a webhook request.
#[derive(Debug, Default, Clone)]
pub struct SignedParts {
    /// Headers to send (name, value).
    pub headers: Vec<(String, String)>,
    /// Query parameters to add.
    pub query: Vec<(String, String)>,
    /// A token to append as the last path segment.
    pub path_token: Option<String>,
    /// Things the caller should know (e.g. an IP allow-list that may refuse this machine).
    pub notes: Vec<String>,
}

impl SignedParts {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Signs `body` for every check, at `now_secs`. `headers` are the request's other headers (a
/// generic HMAC template may sign some of them).
pub fn sign(
    checks: &[AuthCheck],
    body: &[u8],
    headers: &[(String, String)],
    now_secs: u64,
) -> Result<SignedParts> {
    let mut out = SignedParts {
        headers: headers.to_vec(),
        ..Default::default()
    };
    // MACs last: a template may sign headers the other checks add.
    let (macs, others): (Vec<&AuthCheck>, Vec<&AuthCheck>) =
        checks.iter().partition(|c| matches!(c, AuthCheck::Hmac(_)));
    for check in others.into_iter().chain(macs) {
        sign_one(check, body, now_secs, &mut out)?;
    }
    out.headers.drain(..headers.len());
    Ok(out)
}

fn first(secrets: &Secrets) -> Result<&str> {
    match secrets.0.first() {
        Some(s) => Ok(s.expose()),
        None => bail!("the source has no secret configured to sign with"),
    }
}

fn sign_one(check: &AuthCheck, body: &[u8], now_secs: u64, out: &mut SignedParts) -> Result<()> {
    let now = now_secs.to_string();
    match check {
        AuthCheck::Token { tokens, location } => {
            let token = first(tokens)?.to_string();
            match location {
                TokenLocation::Header(name) => out.headers.push((name.clone(), token)),
                TokenLocation::Query(name) => out.query.push((name.clone(), token)),
                TokenLocation::Path => out.path_token = Some(token),
            }
        }
        AuthCheck::Basic {
            username,
            passwords,
        } => {
            let credentials = B64.encode(format!("{username}:{}", first(passwords)?));
            out.headers
                .push(("authorization".into(), format!("Basic {credentials}")));
        }
        AuthCheck::RequiredHeaders(required) => {
            for (name, value) in required {
                out.headers.push((name.clone(), value.expose().to_string()));
            }
        }
        AuthCheck::Hmac(scheme) => {
            let timestamp = scheme.timestamp_header.as_ref().map(|name| {
                out.headers.push((name.clone(), now.clone()));
                now.as_str()
            });
            let message = render(&scheme.template, body, timestamp, out)?;
            let mac = mac(
                scheme.algorithm,
                first(&scheme.secrets)?.as_bytes(),
                &message,
            );
            let encoded = match scheme.encoding {
                Encoding::Hex => hex::encode(mac),
                Encoding::Base64 => B64.encode(mac),
            };
            let prefix = scheme.prefix.clone().unwrap_or_default();
            out.headers
                .push((scheme.header.clone(), format!("{prefix}{encoded}")));
        }
        AuthCheck::StandardWebhooks { keys, .. } => {
            let Some(key) = keys.first() else {
                bail!("the source has no secret configured to sign with");
            };
            let id = format!("msg_{}", random_id());
            let message = [id.as_bytes(), b".", now.as_bytes(), b".", body].concat();
            let signature = B64.encode(mac(Algorithm::Sha256, key, &message));
            out.headers.push(("webhook-id".into(), id));
            out.headers.push(("webhook-timestamp".into(), now.clone()));
            out.headers
                .push(("webhook-signature".into(), format!("v1,{signature}")));
        }
        AuthCheck::Stripe { secrets, .. } => {
            let message = [now.as_bytes(), b".", body].concat();
            let signature =
                hex::encode(mac(Algorithm::Sha256, first(secrets)?.as_bytes(), &message));
            out.headers
                .push(("stripe-signature".into(), format!("t={now},v1={signature}")));
        }
        AuthCheck::Shopify(secrets) => {
            let signature = B64.encode(mac(Algorithm::Sha256, first(secrets)?.as_bytes(), body));
            out.headers
                .push(("x-shopify-hmac-sha256".into(), signature));
        }
        AuthCheck::GitHub(secrets) => {
            let signature = hex::encode(mac(Algorithm::Sha256, first(secrets)?.as_bytes(), body));
            out.headers
                .push(("x-hub-signature-256".into(), format!("sha256={signature}")));
        }
        AuthCheck::SelldoneSign { keys, cost, .. } => {
            let hash = bcrypt::hash(format!("{}:{now}", first(keys)?), *cost)?;
            out.headers.push(("selldone-sign-id".into(), now.clone()));
            out.headers.push(("selldone-sign-hash".into(), hash));
        }
        AuthCheck::IpAllowList { networks, .. } => {
            let loopback = networks
                .iter()
                .any(|n| n.contains(&std::net::IpAddr::from([127, 0, 0, 1])));
            if !loopback {
                out.notes.push(format!(
                    "the source only accepts callers from {}: a request from this machine may be refused",
                    networks
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The signed content of a generic HMAC template (see [`crate::providers::auth::HmacScheme::template`]).
fn render(
    template: &str,
    body: &[u8],
    timestamp: Option<&str>,
    out: &SignedParts,
) -> Result<Vec<u8>> {
    let mut message = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        message.extend_from_slice(&rest.as_bytes()[..start]);
        let Some(end) = rest[start..].find('}').map(|e| e + start) else {
            bail!("the signing template {template:?} is malformed");
        };
        match &rest[start + 1..end] {
            "body" => message.extend_from_slice(body),
            "timestamp" => match timestamp {
                Some(value) => message.extend_from_slice(value.as_bytes()),
                None => {
                    bail!("the template signs {{timestamp}} but the source has no timestamp header")
                }
            },
            other => match other.strip_prefix("header:") {
                Some(name) => match out.header(name) {
                    Some(value) => message.extend_from_slice(value.as_bytes()),
                    None => bail!(
                        "the template signs the header {name}: pass it with --header '{name}: VALUE'"
                    ),
                },
                None => bail!("the signing template names an unknown field {other:?}"),
            },
        }
        rest = &rest[end + 1..];
    }
    message.extend_from_slice(rest.as_bytes());
    Ok(message)
}

/// HMAC of `message` under `key`.
fn mac(algorithm: Algorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    crate::providers::auth::mac(algorithm, key, &[message])
}

/// A random 128-bit id in hex (fresh ids for senders that put one in a header).
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

//! A configured webhook source: its provider's normalizer and the checks its requests must pass,
//! built from the config by [`build`] (the one mapping from configured schemes to checks).

use std::net::IpAddr;

use crate::config::SourceConfig;

use super::auth::{self, AuthCheck};
use super::{
    fincart, finchpay, generic, github, juspay, selldone, sevi, shopify, standard_webhooks, stripe,
    AuthFailure, Provider, WebhookRequest,
};

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

/// Builds a configured source: its provider's normalizer and the checks its requests must pass.
pub fn build(
    config: &SourceConfig,
    metrics: crate::telemetry::SourceMetrics,
) -> anyhow::Result<Source> {
    use crate::config::ProviderConfig as P;
    let provider: Box<dyn Provider> = match &config.provider {
        P::Fincart { .. } => Box::new(fincart::Fincart),
        P::Sevi { .. } => Box::new(sevi::Sevi),
        P::Juspay { .. } => Box::new(juspay::Juspay),
        P::Finchpay { .. } => Box::new(finchpay::FinchPay),
        P::Selldone { .. } => Box::new(selldone::Selldone),
        P::StandardWebhooks { mapping, .. } => Box::new(generic::Generic::new(
            "standard-webhooks",
            standard_webhooks::default_mapping(mapping.clone()),
        )),
        P::Stripe(_) => Box::new(stripe::Stripe),
        P::Shopify(_) => Box::new(shopify::Shopify),
        P::Github(_) => Box::new(github::GitHub),
        P::Generic { mapping, .. } => Box::new(generic::Generic::new("generic", mapping.clone())),
    };
    let mut checks: Vec<AuthCheck> = match &config.provider {
        P::Fincart { token } => fincart::checks(token.clone()),
        P::Sevi { token, header } => sevi::checks(token.clone(), header),
        P::Juspay {
            username,
            password,
            required_headers,
        } => juspay::checks(username, password.clone(), required_headers)?,
        P::Finchpay {
            token,
            token_in,
            token_name,
        } => finchpay::checks(token.clone(), *token_in, token_name.as_deref()),
        P::Selldone {
            token,
            sign_key,
            tolerance_secs,
            sign_cost,
        } => selldone::checks(token.clone(), sign_key.clone(), *tolerance_secs, *sign_cost)?,
        P::Generic { auth, .. } => auth_check(auth)?.into_iter().collect(),
        signing => {
            let scheme = signing
                .signature_scheme()
                .expect("every other provider signs with a scheme");
            auth_check(&scheme)?.into_iter().collect()
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

/// The check a configured authentication scheme becomes; `None` for `scheme = "none"` (then
/// `allow_ips` must restrict the source). The one mapping from config to check, for generic
/// sources and the signing providers alike.
fn auth_check(auth: &crate::config::AuthConfig) -> anyhow::Result<Option<AuthCheck>> {
    use crate::config::{
        AuthConfig, HmacAlgorithm, HmacEncoding, SecretScheme, TimestampedScheme, TokenIn,
    };
    Ok(match auth {
        AuthConfig::Token {
            token,
            token_in,
            name,
        } => Some(AuthCheck::Token {
            tokens: token.clone(),
            location: match token_in {
                TokenIn::Header => auth::TokenLocation::Header(
                    name.as_deref()
                        .unwrap_or("authorization")
                        .to_ascii_lowercase(),
                ),
                TokenIn::Query => {
                    auth::TokenLocation::Query(name.clone().unwrap_or_else(|| "token".into()))
                }
                TokenIn::Path => auth::TokenLocation::Path,
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
                anyhow::bail!("the signing template uses {{timestamp}}: set timestamp_header");
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
        AuthConfig::StandardWebhooks(TimestampedScheme {
            secret,
            tolerance_secs,
        }) => Some(AuthCheck::StandardWebhooks {
            keys: secret
                .0
                .iter()
                .map(auth::decode_standard_secret)
                .collect::<anyhow::Result<_>>()?,
            tolerance_secs: *tolerance_secs,
        }),
        AuthConfig::Stripe(TimestampedScheme {
            secret,
            tolerance_secs,
        }) => Some(AuthCheck::Stripe {
            secrets: secret.clone(),
            tolerance_secs: *tolerance_secs,
        }),
        AuthConfig::Shopify(SecretScheme { secret }) => Some(AuthCheck::Shopify(secret.clone())),
        AuthConfig::Github(SecretScheme { secret }) => Some(AuthCheck::GitHub(secret.clone())),
        AuthConfig::None => None,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! `hookhost send`: sends a webhook to a running host exactly as the provider would — the
//! source's credentials read from the config file, signatures over the exact bytes sent, current
//! timestamps and fresh delivery ids — with a shipped sample payload or the merchant's own file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::samples;
use super::signing;
use crate::config::Config;
use crate::providers;

/// What to send, and where.
pub struct SendRequest {
    /// The provider the source is configured for (checked against the config).
    pub provider: String,
    /// The config file holding the tenant, source and credentials.
    pub config: PathBuf,
    /// Tenant name.
    pub tenant: String,
    /// Source name.
    pub source: String,
    /// A shipped sample by name (default: the provider's first).
    pub sample: Option<String>,
    /// A file holding the body to send instead of a sample.
    pub file: Option<PathBuf>,
    /// Extra headers (`Name: value`).
    pub headers: Vec<String>,
    /// The host's base URL (default: the running dev host's, else the config's `listen`).
    pub url: Option<String>,
    /// Change the payload into a new event of the same order and status ([`super::fresh`]), so
    /// that it is not a duplicate of the last one sent.
    pub fresh: bool,
}

/// What the host answered.
pub struct SendReport {
    /// The URL the webhook went to (without a query token).
    pub url: String,
    /// Which sample was sent, if one was.
    pub sample: Option<String>,
    /// HTTP status.
    pub status: u16,
    /// Whether the host said it was a duplicate.
    pub duplicate: bool,
    /// The response body.
    pub body: String,
    /// Warnings for the user (e.g. an IP allow-list).
    pub notes: Vec<String>,
    /// What `--fresh` changed.
    pub freshened: Option<super::fresh::Freshened>,
}

/// The shipped samples as lines `provider  name`.
pub fn list_samples() -> String {
    samples::SAMPLES
        .iter()
        .map(|s| format!("{:<18} {}", s.provider, s.name))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Signs and sends one webhook.
pub async fn send(request: SendRequest) -> Result<SendReport> {
    let config = Config::load(&request.config)?;
    let tenant = config.tenants.get(&request.tenant).with_context(|| {
        format!(
            "tenant {:?} is not in {}: the tenants there are {}",
            request.tenant,
            request.config.display(),
            names(config.tenants.keys())
        )
    })?;
    let source_config = tenant.sources.get(&request.source).with_context(|| {
        format!(
            "tenant {} has no source {:?}: its sources are {}",
            request.tenant,
            request.source,
            names(tenant.sources.keys())
        )
    })?;
    let metrics = crate::telemetry::SourceMetrics::new(&request.tenant, &request.source);
    let source = providers::build(source_config, metrics)
        .with_context(|| format!("source {} of tenant {}", request.source, request.tenant))?;
    let provider = source.provider.name();
    if provider != request.provider {
        bail!(
            "source {} of tenant {} is a {provider} source, not {}: run `hookhost send {provider} ...`",
            request.source,
            request.tenant,
            request.provider
        );
    }

    let (body, sample_headers, sample_name) = match (&request.file, &request.sample) {
        (Some(file), _) => (
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
            Vec::new(),
            None,
        ),
        (None, name) => {
            let sample = match name {
                Some(name) => samples::of(provider).find(|s| s.name == name),
                None => samples::of(provider).next(),
            };
            let Some(sample) = sample else {
                let known: Vec<&str> = samples::of(provider).map(|s| s.name).collect();
                bail!(
                    "no {provider} sample {}: {}; or send your own payload with --file",
                    name.as_deref()
                        .map(|n| format!("named {n:?}"))
                        .unwrap_or_default(),
                    if known.is_empty() {
                        "none is shipped for this provider".to_string()
                    } else {
                        format!("the samples are {}", known.join(", "))
                    }
                );
            };
            let id = signing::random_id();
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .context("format the current time")?;
            let headers = sample
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.replace("{id}", &id).replace("{now}", &now)))
                .collect();
            (
                sample.body.as_bytes().to_vec(),
                headers,
                Some(sample.name.to_string()),
            )
        }
    };
    let mut notes = Vec::new();
    let renewed = match request.fresh {
        true => renewed_header(
            &source.checks,
            &body,
            &sample_headers,
            &sample_name,
            provider,
        ),
        false => None,
    };
    let (body, freshened) = if let Some(header) = renewed {
        notes.push(format!(
            "--fresh: every send is already a new {provider} event (its id is the {header} header, new each time)"
        ));
        (body, None)
    } else if request.fresh {
        let (body, changed) = super::fresh::freshen(
            &*source.provider,
            &body,
            &sample_headers,
            &signing::random_id()[..8],
        )?;
        (body, Some(changed))
    } else {
        (body, None)
    };
    let mut headers: Vec<(String, String)> = sample_headers;
    for h in &request.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header {h:?} must be `Name: value`");
        };
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name.trim()));
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let signed = signing::sign(&source.checks, &body, &headers, crate::now_ms() / 1000)
        .with_context(|| {
            format!(
                "cannot sign for source {} of tenant {}",
                request.source, request.tenant
            )
        })?;

    let base = match &request.url {
        Some(url) => url.trim_end_matches('/').to_string(),
        // A running dev host's address (it may listen elsewhere than the file says).
        None => match super::session::read(&request.config)? {
            Some(session) => session.url,
            None => super::session::base_url(config.listen),
        },
    };
    let mut url = format!("{base}/hooks/{}/{}", request.tenant, request.source);
    let shown_url = url.clone();
    if let Some(token) = &signed.path_token {
        url = format!("{url}/{token}");
    }
    let mut http = reqwest::Client::new()
        .post(&url)
        .query(&signed.query)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers.iter().chain(&signed.headers) {
        http = http.header(name.as_str(), value.as_str());
    }
    // reqwest's error names the URL, which may carry the source's token (query or path).
    let response = http
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| {
            format!("cannot reach hookhost at {base}: is it running, and is --url right?")
        })?;
    let status = response.status().as_u16();
    let duplicate = response
        .headers()
        .contains_key(crate::http::DUPLICATE_HEADER);
    let body = response.text().await.unwrap_or_default();
    Ok(SendReport {
        url: shown_url,
        sample: sample_name,
        status,
        duplicate,
        body,
        notes: notes.into_iter().chain(signed.notes).collect(),
        freshened,
    })
}

/// The header that makes every send a new event by itself, if there is one: a sample header
/// filled with a fresh id (Shopify's, GitHub's delivery ids) or an id header the signing scheme
/// adds (Standard Webhooks' `webhook-id`). Signs once to see (only for `--fresh`).
fn renewed_header(
    checks: &[providers::AuthCheck],
    body: &[u8],
    sample_headers: &[(String, String)],
    sample_name: &Option<String>,
    provider: &str,
) -> Option<String> {
    let from_sample = samples::of(provider)
        .filter(|s| Some(s.name) == sample_name.as_deref())
        .flat_map(|s| s.headers.iter())
        .find(|(_, value)| value.contains("{id}"))
        .map(|(name, _)| name.to_string());
    from_sample.or_else(|| {
        signing::sign(checks, body, sample_headers, crate::now_ms() / 1000)
            .ok()?
            .headers
            .into_iter()
            .map(|(name, _)| name)
            .find(|name| name.to_ascii_lowercase().ends_with("-id"))
    })
}

fn names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

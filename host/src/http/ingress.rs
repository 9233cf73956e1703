//! HTTP ingress: `POST /hooks/{tenant}/{source}[/{token}]`, one handler whose steps each either
//! pass the webhook on or refuse it with a [`Rejection`]:
//!
//! 1. [`find_source`]: the tenant and source exist (404, one answer for both so that callers
//!    cannot enumerate tenants);
//! 2. [`read_body`]: the body is within the limit (413) and fits the budget of bodies buffered
//!    before authentication (503);
//! 3. [`authenticate`]: the credentials (401, with a generic message: the reason goes to the log,
//!    throttled);
//! 4. [`admit`]: the tenant's ingest rate (429);
//! 5. [`parse`]: the content type (415), the JSON (400 with the parser's position), the
//!    provider's required fields (422 naming the field);
//! 6. [`journal`]: the event is journaled, without the headers that carried credentials, and only
//!    after the commit is it acknowledged (200) and handed to the dispatcher (503 if the store
//!    fails).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::Instrument as _;

use super::error::AppError;
use super::state::AppState;
use crate::event::NormalizedEvent;
use crate::providers::{AuthFailure, Source, WebhookRequest};
use crate::storage::{Appended, NewEvent};
use crate::telemetry as m;
use crate::tenants::Tenant;

/// The response header that marks a duplicate delivery (acknowledged, not dispatched again).
pub const DUPLICATE_HEADER: &str = "hookhost-duplicate";

/// The one answer for an unknown tenant and an unknown source.
pub const NO_SUCH_ENDPOINT: &str = "no such webhook endpoint";

/// How long a webhook waits for room in the budget of bodies buffered before authentication
/// before it gets 503.
const BODY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a webhook was refused: each carries its status, the `reason` label of
/// `hookhost_webhooks_rejected_total` and the message the sender reads.
#[derive(Debug)]
pub enum Rejection {
    /// No tenant of that name (404, same answer as [`Rejection::UnknownSource`]).
    UnknownTenant,
    /// The tenant has no source of that name (404).
    UnknownSource,
    /// The body is larger than this many bytes, the limit (413).
    TooLarge(u64),
    /// No room in time in the budget of bodies buffered before authentication (503).
    Busy,
    /// The connection failed or timed out while sending the body (400).
    Unreadable(String),
    /// The credentials do not pass (401); the reason is logged, never answered.
    Unauthorized(AuthFailure),
    /// Over the tenant's ingest rate (429).
    RateLimited {
        /// The tenant.
        tenant: String,
        /// Its limit.
        per_second: f64,
        /// When a token is available again.
        retry_after_secs: u64,
    },
    /// Not JSON by its content type (415).
    UnsupportedContentType(String),
    /// Not valid JSON (400); serde_json's message names the position.
    Malformed(serde_json::Error),
    /// JSON the provider's normalizer refuses (422).
    Invalid {
        /// The provider.
        provider: &'static str,
        /// What is wrong, naming the field.
        why: String,
    },
    /// The journal did not commit (503: retry later).
    Storage,
}

impl Rejection {
    /// The `reason` label of the rejection counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Rejection::UnknownTenant => "unknown_tenant",
            Rejection::UnknownSource => "unknown_source",
            Rejection::TooLarge(_) => "too_large",
            Rejection::Busy => "busy",
            Rejection::Unreadable(_) => "unreadable",
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::UnsupportedContentType(_) => "content_type",
            Rejection::Malformed(_) => "malformed",
            Rejection::Invalid { .. } => "invalid",
            Rejection::Storage => "storage",
        }
    }

    /// The answer the sender gets.
    pub fn to_error(&self) -> AppError {
        match self {
            Rejection::UnknownTenant | Rejection::UnknownSource => {
                AppError::not_found(NO_SUCH_ENDPOINT)
            }
            Rejection::TooLarge(limit) => AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than the limit of {limit} bytes"),
            ),
            Rejection::Busy => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many webhook bodies are being received at once; retry shortly",
            )
            .retry_after(1),
            Rejection::Unreadable(why) => {
                AppError::bad_request(format!("cannot read the body: {why}"))
            }
            Rejection::Unauthorized(_) => AppError::new(StatusCode::UNAUTHORIZED, "unauthorized"),
            Rejection::RateLimited {
                tenant,
                per_second,
                retry_after_secs,
            } => AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant {tenant:?} receives at most {per_second} webhooks per second; retry after {retry_after_secs} s"
                ),
            )
            .retry_after(*retry_after_secs),
            Rejection::UnsupportedContentType(essence) => AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content type {essence:?} is not supported: send the webhook as application/json"
                ),
            ),
            Rejection::Malformed(e) => AppError::bad_request(format!("body is not valid JSON: {e}")),
            Rejection::Invalid { provider, why } => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{provider} payload: {why}"),
            ),
            Rejection::Storage => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook could not be stored; retry later",
            )
            .retry_after(5),
        }
    }
}

/// What the journal made of an authenticated, valid webhook.
enum Acknowledgement {
    /// Journaled under this number and handed to the dispatcher.
    Accepted(i64),
    /// Already journaled under this number; not dispatched again.
    Duplicate(i64),
}

impl IntoResponse for Acknowledgement {
    /// `{"status": "accepted" | "duplicate", "event": seq}`, written directly (it is sent for
    /// every webhook); a duplicate also carries [`DUPLICATE_HEADER`].
    fn into_response(self) -> Response {
        let (status, seq) = match self {
            Acknowledgement::Accepted(seq) => ("accepted", seq),
            Acknowledgement::Duplicate(seq) => ("duplicate", seq),
        };
        let mut response = (
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"status":"{status}","event":{seq}}}"#),
        )
            .into_response();
        if status == "duplicate" {
            response
                .headers_mut()
                .insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
        }
        response
    }
}

/// The webhook URL's segments; `token` is set on `/hooks/{tenant}/{source}/{token}` (a token in
/// the path, for providers that can neither send a header nor sign).
#[derive(Debug, Deserialize)]
pub struct HookPath {
    tenant: String,
    source: String,
    token: Option<String>,
}

/// Receives one webhook.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(path): Path<HookPath>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = webhook_span(&path);
    let (tenant, source) = (path.tenant.clone(), path.source.clone());
    let outcome = accept(state, path, peer, query, headers, body)
        .instrument(span.clone())
        .await;
    match outcome {
        Ok(acknowledgement) => acknowledgement.into_response(),
        Err(rejection) => {
            let _entered = span.enter();
            let (tenant, source) = match rejection {
                Rejection::UnknownTenant => (m::UNKNOWN.to_string(), m::UNKNOWN.to_string()),
                Rejection::UnknownSource => (tenant, m::UNKNOWN.to_string()),
                _ => (tenant, source),
            };
            metrics::counter!(m::REJECTED, "tenant" => tenant, "source" => source, "reason" => rejection.metric_label()).increment(1);
            rejection.to_error().into_response()
        }
    }
}

/// One span per webhook: every log line about it carries the tenant, the source and (once
/// journaled) the event number, in text and JSON logs alike.
fn webhook_span(path: &HookPath) -> tracing::Span {
    tracing::info_span!(
        "webhook",
        tenant = path.tenant.as_str(),
        source = path.source.as_str(),
        event = tracing::field::Empty
    )
}

/// The steps, in order; the first that refuses ends it.
async fn accept(
    state: Arc<AppState>,
    path: HookPath,
    peer: SocketAddr,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Acknowledgement, Rejection> {
    let received_at_ms = crate::now_ms();
    let tenant = find_source(&state, &path)?;
    let source = &tenant.sources[&path.source];
    source.metrics.received.increment(1);
    let (body, budget) = read_body(&state, &headers, body).await?;
    let parts = WebhookParts {
        headers,
        body,
        query,
        path_token: path.token,
        peer: peer.ip(),
    };
    let authenticated = authenticate(&state, &tenant, &path.source, parts).await;
    // Authenticated (or refused): its body no longer counts against the unauthenticated budget.
    drop(budget);
    let parts = authenticated.inspect_err(|why| {
        if let Rejection::Unauthorized(why) = why {
            if let Some(refused) = source.refusals_logged.record(crate::now_ms()) {
                // `refused`: refusals of this source since its last such line, this one included.
                tracing::warn!(tenant = %tenant.name, source = %path.source, reason = why.0, refused, "webhook rejected: unauthorized");
            }
        }
    })?;
    admit(&tenant)?;
    let event = parse(source, &parts)?;
    let new = NewEvent {
        tenant: tenant.name.clone(),
        source: path.source.clone(),
        received_at_ms,
        headers: kept_headers(source, &parts.headers),
        body: parts.body.to_vec(),
        event,
    };
    let journaled = journal(&state, new).await;
    source
        .metrics
        .ack_seconds
        .record(crate::now_ms().saturating_sub(received_at_ms) as f64 / 1000.0);
    let acknowledgement = journaled?;
    let span = tracing::Span::current();
    match acknowledgement {
        Acknowledgement::Accepted(seq) => {
            span.record("event", seq);
            source.metrics.accepted.increment(1);
            tracing::debug!(seq, "webhook accepted");
        }
        Acknowledgement::Duplicate(seq) => {
            span.record("event", seq);
            source.metrics.duplicates.increment(1);
            tracing::debug!(seq, "duplicate webhook acknowledged, not dispatched");
        }
    }
    Ok(acknowledgement)
}

/// The tenant that has the source the path names.
fn find_source(state: &AppState, path: &HookPath) -> Result<Arc<Tenant>, Rejection> {
    let tenant = state
        .tenants
        .get(&path.tenant)
        .ok_or(Rejection::UnknownTenant)?;
    if !tenant.sources.contains_key(&path.source) {
        return Err(Rejection::UnknownSource);
    }
    Ok(tenant)
}

/// Takes one token of the tenant's ingest rate, if it has one.
fn admit(tenant: &Tenant) -> Result<(), Rejection> {
    let Some(limiter) = &tenant.ingest_limit else {
        return Ok(());
    };
    limiter
        .try_acquire()
        .map_err(|wait| Rejection::RateLimited {
            tenant: tenant.name.clone(),
            per_second: tenant.limits.ingest_per_second.unwrap_or_default(),
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
}

/// Checks the content type, parses the JSON and normalizes it with the source's provider.
fn parse(source: &Source, parts: &WebhookParts) -> Result<NormalizedEvent, Rejection> {
    json_content_type(&parts.headers)?;
    let payload: serde_json::Value =
        serde_json::from_slice(&parts.body).map_err(Rejection::Malformed)?;
    source
        .provider
        .normalize(&parts.request(), &payload)
        .map_err(|e| Rejection::Invalid {
            provider: source.provider.name(),
            why: e.to_string(),
        })
}

/// Journals the event and wakes the dispatcher for its tenant, in a task of its own: if the
/// caller disconnects while the commit is under way, the request's future is dropped, but an
/// event that gets committed should still be claimed at once (not at the next poll).
async fn journal(state: &Arc<AppState>, new: NewEvent) -> Result<Acknowledgement, Rejection> {
    let new = Arc::new(new);
    let task = {
        let state = state.clone();
        tokio::spawn(async move {
            let tenant = new.tenant.clone();
            let appended = state.storage.append(new).await;
            if let Ok(Appended::Accepted(_)) = &appended {
                state.dispatcher.wake(&tenant);
            }
            appended
        })
    };
    let appended = task
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("journal task failed: {e}")));
    match appended {
        Ok(Appended::Accepted(seq)) => Ok(Acknowledgement::Accepted(seq)),
        Ok(Appended::Duplicate(seq)) => Ok(Acknowledgement::Duplicate(seq)),
        Err(e) => {
            tracing::error!("cannot journal webhook: {e:#}");
            Err(Rejection::Storage)
        }
    }
}

/// The headers stored with the event: all but credentials, whatever the scheme, and those the
/// source's own authentication reads.
fn kept_headers(source: &Source, headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !is_sensitive(k.as_str()) && !source.is_credential_header(k.as_str()))
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Headers never stored with an event whatever the source (credentials and signatures of any
/// scheme); a source also strips the headers its own authentication reads. `name` is lowercase
/// (as `HeaderName` always is).
fn is_sensitive(name: &str) -> bool {
    ["authorization", "cookie", "proxy-authorization"].contains(&name)
        || [
            "token",
            "secret",
            "signature",
            "sign-hash",
            "hmac",
            "api-key",
            "apikey",
            "password",
        ]
        .iter()
        .any(|s| name.contains(s))
}

/// JSON, by the content type's essence; no content type counts as JSON (many senders omit it).
fn json_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") || essence == "text/json" {
        Ok(())
    } else {
        Err(Rejection::UnsupportedContentType(essence.to_string()))
    }
}

/// How much of an oversized body is read and thrown away (a multiple of the limit) before the 413,
/// so that a sender still writing it reads the answer instead of a broken connection. Beyond it the
/// connection is cut.
const OVERSIZED_DRAIN_FACTOR: u64 = 4;

/// Reads the body within `max_body_bytes`, first reserving its size (the declared length, or the
/// limit when none is declared) in the budget shared by every unauthenticated body, so that many
/// slow or large unauthenticated uploads cannot exhaust memory. The permit is held until the
/// request is authenticated or refused. An oversized body is discarded as it arrives, never
/// buffered.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), Rejection> {
    let limit = state.max_body_bytes as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > limit) {
        if declared <= limit * OVERSIZED_DRAIN_FACTOR {
            let _ = drain(body, declared).await;
        }
        return Err(Rejection::TooLarge(limit));
    }
    let reserve = declared.unwrap_or(limit).max(1);
    let reserve = u32::try_from(reserve).unwrap_or(u32::MAX);
    let permit = tokio::time::timeout(
        BODY_BUDGET_WAIT,
        state.pending_bodies.clone().acquire_many_owned(reserve),
    )
    .await
    .map_err(|_| Rejection::Busy)?
    .map_err(|_| Rejection::Busy)?;
    let mut body = body;
    let mut frames: Vec<Bytes> = Vec::new();
    let mut read = 0u64;
    while let Some(frame) = next_data(&mut body).await? {
        read += frame.len() as u64;
        if read > limit {
            // Over the limit while streaming: stop buffering, discard the rest (bounded).
            drop(frames);
            let _ = drain(body, (limit * OVERSIZED_DRAIN_FACTOR).saturating_sub(read)).await;
            return Err(Rejection::TooLarge(limit));
        }
        frames.push(frame);
    }
    // Most bodies arrive in one frame: kept as is, without a copy.
    let body = match frames.len() {
        1 => frames.pop().expect("one frame"),
        _ => Bytes::from(frames.concat()),
    };
    Ok((body, permit))
}

/// The next chunk of data of `body` (trailers skipped), `None` at its end.
async fn next_data(body: &mut Body) -> Result<Option<Bytes>, Rejection> {
    use http_body_util::BodyExt as _;
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(Rejection::Unreadable(e.to_string())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads and discards up to `up_to` bytes of `body` (never holding more than one chunk).
async fn drain(mut body: Body, up_to: u64) -> Result<(), Rejection> {
    let mut read = 0u64;
    while read < up_to {
        match next_data(&mut body).await? {
            Some(chunk) => read += chunk.len() as u64,
            None => break,
        }
    }
    Ok(())
}

/// What authentication reads of a webhook, owned so that it can move to a blocking thread.
struct WebhookParts {
    headers: HeaderMap,
    body: Bytes,
    query: Option<String>,
    path_token: Option<String>,
    peer: std::net::IpAddr,
}

impl WebhookParts {
    fn request(&self) -> WebhookRequest<'_> {
        WebhookRequest {
            headers: &self.headers,
            body: &self.body,
            query: self.query.as_deref(),
            path_token: self.path_token.as_deref(),
            peer: Some(self.peer),
        }
    }
}

/// Runs the source's checks; a check that may take long (a MAC over a large body, bcrypt) runs on
/// a blocking thread, at most `heavy_checks` at once, so that it never stalls the async workers
/// serving other connections. Hands the request's parts back when they pass.
async fn authenticate(
    state: &AppState,
    tenant: &Arc<Tenant>,
    source_name: &str,
    parts: WebhookParts,
) -> Result<WebhookParts, Rejection> {
    let source = &tenant.sources[source_name];
    if !source.authentication_is_cpu_heavy(parts.body.len()) {
        return source
            .authenticate(&parts.request())
            .map(|()| parts)
            .map_err(Rejection::Unauthorized);
    }
    let _slot = state
        .heavy_checks
        .acquire()
        .await
        .map_err(|_| Rejection::Unauthorized(AuthFailure("shutting down")))?;
    let (tenant, source_name) = (tenant.clone(), source_name.to_string());
    tokio::task::spawn_blocking(move || {
        tenant.sources[&source_name]
            .authenticate(&parts.request())
            .map(|()| parts)
    })
    .await
    .unwrap_or(Err(AuthFailure("the check failed")))
    .map_err(Rejection::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_kept() {
        // As the request's HeaderMap holds them: parsed, so lowercased whatever the sender wrote.
        let is_sensitive = |name: &str| {
            is_sensitive(
                axum::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap()
                    .as_str(),
            )
        };
        for name in [
            "Authorization",
            "x-shopify-hmac-sha256",
            "Selldone-Sign-Hash",
            "x-api-key",
            "X-Webhook-Secret",
            "stripe-signature",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in [
            "content-type",
            "user-agent",
            "webhook-id",
            "x-github-delivery",
        ] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn content_types() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            json_content_type(&h)
        };
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=utf-8").is_ok());
        assert!(with("application/vnd.api+json").is_ok());
        assert!(with("application/x-www-form-urlencoded").is_err());
        assert!(with("text/xml").is_err());
        assert!(json_content_type(&HeaderMap::new()).is_ok());
    }
}

//! HTTP ingress: `POST /hooks/{tenant}/{source}`. Checks, in this order: the tenant and source
//! exist (404, one answer for both so that callers cannot enumerate tenants), the body is within
//! the limit (413) and fits the budget of bodies buffered before authentication (503), the
//! credentials (401, with a generic message: the reason goes to the log, throttled), the content
//! type (415), the JSON (400 with the parser's position), the provider's required fields (422
//! naming the field). Only then is the event journaled, without the headers that carried
//! credentials, and only after the journal commit is it acknowledged (200) and handed to the
//! dispatcher.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::Instrument as _;

use crate::app::App;
use crate::providers::WebhookRequest;
use crate::storage::{Appended, NewEvent, StoredEvent};

/// The response header that marks a duplicate delivery (acknowledged, not dispatched again).
pub const DUPLICATE_HEADER: &str = "hookhost-duplicate";

/// A JSON error response: `{"error": "..."}` with a status code.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// An error the caller should retry: `status` with `Retry-After: secs`.
fn retry_later(status: StatusCode, message: impl Into<String>, secs: u64) -> Response {
    let mut response = error(status, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// The 200 answer, `{"status": "accepted" | "duplicate", "event": seq}`, written directly (it is
/// sent for every webhook).
fn acknowledgement(status: &'static str, seq: i64) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"status":"{status}","event":{seq}}}"#),
    )
        .into_response()
}

/// The one answer for an unknown tenant and an unknown source.
pub const NO_SUCH_ENDPOINT: &str = "no such webhook endpoint";

/// How long a webhook waits for room in the budget of bodies buffered before authentication
/// before it gets 503.
const BODY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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

fn is_json_content_type(headers: &HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") || essence == "text/json" {
        Ok(())
    } else {
        Err(format!(
            "content type {essence:?} is not supported: send the webhook as application/json"
        ))
    }
}

/// Receives one webhook at `/hooks/{tenant}/{source}`.
pub async fn receive(
    State(app): State<Arc<App>>,
    Path((tenant_name, source_name)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(
        app,
        tenant_name,
        source_name,
        None,
        peer,
        query,
        headers,
        body,
    )
    .instrument(webhook_span())
    .await
}

/// Receives one webhook at `/hooks/{tenant}/{source}/{token}` (a token in the path, for providers
/// that cannot send a header or sign).
pub async fn receive_with_path_token(
    State(app): State<Arc<App>>,
    Path((tenant_name, source_name, token)): Path<(String, String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(
        app,
        tenant_name,
        source_name,
        Some(token),
        peer,
        query,
        headers,
        body,
    )
    .instrument(webhook_span())
    .await
}

/// One span per webhook: every log line about it carries the tenant, the source and (once
/// journaled) the event number, in text and JSON logs alike.
fn webhook_span() -> tracing::Span {
    tracing::info_span!(
        "webhook",
        tenant = tracing::field::Empty,
        source = tracing::field::Empty,
        event = tracing::field::Empty
    )
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    app: Arc<App>,
    tenant_name: String,
    source_name: String,
    path_token: Option<String>,
    peer: SocketAddr,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received_at_ms = crate::now_ms();
    let span = tracing::Span::current();
    span.record("tenant", tenant_name.as_str());
    span.record("source", source_name.as_str());
    use crate::telemetry as m;
    let reject = |tenant: &str, source: &str, reason: &'static str| {
        metrics::counter!(m::REJECTED, "tenant" => tenant.to_string(), "source" => source.to_string(), "reason" => reason).increment(1);
    };
    let Some(tenant) = app.tenants.get(&tenant_name) else {
        reject(m::UNKNOWN, m::UNKNOWN, "unknown_tenant");
        return error(StatusCode::NOT_FOUND, NO_SUCH_ENDPOINT);
    };
    let Some(source) = tenant.sources.get(&source_name) else {
        reject(&tenant_name, m::UNKNOWN, "unknown_source");
        return error(StatusCode::NOT_FOUND, NO_SUCH_ENDPOINT);
    };
    source.metrics.received.increment(1);
    let (body, budget) = match read_body(&app, &headers, body).await {
        Ok(read) => read,
        Err(refusal) => {
            reject(&tenant_name, &source_name, refusal.metric_label());
            return refusal.into_response(app.max_body_bytes);
        }
    };
    let authenticated = authenticate(
        &app,
        &tenant,
        &source_name,
        WebhookParts {
            headers,
            body,
            query,
            path_token,
            peer: peer.ip(),
        },
    )
    .await;
    // Authenticated (or refused): its body no longer counts against the unauthenticated budget.
    drop(budget);
    let parts = match authenticated {
        Ok(parts) => parts,
        Err(why) => {
            reject(&tenant_name, &source_name, "unauthorized");
            if let Some(refused) = source.refusals_logged.record(crate::now_ms()) {
                // `refused`: refusals of this source since its last such line, this one included.
                tracing::warn!(tenant = %tenant_name, source = %source_name, reason = why.0, refused, "webhook rejected: unauthorized");
            }
            return error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    };
    let request = parts.request();
    let (headers, body) = (&parts.headers, &parts.body);
    if let Some(limiter) = &tenant.ingest_limit {
        if let Err(wait) = limiter.try_acquire() {
            reject(&tenant_name, &source_name, "rate_limited");
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant {tenant_name:?} receives at most {} webhooks per second; retry after {secs} s",
                    tenant.limits.ingest_per_second.unwrap_or_default()
                ),
                secs,
            );
        }
    }
    if let Err(message) = is_json_content_type(headers) {
        reject(&tenant_name, &source_name, "content_type");
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
    }
    let payload: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            reject(&tenant_name, &source_name, "malformed");
            return error(
                StatusCode::BAD_REQUEST,
                // serde_json's message names the position ("... at line 2 column 12").
                format!("body is not valid JSON: {e}"),
            );
        }
    };
    let event = match source.provider.normalize(&request, &payload) {
        Ok(e) => e,
        Err(e) => {
            reject(&tenant_name, &source_name, "invalid");
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{} payload: {e}", source.provider.name()),
            );
        }
    };
    let kept_headers = headers
        .iter()
        .filter(|(k, _)| !is_sensitive(k.as_str()) && !source.is_credential_header(k.as_str()))
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let new = Arc::new(NewEvent {
        tenant: tenant_name.clone(),
        source: source_name.clone(),
        received_at_ms,
        headers: kept_headers,
        body: body.to_vec(),
        event,
    });
    // Journal and hand over in a task of its own: if the caller disconnects while the commit is
    // under way, the request's future is dropped, but an event that gets committed must still
    // reach the dispatcher (not wait for the next restart).
    let committed = {
        let app = app.clone();
        tokio::spawn(async move {
            let appended = app.storage.append(new.clone()).await;
            if let Ok(Appended::Accepted(seq)) = &appended {
                // The writer has let go of its reference by now: no copy in the usual case.
                let NewEvent {
                    tenant,
                    source,
                    body,
                    event,
                    ..
                } = Arc::try_unwrap(new).unwrap_or_else(|shared| (*shared).clone());
                app.dispatcher.enqueue(StoredEvent {
                    seq: *seq,
                    tenant,
                    source,
                    received_at_ms,
                    attempts: 0,
                    next_attempt_at_ms: received_at_ms,
                    attempt_base: 0,
                    interrupted: None,
                    body,
                    event,
                });
            }
            appended
        })
    };
    let appended = committed
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("journal task failed: {e}")));
    source
        .metrics
        .ack_seconds
        .record(crate::now_ms().saturating_sub(received_at_ms) as f64 / 1000.0);
    match appended {
        Ok(Appended::Accepted(seq)) => {
            span.record("event", seq);
            source.metrics.accepted.increment(1);
            tracing::debug!(tenant = %tenant_name, source = %source_name, seq, "webhook accepted");
            acknowledgement("accepted", seq)
        }
        Ok(Appended::Duplicate(seq)) => {
            span.record("event", seq);
            source.metrics.duplicates.increment(1);
            tracing::debug!(tenant = %tenant_name, source = %source_name, seq, "duplicate webhook acknowledged, not dispatched");
            let mut response = acknowledgement("duplicate", seq);
            response
                .headers_mut()
                .insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
            response
        }
        Err(e) => {
            reject(&tenant_name, &source_name, "storage");
            tracing::error!(tenant = %tenant_name, source = %source_name, "cannot journal webhook: {e:#}");
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook could not be stored; retry later",
                5,
            )
        }
    }
}

/// Why a body was not read.
enum BodyRefusal {
    /// Larger than `max_body_bytes` (413).
    TooLarge,
    /// No room in the budget of bodies buffered before authentication in time (503).
    Busy,
    /// The connection failed or timed out while sending it.
    Unreadable(String),
}

impl BodyRefusal {
    fn metric_label(&self) -> &'static str {
        match self {
            BodyRefusal::TooLarge => "too_large",
            BodyRefusal::Busy => "busy",
            BodyRefusal::Unreadable(_) => "unreadable",
        }
    }

    fn into_response(self, max_body_bytes: usize) -> Response {
        match self {
            BodyRefusal::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than the limit of {max_body_bytes} bytes"),
            ),
            BodyRefusal::Busy => retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many webhook bodies are being received at once; retry shortly",
                1,
            ),
            BodyRefusal::Unreadable(why) => error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {why}"),
            ),
        }
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
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), BodyRefusal> {
    let limit = app.max_body_bytes as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > limit) {
        if declared <= limit * OVERSIZED_DRAIN_FACTOR {
            let _ = drain(body, declared).await;
        }
        return Err(BodyRefusal::TooLarge);
    }
    let reserve = declared.unwrap_or(limit).max(1);
    let reserve = u32::try_from(reserve).unwrap_or(u32::MAX);
    let permit = tokio::time::timeout(
        BODY_BUDGET_WAIT,
        app.pending_bodies.clone().acquire_many_owned(reserve),
    )
    .await
    .map_err(|_| BodyRefusal::Busy)?
    .map_err(|_| BodyRefusal::Busy)?;
    let mut body = body;
    let mut frames: Vec<Bytes> = Vec::new();
    let mut read = 0u64;
    while let Some(frame) = next_data(&mut body).await? {
        read += frame.len() as u64;
        if read > limit {
            // Over the limit while streaming: stop buffering, discard the rest (bounded).
            drop(frames);
            let _ = drain(body, (limit * OVERSIZED_DRAIN_FACTOR).saturating_sub(read)).await;
            return Err(BodyRefusal::TooLarge);
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
async fn next_data(body: &mut Body) -> Result<Option<Bytes>, BodyRefusal> {
    use http_body_util::BodyExt as _;
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(BodyRefusal::Unreadable(e.to_string())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads and discards up to `up_to` bytes of `body` (never holding more than one chunk).
async fn drain(mut body: Body, up_to: u64) -> Result<(), BodyRefusal> {
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
    app: &App,
    tenant: &Arc<crate::tenants::Tenant>,
    source_name: &str,
    parts: WebhookParts,
) -> Result<WebhookParts, crate::providers::AuthFailure> {
    use crate::providers::AuthFailure;
    let source = &tenant.sources[source_name];
    if !source.authentication_is_cpu_heavy(parts.body.len()) {
        return source.authenticate(&parts.request()).map(|()| parts);
    }
    let _slot = app
        .heavy_checks
        .acquire()
        .await
        .map_err(|_| AuthFailure("shutting down"))?;
    let (tenant, source_name) = (tenant.clone(), source_name.to_string());
    tokio::task::spawn_blocking(move || {
        tenant.sources[&source_name]
            .authenticate(&parts.request())
            .map(|()| parts)
    })
    .await
    .unwrap_or(Err(AuthFailure("the check failed")))
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
            is_json_content_type(&h)
        };
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=utf-8").is_ok());
        assert!(with("application/vnd.api+json").is_ok());
        assert!(with("application/x-www-form-urlencoded").is_err());
        assert!(with("text/xml").is_err());
        assert!(is_json_content_type(&HeaderMap::new()).is_ok());
    }
}

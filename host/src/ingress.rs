//! HTTP ingress: `POST /hooks/{tenant}/{source}`. Checks, in this order: the tenant and source
//! exist (404), the body is within the limit (413), the credentials (401, with a generic message:
//! the reason goes to the log), the content type (415), the JSON (400 with the parser's position),
//! the provider's required fields (422 naming the field). Only then is the event journaled, and
//! only after the journal commit is it acknowledged (200) and handed to the dispatcher.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
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

/// The 200 answer, `{"status": "accepted" | "duplicate", "event": seq}`, written directly (it is
/// sent for every webhook).
fn acknowledgement(status: &'static str, seq: i64) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"status":"{status}","event":{seq}}}"#),
    )
        .into_response()
}

/// Headers never stored with an event: credentials and signatures. `name` is lowercase (as
/// `HeaderName` always is).
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
    body: Result<Bytes, BytesRejection>,
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
    body: Result<Bytes, BytesRejection>,
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
    body: Result<Bytes, BytesRejection>,
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
        return error(
            StatusCode::NOT_FOUND,
            format!("no tenant named {tenant_name:?}"),
        );
    };
    let Some(source) = tenant.sources.get(&source_name) else {
        reject(&tenant_name, m::UNKNOWN, "unknown_source");
        return error(
            StatusCode::NOT_FOUND,
            format!("tenant {tenant_name:?} has no source named {source_name:?}"),
        );
    };
    source.metrics.received.increment(1);
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            reject(&tenant_name, &source_name, "too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body is larger than the limit of {} bytes",
                    app.max_body_bytes
                ),
            );
        }
        Err(rejection) => {
            return error(
                rejection.status(),
                format!("cannot read the body: {}", rejection.body_text()),
            )
        }
    };
    let request = WebhookRequest {
        headers: &headers,
        body: &body,
        query: query.as_deref(),
        path_token: path_token.as_deref(),
        peer: Some(peer.ip()),
    };
    if let Err(why) = source.authenticate(&request) {
        reject(&tenant_name, &source_name, "unauthorized");
        tracing::warn!(tenant = %tenant_name, source = %source_name, reason = why.0, "webhook rejected: unauthorized");
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    if let Some(limiter) = &tenant.ingest_limit {
        if let Err(wait) = limiter.try_acquire() {
            reject(&tenant_name, &source_name, "rate_limited");
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant {tenant_name:?} receives at most {} webhooks per second; retry after {secs} s",
                    tenant.limits.ingest_per_second.unwrap_or_default()
                ),
            );
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
            return response;
        }
    }
    if let Err(message) = is_json_content_type(&headers) {
        reject(&tenant_name, &source_name, "content_type");
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
    }
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
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
        .filter(|(k, _)| !is_sensitive(k.as_str()))
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
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook could not be stored; retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
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

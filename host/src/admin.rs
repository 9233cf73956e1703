//! The admin API (`/admin/...`, JSON, bearer token): what arrived, what each plugin did, and what
//! each tenant's kv holds. Disabled when no token is configured. Secrets are never returned.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::config::Secrets;
use crate::ingress::error;
use crate::providers::matches_any_secret;

/// The admin routes, wrapped in the bearer-token check.
pub fn router(app: Arc<App>, token: Secrets) -> Router<Arc<App>> {
    let token = Arc::new(token);
    Router::new()
        .route("/admin/tenants", get(tenants))
        .route("/admin/tenants/{tenant}/kv", get(kv))
        .route("/admin/tenants/{tenant}/events", get(events))
        .route("/admin/events/{seq}", get(event))
        .route("/admin/sink", get(sink))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let token = token.clone();
                async move {
                    let presented = req
                        .headers()
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "));
                    match presented {
                        Some(p) if matches_any_secret(p.trim().as_bytes(), &token) => {
                            next.run(req).await
                        }
                        _ => error(
                            StatusCode::UNAUTHORIZED,
                            "admin API needs `Authorization: Bearer <admin token>`",
                        ),
                    }
                }
            },
        ))
        .with_state(app)
}

/// Every tenant with its sources and plugin status (no secrets).
async fn tenants(State(app): State<Arc<App>>) -> Response {
    let statuses = app.registry.statuses();
    let mut list: Vec<_> = app
        .tenants
        .iter()
        .map(|t| {
            let mut sources: Vec<_> = t
                .sources
                .iter()
                .map(|(name, p)| json!({ "name": name, "provider": p.provider.name() }))
                .collect();
            sources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            json!({
                "name": t.name,
                "sources": sources,
                "plugin": statuses.get(&t.name).cloned().unwrap_or_default(),
                "allowed_hosts": t.allow.entries(),
            })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(json!({ "tenants": list })).into_response()
}

#[derive(Deserialize)]
struct KvQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<u32>,
}

/// A tenant's kv entries (values as text when UTF-8, else base64).
async fn kv(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Query(q): Query<KvQuery>,
) -> Response {
    if app.tenants.get(&tenant).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no tenant named {tenant:?}"));
    }
    match app
        .storage
        .kv_entries(&tenant, &q.prefix, q.limit.unwrap_or(100).min(1000))
    {
        Ok(entries) => {
            let entries: Vec<_> = entries
                .into_iter()
                .map(|e| match String::from_utf8(e.value) {
                    Ok(text) => json!({ "key": e.key, "value": text, "updated_at_ms": e.updated_at_ms }),
                    Err(bin) => json!({ "key": e.key, "value_base64": base64::engine::general_purpose::STANDARD.encode(bin.as_bytes()), "updated_at_ms": e.updated_at_ms }),
                })
                .collect();
            Json(json!({ "tenant": tenant, "entries": entries })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

/// A tenant's events, newest first; `next_before` is the cursor for the next page.
async fn events(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Response {
    if app.tenants.get(&tenant).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no tenant named {tenant:?}"));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    match app.storage.events(&tenant, limit, q.before) {
        Ok(events) => {
            let next = (events.len() == limit as usize)
                .then(|| events.last().map(|e| e.seq))
                .flatten();
            Json(json!({ "tenant": tenant, "events": events, "next_before": next })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// One event with its raw body, normalized form and every attempt.
async fn event(State(app): State<Arc<App>>, Path(seq): Path<i64>) -> Response {
    match app.storage.event_detail(seq) {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no event {seq}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// What plugins sent to the built-in sink.
async fn sink(State(app): State<Arc<App>>) -> Response {
    match &app.sink {
        Some(sink) => Json(json!({ "requests": sink.all() })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "the sink is disabled: set `sink = true` in the config",
        ),
    }
}

//! The admin API (`/admin/...`, JSON, bearer token): what arrived, what each plugin did, and what
//! each tenant's kv holds. Disabled when no token is configured. Secrets are never returned.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::config::Secrets;
use crate::ingress::error;
use crate::storage::{EventFilter, EventState, Replay};

/// The admin API's OpenAPI 3.1 description (kept in sync with [`router`] by a test).
pub const OPENAPI: &str = include_str!("../api/openapi.json");

/// `GET /admin/openapi.json`: the description, readable without a token (it holds no data).
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The web console: one page, its script and its style sheet, embedded in the binary (no CDN).
/// It holds no data: everything it shows comes from the admin API with the token the operator
/// signs in with.
pub const CONSOLE: &str = include_str!("../console/index.html");
const CONSOLE_SCRIPT: &str = include_str!("../console/app.js");
const CONSOLE_STYLE: &str = include_str!("../console/app.css");

/// The console's Content-Security-Policy: scripts and styles only from the served files (no
/// inline code, so injected markup cannot run), requests only to this host, no framing.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn console_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /console`.
pub async fn console() -> Response {
    console_file("text/html; charset=utf-8", CONSOLE)
}

/// `GET /console/app.js`.
pub async fn console_script() -> Response {
    console_file("text/javascript; charset=utf-8", CONSOLE_SCRIPT)
}

/// `GET /console/app.css`.
pub async fn console_style() -> Response {
    console_file("text/css; charset=utf-8", CONSOLE_STYLE)
}

/// The admin routes, wrapped in the bearer-token check.
pub fn router(app: Arc<App>, token: Secrets) -> Router<Arc<App>> {
    let token = Arc::new(token);
    Router::new()
        .route("/admin/tenants", get(tenants))
        .route("/admin/tenants/{tenant}/kv", get(kv))
        .route("/admin/tenants/{tenant}/events", get(events))
        .route("/admin/tenants/{tenant}/counts", get(counts))
        .route("/admin/events/{seq}", get(event))
        .route("/admin/events/{seq}/replay", post(replay_one))
        .route("/admin/tenants/{tenant}/dead-letters", get(dead_letters))
        .route(
            "/admin/tenants/{tenant}/dead-letters/replay",
            post(replay_dead),
        )
        .route("/admin/sink", get(sink))
        .route("/admin/config", get(config_status))
        .route("/admin/config/reload", post(config_reload))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let token = token.clone();
                async move {
                    if crate::app::bearer_matches(req.headers(), &token) {
                        next.run(req).await
                    } else {
                        error(
                            StatusCode::UNAUTHORIZED,
                            "admin API needs `Authorization: Bearer <admin token>`",
                        )
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
        .all()
        .values()
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
    /// Cursor: entries after this key (`next_after` of the previous page).
    after: Option<String>,
    limit: Option<u32>,
}

/// A tenant's kv entries in key order (values as text when UTF-8, else base64); `next_after` is
/// the cursor for the next page.
async fn kv(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Query(q): Query<KvQuery>,
) -> Response {
    if app.tenants.get(&tenant).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no tenant named {tenant:?}"));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match app
        .storage
        .kv_entries(&tenant, &q.prefix, q.after.as_deref(), limit)
    {
        Ok(entries) => {
            let next_after = (entries.len() == limit as usize)
                .then(|| entries.last().map(|e| e.key.clone()))
                .flatten();
            let entries: Vec<_> = entries
                .into_iter()
                .map(|e| match String::from_utf8(e.value) {
                    Ok(text) => json!({ "key": e.key, "value": text, "updated_at_ms": e.updated_at_ms }),
                    Err(bin) => json!({ "key": e.key, "value_base64": base64::engine::general_purpose::STANDARD.encode(bin.as_bytes()), "updated_at_ms": e.updated_at_ms }),
                })
                .collect();
            Json(json!({ "tenant": tenant, "entries": entries, "next_after": next_after }))
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    limit: Option<u32>,
    before: Option<i64>,
    state: Option<String>,
    /// The provider's order id or the merchant's reference.
    order: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
}

/// How many of a tenant's events are in each state.
async fn counts(State(app): State<Arc<App>>, Path(tenant): Path<String>) -> Response {
    if app.tenants.get(&tenant).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no tenant named {tenant:?}"));
    }
    match app.storage.event_counts(&tenant) {
        Ok(counts) => Json(json!({ "tenant": tenant, "counts": counts })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// A tenant's events, newest first, optionally only one `state` (pending, running, done, skipped,
/// dead), one `order`, received in [`since_ms`, `until_ms`); `next_before` is the cursor for the
/// next page.
async fn events(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let state = match q.state.as_deref() {
        None => None,
        Some(name) => match EventState::parse(name) {
            s if s.as_str() == name => Some(s),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown state {name:?}: use pending, running, done, skipped or dead"),
                )
            }
        },
    };
    let filter = EventFilter {
        state,
        order: q.order.filter(|o| !o.is_empty()),
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    list_events(&app, &tenant, q.limit, q.before, &filter)
}

/// A tenant's dead letters, newest first.
async fn dead_letters(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Response {
    list_events(
        &app,
        &tenant,
        q.limit,
        q.before,
        &EventFilter::state(EventState::Dead),
    )
}

fn list_events(
    app: &App,
    tenant: &str,
    limit: Option<u32>,
    before: Option<i64>,
    filter: &EventFilter,
) -> Response {
    if app.tenants.get(tenant).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no tenant named {tenant:?}"));
    }
    let limit = limit.unwrap_or(50).clamp(1, 500);
    match app.storage.events(tenant, limit, before, filter) {
        Ok(events) => {
            let next = (events.len() == limit as usize)
                .then(|| events.last().map(|e| e.seq))
                .flatten();
            Json(json!({ "tenant": tenant, "events": events, "next_before": next })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// Replays one finished event (done, skipped or dead) with the plugin version serving now; its
/// new attempts are added to its history, with a fresh retry budget.
async fn replay_one(State(app): State<Arc<App>>, Path(seq): Path<i64>) -> Response {
    // As in ingress: once the replay commits, the event reaches the dispatcher even if the caller
    // has gone.
    let task = {
        let app = app.clone();
        tokio::spawn(async move {
            let replay = app.storage.replay(seq).await;
            if let Ok(Replay::Replayed(event)) = &replay {
                tracing::info!(seq, tenant = %event.tenant, "event replayed");
                app.dispatcher.enqueue(event.as_ref().clone());
            }
            replay
        })
    };
    match task
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("replay task failed: {e}")))
    {
        Ok(Replay::Replayed(_)) => {
            (StatusCode::ACCEPTED, Json(json!({ "replayed": [seq] }))).into_response()
        }
        Ok(Replay::NotFound) => error(StatusCode::NOT_FOUND, format!("no event {seq}")),
        Ok(Replay::NotFinished(state)) => error(
            StatusCode::CONFLICT,
            format!(
                "event {seq} is {}: only finished events (done, skipped, dead) can be replayed",
                state.as_str()
            ),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

#[derive(Deserialize)]
struct ReplayQuery {
    /// Only dead letters that died at or after this time (ms since the epoch).
    since_ms: Option<u64>,
}

/// Replays every dead letter of a tenant (optionally only recent ones).
async fn replay_dead(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Response {
    if app.tenants.get(&tenant).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no tenant named {tenant:?}"));
    }
    let task = {
        let app = app.clone();
        tokio::spawn(async move {
            let events = app.storage.replay_dead(&tenant, q.since_ms).await?;
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            tracing::info!(tenant, count = seqs.len(), "dead letters replayed");
            for event in events {
                app.dispatcher.enqueue(event);
            }
            anyhow::Ok(seqs)
        })
    };
    match task
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("replay task failed: {e}")))
    {
        Ok(seqs) => (StatusCode::ACCEPTED, Json(json!({ "replayed": seqs }))).into_response(),
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

/// The config file and how its last reload went.
async fn config_status(State(app): State<Arc<App>>) -> Response {
    match &app.reconfigurer {
        Some(r) => Json(r.status()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "this host was not started from a config file",
        ),
    }
}

/// Re-reads the config file and applies its tenants (like SIGHUP), answering what changed, or 422
/// saying why the file was refused (the running config stays).
async fn config_reload(State(app): State<Arc<App>>) -> Response {
    let Some(reconfigurer) = &app.reconfigurer else {
        return error(
            StatusCode::NOT_FOUND,
            "this host was not started from a config file",
        );
    };
    match reconfigurer.reload().await {
        Ok(change) => Json(change).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("config not reloaded, the running config stays: {e:#}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    /// Every route the admin router serves is described, with its method, and nothing else is.
    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut described: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                described.push((method.to_uppercase(), path.clone()));
            }
        }
        let source = include_str!("admin.rs");
        let source = &source[..source.find("#[cfg(test)]").unwrap()];
        let mut served: Vec<(String, String)> = vec![("GET".into(), "/admin/openapi.json".into())];
        for (i, _) in source.match_indices(".route(") {
            let rest = &source[i..];
            let start = rest.find('"').unwrap() + 1;
            let end = start + rest[start..].find('"').unwrap();
            let handler = rest[end + 1..].trim_start_matches([',', ' ', '\n']);
            let method = if handler.starts_with("post(") {
                "POST"
            } else {
                "GET"
            };
            served.push((method.into(), rest[start..end].to_string()));
        }
        described.sort();
        served.sort();
        served.dedup();
        assert_eq!(described, served);
        // Every reference resolves.
        let text = super::OPENAPI;
        for (i, _) in text.match_indices("\"$ref\": \"#/") {
            let start = i + "\"$ref\": \"#/".len();
            let end = start + text[start..].find('"').unwrap();
            let mut node = &doc;
            for part in text[start..end].split('/') {
                node = &node[part];
            }
            assert!(!node.is_null(), "dangling $ref {}", &text[start..end]);
        }
    }
}

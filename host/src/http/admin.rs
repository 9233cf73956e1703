//! The admin API (`/admin/...`, JSON, bearer token): what arrived, what each plugin did, and what
//! each tenant's kv holds. Served only when a token is configured (the `require_admin` layer
//! checks it). Secrets are never returned.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRequestParts, Path, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::AppError;
use super::state::AppState;
use crate::storage::{EventFilter, EventState, Replay};
use crate::tenants::Tenant;

/// The admin routes (the caller adds the token check).
pub fn routes() -> Router<Arc<AppState>> {
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
        .route(
            "/admin/tenants/{tenant}/plugin",
            put(publish_plugin).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
}

/// The largest component a publication takes (a JavaScript or Python plugin, which carries its
/// interpreter, is ~10-40 MB).
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// Publishes a plugin for a tenant (the body is the component): compiled for this host's world
/// and put through the tenant's self-tests here, then stored in the database and made the
/// tenant's version on every replica sharing it (this one at once, the others when they hear of
/// it). A component that does not load or fails a self-test is refused with 422 naming why, and
/// the serving version keeps serving.
async fn publish_plugin(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    component: axum::body::Bytes,
) -> Result<Json<Value>, AppError> {
    let Some(loader) = state.loader.clone() else {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this host does not load plugins",
        ));
    };
    if component.is_empty() {
        return Err(AppError::bad_request(
            "the body must be the plugin component (a .wasm file)",
        ));
    }
    let name = tenant.name.clone();
    let checked = {
        let (loader, component) = (loader.clone(), component.clone());
        tokio::task::spawn_blocking(move || loader.check_publishable(&name, &component))
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("the check did not finish: {e}")))?
    };
    let checked = checked.map_err(|e| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("not published: {e:#}"),
        )
    })?;
    let published = state
        .storage
        .publish_plugin(&tenant.name, &component)
        .await
        .map_err(|e| {
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot store the plugin: {e:#}"),
            )
            .retry_after(1)
        })?;
    let version = checked.plugin.version.clone();
    loader
        .registry()
        .install_published(&tenant.name, &published.digest, Arc::new(checked.plugin));
    tracing::info!(tenant = %tenant.name, %version, size = published.size, "plugin published");
    Ok(Json(json!({
        "tenant": tenant.name,
        "version": version,
        "digest": published.digest,
        "size": published.size,
        "published_at_ms": published.published_at_ms,
        "compile_ms": checked.compile.as_millis() as u64,
        "self_tests_ms": checked.self_tests.as_millis() as u64,
    })))
}

/// The tenant named by the route's `{tenant}`; a name the config does not have is 404.
struct KnownTenant(Arc<Tenant>);

impl FromRequestParts<Arc<AppState>> for KnownTenant {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::bad_request(e.body_text()))?;
        let name = params
            .iter()
            .find(|(key, _)| *key == "tenant")
            .map(|(_, value)| value)
            .ok_or_else(|| AppError::bad_request("this route names no tenant"))?;
        state
            .tenants
            .get(name)
            .map(KnownTenant)
            .ok_or_else(|| AppError::not_found(format!("no tenant named {name:?}")))
    }
}

/// A query string, refused with the API's JSON error (not axum's plain text) when it does not
/// parse.
struct AdminQuery<T>(T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<AppState>> for AdminQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| AdminQuery(q.0))
            .map_err(|e| AppError::bad_request(e.body_text()))
    }
}

/// An event number in the path, refused with the API's JSON error when it is not one.
struct EventSeq(i64);

impl FromRequestParts<Arc<AppState>> for EventSeq {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Path::<i64>::from_request_parts(parts, state)
            .await
            .map(|p| EventSeq(p.0))
            .map_err(|_| AppError::bad_request("an event is named by its number (`seq`)"))
    }
}

/// Every tenant with its sources and plugin status (no secrets).
async fn tenants(State(state): State<Arc<AppState>>) -> Json<Value> {
    let statuses = state.registry.statuses();
    let mut list: Vec<_> = state
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
    Json(json!({ "tenants": list }))
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
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<KvQuery>,
) -> Result<Json<Value>, AppError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .storage
        .kv_entries(&tenant.name, &q.prefix, q.after.as_deref(), limit)
        .await?;
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
    Ok(Json(
        json!({ "tenant": tenant.name, "entries": entries, "next_after": next_after }),
    ))
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
async fn counts(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
) -> Result<Json<Value>, AppError> {
    let counts = state.storage.event_counts(&tenant.name).await?;
    Ok(Json(json!({ "tenant": tenant.name, "counts": counts })))
}

/// A tenant's events, newest first, optionally only one `state` (pending, running, done, skipped,
/// dead), one `order`, received in [`since_ms`, `until_ms`); `next_before` is the cursor for the
/// next page.
async fn events(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<EventsQuery>,
) -> Result<Json<Value>, AppError> {
    let event_state = q
        .state
        .as_deref()
        .map(str::parse::<EventState>)
        .transpose()
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    let filter = EventFilter {
        state: event_state,
        order: q.order.filter(|o| !o.is_empty()),
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    list_events(&state, &tenant, q.limit, q.before, &filter).await
}

/// A tenant's dead letters, newest first.
async fn dead_letters(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<EventsQuery>,
) -> Result<Json<Value>, AppError> {
    let filter = EventFilter::state(EventState::Dead);
    list_events(&state, &tenant, q.limit, q.before, &filter).await
}

async fn list_events(
    state: &AppState,
    tenant: &Tenant,
    limit: Option<u32>,
    before: Option<i64>,
    filter: &EventFilter,
) -> Result<Json<Value>, AppError> {
    let limit = limit.unwrap_or(50).clamp(1, 500);
    let events = state
        .storage
        .events(&tenant.name, limit, before, filter)
        .await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(
        json!({ "tenant": tenant.name, "events": events, "next_before": next }),
    ))
}

/// Runs `work` in a task of its own: once a replay commits, its events reach the dispatcher even
/// if the caller has gone (its request future dropped).
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("replay task failed: {e}")))
}

/// Replays one finished event (done, skipped or dead) with the plugin version serving now; its
/// new attempts are added to its history, with a fresh retry budget.
async fn replay_one(
    State(state): State<Arc<AppState>>,
    EventSeq(seq): EventSeq,
) -> Result<Response, AppError> {
    let replay = detached(async move {
        let replay = state.storage.replay(seq).await?;
        if let Replay::Replayed { tenant } = &replay {
            tracing::info!(seq, %tenant, "event replayed");
            state.dispatcher.wake(tenant);
        }
        Ok(replay)
    })
    .await?;
    match replay {
        Replay::Replayed { .. } => {
            Ok((StatusCode::ACCEPTED, Json(json!({ "replayed": [seq] }))).into_response())
        }
        Replay::NotFound => Err(AppError::not_found(format!("no event {seq}"))),
        Replay::NotFinished(event_state) => Err(AppError::new(
            StatusCode::CONFLICT,
            format!(
                "event {seq} is {}: only finished events (done, skipped, dead) can be replayed",
                event_state.as_str()
            ),
        )),
    }
}

#[derive(Deserialize)]
struct ReplayQuery {
    /// Only dead letters that died at or after this time (ms since the epoch).
    since_ms: Option<u64>,
}

/// Replays every dead letter of a tenant (optionally only recent ones).
async fn replay_dead(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<ReplayQuery>,
) -> Result<Response, AppError> {
    let seqs = detached(async move {
        let seqs = state.storage.replay_dead(&tenant.name, q.since_ms).await?;
        tracing::info!(tenant = %tenant.name, count = seqs.len(), "dead letters replayed");
        if !seqs.is_empty() {
            state.dispatcher.wake(&tenant.name);
        }
        Ok(seqs)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "replayed": seqs }))).into_response())
}

/// One event with its raw body, normalized form and every attempt.
async fn event(
    State(state): State<Arc<AppState>>,
    EventSeq(seq): EventSeq,
) -> Result<Json<crate::storage::EventDetail>, AppError> {
    state
        .storage
        .event_detail(seq)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::not_found(format!("no event {seq}")))
}

/// What plugins sent to the built-in sink.
async fn sink(State(state): State<Arc<AppState>>) -> Result<Json<Value>, AppError> {
    let sink = state.sink.as_ref().ok_or_else(|| {
        AppError::not_found("the sink is disabled: set `sink = true` in the config")
    })?;
    Ok(Json(json!({ "requests": sink.all() })))
}

fn reconfigurer(state: &AppState) -> Result<&crate::reconfigure::Reconfigurer, AppError> {
    state
        .reconfigurer
        .as_deref()
        .ok_or_else(|| AppError::not_found("this host was not started from a config file"))
}

/// The config file and how its last reload went.
async fn config_status(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    Ok(Json(reconfigurer(&state)?.status()).into_response())
}

/// Re-reads the config file and applies its tenants (like SIGHUP), answering what changed, or 422
/// saying why the file was refused (the running config stays).
async fn config_reload(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    match reconfigurer(&state)?.reload().await {
        Ok(change) => Ok(Json(change).into_response()),
        Err(e) => Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("config not reloaded, the running config stays: {e:#}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    /// Every route the admin router serves is described, with its method, and nothing else is.
    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::super::console::OPENAPI).unwrap();
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
            } else if handler.starts_with("put(") {
                "PUT"
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
        let text = super::super::console::OPENAPI;
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

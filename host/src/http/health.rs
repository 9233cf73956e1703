//! What load balancers and monitoring read: liveness, readiness and the Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::bearer_matches;
use super::error::AppError;
use super::state::AppState;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /metrics`: Prometheus text exposition of every metric (see `telemetry`); the token
/// check is the `require_metrics_token` layer.
pub async fn metrics_text(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    let handle = state
        .metrics
        .as_ref()
        .ok_or_else(|| AppError::not_found("metrics are not installed in this process"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

/// `GET /readyz`. Ready means: the journal commits writes, and every tenant has a plugin loaded
/// (otherwise its webhooks are accepted but wait). A bare 200/503 for load balancers; what is
/// missing (which names tenants) only with the admin token.
pub async fn readyz(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let store = match tokio::time::timeout(Duration::from_secs(2), state.storage.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("cannot commit: {e:#}"),
        Err(_) => "no commit within 2 s".to_string(),
    };
    let tenants = state.tenants.all();
    let mut waiting: Vec<&str> = tenants
        .values()
        .filter(|t| state.registry.get(&t.name).is_none())
        .map(|t| t.name.as_str())
        .collect();
    waiting.sort();
    let ready = store == "ok" && waiting.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let detailed = state
        .admin_token
        .as_ref()
        .is_some_and(|token| bearer_matches(&headers, token));
    if !detailed {
        return (status, Json(serde_json::json!({ "ready": ready }))).into_response();
    }
    let body =
        serde_json::json!({ "ready": ready, "store": store, "tenants_without_plugin": waiting });
    (status, Json(body)).into_response()
}

//! The HTTP layer, in axum's idiom: [`app`] builds the one router from the shared
//! [`AppState`]; handlers return `Result<_, AppError>`; who may call what is decided by named
//! middleware ([`auth`]). Rooms:
//!
//! - [`ingress`]: `POST /hooks/{tenant}/{source}[/{token}]`, the webhook path, step by step;
//! - [`admin`]: `/admin/...`, the operator's JSON API;
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`console`]: the embedded web console and the OpenAPI document;
//! - [`sink`]: the development request sink;
//! - [`serve`]: the connection loop with its limits.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub mod admin;
pub mod auth;
pub mod console;
pub mod error;
pub mod health;
pub mod ingress;
pub mod serve;
pub mod sink;
pub mod state;

pub use error::AppError;
pub use ingress::{DUPLICATE_HEADER, NO_SUCH_ENDPOINT};
pub use serve::serve_http;
pub use sink::Sink;
pub use state::AppState;

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod tests;

/// How long a caller may take to send its request and get its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Every route hookhost serves. The admin API exists only when `state` has an admin token, the
/// sink only when it is enabled.
pub fn app(state: Arc<AppState>) -> Router {
    let hooks = post(ingress::receive).layer(DefaultBodyLimit::max(state.max_body_bytes));
    let mut router = Router::new()
        .route("/hooks/{tenant}/{source}", hooks.clone())
        .route("/hooks/{tenant}/{source}/{token}", hooks)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/metrics",
            get(health::metrics_text).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::require_metrics_token,
            )),
        )
        .route("/admin/openapi.json", get(console::openapi))
        .route("/console", get(console::page))
        .route("/console/", get(console::page))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route(
            "/console/vendor/uPlot.iife.min.js",
            get(console::chart_script),
        )
        .route("/console/vendor/uPlot.min.css", get(console::chart_style));
    if state.sink.is_some() {
        router = router.route(
            "/sink/{name}",
            post(sink::receive).layer(DefaultBodyLimit::max(sink::MAX_BODY_BYTES)),
        );
    }
    if state.admin_token.is_some() {
        router = router.merge(admin::routes(&state).router);
    }
    if state.loopback_host_only {
        router = router.layer(axum::middleware::from_fn(auth::refuse_foreign_host));
    }
    router
        // A caller gets 30 s for its whole request (body included), so slow or stalled clients
        // cannot hold connections and memory forever.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            REQUEST_TIMEOUT,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .fallback(not_found)
        .with_state(state)
}

/// Any path hookhost does not serve.
async fn not_found() -> AppError {
    AppError::not_found("no such endpoint: webhooks go to POST /hooks/{tenant}/{source}")
}

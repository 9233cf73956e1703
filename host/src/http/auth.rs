//! Who may call what: the bearer-token checks of the admin API and `/metrics`, as named
//! middleware, and the guard of the development host against DNS rebinding.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use super::state::AppState;
use crate::config::Secrets;

/// Whether the request carries `Authorization: Bearer <one of tokens>` (compared in constant
/// time).
pub fn bearer_matches(headers: &HeaderMap, tokens: &Secrets) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|p| crate::providers::matches_any_secret(p.trim().as_bytes(), tokens))
}

/// Lets a request through only with the admin token. The admin routes exist only when a token
/// is configured, so a missing one refuses everything.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match &state.admin_token {
        Some(token) if bearer_matches(request.headers(), token) => next.run(request).await,
        _ => AppError::unauthorized("admin API needs `Authorization: Bearer <admin token>`")
            .into_response(),
    }
}

/// Lets a request through when no metrics token is configured, or with it.
pub async fn require_metrics_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match &state.metrics_token {
        Some(token) if !bearer_matches(request.headers(), token) => {
            AppError::unauthorized("metrics need `Authorization: Bearer <metrics token>`")
                .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Refuses a request whose `Host` is not `localhost`, `127.0.0.1` or `[::1]` (any port): a web
/// page cannot reach a local dev server by pointing its own host name at 127.0.0.1 (DNS
/// rebinding), since the browser sends that name.
pub async fn refuse_foreign_host(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host());
    if host.is_some_and(is_loopback_host) {
        return next.run(request).await;
    }
    AppError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "this development host answers only requests to localhost, 127.0.0.1 or [::1]",
    )
    .into_response()
}

/// Whether a `Host` value (`name[:port]`) names this machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    matches!(
        name.to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "::1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:1",
            "[::1]:9",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "127.0.0.1.evil.example",
            "[::2]:1",
            "localhost.evil:80",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn bearer_tokens_match_only_exactly() {
        let tokens = Secrets(vec![crate::config::Secret::new("s3cret")]);
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            bearer_matches(&headers, &tokens)
        };
        assert!(with("Bearer s3cret"));
        assert!(!with("Bearer s3cre"));
        assert!(!with("bearer s3cret"));
        assert!(!with("Basic s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), &tokens));
    }
}

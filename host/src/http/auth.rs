//! Who may call what: the bearer-token checks of the admin API and `/metrics`, as named
//! middleware, and the guard of the development host against DNS rebinding.
//!
//! The admin API takes two kinds of token. [`authenticate`] finds out which one a request
//! carries and records the [`Caller`]; each route then says what it needs (an [`Access`]) and
//! [`authorize`] holds a merchant token to its own tenant and its scopes. A merchant asking for
//! another tenant's resource gets the very answer a resource that does not exist gets.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use super::state::AppState;
use crate::access::{self, Scope, TokenInfo};
use crate::config::Secrets;

/// Whether the request carries `Authorization: Bearer <one of tokens>` (compared in constant
/// time).
pub fn bearer_matches(headers: &HeaderMap, tokens: &Secrets) -> bool {
    bearer(headers).is_some_and(|p| crate::providers::matches_any_secret(p.as_bytes(), tokens))
}

/// Who is calling the admin API.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The holder of the config's admin token: every tenant, every route.
    Operator,
    /// A merchant token: its tenant's routes, within its scopes.
    Merchant(Arc<TokenInfo>),
}

impl Caller {
    /// Who, as deploy records name them: `operator`, or `token <id> (<name>)`.
    pub fn who(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Merchant(token) => format!("token {} ({})", token.id, token.name),
        }
    }

    /// Whether this caller may see `tenant`.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Merchant(token) => token.tenant == tenant,
        }
    }
}

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The operator's token.
    Operator,
    /// The operator's, or a merchant token with this scope for the tenant the route names
    /// (`{tenant}`, or the tenant of the event `{seq}`); a route that names none shows a
    /// merchant only its own tenant.
    Merchant(Scope),
    /// Any valid token (who am I).
    AnyCaller,
}

/// How often a token's last use is written: a busy console must not write on every request.
const LAST_USE_EVERY_MS: u64 = 60_000;

/// Finds out who calls: the admin token makes the operator, a live merchant token its tenant's
/// merchant; anything else is 401. A merchant token costs one indexed lookup, whatever is
/// presented, and its secret is compared in constant time against the stored hash.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    match caller(&state, request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, AppError> {
    const ASK: &str = "admin API needs `Authorization: Bearer <admin token or merchant token>`";
    if let Some(token) = &state.admin_token {
        if bearer_matches(headers, token) {
            return Ok(Caller::Operator);
        }
    }
    let Some(presented) = bearer(headers) else {
        return Err(AppError::unauthorized(ASK));
    };
    let Some(id) = access::token_id(presented) else {
        return Err(AppError::unauthorized(ASK));
    };
    let stored = state.storage.token(id).await.map_err(|e| {
        tracing::warn!("cannot check a merchant token: {e:#}");
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot check the token now: the database is unreachable",
        )
        .retry_after(1)
    })?;
    let Some(stored) = stored.filter(|s| access::token_matches(presented, &s.hash)) else {
        return Err(AppError::unauthorized(ASK));
    };
    let now = crate::now_ms();
    if stored.info.revoked_at_ms.is_some() {
        return Err(AppError::unauthorized("this token was revoked"));
    }
    if !stored.info.is_live(now) {
        return Err(AppError::unauthorized("this token has expired"));
    }
    if stored
        .info
        .last_used_at_ms
        .is_none_or(|at| now.saturating_sub(at) >= LAST_USE_EVERY_MS)
    {
        let (storage, id) = (state.storage.clone(), stored.info.id.clone());
        tokio::spawn(async move {
            if let Err(e) = storage.token_used(&id, now).await {
                tracing::warn!("cannot record a token's use: {e:#}");
            }
        });
    }
    Ok(Caller::Merchant(Arc::new(stored.info)))
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Holds a merchant to what the route needs (`access`, this layer's state): its scope, then its
/// tenant. A resource of another tenant is answered exactly as one that does not exist (404 with
/// the same words), so a merchant cannot learn which tenants or events exist.
pub async fn authorize(
    State((state, access)): State<(Arc<AppState>, Access)>,
    request: Request,
    next: Next,
) -> Response {
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return AppError::unauthorized("admin API needs a token").into_response();
    };
    let Caller::Merchant(token) = caller else {
        return next.run(request).await;
    };
    let scope = match access {
        Access::AnyCaller => return next.run(request).await,
        Access::Operator => {
            return AppError::new(
                StatusCode::FORBIDDEN,
                "this route is the operator's: a merchant token cannot use it",
            )
            .into_response()
        }
        Access::Merchant(scope) => scope,
    };
    if !token.scopes.contains(&scope) {
        return AppError::new(
            StatusCode::FORBIDDEN,
            format!("this token lacks the `{scope}` scope"),
        )
        .into_response();
    }
    let (mut parts, body) = request.into_parts();
    let params = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => params,
        Err(e) => return AppError::bad_request(e.body_text()).into_response(),
    };
    for (key, value) in &params {
        let owned = match key {
            "tenant" if value == token.tenant => true,
            "tenant" => {
                return AppError::not_found(format!("no tenant named {value:?}")).into_response()
            }
            "seq" => match value.parse::<i64>() {
                // Not a number: the handler says so.
                Err(_) => true,
                Ok(seq) => match state.storage.event_tenant(seq).await {
                    Ok(tenant) => tenant.as_deref() == Some(token.tenant.as_str()),
                    Err(e) => return AppError::internal(e).into_response(),
                },
            },
            _ => true,
        };
        if !owned {
            return AppError::not_found(format!("no event {value}")).into_response();
        }
    }
    next.run(Request::from_parts(parts, body)).await
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

//! The admin API (`/admin/...`, JSON, bearer token): what arrived, what each plugin did, and what
//! each tenant's kv holds. Served only when a token is configured (the `require_admin` layer
//! checks it). Secrets are never returned.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRequestParts, Path, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{self, Access, Caller};
use super::error::AppError;
use super::state::AppState;
use crate::access::Scope;
use crate::storage::{
    component_digest, DeployAction, Deployed, EventFilter, EventState, NewDeploy, Replay,
};
use crate::tenants::Tenant;

/// One admin route and what it needs of its caller: the table the router is built from, so that
/// a route cannot be added without saying who may use it, and tests can walk every route.
#[derive(Debug, Clone)]
pub struct AdminRoute {
    /// Its method.
    pub method: Method,
    /// Its path, with `{tenant}`, `{seq}` or `{id}` parameters.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

/// The admin API: its router (token checks included) and its table of routes.
pub struct AdminApi {
    /// The routes, each behind [`auth::authorize`], all behind [`auth::authenticate`].
    pub router: Router<Arc<AppState>>,
    /// Every route, in the order added.
    pub table: Vec<AdminRoute>,
}

struct Routes {
    state: Arc<AppState>,
    api: AdminApi,
}

impl Routes {
    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        route: MethodRouter<Arc<AppState>>,
    ) -> Routes {
        let route = route.route_layer(axum::middleware::from_fn_with_state(
            (self.state.clone(), access),
            auth::authorize,
        ));
        self.api.router = self.api.router.route(path, route);
        self.api.table.push(AdminRoute {
            method,
            path,
            access,
        });
        self
    }
}

/// The admin routes, each with what it needs of its caller.
pub fn routes(state: &Arc<AppState>) -> AdminApi {
    use Access::{AnyCaller, Merchant, Operator};
    use Method as M;
    use Scope::{Deploy, Read, Replay};
    let routes = Routes {
        state: state.clone(),
        api: AdminApi {
            router: Router::new(),
            table: Vec::new(),
        },
    };
    let plugin_put: MethodRouter<Arc<AppState>> =
        put(deploy_plugin).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES));
    let backtest_post: MethodRouter<Arc<AppState>> =
        post(start_backtest).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES));
    // One line per route: the table is the documentation of who may call what.
    #[rustfmt::skip]
    let mut api = routes
        .add(M::GET, "/admin/whoami", AnyCaller, get(whoami))
        .add(M::GET, "/admin/tenants", Merchant(Read), get(tenants))
        .add(M::GET, "/admin/overview", Merchant(Read), get(overview))
        .add(M::GET, "/admin/search", Merchant(Read), get(search))
        .add(M::GET, "/admin/tenants/{tenant}/activity", Merchant(Read), get(activity))
        .add(M::GET, "/admin/tenants/{tenant}/kv", Merchant(Read), get(kv))
        .add(M::GET, "/admin/tenants/{tenant}/events", Merchant(Read), get(events))
        .add(M::GET, "/admin/tenants/{tenant}/counts", Merchant(Read), get(counts))
        .add(M::GET, "/admin/events/{seq}", Merchant(Read), get(event))
        .add(M::POST, "/admin/events/{seq}/replay", Merchant(Replay), post(replay_one))
        .add(M::GET, "/admin/tenants/{tenant}/dead-letters", Merchant(Read), get(dead_letters))
        .add(M::POST, "/admin/tenants/{tenant}/dead-letters/replay", Merchant(Replay), post(replay_dead))
        .add(M::PUT, "/admin/tenants/{tenant}/plugin", Merchant(Deploy), plugin_put)
        .add(M::GET, "/admin/tenants/{tenant}/plugin/versions", Merchant(Read), get(plugin_versions))
        .add(M::POST, "/admin/tenants/{tenant}/plugin/rollback", Merchant(Deploy), post(rollback_plugin))
        .add(M::GET, "/admin/tenants/{tenant}/plugin/shadow", Merchant(Read), get(shadow_status))
        .add(M::PUT, "/admin/tenants/{tenant}/plugin/shadow", Merchant(Deploy), put(set_shadow))
        .add(M::DELETE, "/admin/tenants/{tenant}/plugin/shadow", Merchant(Deploy), delete(discard_shadow))
        .add(M::POST, "/admin/tenants/{tenant}/plugin/shadow/promote", Merchant(Deploy), post(promote_shadow))
        .add(M::POST, "/admin/tenants/{tenant}/backtests", Merchant(Deploy), backtest_post)
        .add(M::GET, "/admin/tenants/{tenant}/backtests", Merchant(Read), get(backtests))
        .add(M::GET, "/admin/tenants/{tenant}/backtests/{id}", Merchant(Read), get(backtest))
        .add(M::POST, "/admin/tenants/{tenant}/tokens", Operator, post(create_token))
        .add(M::GET, "/admin/tenants/{tenant}/tokens", Operator, get(tenant_tokens))
        .add(M::GET, "/admin/tokens", Operator, get(all_tokens))
        .add(M::DELETE, "/admin/tokens/{id}", Operator, delete(revoke_token))
        .add(M::GET, "/admin/sink", Operator, get(sink))
        .add(M::GET, "/admin/config", Operator, get(config_status))
        .add(M::POST, "/admin/config/reload", Operator, post(config_reload))
        .api;
    api.router = api.router.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    api
}

/// The largest component a publication takes (a JavaScript or Python plugin, which carries its
/// interpreter, is ~10-40 MB).
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// Deploys a plugin for a tenant (the body is the component): compiled for this host's world and
/// put through the tenant's self-tests here, then stored in the database as the tenant's next
/// version and made the serving one on every replica sharing it (this one at once, the others
/// when they hear of it). A component that does not load or fails a self-test is recorded as a
/// refused deploy and answered 422 naming why; the serving version keeps serving. Deploys of one
/// tenant run one at a time.
async fn deploy_plugin(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<DeployQuery>,
    ComponentBody(component): ComponentBody,
) -> Result<Json<Value>, AppError> {
    let loader = plugin_loader(&state)?;
    if component.is_empty() {
        return Err(AppError::bad_request(
            "the body must be the plugin component (a .wasm file)",
        ));
    }
    let started = std::time::Instant::now();
    let _one_at_a_time = state.deploy_locks.lock(&tenant.name).await;
    let checked = check_component(&loader, &tenant.name, component.to_vec()).await?;
    let by = caller.who();
    let checked = match checked {
        Ok(checked) => checked,
        Err(reason) => {
            let refused = NewDeploy {
                tenant: tenant.name.clone(),
                by,
                action: DeployAction::Refused {
                    digest: component_digest(&component),
                    size: component.len() as u64,
                    reason: reason.clone(),
                },
            };
            if let Err(e) = state.storage.deploy(refused).await {
                tracing::warn!(tenant = %tenant.name, "cannot record a refused deploy: {e:#}");
            }
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("not deployed, the serving version stays: {reason}"),
            ));
        }
    };
    let stored_at = std::time::Instant::now();
    let activate = q.activate.unwrap_or(true);
    let deploy = NewDeploy {
        tenant: tenant.name.clone(),
        by,
        action: match activate {
            true => DeployAction::Activate(component.to_vec()),
            false => DeployAction::Stage(component.to_vec()),
        },
    };
    let record = match state.storage.deploy(deploy).await.map_err(store_refused)? {
        Deployed::Recorded(record) => record,
        Deployed::NoSuchEntry => {
            return Err(AppError::internal(anyhow::anyhow!(
                "the store did not record the deploy"
            )))
        }
    };
    let store = stored_at.elapsed();
    let version = checked.plugin.version.clone();
    if activate {
        loader
            .registry()
            .install_published(&tenant.name, &record.digest, Arc::new(checked.plugin));
    }
    tracing::info!(tenant = %tenant.name, number = record.number, %version, size = record.size, by = %record.by, activate, "plugin deployed");
    Ok(Json(json!({
        "tenant": tenant.name,
        "deploy": record,
        "version": version,
        "digest": record.digest,
        "size": record.size,
        "timings_ms": {
            "compile": checked.compile.as_millis() as u64,
            "self_tests": checked.self_tests.as_millis() as u64,
            "store": store.as_millis() as u64,
            "total": started.elapsed().as_millis() as u64,
        },
    })))
}

#[derive(Deserialize)]
struct DeployQuery {
    /// `false`: store the version without making it active (to shadow it, then promote it).
    activate: Option<bool>,
}

impl RequestBody for ShadowRequest {
    const SHAPE: &'static str = r#"{"version": <deploy number>, "share": <0 to 1>}"#;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowRequest {
    /// The deploy (history entry) that shadows.
    version: u32,
    /// The share of live attempts it runs beside, from 0 (exclusive) to 1.
    share: f64,
}

#[derive(Deserialize)]
struct ShadowQuery {
    /// Differing runs listed (default 50, at most 500).
    limit: Option<u32>,
}

/// Starts (or changes) the tenant's shadow: a deployed version that is not the active one runs
/// dry beside a share of live attempts, and each run is compared with the attempt.
async fn set_shadow(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    KnownTenant(tenant): KnownTenant,
    JsonBody(request): JsonBody<ShadowRequest>,
) -> Result<Json<Value>, AppError> {
    if !(request.share > 0.0 && request.share <= 1.0) {
        return Err(AppError::bad_request(
            "share is a fraction of live attempts: more than 0, at most 1",
        ));
    }
    let loader = plugin_loader(&state)?;
    let _one_at_a_time = state.deploy_locks.lock(&tenant.name).await;
    let history = state.storage.deploys(&tenant.name, u32::MAX).await?;
    let entry = history
        .iter()
        .find(|d| d.number == request.version)
        .ok_or_else(|| {
            AppError::not_found(format!(
                "tenant {:?} has no deploy {}",
                tenant.name, request.version
            ))
        })?;
    if !entry.kind.has_component() {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!(
                "deploy {} was refused: it has nothing to shadow with",
                entry.number
            ),
        ));
    }
    let active = crate::storage::deploys::active_entry(&history);
    if active.is_some_and(|a| a.digest == entry.digest) {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!(
                "deploy {} is the active version: a shadow must be another one",
                entry.number
            ),
        ));
    }
    let setting = crate::storage::ShadowSetting {
        tenant: tenant.name.clone(),
        number: entry.number,
        digest: entry.digest.clone(),
        share: request.share,
        since_ms: crate::now_ms(),
        by: caller.who(),
    };
    state
        .storage
        .set_shadow(&tenant.name, Some(setting.clone()))
        .await
        .map_err(store_refused)?;
    crate::plugins::published::install_shadow(&state.storage, &loader, &tenant, Some(&setting))
        .await
        .map_err(|e| AppError::internal(e.context("stored, but not loaded here")))?;
    tracing::info!(tenant = %tenant.name, number = setting.number, share = setting.share, by = %setting.by, "shadow started");
    Ok(Json(json!({ "tenant": tenant.name, "shadow": setting })))
}

/// The tenant's shadow and what it found: counts by verdict and the newest differing runs.
async fn shadow_status(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<ShadowQuery>,
) -> Result<Json<Value>, AppError> {
    let setting = state
        .storage
        .shadows()
        .await?
        .into_iter()
        .find(|s| s.tenant == tenant.name);
    let Some(setting) = setting else {
        return Ok(Json(json!({ "tenant": tenant.name, "shadow": null })));
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let report = state
        .storage
        .shadow_report(&tenant.name, setting.number, limit)
        .await?;
    Ok(Json(json!({
        "tenant": tenant.name,
        "shadow": setting,
        "counts": report.counts,
        "differing": report.differing,
    })))
}

/// Ends the tenant's shadow without promoting it (its findings are forgotten).
async fn discard_shadow(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
) -> Result<Json<Value>, AppError> {
    let loader = plugin_loader(&state)?;
    let _one_at_a_time = state.deploy_locks.lock(&tenant.name).await;
    let had = state
        .storage
        .shadows()
        .await?
        .into_iter()
        .find(|s| s.tenant == tenant.name)
        .ok_or_else(|| AppError::not_found(format!("tenant {:?} has no shadow", tenant.name)))?;
    state
        .storage
        .set_shadow(&tenant.name, None)
        .await
        .map_err(store_refused)?;
    crate::plugins::published::install_shadow(&state.storage, &loader, &tenant, None)
        .await
        .map_err(AppError::internal)?;
    tracing::info!(tenant = %tenant.name, number = had.number, "shadow discarded");
    Ok(Json(json!({ "tenant": tenant.name, "discarded": had })))
}

/// Makes the shadowing version the active one (checked again first, self-tests included), as a
/// new history entry, and ends the shadow.
async fn promote_shadow(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    KnownTenant(tenant): KnownTenant,
) -> Result<Json<Value>, AppError> {
    let loader = plugin_loader(&state)?;
    let _one_at_a_time = state.deploy_locks.lock(&tenant.name).await;
    let shadow = state
        .storage
        .shadows()
        .await?
        .into_iter()
        .find(|s| s.tenant == tenant.name)
        .ok_or_else(|| {
            AppError::new(
                StatusCode::CONFLICT,
                format!("tenant {:?} has no shadow to promote", tenant.name),
            )
        })?;
    let component = state
        .storage
        .plugin_component(&shadow.digest)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the shadow's component is missing")))?;
    let checked = check_component(&loader, &tenant.name, component)
        .await?
        .map_err(|reason| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("not promoted, the serving version stays: {reason}"),
            )
        })?;
    let promote = NewDeploy {
        tenant: tenant.name.clone(),
        by: caller.who(),
        action: DeployAction::Promote { to: shadow.number },
    };
    let record = match state.storage.deploy(promote).await.map_err(store_refused)? {
        Deployed::Recorded(record) => record,
        Deployed::NoSuchEntry => {
            return Err(AppError::internal(anyhow::anyhow!(
                "deploy {} is gone from the history",
                shadow.number
            )))
        }
    };
    loader
        .registry()
        .install_published(&tenant.name, &record.digest, Arc::new(checked.plugin));
    state
        .storage
        .set_shadow(&tenant.name, None)
        .await
        .map_err(store_refused)?;
    crate::plugins::published::install_shadow(&state.storage, &loader, &tenant, None)
        .await
        .map_err(AppError::internal)?;
    tracing::info!(tenant = %tenant.name, number = record.number, from = shadow.number, by = %record.by, "shadow promoted");
    Ok(Json(json!({ "tenant": tenant.name, "deploy": record })))
}

/// An uploaded component: the body, refused with the API's JSON error when it is over
/// [`MAX_PLUGIN_BYTES`] (told by its `Content-Length` before any of it is read, or when the
/// streamed body passes the limit).
struct ComponentBody(axum::body::Bytes);

impl axum::extract::FromRequest<Arc<AppState>> for ComponentBody {
    type Rejection = AppError;

    async fn from_request(
        request: axum::extract::Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(ComponentBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "not deployed: a component is at most {} MiB",
                            MAX_PLUGIN_BYTES >> 20
                        ),
                    )
                } else {
                    AppError::bad_request(format!("cannot read the upload: {}", e.body_text()))
                }
            })
    }
}

/// The loader, or 503 on a host that does not load plugins.
fn plugin_loader(state: &AppState) -> Result<Arc<crate::plugins::PluginLoader>, AppError> {
    state.loader.clone().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this host does not load plugins",
        )
    })
}

/// Compiles and self-tests a component on a blocking thread: the checked plugin, or why not.
async fn check_component(
    loader: &Arc<crate::plugins::PluginLoader>,
    tenant: &str,
    component: Vec<u8>,
) -> Result<Result<crate::plugins::Publishable, String>, AppError> {
    let (loader, tenant) = (loader.clone(), tenant.to_string());
    let checked =
        tokio::task::spawn_blocking(move || loader.check_publishable(&tenant, &component))
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("the check did not finish: {e}")))?;
    Ok(checked.map_err(|e| format!("{e:#}")))
}

/// A store that cannot record a deploy: 503, come back.
fn store_refused(e: anyhow::Error) -> AppError {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot store the deploy: {e:#}"),
    )
    .retry_after(1)
}

#[derive(Deserialize)]
struct VersionsQuery {
    limit: Option<u32>,
}

/// A tenant's deploy history, newest first, and which entry serves.
async fn plugin_versions(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<VersionsQuery>,
) -> Result<Json<Value>, AppError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let history = state.storage.deploys(&tenant.name, limit).await?;
    let active = crate::storage::deploys::active_entry(&history).map(|d| d.number);
    let serving = state.registry.statuses().remove(&tenant.name);
    Ok(Json(json!({
        "tenant": tenant.name,
        "active": active,
        "serving": serving,
        "deploys": history,
    })))
}

impl RequestBody for RollbackRequest {
    const SHAPE: &'static str = r#"empty or {"to": <deploy number>}"#;

    fn when_empty() -> Option<RollbackRequest> {
        Some(RollbackRequest::default())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    /// The entry to re-activate; the one before the active one when absent.
    to: Option<u32>,
}

/// Makes an earlier deploy's component serve again, as a new entry of the history. It is
/// compiled and self-tested again first (the tenant's config may have changed since): one that
/// no longer passes is refused with 422 and the serving version stays.
async fn rollback_plugin(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    KnownTenant(tenant): KnownTenant,
    JsonBody(request): JsonBody<RollbackRequest>,
) -> Result<Json<Value>, AppError> {
    let loader = plugin_loader(&state)?;
    let _one_at_a_time = state.deploy_locks.lock(&tenant.name).await;
    let history = state.storage.deploys(&tenant.name, u32::MAX).await?;
    let target = match request.to {
        Some(to) => {
            let entry = history.iter().find(|d| d.number == to).ok_or_else(|| {
                AppError::not_found(format!("tenant {:?} has no deploy {to}", tenant.name))
            })?;
            if !entry.kind.has_component() {
                return Err(AppError::new(
                    StatusCode::CONFLICT,
                    format!("deploy {to} was refused: it has no component to roll back to"),
                ));
            }
            entry
        }
        None => crate::storage::deploys::previous_entry(&history).ok_or_else(|| {
            AppError::new(
                StatusCode::CONFLICT,
                format!(
                    "tenant {:?} has no earlier version to roll back to",
                    tenant.name
                ),
            )
        })?,
    };
    let component = state
        .storage
        .plugin_component(&target.digest)
        .await?
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "the component of deploy {} is missing from the store",
                target.number
            ))
        })?;
    let checked = check_component(&loader, &tenant.name, component)
        .await?
        .map_err(|reason| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "not rolled back to deploy {}, the serving version stays: {reason}",
                    target.number
                ),
            )
        })?;
    let rollback = NewDeploy {
        tenant: tenant.name.clone(),
        by: caller.who(),
        action: DeployAction::Rollback { to: target.number },
    };
    let record = match state
        .storage
        .deploy(rollback)
        .await
        .map_err(store_refused)?
    {
        Deployed::Recorded(record) => record,
        Deployed::NoSuchEntry => {
            return Err(AppError::not_found(format!(
                "tenant {:?} has no deploy {}",
                tenant.name, target.number
            )))
        }
    };
    loader
        .registry()
        .install_published(&tenant.name, &record.digest, Arc::new(checked.plugin));
    tracing::info!(tenant = %tenant.name, number = record.number, to = target.number, by = %record.by, "plugin rolled back");
    Ok(Json(json!({ "tenant": tenant.name, "deploy": record })))
}

#[derive(Deserialize)]
struct BacktestQuery {
    /// Events received at or after this time (ms since the epoch); all when absent.
    since_ms: Option<u64>,
    /// At most this many events (default and most: 100,000).
    limit: Option<u32>,
}

/// Starts a backtest of the uploaded candidate (the body) over the tenant's journaled events:
/// 202 with the job's first report; `GET .../backtests/{id}` follows it. The candidate is
/// compiled here (a component of another world is 422) but needs no self-test: seeing what a
/// broken version would do is the point.
async fn start_backtest(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<BacktestQuery>,
    ComponentBody(component): ComponentBody,
) -> Result<Response, AppError> {
    let (Some(loader), Some(backtests)) = (state.loader.clone(), state.backtests.clone()) else {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this host does not load plugins",
        ));
    };
    if component.is_empty() {
        return Err(AppError::bad_request(
            "the body must be the candidate component (a .wasm file)",
        ));
    }
    let compiled = tokio::task::spawn_blocking(move || {
        loader.runtime().load_bytes(
            &component,
            std::path::Path::new("backtest candidate"),
            std::time::Instant::now(),
        )
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("the compile did not finish: {e}")))?
    .map_err(|e| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("not backtested: {e:#}"),
        )
    })?;
    let limit = q.limit.unwrap_or(crate::plugins::backtest::MAX_EVENTS);
    if limit == 0 || limit > crate::plugins::backtest::MAX_EVENTS {
        return Err(AppError::bad_request(format!(
            "limit is 1 to {}",
            crate::plugins::backtest::MAX_EVENTS
        )));
    }
    let baseline = state.registry.get(&tenant.name);
    let report = backtests.start(tenant, compiled, baseline, q.since_ms.unwrap_or(0), limit);
    tracing::info!(tenant = %report.tenant, id = %report.id, candidate = %report.candidate_version, "backtest started");
    Ok((StatusCode::ACCEPTED, Json(report)).into_response())
}

/// The tenant's backtests on this host, newest first (counts only).
async fn backtests(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
) -> Json<Value> {
    let reports = state
        .backtests
        .as_ref()
        .map(|b| b.reports(&tenant.name))
        .unwrap_or_default();
    Json(json!({ "tenant": tenant.name, "backtests": reports }))
}

/// One backtest's report: progress, counts and the differing events.
async fn backtest(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<crate::plugins::backtest::BacktestReport>, AppError> {
    state
        .backtests
        .as_ref()
        .and_then(|b| b.report(&tenant.name, &id))
        .map(Json)
        .ok_or_else(|| {
            AppError::not_found(format!(
                "no backtest {id:?} of {:?} on this host (a host keeps its latest 50)",
                tenant.name
            ))
        })
}

/// Who the token is and what it may do (the console asks this first).
async fn whoami(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(match caller {
        Caller::Operator => json!({ "role": "operator" }),
        Caller::Merchant(token) => json!({
            "role": "merchant",
            "tenant": token.tenant,
            "token": { "id": token.id, "name": token.name, "scopes": token.scopes, "expires_at_ms": token.expires_at_ms },
        }),
    })
}

impl RequestBody for NewTokenRequest {
    const SHAPE: &'static str =
        r#"{"name": .., "scopes": ["read", "replay", "deploy"], "expires_in_secs": ..}"#;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenRequest {
    /// A name for people.
    name: String,
    /// `["read", "replay", "deploy"]`, or a comma-separated string.
    scopes: ScopesField,
    /// Seconds it lives; forever when absent.
    expires_in_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopesField {
    List(Vec<String>),
    Text(String),
}

/// Makes a merchant token for a tenant; the answer is the only time its text is shown.
async fn create_token(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    JsonBody(request): JsonBody<NewTokenRequest>,
) -> Result<Response, AppError> {
    let name = request.name.trim().to_string();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(AppError::bad_request(
            "a token's name is 1 to 100 characters, without control characters",
        ));
    }
    let scopes = match request.scopes {
        ScopesField::List(list) => crate::access::parse_scopes(&list.join(",")),
        ScopesField::Text(text) => crate::access::parse_scopes(&text),
    }
    .map_err(AppError::bad_request)?;
    let now = crate::now_ms();
    let expires_at_ms = match request.expires_in_secs {
        Some(0) => return Err(AppError::bad_request("expires_in_secs must be at least 1")),
        Some(secs) => Some(now.saturating_add(secs.saturating_mul(1000))),
        None => None,
    };
    let minted = crate::access::mint();
    let info = crate::access::TokenInfo {
        id: minted.id.clone(),
        tenant: tenant.name.clone(),
        name,
        scopes,
        created_at_ms: now,
        expires_at_ms,
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    state.storage.create_token(&info, &minted.hash).await?;
    tracing::info!(tenant = %tenant.name, id = %info.id, name = %info.name, "merchant token created");
    let mut answer = serde_json::to_value(&info).map_err(|e| AppError::internal(e.into()))?;
    answer["token"] = json!(minted.token);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// A tenant's tokens (never their text), oldest first.
async fn tenant_tokens(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
) -> Result<Json<Value>, AppError> {
    let tokens = state.storage.tokens(Some(&tenant.name)).await?;
    Ok(Json(json!({ "tenant": tenant.name, "tokens": tokens })))
}

/// Every tenant's tokens.
async fn all_tokens(State(state): State<Arc<AppState>>) -> Result<Json<Value>, AppError> {
    let tokens = state.storage.tokens(None).await?;
    Ok(Json(json!({ "tokens": tokens })))
}

/// Revokes a token: it never works again (it stays listed, revoked).
async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let revoked = state
        .storage
        .revoke_token(&id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no token {id:?}")))?;
    tracing::info!(tenant = %revoked.tenant, id = %revoked.id, "merchant token revoked");
    Ok(Json(json!({ "revoked": revoked })))
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

/// A JSON request body and how the API describes it when it is wrong.
trait RequestBody: DeserializeOwned {
    /// The shape a 400 shows (`the body must be SHAPE: what serde found`).
    const SHAPE: &'static str;

    /// What an empty body means, where one is allowed.
    fn when_empty() -> Option<Self> {
        None
    }
}

/// A JSON body, refused with the API's JSON error naming the expected shape (not axum's
/// plain-text rejection).
struct JsonBody<T>(T);

impl<T: RequestBody + Send> axum::extract::FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(
        request: axum::extract::Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| AppError::new(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            if let Some(empty) = T::when_empty() {
                return Ok(JsonBody(empty));
            }
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AppError::bad_request(format!("the body must be {}: {e}", T::SHAPE)))
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

/// Every tenant the caller may see, with its sources and plugin status (no secrets).
async fn tenants(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let statuses = state.registry.statuses();
    let mut list: Vec<_> = state
        .tenants
        .all()
        .values()
        .filter(|t| caller.sees(&t.name))
        .map(|t| {
            let mut sources: Vec<_> = t
                .sources
                .iter()
                .map(|(name, p)| json!({ "name": name, "provider": p.provider.name() }))
                .collect();
            sources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            let mut plugin = json!(statuses.get(&t.name).cloned().unwrap_or_default());
            // Where the operator keeps files on the server is not the merchant's business.
            if let (Caller::Merchant(_), Some(fields)) = (&caller, plugin.as_object_mut()) {
                fields.remove("path");
            }
            json!({
                "name": t.name,
                "sources": sources,
                "plugin": plugin,
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
    /// A source of the tenant's.
    source: Option<String>,
    /// The provider's event id.
    event_id: Option<String>,
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
    let source = q.source.filter(|s| !s.is_empty());
    if let Some(source) = &source {
        if !tenant.sources.contains_key(source) {
            let mut known: Vec<&str> = tenant.sources.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(AppError::bad_request(format!(
                "tenant {:?} has no source {source:?} (it has: {})",
                tenant.name,
                known.join(", ")
            )));
        }
    }
    if let (Some(since), Some(until)) = (q.since_ms, q.until_ms) {
        if since >= until {
            return Err(AppError::bad_request(
                "since_ms must be before until_ms (the range is [since_ms, until_ms))",
            ));
        }
    }
    let filter = EventFilter {
        state: event_state,
        order: q.order.filter(|o| !o.is_empty()),
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        source,
        event_id: q.event_id.filter(|id| !id.is_empty()),
    };
    list_events(&state, &tenant, q.limit, q.before, &filter).await
}

#[derive(Deserialize)]
struct ActivityQuery {
    window: Option<String>,
}

/// The most events one chart reads: a day of a busy tenant is cut (and says so) rather than
/// making one request read the whole journal.
const ACTIVITY_EVENTS: u32 = 200_000;

/// A tenant's activity over the last `hour` (by minute) or `day` (by 15 minutes): events received,
/// attempts by outcome, attempt durations p50/p95 and the backlog's age, as chart series.
async fn activity(
    State(state): State<Arc<AppState>>,
    KnownTenant(tenant): KnownTenant,
    AdminQuery(q): AdminQuery<ActivityQuery>,
) -> Result<Json<crate::activity::ActivityChart>, AppError> {
    let window = q
        .window
        .as_deref()
        .unwrap_or("hour")
        .parse::<crate::activity::Window>()
        .map_err(AppError::bad_request)?;
    Ok(Json(tenant_chart(&state, &tenant.name, window).await?))
}

async fn tenant_chart(
    state: &AppState,
    tenant: &str,
    window: crate::activity::Window,
) -> anyhow::Result<crate::activity::ActivityChart> {
    let now = crate::now_ms();
    let rows = state
        .storage
        .activity(tenant, window.start_ms(now), ACTIVITY_EVENTS)
        .await?;
    Ok(crate::activity::chart(&rows, now, window))
}

/// Every tenant the caller may see at a glance: counts by state, the last hour's traffic and
/// failures, the backlog's age and the serving plugin (the console's landing page).
async fn overview(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, AppError> {
    let statuses = state.registry.statuses();
    let now = crate::now_ms();
    let names = visible_tenants(&state, &caller);
    let mut list = Vec::with_capacity(names.len());
    for name in names {
        let counts = state.storage.event_counts(&name).await?;
        let oldest = state.storage.oldest_unfinished(&name).await?;
        let hour = tenant_chart(&state, &name, crate::activity::Window::Hour).await?;
        let status = statuses.get(&name).cloned().unwrap_or_default();
        list.push(json!({
            "name": name,
            "counts": counts,
            "last_hour": hour.totals,
            "received_per_minute": hour.totals.received as f64 / 60.0,
            "oldest_unfinished_age_s": oldest.map(|t| now.saturating_sub(t) as f64 / 1000.0),
            "plugin": {
                "version": status.version,
                "loaded_at_ms": status.loaded_at_ms,
                "last_error": status.last_error,
            },
        }));
    }
    Ok(Json(json!({ "tenants": list, "at_ms": now })))
}

/// The names of the tenants `caller` may see, sorted.
fn visible_tenants(state: &AppState, caller: &Caller) -> Vec<String> {
    let mut names: Vec<String> = state
        .tenants
        .all()
        .keys()
        .filter(|name| caller.sees(name))
        .cloned()
        .collect();
    names.sort();
    names
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// The most events a search answers with.
const SEARCH_LIMIT: usize = 50;

/// Finds events by number, provider event id, order id or merchant reference in every tenant the
/// caller may see, newest first.
async fn search(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    AdminQuery(q): AdminQuery<SearchQuery>,
) -> Result<Json<Value>, AppError> {
    let text = q.q.trim();
    if text.is_empty() || text.len() > 200 {
        return Err(AppError::bad_request(
            "`q` is an event number, event id, order id or merchant reference (1 to 200 characters)",
        ));
    }
    let mut found: Vec<crate::storage::EventSummary> = Vec::new();
    if let Ok(seq) = text.trim_start_matches('#').parse::<i64>() {
        if let Some(tenant) = state.storage.event_tenant(seq).await? {
            if caller.sees(&tenant) {
                if let Some(detail) = state.storage.event_detail(seq).await? {
                    found.push(detail.summary);
                }
            }
        }
    }
    let names = visible_tenants(&state, &caller);
    for name in names {
        for filter in [
            EventFilter {
                order: Some(text.to_string()),
                ..Default::default()
            },
            EventFilter {
                event_id: Some(text.to_string()),
                ..Default::default()
            },
        ] {
            let events = state
                .storage
                .events(&name, SEARCH_LIMIT as u32, None, &filter)
                .await?;
            found.extend(events);
        }
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.seq));
    found.dedup_by_key(|e| e.seq);
    let more = found.len() > SEARCH_LIMIT;
    found.truncate(SEARCH_LIMIT);
    Ok(Json(
        json!({ "query": text, "events": found, "more": more }),
    ))
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

//! Wires the pipeline together and serves it: store → runtime → plugins → dispatcher (recovering
//! unfinished events) → HTTP (ingress, admin, sink, health), and shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

use crate::capabilities::http::HttpCapability;
use crate::config::{Config, HttpSettings, Secrets};
use crate::dispatcher::{DispatchDeps, Dispatcher};
use crate::plugins::PluginRegistry;
use crate::reconfigure::Reconfigurer;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::sink::Sink;
use crate::storage::sqlite::SqliteStorage;
use crate::storage::Storage;
use crate::tenants::Tenants;
use crate::{admin, ingress, sink};

/// How long a caller may take to send its request and get its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for running attempts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of the HTTP handlers.
pub struct App {
    /// Tenants by name.
    pub tenants: Arc<Tenants>,
    /// The journal and kv.
    pub storage: Arc<dyn Storage>,
    /// Hands accepted events to plugins.
    pub dispatcher: Dispatcher,
    /// Loaded plugins.
    pub registry: Arc<PluginRegistry>,
    /// The request sink, when enabled.
    pub sink: Option<Sink>,
    /// The webhook body limit.
    pub max_body_bytes: usize,
    /// Bytes of webhook bodies that may be buffered before authentication, all connections
    /// together (one permit per byte).
    pub pending_bodies: Arc<tokio::sync::Semaphore>,
    /// Authentication checks that run on blocking threads at once (large-body MACs, bcrypt).
    pub heavy_checks: tokio::sync::Semaphore,
    /// Renders `/metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<Secrets>,
    /// The admin token: readiness details are shown only to its holder.
    pub admin_token: Option<Secrets>,
    /// Reloads the config file, when the host was started from one.
    pub reconfigurer: Option<Arc<Reconfigurer>>,
    /// Refuse requests whose `Host` is not a loopback name (`hookhost dev`).
    pub loopback_host_only: bool,
}

/// The HTTP routes.
pub fn router(app: Arc<App>, admin_token: Option<Secrets>) -> Router {
    let mut router = Router::new()
        .route(
            "/hooks/{tenant}/{source}",
            post(ingress::receive).layer(DefaultBodyLimit::max(app.max_body_bytes)),
        )
        .route(
            "/hooks/{tenant}/{source}/{token}",
            post(ingress::receive_with_path_token).layer(DefaultBodyLimit::max(app.max_body_bytes)),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/admin/openapi.json", get(admin::openapi))
        .route("/console", get(admin::console))
        .route("/console/", get(admin::console))
        .route("/console/app.js", get(admin::console_script))
        .route("/console/app.css", get(admin::console_style));
    if app.sink.is_some() {
        router = router.route(
            "/sink/{name}",
            post(sink::receive).layer(DefaultBodyLimit::max(sink::MAX_BODY_BYTES)),
        );
    }
    if let Some(token) = admin_token {
        router = router.merge(admin::router(app.clone(), token));
    }
    if app.loopback_host_only {
        router = router.layer(axum::middleware::from_fn(refuse_foreign_host));
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
        .fallback(|| async {
            ingress::error(
                StatusCode::NOT_FOUND,
                "no such endpoint: webhooks go to POST /hooks/{tenant}/{source}",
            )
        })
        .with_state(app)
}

/// Refuses a request whose `Host` is not `localhost`, `127.0.0.1` or `[::1]` (any port): a web
/// page cannot reach a local dev server by pointing its own host name at 127.0.0.1 (DNS
/// rebinding), since the browser sends that name.
async fn refuse_foreign_host(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host());
    if host.is_some_and(is_loopback_host) {
        return next.run(request).await;
    }
    ingress::error(
        StatusCode::MISDIRECTED_REQUEST,
        "this development host answers only requests to localhost, 127.0.0.1 or [::1]",
    )
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

/// Whether the request carries `Authorization: Bearer <one of tokens>`.
pub fn bearer_matches(headers: &axum::http::HeaderMap, tokens: &Secrets) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|p| crate::providers::matches_any_secret(p.trim().as_bytes(), tokens))
}

/// Prometheus text exposition of every metric (see `telemetry`), behind `metrics.token` when
/// one is configured.
async fn metrics_text(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(token) = &app.metrics_token {
        if !bearer_matches(&headers, token) {
            let mut response = ingress::error(
                StatusCode::UNAUTHORIZED,
                "metrics need `Authorization: Bearer <metrics token>`",
            );
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    match &app.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => ingress::error(
            StatusCode::NOT_FOUND,
            "metrics are not installed in this process",
        ),
    }
}

/// Ready means: the journal commits writes, and every tenant has a plugin loaded (otherwise its
/// webhooks are accepted but wait). A bare 200/503 for load balancers; what is missing (which
/// names tenants) only with the admin token.
async fn readyz(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let store = match tokio::time::timeout(Duration::from_secs(2), app.storage.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("cannot commit: {e:#}"),
        Err(_) => "no commit within 2 s".to_string(),
    };
    let tenants = app.tenants.all();
    let mut waiting: Vec<&str> = tenants
        .values()
        .filter(|t| app.registry.get(&t.name).is_none())
        .map(|t| t.name.as_str())
        .collect();
    waiting.sort();
    let ready = store == "ok" && waiting.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let detailed = app
        .admin_token
        .as_ref()
        .is_some_and(|token| bearer_matches(&headers, token));
    if !detailed {
        return (status, axum::Json(serde_json::json!({ "ready": ready }))).into_response();
    }
    let body =
        serde_json::json!({ "ready": ready, "store": store, "tenants_without_plugin": waiting });
    (status, axum::Json(body)).into_response()
}

/// Runs hookhost until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<()> {
    serve_with(config, None).await
}

/// Like [`serve`]; `on_ready` gets the running host's state once it listens (for `hookhost dev`,
/// which watches the registry to report reloads).
pub async fn serve_with(
    config: Config,
    on_ready: Option<tokio::sync::oneshot::Sender<Arc<App>>>,
) -> Result<()> {
    // First: the tenants' metrics register with it as they are built.
    let metrics = crate::telemetry::install()?;
    let storage: Arc<dyn Storage> =
        Arc::new(SqliteStorage::open(&config.database, config.durability)?);
    let max_memory_mib = config.max_memory_mib();
    let runtime = Arc::new(Runtime::new(&RuntimeConfig {
        cache_dir: config
            .cache_dir
            .clone()
            .context("cache_dir is resolved at load")?,
        max_instances: config.max_instances(),
        max_memory_mib,
        max_table_elements: config.max_table_elements(),
        decommit_batch: config.decommit_batch(),
        pagemap_scan: config.runtime.pagemap_scan.unwrap_or(true),
        max_core_instances: config.max_core_instances(),
        fuel: config.tenants.values().any(|t| t.limits.fuel.is_some()),
    })?);
    let tenants = Arc::new(Tenants::from_config(&config)?);
    let registry = Arc::new(PluginRegistry::default());
    registry.set_self_tester(Arc::new(crate::selftest::SelfTester::new(
        runtime.clone(),
        storage.clone(),
        tenants.clone(),
        tokio::runtime::Handle::current(),
    )?));
    let dispatcher = Dispatcher::start(
        DispatchDeps {
            storage: storage.clone(),
            runtime: runtime.clone(),
            registry: registry.clone(),
            tenants: tenants.clone(),
            http_client: HttpCapability::shared_client(true)?,
            http_client_private: HttpCapability::shared_client(false)?,
        },
        config.dispatch.workers,
    );
    let unfinished = storage
        .unfinished()
        .context("cannot read unfinished events from the journal")?;
    if !unfinished.is_empty() {
        tracing::info!(count = unfinished.len(), "resuming unfinished events");
    }
    for event in unfinished {
        if let Some(event) =
            crate::dispatcher::record_interrupted(storage.as_ref(), &tenants, event).await?
        {
            dispatcher.enqueue(event);
        }
    }
    if config.retention_hours > 0 {
        tokio::spawn(prune_forever(storage.clone(), config.retention_hours));
    }

    // Watch the plugin files first, so a change made while the initial loads run is not missed.
    let watcher = Arc::new(crate::reload::watch(
        runtime.clone(),
        registry.clone(),
        tenants.clone(),
    )?);
    let reconfigurer = config.path.clone().map(|path| {
        Arc::new(Reconfigurer::new(
            path,
            &config,
            tenants.clone(),
            registry.clone(),
            runtime.clone(),
            watcher.clone(),
            max_memory_mib,
        ))
    });
    if let Some(reconfigurer) = reconfigurer.clone() {
        tokio::spawn(reload_on_sighup(reconfigurer));
    }
    // Compile plugins off the request path: webhooks are accepted at once and wait for them.
    {
        let (runtime, registry, tenants) = (runtime.clone(), registry.clone(), tenants.clone());
        tokio::task::spawn_blocking(move || {
            for tenant in tenants.all().values() {
                let _ = registry.load(&runtime, &tenant.name, &tenant.plugin_path);
            }
        });
    }

    let admin_token = config.admin.token.clone().map(|t| Secrets(vec![t]));
    if admin_token.is_none() {
        tracing::warn!("no admin token configured: the admin API is disabled");
    }
    if config.sink {
        tracing::warn!("the request sink is enabled (POST /sink/{{name}} takes requests without a credential): for development and demos only");
    }
    let app = Arc::new(App {
        tenants,
        storage,
        dispatcher: dispatcher.clone(),
        registry,
        sink: config.sink.then(Sink::default),
        max_body_bytes: config.max_body_bytes,
        pending_bodies: Arc::new(tokio::sync::Semaphore::new(
            config.http.max_pending_body_bytes,
        )),
        heavy_checks: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
        metrics: Some(metrics),
        metrics_token: config.metrics.token.clone().map(|t| Secrets(vec![t])),
        admin_token: admin_token.clone(),
        reconfigurer,
        loopback_host_only: config.loopback_host_only,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another process using it?",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when listening on port 0.
    println!("hookhost listening on http://{addr}");
    if let Some(on_ready) = on_ready {
        let _ = on_ready.send(app.clone());
    }
    tracing::info!(%addr, "listening");
    serve_http(
        listener,
        router(app, admin_token),
        &config.http,
        shutdown_signal(),
    )
    .await;
    tracing::info!("stopped accepting webhooks; finishing running attempts");
    if !dispatcher.drain(DRAIN_TIMEOUT).await {
        tracing::warn!(
            "attempts still running after {DRAIN_TIMEOUT:?}; they will run again on the next start"
        );
    }
    Ok(())
}

/// How long shutdown waits for open connections to finish their requests.
const CONNECTION_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections finish
/// (up to [`CONNECTION_DRAIN_TIMEOUT`]). Unlike `axum::serve`, it bounds what a client can hold
/// before it is authenticated: at most `max_connections` connections are served at once (the
/// rest wait in the listen backlog), and hyper's timer closes a connection that has not sent a
/// whole request head within `header_read_timeout_ms` (slowloris), idle keep-alive ones included.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    settings: &HttpSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let connections = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_millis(settings.header_read_timeout_ms));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request.map(axum::body::Body::new)
            },
        );
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!("connection from {peer} ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(CONNECTION_DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {CONNECTION_DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Deletes events finished more than `hours` ago, in small batches so ingest never waits long.
async fn prune_forever(storage: Arc<dyn Storage>, hours: u64) {
    let retention_ms = hours * 3_600_000;
    loop {
        let before = crate::now_ms().saturating_sub(retention_ms);
        let mut pruned = 0;
        loop {
            match storage.prune(before, 500).await {
                Ok(n) => {
                    pruned += n;
                    if n < 500 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::error!("pruning finished events failed (retrying later): {e:#}");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(
                pruned,
                hours,
                "pruned events finished before the retention period"
            );
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// `kill -HUP` re-reads the config file (like nginx or HAProxy); errors are logged and leave the
/// running config in place.
async fn reload_on_sighup(reconfigurer: Arc<Reconfigurer>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload the config through the admin API");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config file");
        let _ = reconfigurer.reload().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

//! Wires the pipeline together and serves it: store → runtime → plugins → dispatcher (which
//! claims unfinished events from the journal, and reaps the leases a stopped process left) →
//! HTTP ([`crate::http`]), and shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::capabilities::http::HttpCapability;
use crate::config::{Config, Database, Secrets};
use crate::dispatcher::{DispatchDeps, Dispatcher};
use crate::http::{AppState, Sink};
use crate::plugins::{PluginLoader, PluginRegistry};
use crate::reconfigure::Reconfigurer;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::storage::postgres::PostgresStorage;
use crate::storage::sqlite::SqliteStorage;
use crate::storage::{Duty, Storage};
use crate::tenants::Tenants;

/// How long shutdown waits for running attempts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs hookhost until SIGINT/SIGTERM.
/// The configured journal: the embedded SQLite file, or PostgreSQL.
async fn open_storage(config: &Config) -> Result<Arc<dyn Storage>> {
    Ok(match &config.database {
        Database::Sqlite(file) => Arc::new(SqliteStorage::open(file, config.durability)?),
        Database::Postgres(url) => {
            let mut settings: tokio_postgres::Config = url
                .expose()
                .parse()
                // The parser's message does not echo the URL (which may hold the password).
                .map_err(|e| anyhow::anyhow!("database: not a valid PostgreSQL URL: {e}"))?;
            if let Some(password) = &config.database_password {
                settings.password(password.expose());
            }
            Arc::new(PostgresStorage::connect_with(settings).await?)
        }
    })
}

pub async fn serve(config: Config) -> Result<()> {
    serve_with(config, None, None).await
}

/// A host that listens: what [`serve_with`] hands its caller.
pub struct Ready {
    /// The running host's state.
    pub state: Arc<AppState>,
    /// The address it listens on (the real port when the config said port 0).
    pub addr: std::net::SocketAddr,
}

/// Like [`serve`], for `hookhost dev`: `listener`, bound by the caller before anything is built
/// (so a taken port is said at once), instead of binding `listen`; `on_ready` gets the host once
/// it listens (dev watches the registry to report reloads).
pub async fn serve_with(
    config: Config,
    listener: Option<std::net::TcpListener>,
    on_ready: Option<tokio::sync::oneshot::Sender<Ready>>,
) -> Result<()> {
    // First: the tenants' metrics register with it as they are built.
    let metrics = crate::telemetry::install()?;
    let storage = open_storage(&config).await?;
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
    let loader = Arc::new(PluginLoader::new(
        runtime.clone(),
        registry.clone(),
        tenants.clone(),
        storage.clone(),
        tokio::runtime::Handle::current(),
    )?);
    let dispatcher = Dispatcher::start(
        DispatchDeps {
            storage: storage.clone(),
            runtime: runtime.clone(),
            registry: registry.clone(),
            tenants: tenants.clone(),
            http_client: HttpCapability::shared_client(true)?,
            http_client_private: HttpCapability::shared_client(false)?,
        },
        config.dispatch.settings(),
    );
    if config.retention_hours > 0 {
        tokio::spawn(prune_forever(
            storage.clone(),
            dispatcher.owner().to_string(),
            config.retention_hours,
        ));
    }

    // Hear the store's changes from now on, before reading the stored config and loading plugins,
    // so that one made meanwhile (a publication or a reload on another replica) is acted on
    // after them, not missed.
    let changes = storage.changes();
    // Watch the plugin files first, so a change made while the initial loads run is not missed.
    let watcher = Arc::new(crate::reload::watch(loader.clone(), tenants.clone())?);
    let reconfigurer = match config.path.clone() {
        Some(path) => {
            let reconfigurer = Reconfigurer::new(
                path,
                &config,
                tenants.clone(),
                loader.clone(),
                watcher.clone(),
                max_memory_mib,
            );
            // Several replicas on one database: a reload on one applies on all.
            Some(Arc::new(if storage.is_shared() {
                reconfigurer.share_through(storage.clone()).await
            } else {
                reconfigurer
            }))
        }
        None => None,
    };
    if let Some(reconfigurer) = reconfigurer.clone() {
        tokio::spawn(reload_on_sighup(reconfigurer));
    }
    // Compile plugins off the request path: webhooks are accepted at once and wait for them. A
    // tenant with a deployed version starts on it, never on its file (which it would serve
    // until the follower below caught up).
    let deployed = deployed_components(storage.as_ref()).await;
    let all = tenants.all();
    let initial_loads = loader.in_background(move |loader| {
        for tenant in all.values() {
            match deployed.get(&tenant.name) {
                Some((digest, component)) => {
                    let outcome = loader.load_published(&tenant.name, digest, component);
                    if matches!(outcome, crate::plugins::LoadOutcome::Failed(_)) {
                        // Its file is better than nothing (the error shows in its status).
                        loader.load(&tenant.name, &tenant.plugin_path);
                    }
                }
                None => {
                    loader.load(&tenant.name, &tenant.plugin_path);
                }
            }
        }
    });
    // Then the published versions, which win over the files (and every later publication, on
    // any replica sharing the store).
    {
        let (storage, loader, tenants) = (storage.clone(), loader.clone(), tenants.clone());
        let reconfigurer = reconfigurer.clone();
        tokio::spawn(async move {
            let _ = initial_loads.await;
            crate::plugins::published::follow(changes, storage, loader, tenants, reconfigurer)
                .await;
        });
    }

    let admin_token = config.admin.token.clone().map(|t| Secrets(vec![t]));
    if admin_token.is_none() {
        tracing::warn!("no admin token configured: the admin API is disabled");
    }
    if config.sink {
        tracing::warn!("the request sink is enabled (POST /sink/{{name}} takes requests without a credential): for development and demos only");
    }
    let mut state = AppState::new(
        tenants,
        storage,
        dispatcher.clone(),
        registry,
        &config.http,
        config.max_body_bytes,
    );
    state.sink = config.sink.then(Sink::default);
    state.metrics = Some(metrics);
    state.metrics_token = config.metrics.token.clone().map(|t| Secrets(vec![t]));
    state.admin_token = admin_token;
    state.reconfigurer = reconfigurer;
    state.loader = Some(loader);
    state.backtests = Some(Arc::new(crate::plugins::backtest::Backtests::new(
        crate::plugins::dryrun::DryRunner::new(runtime.clone(), state.storage.clone())?,
    )));
    state.loopback_host_only = config.loopback_host_only;
    let state = Arc::new(state);
    let listener = match listener {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)?
        }
        None => tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is another process using it?",
                    config.listen
                )
            })?,
    };
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when listening on port 0.
    println!("hookhost listening on http://{addr}");
    if let Some(on_ready) = on_ready {
        let _ = on_ready.send(Ready {
            state: state.clone(),
            addr,
        });
    }
    tracing::info!(%addr, "listening");
    crate::http::serve_http(
        listener,
        crate::http::app(state),
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

/// How often the pruner runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Deletes events finished more than `hours` ago, in small batches so ingest never waits long;
/// on a store shared by replicas, one of them at a time (the [`Duty::Pruner`]).
async fn prune_forever(storage: Arc<dyn Storage>, owner: String, hours: u64) {
    let retention_ms = hours * 3_600_000;
    loop {
        // Held for three rounds: if this replica stops, another takes over within three minutes.
        match storage
            .hold_duty(Duty::Pruner, &owner, 3 * PRUNE_EVERY.as_millis() as u64)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tokio::time::sleep(PRUNE_EVERY).await;
                continue;
            }
            Err(e) => {
                tracing::error!("cannot take the pruning duty (retrying later): {e:#}");
                tokio::time::sleep(PRUNE_EVERY).await;
                continue;
            }
        }
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
        tokio::time::sleep(PRUNE_EVERY).await;
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

/// Each tenant's deployed component (digest and bytes), read at start; on a store error, none
/// (the files load, and the follower loads the deployed versions once the store answers).
async fn deployed_components(
    storage: &dyn Storage,
) -> std::collections::HashMap<String, (String, Vec<u8>)> {
    let mut deployed = std::collections::HashMap::new();
    let pointers = match storage.published_plugins().await {
        Ok(pointers) => pointers,
        Err(e) => {
            tracing::warn!("cannot read the deployed plugins at start: {e:#}");
            return deployed;
        }
    };
    for pointer in pointers {
        match storage.plugin_component(&pointer.digest).await {
            Ok(Some(component)) => {
                deployed.insert(pointer.tenant, (pointer.digest, component));
            }
            Ok(None) => {
                tracing::error!(tenant = %pointer.tenant, "a deployed plugin's component is missing from the store")
            }
            Err(e) => {
                tracing::warn!(tenant = %pointer.tenant, "cannot read a deployed plugin at start: {e:#}")
            }
        }
    }
    deployed
}

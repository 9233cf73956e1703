//! What every handler shares: the pipeline's parts and the HTTP settings, built once by the
//! server (or by a test) and handed to [`super::app`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Secrets;
use crate::dispatcher::Dispatcher;
use crate::plugins::PluginRegistry;
use crate::reconfigure::Reconfigurer;
use crate::storage::Storage;
use crate::tenants::Tenants;

use super::sink::Sink;

/// Shared state of the HTTP handlers.
pub struct AppState {
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
    /// The admin token: without one the admin API is not served, and readiness details are
    /// shown only to its holder.
    pub admin_token: Option<Secrets>,
    /// Reloads the config file, when the host was started from one.
    pub reconfigurer: Option<Arc<Reconfigurer>>,
    /// Compiles and self-tests uploaded plugins (publishing), when the host loads plugins.
    pub loader: Option<Arc<crate::plugins::PluginLoader>>,
    /// Refuse requests whose `Host` is not a loopback name (`hookhost dev`).
    pub loopback_host_only: bool,
    /// Serializes each tenant's deploys and rollbacks on this host.
    pub deploy_locks: DeployLocks,
    /// Runs backtests, when the host loads plugins.
    pub backtests: Option<Arc<crate::plugins::backtest::Backtests>>,
}

/// One lock per tenant, so that a tenant's deploys and rollbacks on this host run one at a time
/// (check, store and install of one finish before the next starts; the store numbers deploys
/// from several hosts in order).
#[derive(Default)]
pub struct DeployLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl DeployLocks {
    /// Waits for `tenant`'s turn.
    pub async fn lock(&self, tenant: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .0
            .lock()
            .expect("deploy locks")
            .entry(tenant.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

impl AppState {
    /// State with the HTTP settings' defaults around the pipeline's parts: no sink, metrics,
    /// tokens or reconfigurer (set the fields to add them).
    pub fn new(
        tenants: Arc<Tenants>,
        storage: Arc<dyn Storage>,
        dispatcher: Dispatcher,
        registry: Arc<PluginRegistry>,
        http: &crate::config::HttpSettings,
        max_body_bytes: usize,
    ) -> AppState {
        AppState {
            tenants,
            storage,
            dispatcher,
            registry,
            sink: None,
            max_body_bytes,
            pending_bodies: Arc::new(tokio::sync::Semaphore::new(http.max_pending_body_bytes)),
            heavy_checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            metrics: None,
            metrics_token: None,
            admin_token: None,
            reconfigurer: None,
            loader: None,
            loopback_host_only: false,
            deploy_locks: DeployLocks::default(),
            backtests: None,
        }
    }
}

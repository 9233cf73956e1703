//! The plugin registry: which compiled plugin serves each tenant right now, and how its last load
//! went. Lookups are lock-free (`arc-swap`) because every event does one; swapping in a new version
//! never disturbs attempts already running on the old one (they hold their own `Arc`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::runtime::{LoadedPlugin, Runtime};
use crate::selftest::SelfTester;

/// A tenant's plugin as the admin API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginStatus {
    /// The component file.
    pub path: String,
    /// Version (content hash) serving now, if any.
    pub version: Option<String>,
    /// When that version was loaded.
    pub loaded_at_ms: Option<u64>,
    /// Whether it came from the precompiled cache.
    pub from_cache: bool,
    /// How long loading took, in ms.
    pub load_ms: Option<u64>,
    /// The last load error, if the last load failed (the previous version keeps serving).
    pub last_error: Option<String>,
    /// The latest loads and unloads, newest last (at most [`HISTORY`]).
    pub history: Vec<Reload>,
}

/// How many reloads each tenant's history keeps.
pub const HISTORY: usize = 20;

/// One load or unload of a tenant's plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Reload {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// `loaded`, `failed` (previous version kept) or `removed` (events wait).
    pub result: &'static str,
    /// The version loaded, if it loaded.
    pub version: Option<String>,
    /// How long loading took, in ms.
    pub load_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl PluginStatus {
    fn record(&mut self, reload: Reload) {
        metrics::counter!(crate::telemetry::PLUGIN_LOADS, "result" => reload.result).increment(1);
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(reload);
    }
}

/// Which plugin serves each tenant.
#[derive(Default)]
pub struct PluginRegistry {
    plugins: ArcSwap<HashMap<String, Arc<LoadedPlugin>>>,
    status: Mutex<HashMap<String, PluginStatus>>,
    self_tester: OnceLock<Arc<SelfTester>>,
}

impl PluginRegistry {
    /// From now on, a new version must pass its tenant's self-tests before it serves.
    pub fn set_self_tester(&self, tester: Arc<SelfTester>) {
        let _ = self.self_tester.set(tester);
    }

    /// The plugin serving `tenant`, if one is loaded.
    pub fn get(&self, tenant: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.load().get(tenant).cloned()
    }

    /// Loads `path` for `tenant` and, if it loads (and passes the tenant's self-tests), makes it
    /// the serving version. On failure the previous version (if any) keeps serving and the error
    /// is kept for the admin API. Blocking (compiles, runs self-tests): call it from a blocking
    /// thread, never from an async task.
    pub fn load(
        &self,
        runtime: &Runtime,
        tenant: &str,
        path: &std::path::Path,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        let candidate = runtime.load(path).and_then(|plugin| {
            if let Some(current) = self.get(tenant).filter(|c| c.version == plugin.version) {
                // Same content (a touch, or a rewrite of identical bytes): nothing to swap.
                return Ok(Err(current));
            }
            if let Some(tester) = self.self_tester.get() {
                tester.check(tenant, &plugin)?;
            }
            Ok(Ok(plugin))
        });
        match candidate {
            Ok(Err(current)) => Ok(current),
            Ok(Ok(plugin)) => {
                let plugin = Arc::new(plugin);
                self.plugins.rcu(|current| {
                    let mut next = HashMap::clone(current);
                    next.insert(tenant.to_string(), plugin.clone());
                    next
                });
                tracing::info!(tenant, version = %plugin.version, from_cache = plugin.from_cache,
                    load_ms = plugin.load_time.as_millis() as u64, "plugin loaded");
                let mut status = self.status.lock().expect("status lock");
                let entry = status.entry(tenant.to_string()).or_default();
                entry.path = path.display().to_string();
                entry.version = Some(plugin.version.clone());
                entry.loaded_at_ms = Some(plugin.loaded_at_ms);
                entry.from_cache = plugin.from_cache;
                entry.load_ms = Some(plugin.load_time.as_millis() as u64);
                entry.last_error = None;
                entry.record(Reload {
                    at_ms: plugin.loaded_at_ms,
                    result: "loaded",
                    version: Some(plugin.version.clone()),
                    load_ms: entry.load_ms,
                    error: None,
                });
                Ok(plugin)
            }
            Err(e) => {
                tracing::error!(tenant, path = %path.display(), "plugin not loaded; events wait for a working version: {e:#}");
                let mut status = self.status.lock().expect("status lock");
                let entry = status.entry(tenant.to_string()).or_default();
                entry.path = path.display().to_string();
                entry.last_error = Some(format!("{e:#}"));
                entry.record(Reload {
                    at_ms: crate::now_ms(),
                    result: "failed",
                    version: None,
                    load_ms: None,
                    error: Some(format!("{e:#}")),
                });
                Err(e)
            }
        }
    }

    /// Takes `tenant`'s plugin out of service (its file was removed): its events wait, they are
    /// neither failed nor dropped, until a plugin loads again.
    pub fn unload(&self, tenant: &str, path: &std::path::Path) {
        self.plugins.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(tenant);
            next
        });
        tracing::warn!(tenant, path = %path.display(), "plugin file removed: the tenant's events wait until it is back");
        let mut status = self.status.lock().expect("status lock");
        let entry = status.entry(tenant.to_string()).or_default();
        entry.version = None;
        entry.last_error = Some(format!(
            "plugin file {} was removed; events wait until it is back",
            path.display()
        ));
        entry.record(Reload {
            at_ms: crate::now_ms(),
            result: "removed",
            version: None,
            load_ms: None,
            error: None,
        });
    }

    /// Forgets `tenant` (removed from the config): no plugin, no status.
    pub fn remove(&self, tenant: &str) {
        self.plugins.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(tenant);
            next
        });
        self.status.lock().expect("status lock").remove(tenant);
    }

    /// The status of every tenant's plugin.
    pub fn statuses(&self) -> HashMap<String, PluginStatus> {
        self.status.lock().expect("status lock").clone()
    }
}

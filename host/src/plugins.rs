//! The plugin registry: which compiled plugin serves each tenant right now, and how its last load
//! went. Lookups are lock-free (`arc-swap`) because every event does one; swapping in a new version
//! never disturbs attempts already running on the old one (they hold their own `Arc`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::runtime::{LoadedPlugin, Runtime};

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
}

/// Which plugin serves each tenant.
#[derive(Default)]
pub struct PluginRegistry {
    plugins: ArcSwap<HashMap<String, Arc<LoadedPlugin>>>,
    status: Mutex<HashMap<String, PluginStatus>>,
}

impl PluginRegistry {
    /// The plugin serving `tenant`, if one is loaded.
    pub fn get(&self, tenant: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.load().get(tenant).cloned()
    }

    /// Loads `path` for `tenant` and, if it loads, makes it the serving version. On failure the
    /// previous version (if any) keeps serving and the error is kept for the admin API.
    pub fn load(
        &self,
        runtime: &Runtime,
        tenant: &str,
        path: &std::path::Path,
    ) -> anyhow::Result<Arc<LoadedPlugin>> {
        match runtime.load(path) {
            Ok(plugin) => {
                let plugin = Arc::new(plugin);
                self.plugins.rcu(|current| {
                    let mut next = HashMap::clone(current);
                    next.insert(tenant.to_string(), plugin.clone());
                    next
                });
                tracing::info!(tenant, version = %plugin.version, from_cache = plugin.from_cache,
                    load_ms = plugin.load_time.as_millis() as u64, "plugin loaded");
                self.status.lock().expect("status lock").insert(
                    tenant.to_string(),
                    PluginStatus {
                        path: path.display().to_string(),
                        version: Some(plugin.version.clone()),
                        loaded_at_ms: Some(plugin.loaded_at_ms),
                        from_cache: plugin.from_cache,
                        load_ms: Some(plugin.load_time.as_millis() as u64),
                        last_error: None,
                    },
                );
                Ok(plugin)
            }
            Err(e) => {
                tracing::error!(tenant, path = %path.display(), "plugin not loaded; events wait for a working version: {e:#}");
                let mut status = self.status.lock().expect("status lock");
                let entry = status.entry(tenant.to_string()).or_default();
                entry.path = path.display().to_string();
                entry.last_error = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// The status of every tenant's plugin.
    pub fn statuses(&self) -> HashMap<String, PluginStatus> {
        self.status.lock().expect("status lock").clone()
    }
}

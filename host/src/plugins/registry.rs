//! The plugin registry: which compiled plugin serves each tenant right now, and how its loads
//! went. Only state: the loader ([`super::loader`]) decides what to install. Lookups are
//! lock-free (`arc-swap`) because every event does one; swapping in a new version never disturbs
//! attempts already running on the old one (they hold their own `Arc`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::runtime::LoadedPlugin;

/// A tenant's plugin as the admin API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginStatus {
    /// The component file.
    pub path: String,
    /// The published component serving (its SHA-256), when it came from the store rather than
    /// the file: a published version wins over the file, which is then not watched for it.
    pub published: Option<String>,
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
    /// What happened.
    pub result: ReloadResult,
    /// The version loaded, if it loaded.
    pub version: Option<String>,
    /// How long loading took, in ms.
    pub load_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What one load or unload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    /// A new version serves.
    Loaded,
    /// The version did not load or failed its self-tests; the previous one (if any) keeps serving.
    Failed,
    /// The plugin file was removed; the tenant's events wait.
    Removed,
}

impl ReloadResult {
    /// The name shown in the admin API and the `result` label of the loads metric.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Loaded => "loaded",
            ReloadResult::Failed => "failed",
            ReloadResult::Removed => "removed",
        }
    }
}

impl PluginStatus {
    fn record(&mut self, reload: Reload) {
        metrics::counter!(crate::telemetry::PLUGIN_LOADS, "result" => reload.result.as_str())
            .increment(1);
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(reload);
    }
}

/// A version shadowing a tenant's active one: run dry beside a share of its attempts.
pub struct ShadowPlugin {
    /// The history entry it is.
    pub number: u32,
    /// The share of attempts it runs beside, from 0 to 1.
    pub share: f64,
    /// The compiled version.
    pub plugin: Arc<LoadedPlugin>,
    /// Its runs at once, at most the tenant's concurrency (a run that finds none free is
    /// skipped, not queued: a shadow never holds back the active version).
    pub running: Arc<tokio::sync::Semaphore>,
}

/// Which plugin serves each tenant (and which shadows it).
#[derive(Default)]
pub struct PluginRegistry {
    plugins: ArcSwap<HashMap<String, Arc<LoadedPlugin>>>,
    status: Mutex<HashMap<String, PluginStatus>>,
    shadows: ArcSwap<HashMap<String, Arc<ShadowPlugin>>>,
}

impl PluginRegistry {
    /// The version shadowing `tenant`, if any.
    pub fn shadow(&self, tenant: &str) -> Option<Arc<ShadowPlugin>> {
        self.shadows.load().get(tenant).cloned()
    }

    /// Sets (or ends, with `None`) `tenant`'s shadow.
    pub fn set_shadow(&self, tenant: &str, shadow: Option<ShadowPlugin>) {
        self.shadows.rcu(|shadows| {
            let mut shadows = HashMap::clone(shadows);
            match &shadow {
                Some(s) => {
                    shadows.insert(
                        tenant.to_string(),
                        Arc::new(ShadowPlugin {
                            number: s.number,
                            share: s.share,
                            plugin: s.plugin.clone(),
                            running: s.running.clone(),
                        }),
                    );
                }
                None => {
                    shadows.remove(tenant);
                }
            }
            shadows
        });
    }

    /// The plugin serving `tenant`, if one is loaded.
    pub fn get(&self, tenant: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.load().get(tenant).cloned()
    }

    /// Whether `tenant` serves a published version (which its file does not replace).
    pub fn is_published(&self, tenant: &str) -> bool {
        let status = self.status.lock().expect("status lock");
        status.get(tenant).is_some_and(|s| s.published.is_some())
    }

    /// Makes `plugin`, published with `digest`, the version serving `tenant`.
    pub fn install_published(&self, tenant: &str, digest: &str, plugin: Arc<LoadedPlugin>) {
        let mut status = self.status.lock().expect("status lock");
        let path = plugin.path.clone();
        self.install_locked(&mut status, tenant, &path, plugin);
        if let Some(entry) = status.get_mut(tenant) {
            entry.published = Some(digest.to_string());
        }
    }

    /// Makes `plugin` (loaded from `path`) the version serving `tenant`.
    pub fn install(&self, tenant: &str, path: &std::path::Path, plugin: Arc<LoadedPlugin>) {
        let mut status = self.status.lock().expect("status lock");
        self.install_locked(&mut status, tenant, path, plugin);
    }

    /// [`Self::install`] of a file's version, unless `tenant` serves a published one (checked
    /// and installed under one lock, so a publication that lands meanwhile is never replaced
    /// by the file); whether it was installed.
    pub fn install_unless_published(
        &self,
        tenant: &str,
        path: &std::path::Path,
        plugin: Arc<LoadedPlugin>,
    ) -> bool {
        let mut status = self.status.lock().expect("status lock");
        if status.get(tenant).is_some_and(|s| s.published.is_some()) {
            return false;
        }
        self.install_locked(&mut status, tenant, path, plugin);
        true
    }

    fn install_locked(
        &self,
        status: &mut HashMap<String, PluginStatus>,
        tenant: &str,
        path: &std::path::Path,
        plugin: Arc<LoadedPlugin>,
    ) {
        self.plugins.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(tenant.to_string(), plugin.clone());
            next
        });
        tracing::info!(tenant, version = %plugin.version, from_cache = plugin.from_cache,
            load_ms = plugin.load_time.as_millis() as u64, "plugin loaded");
        let entry = status.entry(tenant.to_string()).or_default();
        entry.path = path.display().to_string();
        entry.published = None;
        entry.version = Some(plugin.version.clone());
        entry.loaded_at_ms = Some(plugin.loaded_at_ms);
        entry.from_cache = plugin.from_cache;
        entry.load_ms = Some(plugin.load_time.as_millis() as u64);
        entry.last_error = None;
        entry.record(Reload {
            at_ms: plugin.loaded_at_ms,
            result: ReloadResult::Loaded,
            version: Some(plugin.version.clone()),
            load_ms: entry.load_ms,
            error: None,
        });
    }

    /// Records that loading `path` for `tenant` failed; whatever served keeps serving.
    pub fn record_failure(&self, tenant: &str, path: &std::path::Path, error: &anyhow::Error) {
        tracing::error!(tenant, path = %path.display(), "plugin not loaded; events wait for a working version: {error:#}");
        let mut status = self.status.lock().expect("status lock");
        let entry = status.entry(tenant.to_string()).or_default();
        entry.path = path.display().to_string();
        entry.last_error = Some(format!("{error:#}"));
        entry.record(Reload {
            at_ms: crate::now_ms(),
            result: ReloadResult::Failed,
            version: None,
            load_ms: None,
            error: Some(format!("{error:#}")),
        });
    }

    /// Records that `hookhost dev` could not build `tenant`'s plugin: shown like a load error
    /// (`GET /admin/tenants`, the console) until a version loads. Whatever served keeps serving;
    /// not logged, as dev prints the compiler's errors itself.
    pub fn record_build_failure(&self, tenant: &str, error: &str) {
        let mut status = self.status.lock().expect("status lock");
        let entry = status.entry(tenant.to_string()).or_default();
        entry.last_error = Some(error.to_string());
        entry.record(Reload {
            at_ms: crate::now_ms(),
            result: ReloadResult::Failed,
            version: None,
            load_ms: None,
            error: Some(error.to_string()),
        });
    }

    /// Takes `tenant`'s plugin out of service (its file was removed): its events wait, they are
    /// neither failed nor dropped, until a plugin loads again.
    pub fn unload(&self, tenant: &str, path: &std::path::Path) {
        if self.is_published(tenant) {
            tracing::info!(tenant, path = %path.display(), "plugin file removed; the tenant keeps serving its published version");
            return;
        }
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
            result: ReloadResult::Removed,
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

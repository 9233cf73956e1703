//! Config reload: re-reads the config file on SIGHUP (or `POST /admin/config/reload`) and applies
//! the tenants it describes to the running host — tenants added, removed or changed (sources,
//! secrets, limits, allow-lists, retry policy, plugin file) — without a restart and without
//! touching a webhook in flight. The whole new file is checked first; a file that does not load
//! changes nothing and the error is reported. Settings of the process itself (listen address,
//! database, admin token, workers…) need a restart and are reported as such. With several
//! replicas on one database, a reload on one is stored there and applied on all (each resolving
//! its own `env:`/`file:` secrets); a replica that starts uses its own file.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::Digest as _;

use crate::config::Config;
use crate::plugins::PluginLoader;
use crate::reload::PluginWatcher;
use crate::storage::{PublishedConfig, Storage};
use crate::tenants::Tenants;

/// What a config reload changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigChange {
    /// When it was applied (ms since the epoch).
    pub at_ms: u64,
    /// Tenants that are new.
    pub added: Vec<String>,
    /// Tenants no longer configured: their webhooks get 404, their journaled events wait.
    pub removed: Vec<String>,
    /// Tenants whose settings were replaced (every tenant still configured).
    pub updated: Vec<String>,
    /// Tenants whose plugin file changed (loaded in the background).
    pub plugin_changed: Vec<String>,
    /// Settings that changed in the file but only take effect after a restart.
    pub needs_restart: Vec<String>,
    /// Whether it came from another replica (a reload there, stored in the shared database)
    /// rather than this replica's own file.
    pub from_another_replica: bool,
}

/// The last reload, as the admin API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    /// The config file.
    pub path: String,
    /// The last reload that applied.
    pub last_applied: Option<ConfigChange>,
    /// Why the last reload attempt was refused, if it was (cleared by the next success).
    pub last_error: Option<String>,
}

/// Applies a changed config file to the running host.
pub struct Reconfigurer {
    path: PathBuf,
    tenants: Arc<Tenants>,
    loader: Arc<PluginLoader>,
    watcher: Arc<PluginWatcher>,
    /// The process-wide settings the host started with, to tell which changes need a restart.
    started_with: Vec<(&'static str, String)>,
    /// Largest memory limit the runtime's pool can give (set at start).
    pool_memory_mib: u64,
    status: Mutex<ConfigStatus>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
    /// The store shared with other replicas, if any: a reload here is stored there for them.
    shared: Option<Arc<dyn Storage>>,
    /// The digest of the stored config this replica applied or stored last (at start: the one
    /// stored then, so that a replica starting keeps its own file until the next reload).
    applied_stored: Mutex<Option<String>>,
}

impl Reconfigurer {
    /// Ties reloading to the running host's parts; `started_with` is the config it started with.
    pub fn new(
        path: PathBuf,
        started_with: &Config,
        tenants: Arc<Tenants>,
        loader: Arc<PluginLoader>,
        watcher: Arc<PluginWatcher>,
        pool_memory_mib: u64,
    ) -> Reconfigurer {
        Reconfigurer {
            status: Mutex::new(ConfigStatus {
                path: path.display().to_string(),
                ..Default::default()
            }),
            path,
            tenants,
            loader,
            watcher,
            started_with: process_settings(started_with),
            pool_memory_mib,
            running: tokio::sync::Mutex::new(()),
            shared: None,
            applied_stored: Mutex::new(None),
        }
    }

    /// Shares reloads through `storage` (several replicas on one database): a reload here is
    /// stored, and one stored by another replica is applied here ([`Self::apply_published`]).
    pub async fn share_through(mut self, storage: Arc<dyn Storage>) -> Reconfigurer {
        match storage.published_config().await {
            Ok(stored) => *self.applied_stored.get_mut().expect("lock") = stored.map(|c| c.digest),
            Err(e) => tracing::warn!(
                "cannot read the stored config (a later reload elsewhere will still apply): {e:#}"
            ),
        }
        self.shared = Some(storage);
        self
    }

    /// Applies the config another replica stored, unless this replica applied (or stored) it
    /// already. Its secrets' `env:`/`file:` references resolve here; relative paths are relative
    /// to this replica's config file.
    pub async fn apply_published(&self, stored: PublishedConfig) -> Result<Option<ConfigChange>> {
        let _one_at_a_time = self.running.lock().await;
        if self.applied_stored.lock().expect("lock").as_deref() == Some(stored.digest.as_str()) {
            return Ok(None);
        }
        let base = self.path.parent().unwrap_or(std::path::Path::new("."));
        let result = Config::from_toml(&stored.text, base)
            .context("the config another replica stored is invalid here")
            .and_then(|config| self.apply(config));
        let result = result.map(|mut change| {
            change.from_another_replica = true;
            change
        });
        *self.applied_stored.lock().expect("lock") = Some(stored.digest);
        self.record(&result);
        result.map(Some)
    }

    /// Re-reads the config file and applies its tenants. On error nothing changed.
    pub async fn reload(&self) -> Result<ConfigChange> {
        let _one_at_a_time = self.running.lock().await;
        let result = self.reload_file().await;
        self.record(&result);
        result
    }

    /// Reads, applies and (with other replicas) stores the file.
    async fn reload_file(&self) -> Result<ConfigChange> {
        let (config, text) = Config::load_with_text(&self.path)?;
        let change = self.apply(config)?;
        if let Some(storage) = &self.shared {
            let stored = storage
                .publish_config(&text)
                .await
                .context("applied on this replica, but not stored for the others (reload again)")?;
            *self.applied_stored.lock().expect("lock") = Some(stored.digest);
        }
        Ok(change)
    }

    fn record(&self, result: &Result<ConfigChange>) {
        let mut status = self.status.lock().expect("config status lock");
        match result {
            Ok(change) => {
                status.last_applied = Some(change.clone());
                status.last_error = None;
                tracing::info!(added = ?change.added, removed = ?change.removed,
                    plugin_changed = ?change.plugin_changed, needs_restart = ?change.needs_restart,
                    "config reloaded");
            }
            Err(e) => {
                status.last_error = Some(format!("{e:#}"));
                tracing::error!("config not reloaded; the running config stays: {e:#}");
            }
        }
    }

    /// The last reload's outcome.
    pub fn status(&self) -> ConfigStatus {
        self.status.lock().expect("config status lock").clone()
    }

    fn apply(&self, config: Config) -> Result<ConfigChange> {
        let next = Tenants::build(&config)
            .with_context(|| format!("config file {} is invalid", self.path.display()))?;
        let mut change = ConfigChange {
            at_ms: crate::now_ms(),
            ..Default::default()
        };
        for (name, now) in process_settings(&config) {
            let before = self.started_with.iter().find(|(n, _)| *n == name);
            if before.map(|(_, v)| v) != Some(&now) {
                change.needs_restart.push(name.to_string());
            }
        }
        for tenant in next.values() {
            if tenant.limits.fuel.is_some() && !self.loader.runtime().counts_fuel() {
                change.needs_restart.push(format!(
                    "tenants.{}.limits.fuel (this process started without fuel counting)",
                    tenant.name
                ));
            }
            if tenant.limits.memory_mib > self.pool_memory_mib {
                change.needs_restart.push(format!(
                    "tenants.{}.limits.memory_mib ({} MiB; this process's pool holds at most {} MiB)",
                    tenant.name, tenant.limits.memory_mib, self.pool_memory_mib
                ));
            }
        }
        let previous = self.tenants.all();
        let old: BTreeSet<&String> = previous.keys().collect();
        let new: BTreeSet<&String> = next.keys().collect();
        change.added = new.difference(&old).map(|s| s.to_string()).collect();
        change.removed = old.difference(&new).map(|s| s.to_string()).collect();
        change.updated = new.intersection(&old).map(|s| s.to_string()).collect();
        let mut to_load = Vec::new();
        for (name, tenant) in &next {
            let plugin_moved = previous
                .get(name)
                .is_some_and(|p| p.plugin_path != tenant.plugin_path);
            if plugin_moved {
                change.plugin_changed.push(name.clone());
            }
            if plugin_moved || !previous.contains_key(name) {
                to_load.push((name.clone(), tenant.plugin_path.clone()));
            }
        }
        change.plugin_changed.sort();

        self.watcher.watch_folders(&next);
        self.tenants.replace(next);
        for name in &change.removed {
            self.loader.registry().remove(name);
        }
        // Compiling may take seconds (scripted plugins): the new tenants' webhooks are accepted
        // meanwhile and wait for their plugin like at start.
        self.loader.in_background(move |loader| {
            for (tenant, path) in to_load {
                loader.load(&tenant, &path);
            }
        });
        Ok(change)
    }
}

/// The settings that belong to the process, not to a tenant: changing them needs a restart.
fn process_settings(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("listen", config.listen.to_string()),
        (
            "database",
            match &config.database {
                crate::config::Database::Sqlite(file) => file.display().to_string(),
                // Compared by a digest: the URL may hold the password.
                crate::config::Database::Postgres(url) => {
                    hex::encode(sha2::Sha256::digest(url.expose().as_bytes()))
                }
            },
        ),
        (
            "database_password",
            config
                .database_password
                .as_ref()
                .map(|p| hex::encode(sha2::Sha256::digest(p.expose().as_bytes())))
                .unwrap_or_default(),
        ),
        ("durability", format!("{:?}", config.durability)),
        ("cache_dir", format!("{:?}", config.cache_dir)),
        ("max_body_bytes", config.max_body_bytes.to_string()),
        // Compared by a digest: the token itself never leaves the config.
        (
            "admin.token",
            config
                .admin
                .token
                .as_ref()
                .map(|t| hex::encode(sha2::Sha256::digest(t.expose().as_bytes())))
                .unwrap_or_default(),
        ),
        ("dispatch.workers", config.dispatch.workers.to_string()),
        ("retention_hours", config.retention_hours.to_string()),
        ("sink", config.sink.to_string()),
    ]
}

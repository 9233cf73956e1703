//! Hot reload: watches every tenant's plugin file and swaps a changed plugin in while webhooks keep
//! flowing. The folders holding the plugin files are watched (not the files), so editors' and
//! cargo's write-then-rename patterns, deletions and re-creations are all seen. Changes are
//! debounced, compiled off the request path, and swapped through the [`PluginRegistry`]: attempts
//! already running finish on the old version, the next event gets the new one, and a file that
//! does not load (partial write, not a component, wrong world) leaves the previous version serving.
//! A deleted plugin file unloads the tenant's plugin: its events wait, they are not failed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use notify_debouncer_full::notify::event::{EventKind, ModifyKind};
use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

use crate::plugins::PluginLoader;
use crate::tenants::{TenantMap, Tenants};

/// How long a file must be quiet before it is reloaded (editors write in several steps). Short,
/// because loading a half-written file is harmless: it fails, the working version keeps serving,
/// and the rest of the write triggers the next reload.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// The running watcher; dropping it stops hot reload.
pub struct PluginWatcher {
    debouncer: Mutex<Debouncer<RecommendedWatcher, RecommendedCache>>,
    /// Folders watched so far (a config reload may add tenants in new folders).
    folders: Mutex<HashSet<PathBuf>>,
}

impl PluginWatcher {
    /// Watches the folder of every tenant's plugin file not watched yet (after a config reload).
    pub fn watch_folders(&self, tenants: &TenantMap) {
        let mut watched = self.folders.lock().expect("watcher lock");
        let mut debouncer = self.debouncer.lock().expect("watcher lock");
        for tenant in tenants.values() {
            let Some(folder) = absolute(&tenant.plugin_path)
                .parent()
                .map(Path::to_path_buf)
            else {
                continue;
            };
            if watched.contains(&folder) {
                continue;
            }
            match debouncer.watch(&folder, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(folder = %folder.display(), "watching plugins");
                    watched.insert(folder);
                }
                Err(e) => {
                    tracing::warn!(folder = %folder.display(), "cannot watch this plugin folder (hot reload is off for it): {e}")
                }
            }
        }
    }
}

/// Starts watching the plugin files of every tenant (the tenants as configured when a change is
/// seen, so a config reload needs only [`PluginWatcher::watch_folders`]).
pub fn watch(loader: Arc<PluginLoader>, tenants: Arc<Tenants>) -> Result<PluginWatcher> {
    let current = tenants.clone();
    let debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let events = match result {
            Ok(events) => events,
            Err(errors) => {
                for e in errors {
                    tracing::warn!("plugin watcher: {e}");
                }
                return;
            }
        };
        // Plugin file → the tenants it serves (several tenants may share one file).
        let mut by_file: HashMap<PathBuf, Vec<String>> = HashMap::new();
        for tenant in current.all().values() {
            by_file
                .entry(absolute(&tenant.plugin_path))
                .or_default()
                .push(tenant.name.clone());
        }
        // Reading a plugin (as loading does) is an access event: only content, name and existence
        // changes count, or every load would trigger the next.
        let mut changed: Vec<PathBuf> = events
            .iter()
            .filter(|e| changes_content(&e.kind))
            .flat_map(|e| e.paths.iter())
            .map(|p| absolute(p))
            .filter(|p| by_file.contains_key(p))
            .collect();
        changed.sort();
        changed.dedup();
        for path in changed {
            let tenants = by_file.remove(&path).unwrap_or_default();
            loader.in_background(move |loader| {
                for tenant in &tenants {
                    if path.exists() {
                        loader.load(tenant, &path);
                    } else {
                        loader.registry().unload(tenant, &path);
                    }
                }
            });
        }
    })
    .context("cannot start the plugin file watcher")?;
    let watcher = PluginWatcher {
        debouncer: Mutex::new(debouncer),
        folders: Mutex::new(HashSet::new()),
    };
    watcher.watch_folders(&tenants.all());
    Ok(watcher)
}

/// Whether a file event may have changed what a file holds: writes, creations, renames and
/// removals do; reads (as loading a plugin or cargo reading sources does) and metadata changes do
/// not — counting them makes every load or build trigger the next.
pub fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

/// The path made absolute without resolving links (the watcher reports paths as configured).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

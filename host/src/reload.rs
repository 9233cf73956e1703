//! Hot reload: watches every tenant's plugin file and swaps a changed plugin in while webhooks keep
//! flowing. The folders holding the plugin files are watched (not the files), so editors' and
//! cargo's write-then-rename patterns, deletions and re-creations are all seen. Changes are
//! debounced, compiled off the request path, and swapped through the [`PluginRegistry`]: attempts
//! already running finish on the old version, the next event gets the new one, and a file that
//! does not load (partial write, not a component, wrong world) leaves the previous version serving.
//! A deleted plugin file unloads the tenant's plugin: its events wait, they are not failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify_debouncer_full::notify::event::{EventKind, ModifyKind};
use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

use crate::plugins::PluginRegistry;
use crate::runtime::Runtime;
use crate::tenants::Tenants;

/// How long a file must be quiet before it is reloaded (editors write in several steps). Short,
/// because loading a half-written file is harmless: it fails, the working version keeps serving,
/// and the rest of the write triggers the next reload.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// The running watcher; dropping it stops hot reload.
pub struct PluginWatcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

/// Starts watching the plugin files of every tenant.
pub fn watch(
    runtime: Arc<Runtime>,
    registry: Arc<PluginRegistry>,
    tenants: &Tenants,
) -> Result<PluginWatcher> {
    // Plugin file → the tenants it serves (several tenants may share one file).
    let mut by_file: HashMap<PathBuf, Vec<String>> = HashMap::new();
    for tenant in tenants.iter() {
        by_file
            .entry(absolute(&tenant.plugin_path))
            .or_default()
            .push(tenant.name.clone());
    }
    let by_file = Arc::new(by_file);
    let handle = tokio::runtime::Handle::current();
    let files = by_file.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let events = match result {
            Ok(events) => events,
            Err(errors) => {
                for e in errors {
                    tracing::warn!("plugin watcher: {e}");
                }
                return;
            }
        };
        // Reading a plugin (as loading does) is an access event: only content, name and existence
        // changes count, or every load would trigger the next.
        let mut changed: Vec<PathBuf> = events
            .iter()
            .filter(|e| match e.kind {
                EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
                EventKind::Modify(ModifyKind::Metadata(_)) => false,
                EventKind::Modify(_) => true,
                EventKind::Access(_) | EventKind::Other => false,
            })
            .flat_map(|e| e.paths.iter())
            .map(|p| absolute(p))
            .filter(|p| files.contains_key(p))
            .collect();
        changed.sort();
        changed.dedup();
        for path in changed {
            let (runtime, registry, tenants) =
                (runtime.clone(), registry.clone(), files[&path].clone());
            handle.spawn_blocking(move || {
                for tenant in &tenants {
                    if path.exists() {
                        let _ = registry.load(&runtime, tenant, &path);
                    } else {
                        registry.unload(tenant, &path);
                    }
                }
            });
        }
    })
    .context("cannot start the plugin file watcher")?;
    let mut folders: Vec<PathBuf> = by_file
        .keys()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    folders.sort();
    folders.dedup();
    for folder in folders {
        match debouncer.watch(&folder, RecursiveMode::NonRecursive) {
            Ok(()) => tracing::debug!(folder = %folder.display(), "watching plugins"),
            Err(e) => {
                tracing::warn!(folder = %folder.display(), "cannot watch this plugin folder (hot reload is off for it): {e}")
            }
        }
    }
    Ok(PluginWatcher {
        _debouncer: debouncer,
    })
}

/// The path made absolute without resolving links (the watcher reports paths as configured).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

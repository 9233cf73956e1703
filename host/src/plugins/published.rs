//! Published plugins reach every replica: each process follows the store's publications
//! ([`Storage::changes`]) and loads a tenant's published component when it differs from what it
//! serves (its own precompiled cache makes a version it compiled before quick to load). A resync
//! (the store's notification connection came back: notifications may have been lost meanwhile)
//! or a lagging receiver re-reads every tenant's pointer. Self-tests ran once, at publication.
//! Config reloads stored by other replicas are followed here too, before the plugins they may
//! concern.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::PluginLoader;
use crate::reconfigure::Reconfigurer;
use crate::storage::{Storage, StoreChange};
use crate::tenants::Tenants;

/// Follows publications for as long as the store announces them (`changes`, taken before the
/// process's first plugin loads, so nothing announced meanwhile is missed): plugins, and config
/// reloads made on other replicas (applied through `reconfigurer`, then every plugin looked at
/// again, since the reload may have added tenants with published plugins).
pub async fn follow(
    mut changes: tokio::sync::broadcast::Receiver<StoreChange>,
    storage: Arc<dyn Storage>,
    loader: Arc<PluginLoader>,
    tenants: Arc<Tenants>,
    reconfigurer: Option<Arc<Reconfigurer>>,
) {
    sync(&storage, &loader, &tenants, None).await;
    sync_shadows(&storage, &loader, &tenants, None).await;
    loop {
        match changes.recv().await {
            Ok(StoreChange::PluginPublished { tenant }) => {
                sync(&storage, &loader, &tenants, Some(&tenant)).await;
                sync_shadows(&storage, &loader, &tenants, Some(&tenant)).await
            }
            Ok(StoreChange::ConfigPublished) => {
                apply_config(&storage, reconfigurer.as_deref()).await;
                sync(&storage, &loader, &tenants, None).await;
                sync_shadows(&storage, &loader, &tenants, None).await
            }
            Ok(StoreChange::Resync) | Err(RecvError::Lagged(_)) => {
                apply_config(&storage, reconfigurer.as_deref()).await;
                sync(&storage, &loader, &tenants, None).await;
                sync_shadows(&storage, &loader, &tenants, None).await
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Applies the config stored by a reload on another replica, if this one has not yet.
async fn apply_config(storage: &Arc<dyn Storage>, reconfigurer: Option<&Reconfigurer>) {
    let Some(reconfigurer) = reconfigurer else {
        return;
    };
    match storage.published_config().await {
        Ok(Some(stored)) => {
            // Errors are in the reconfigurer's status and log.
            let _ = reconfigurer.apply_published(stored).await;
        }
        Ok(None) => {}
        Err(e) => tracing::error!("cannot read the stored config: {e:#}"),
    }
}

/// Loads each configured tenant's published component (only `only`'s, when given) that this
/// process does not serve yet.
async fn sync(
    storage: &Arc<dyn Storage>,
    loader: &Arc<PluginLoader>,
    tenants: &Tenants,
    only: Option<&str>,
) {
    let pointers = match storage.published_plugins().await {
        Ok(pointers) => pointers,
        Err(e) => {
            tracing::error!(
                "cannot read the published plugins (retrying at the next change or resync): {e:#}"
            );
            return;
        }
    };
    for published in pointers {
        if only.is_some_and(|t| t != published.tenant) || tenants.get(&published.tenant).is_none() {
            continue;
        }
        let registry = loader.registry();
        let serving = registry
            .get(&published.tenant)
            .is_some_and(|p| published.digest.starts_with(&p.version))
            && registry.is_published(&published.tenant);
        if serving {
            continue;
        }
        let component = match storage.plugin_component(&published.digest).await {
            Ok(Some(component)) => component,
            Ok(None) => {
                tracing::error!(tenant = %published.tenant, digest = %published.digest, "a published plugin's component is missing from the store");
                continue;
            }
            Err(e) => {
                tracing::error!(tenant = %published.tenant, "cannot read a published plugin: {e:#}");
                continue;
            }
        };
        let (tenant, digest) = (published.tenant.clone(), published.digest.clone());
        let _ = loader
            .in_background(move |loader| {
                loader.load_published(&tenant, &digest, &component);
            })
            .await;
    }
}

/// Makes each configured tenant's shadow (only `only`'s, when given) the one the store says:
/// loads a new one, changes a share, ends one the store no longer has.
async fn sync_shadows(
    storage: &Arc<dyn Storage>,
    loader: &Arc<PluginLoader>,
    tenants: &Tenants,
    only: Option<&str>,
) {
    let settings = match storage.shadows().await {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(
                "cannot read the shadows (retrying at the next change or resync): {e:#}"
            );
            return;
        }
    };
    for tenant in tenants.all().values() {
        if only.is_some_and(|t| t != tenant.name) {
            continue;
        }
        let setting = settings.iter().find(|s| s.tenant == tenant.name);
        if let Err(e) = install_shadow(storage, loader, tenant, setting).await {
            tracing::error!(tenant = %tenant.name, "cannot load the shadow: {e:#}");
        }
    }
}

/// Makes `setting` `tenant`'s shadow on this process (`None`: no shadow), loading its component
/// unless it is the one already shadowing.
pub async fn install_shadow(
    storage: &Arc<dyn Storage>,
    loader: &Arc<PluginLoader>,
    tenant: &crate::tenants::Tenant,
    setting: Option<&crate::storage::ShadowSetting>,
) -> anyhow::Result<()> {
    let registry = loader.registry();
    let Some(setting) = setting else {
        registry.set_shadow(&tenant.name, None);
        return Ok(());
    };
    let current = registry.shadow(&tenant.name);
    let plugin = match current.filter(|c| setting.digest.starts_with(&c.plugin.version)) {
        Some(current) => current.plugin.clone(),
        None => {
            let component = storage
                .plugin_component(&setting.digest)
                .await?
                .ok_or_else(|| anyhow::anyhow!("its component is missing from the store"))?;
            let runtime = loader.runtime().clone();
            let origin = format!("shadow {}", &setting.digest[..16.min(setting.digest.len())]);
            let compiled = tokio::task::spawn_blocking(move || {
                runtime.load_bytes(
                    &component,
                    std::path::Path::new(&origin),
                    std::time::Instant::now(),
                )
            })
            .await??;
            Arc::new(compiled)
        }
    };
    registry.set_shadow(
        &tenant.name,
        Some(super::registry::ShadowPlugin {
            number: setting.number,
            share: setting.share,
            plugin,
            running: Arc::new(tokio::sync::Semaphore::new(
                tenant.limits.max_concurrency.max(1),
            )),
        }),
    );
    Ok(())
}

//! The one way a plugin version comes to serve: compile (or take from the precompiled cache),
//! compare with the serving version, run the tenant's self-tests, install in the registry. Every
//! caller (the start, the file watcher, a config reload) goes through [`PluginLoader`], on a
//! blocking thread ([`PluginLoader::in_background`]), since compiling takes up to seconds.

use std::path::Path;
use std::sync::Arc;

use super::registry::PluginRegistry;
use super::selftest::SelfTester;
use crate::capabilities::http::{AllowList, HttpCapability};
use crate::runtime::{LoadedPlugin, Runtime};
use crate::storage::Storage;
use crate::tenants::{InstanceUse, Tenants};

/// What loading a file did.
pub enum LoadOutcome {
    /// A new version serves now.
    Loaded(Arc<LoadedPlugin>),
    /// The file holds the version already serving (a touch, or identical bytes): nothing changed.
    Unchanged(Arc<LoadedPlugin>),
    /// It did not load or failed a self-test; whatever served keeps serving (the error is in the
    /// registry's status too).
    Failed(anyhow::Error),
    /// The tenant serves a published version, which wins over its file: the file was not read.
    Superseded,
}

/// A component checked for publishing: compiled for this host's world and through the tenant's
/// self-tests; not serving yet.
pub struct Publishable {
    /// The compiled plugin.
    pub plugin: LoadedPlugin,
    /// How long compiling (or loading the precompiled form) took.
    pub compile: std::time::Duration,
    /// How long the self-tests took.
    pub self_tests: std::time::Duration,
}

/// Loads plugins into the registry.
pub struct PluginLoader {
    runtime: Arc<Runtime>,
    registry: Arc<PluginRegistry>,
    tenants: Arc<Tenants>,
    storage: Arc<dyn Storage>,
    self_tests: SelfTester,
    /// The client self-tests are given; never used: their allow-list is empty.
    refused_http: reqwest::Client,
    handle: tokio::runtime::Handle,
}

impl PluginLoader {
    /// A loader for the running host; background loads and self-tests run on `handle`'s runtime.
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<PluginRegistry>,
        tenants: Arc<Tenants>,
        storage: Arc<dyn Storage>,
        handle: tokio::runtime::Handle,
    ) -> anyhow::Result<PluginLoader> {
        Ok(PluginLoader {
            self_tests: SelfTester::new(runtime.clone(), handle.clone()),
            runtime,
            registry,
            tenants,
            storage,
            refused_http: HttpCapability::shared_client(true)?,
            handle,
        })
    }

    /// The runtime plugins are compiled for.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The registry it installs into.
    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.registry
    }

    /// Loads `path` for `tenant` and, if it is a new version that passes the tenant's
    /// self-tests, makes it the serving one. Blocking: call it from [`Self::in_background`].
    pub fn load(&self, tenant: &str, path: &Path) -> LoadOutcome {
        if self.registry.is_published(tenant) {
            tracing::info!(tenant, path = %path.display(), "plugin file not loaded: the tenant serves its published version");
            return LoadOutcome::Superseded;
        }
        let plugin = match self.runtime.load(path) {
            Ok(plugin) => plugin,
            Err(e) => return self.failed(tenant, path, e),
        };
        if let Some(current) = self
            .registry
            .get(tenant)
            .filter(|c| c.version == plugin.version)
        {
            return LoadOutcome::Unchanged(current);
        }
        if let Err(e) = self.self_test(tenant, &plugin) {
            return self.failed(tenant, path, e);
        }
        let plugin = Arc::new(plugin);
        if !self
            .registry
            .install_unless_published(tenant, path, plugin.clone())
        {
            return LoadOutcome::Superseded;
        }
        LoadOutcome::Loaded(plugin)
    }

    /// Compiles `component` for `tenant` and runs the tenant's self-tests against it, as a
    /// publication must pass before it is stored. Blocking.
    pub fn check_publishable(&self, tenant: &str, component: &[u8]) -> anyhow::Result<Publishable> {
        let started = std::time::Instant::now();
        let origin = Path::new("uploaded component");
        let plugin = self.runtime.load_bytes(component, origin, started)?;
        let compile = started.elapsed();
        let tested = std::time::Instant::now();
        self.self_test(tenant, &plugin)?;
        Ok(Publishable {
            plugin,
            compile,
            self_tests: tested.elapsed(),
        })
    }

    /// Makes a published component (self-tested when it was published) serve `tenant`, unless
    /// it already does. Blocking.
    pub fn load_published(&self, tenant: &str, digest: &str, component: &[u8]) -> LoadOutcome {
        let origin = format!("published {}", &digest[..16.min(digest.len())]);
        let plugin =
            match self
                .runtime
                .load_bytes(component, Path::new(&origin), std::time::Instant::now())
            {
                Ok(plugin) => plugin,
                Err(e) => return self.failed(tenant, Path::new(&origin), e),
            };
        if let Some(current) = self
            .registry
            .get(tenant)
            .filter(|c| c.version == plugin.version && self.registry.is_published(tenant))
        {
            return LoadOutcome::Unchanged(current);
        }
        let plugin = Arc::new(plugin);
        self.registry
            .install_published(tenant, digest, plugin.clone());
        LoadOutcome::Loaded(plugin)
    }

    /// Runs `work` on a blocking thread (it may call [`Self::load`]); callable from any thread,
    /// the file watcher's included.
    pub fn in_background(
        self: &Arc<Self>,
        work: impl FnOnce(&PluginLoader) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let loader = self.clone();
        self.handle.spawn_blocking(move || work(&loader))
    }

    fn failed(&self, tenant: &str, path: &Path, error: anyhow::Error) -> LoadOutcome {
        self.registry.record_failure(tenant, path, &error);
        LoadOutcome::Failed(error)
    }

    /// The tenant's self-tests against `plugin`: real attempts on a fresh instance, reading the
    /// tenant's kv but never writing it, and refused any outbound request.
    fn self_test(&self, tenant: &str, plugin: &LoadedPlugin) -> anyhow::Result<()> {
        let Some(t) = self.tenants.get(tenant) else {
            return Ok(());
        };
        if t.self_tests.is_empty() {
            return Ok(());
        }
        let refused = Arc::new(AllowList::parse(&[])?);
        self.self_tests.check(tenant, &t.self_tests, plugin, || {
            let http =
                HttpCapability::new(self.refused_http.clone(), refused.clone(), t.http_limits);
            t.attempt_context(self.storage.clone(), http, InstanceUse::Fresh)
        })
    }
}

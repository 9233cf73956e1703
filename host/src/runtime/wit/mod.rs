//! The WIT versions this host serves, one module each (Zed's extension host is the model): a
//! component is matched to the newest version whose world it exports, and the rest of the runtime
//! talks to it through [`PluginPre`] and [`PluginInstance`] in the host's own types. Adding
//! `wit/v0.2.0` means adding a module beside [`v0_1_0`] and a variant to each enum here.

use anyhow::Result;
use wasmtime::component::{InstancePre, Linker};
use wasmtime::Store;

use super::store::PluginState;
use super::PluginOutcome;
use crate::storage::StoredEvent;

pub mod v0_1_0;

/// Links every served version's imports (they live in distinct versioned packages).
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> Result<()> {
    v0_1_0::add_to_linker(linker)
}

/// A plugin, linked and type-checked against the version it was built for.
pub enum PluginPre {
    /// `hookhost:plugin@0.1.0`.
    V0_1_0(v0_1_0::Pre),
}

/// One instance of a plugin.
pub enum PluginInstance {
    /// `hookhost:plugin@0.1.0`.
    V0_1_0(v0_1_0::Instance),
}

impl PluginPre {
    /// Matches `pre` to the version whose world it exports.
    pub fn new(pre: InstancePre<PluginState>) -> Result<PluginPre> {
        v0_1_0::Pre::new(pre).map(PluginPre::V0_1_0)
    }

    /// The world the plugin exports, as errors name it.
    pub fn world(&self) -> &'static str {
        match self {
            PluginPre::V0_1_0(_) => v0_1_0::WORLD,
        }
    }

    /// A new instance in `store`.
    pub async fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<PluginInstance> {
        match self {
            PluginPre::V0_1_0(pre) => pre.instantiate(store).await.map(PluginInstance::V0_1_0),
        }
    }
}

impl PluginInstance {
    /// Hands `event` to the plugin: its outcome, or the error it returned.
    pub async fn handle(
        &self,
        store: &mut Store<PluginState>,
        event: &StoredEvent,
        attempt: u32,
    ) -> wasmtime::Result<Result<PluginOutcome, String>> {
        match self {
            PluginInstance::V0_1_0(instance) => instance.handle(store, event, attempt).await,
        }
    }
}

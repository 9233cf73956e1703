//! Plugins: which version serves each tenant ([`registry`], state only), how a version gets
//! there ([`loader`]: compile, self-test, install, always off the async workers) and the
//! self-tests a version must pass first ([`selftest`]).

pub mod loader;
pub mod registry;
pub mod selftest;

pub use loader::{LoadOutcome, PluginLoader};
pub use registry::{PluginRegistry, PluginStatus, Reload, ReloadResult};

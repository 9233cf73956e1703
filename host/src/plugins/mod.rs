//! Plugins: which version serves each tenant ([`registry`], state only), how a version gets
//! there ([`loader`]: compile, self-test, install, always off the async workers) and the
//! self-tests a version must pass first ([`selftest`]); how published versions reach every
//! replica ([`published`]); what a version would do, run dry ([`dryrun`]), over the journal
//! ([`backtest`]).

pub mod backtest;
pub mod dryrun;
pub mod loader;
pub mod published;
pub mod registry;
pub mod selftest;

pub use loader::{LoadOutcome, PluginLoader, Publishable};
pub use registry::{PluginRegistry, PluginStatus, Reload, ReloadResult};

//! hookhost receives e-commerce and payment webhooks, authenticates them, normalizes them into one
//! event shape, journals them durably, and hands each event to the tenant's WebAssembly plugin.
//!
//! The modules, in the order a webhook travels through them:
//! [`http`] (ingress) → [`providers`] (authenticate, normalize into an [`event`]) →
//! [`storage`] (journal, dedupe) → [`dispatcher`] (ordering, retries, dead letters) →
//! [`runtime`] (wasmtime, a fresh instance per event) with [`capabilities`] → outcome recorded in
//! [`storage`]. Around them: [`config`], [`tenants`], [`plugins`] (registry, loader, self-tests),
//! [`reload`] (hot reload of plugins), [`reconfigure`] (config reload), [`http`] (also the
//! admin API, console, health and sink), [`server`] (wiring and serving), [`admin_cli`] (the
//! CLI's admin commands, printed through [`cli_text`]) and
//! [`devloop`] (`hookhost send`, `new`, `dev`).

pub mod access;
pub mod activity;
pub mod admin_cli;
pub mod capabilities;
pub mod cli_text;
pub mod config;
pub mod devloop;
pub mod dispatcher;
pub mod event;
pub mod http;
pub mod plugins;
pub mod providers;
pub mod reconfigure;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tenants;

/// Milliseconds since the Unix epoch, the unit of every timestamp hookhost stores.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

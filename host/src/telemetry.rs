//! Metrics in the Prometheus text format (`GET /metrics`), through the `metrics` facade. Labels
//! are only tenant and source names from the config and fixed words (reasons, outcomes): never
//! event ids or anything a caller chooses, so the number of series stays bounded.

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Webhooks that reached a configured source.
pub const RECEIVED: &str = "hookhost_webhooks_received_total";
/// Webhooks refused, by `reason`.
pub const REJECTED: &str = "hookhost_webhooks_rejected_total";
/// Webhooks journaled and acknowledged.
pub const ACCEPTED: &str = "hookhost_webhooks_accepted_total";
/// Duplicates acknowledged and not dispatched.
pub const DUPLICATES: &str = "hookhost_webhooks_duplicate_total";
/// Time from receiving a webhook to acknowledging it.
pub const ACK_SECONDS: &str = "hookhost_ack_seconds";
/// Plugin attempts, by `outcome` (done, skipped, retry, error).
pub const ATTEMPTS: &str = "hookhost_attempts_total";
/// Events that became dead letters.
pub const DEAD_LETTERS: &str = "hookhost_dead_letters_total";
/// Duration of plugin attempts.
pub const PLUGIN_SECONDS: &str = "hookhost_plugin_seconds";
/// Claimed events waiting in this process for a worker (its window; the backlog stays in the
/// journal: see `hookhost_oldest_pending_seconds`).
pub const QUEUE_DEPTH: &str = "hookhost_queue_depth";
/// Plugin loads, by `result` (loaded, failed, removed).
pub const PLUGIN_LOADS: &str = "hookhost_plugin_loads_total";
/// Age in seconds of each tenant's oldest unfinished event (0 when none waits).
pub const OLDEST_PENDING_SECONDS: &str = "hookhost_oldest_pending_seconds";
/// Attempts whose kv writes were refused because a key they read changed meanwhile (retried).
pub const KV_CONFLICTS: &str = "hookhost_kv_conflicts_total";
/// Attempts whose lease expired before they finished (the process stalled past its term): their
/// outcome and kv writes were discarded and the event ran again.
pub const LEASES_LOST: &str = "hookhost_leases_lost_total";

/// Shadowed attempts by tenant and verdict (`same`, `differs`, `inconclusive`, and `skipped`:
/// the tenant's shadows were all busy, so none ran beside that attempt).
pub const SHADOW_RUNS: &str = "hookhost_shadow_runs_total";
/// Time spent in shadow runs (dry), per tenant: what shadowing costs.
pub const SHADOW_SECONDS: &str = "hookhost_shadow_seconds";

/// A label value for a name not in the config (never the caller's text).
pub const UNKNOWN: &str = "_unknown";

/// A source's ingest metrics, registered once when the config is loaded: a webhook increments
/// them directly instead of building label sets and looking them up on every request.
#[derive(Clone)]
pub struct SourceMetrics {
    /// [`RECEIVED`] for this tenant and source.
    pub received: metrics::Counter,
    /// [`ACCEPTED`].
    pub accepted: metrics::Counter,
    /// [`DUPLICATES`].
    pub duplicates: metrics::Counter,
    /// [`ACK_SECONDS`].
    pub ack_seconds: metrics::Histogram,
}

impl SourceMetrics {
    /// Registers (or finds) the series of `tenant`'s `source` with the installed recorder; with
    /// none installed (tools, tests) they count nothing.
    pub fn new(tenant: &str, source: &str) -> SourceMetrics {
        let labels = [
            ("tenant", tenant.to_string()),
            ("source", source.to_string()),
        ];
        SourceMetrics {
            received: metrics::counter!(RECEIVED, &labels),
            accepted: metrics::counter!(ACCEPTED, &labels),
            duplicates: metrics::counter!(DUPLICATES, &labels),
            ack_seconds: metrics::histogram!(ACK_SECONDS, &labels),
        }
    }
}

/// Installs the process-wide recorder (before the tenants are built, so that their
/// [`SourceMetrics`] register with it); the handle renders `/metrics`.
pub fn install() -> Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(ACK_SECONDS.into()),
            &[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(PLUGIN_SECONDS.into()),
                &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
            )
        })
        .context("invalid histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")
}

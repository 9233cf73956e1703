//! A tenant's part of the file: its plugin, capabilities, limits, retry policy and self-tests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::secret::Secret;
use super::source::SourceConfig;

/// One merchant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The plugin component (`.wasm`), relative to the config file.
    pub plugin: PathBuf,
    /// Hosts the plugin may call over HTTP: `host` or `host:port`. Everything else is denied.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Let allow-listed host names resolve to loopback, private or link-local addresses (off by
    /// default: a name that points inside is refused). IP literals on the allow-list are always
    /// explicit and allowed.
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Values the plugin reads through the `config` capability.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets the plugin reads through `config.get-secret`; never logged or shown.
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// Resource limits for each attempt.
    #[serde(default)]
    pub limits: Limits,
    /// How failed attempts are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// The webhook endpoints of this tenant, by source name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Webhooks every new version of the plugin must handle before it may replace the serving
    /// one (hot reload, config reload, start). A version that fails is not loaded.
    #[serde(default)]
    pub self_test: Vec<SelfTestConfig>,
}

/// One self-test case: a webhook body as `source` would deliver it, and what the plugin must do.
/// It runs in a fresh instance like a real attempt, with the tenant's limits; its kv writes are
/// discarded and outbound HTTP is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTestConfig {
    /// The tenant's source whose provider normalizes the body (authentication is not checked).
    pub source: String,
    /// The webhook body (JSON), relative to the config file.
    pub file: PathBuf,
    /// Headers the provider would send with it (e.g. `x-shopify-topic`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// What the plugin must answer (default `ok`: done, skipped or retry-after, not an error).
    #[serde(default)]
    pub expect: SelfTestExpect,
}

/// What a self-test requires of the plugin.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelfTestExpect {
    /// Any outcome; no error, trap or exceeded limit.
    #[default]
    Ok,
    /// `done`.
    Done,
    /// `skipped`.
    Skipped,
    /// `retry-after`.
    Retry,
}

/// Per-attempt resource limits, with defaults safe for a shared host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock time for one attempt, including host calls.
    pub timeout_ms: u64,
    /// Linear memory the plugin may grow to, in MiB.
    pub memory_mib: u64,
    /// Log bytes kept per attempt; more are dropped (and counted).
    pub log_bytes: usize,
    /// Largest kv value, in bytes.
    pub kv_value_bytes: usize,
    /// Most keys the tenant's kv may hold.
    pub kv_max_keys: u64,
    /// Bytes of kv writes (keys and values) one attempt may buffer before they commit; past it a
    /// `set` fails with `value-too-large` (the writes are held in host memory, outside the
    /// plugin's `memory_mib`, until the attempt ends).
    pub kv_write_bytes: usize,
    /// Outbound HTTP requests per attempt.
    pub http_requests: u32,
    /// Timeout of one outbound request.
    pub http_timeout_ms: u64,
    /// Largest outbound response body, in bytes.
    pub http_response_bytes: usize,
    /// Most of this tenant's events running at once, so one tenant cannot take every worker
    /// (default 16: half the default workers, so that one busy tenant is not held back by the
    /// journal's commit latency while another still finds free workers).
    pub max_concurrency: usize,
    /// Instruction budget of one attempt (wasmtime fuel, about one unit per wasm instruction),
    /// for operators who want a deterministic CPU cap like Shopify Functions' instruction limit;
    /// `timeout_ms` still applies. Unset: no budget. Counting fuel costs every plugin some speed,
    /// so the engine counts it only when a tenant had a budget at start.
    pub fuel: Option<u64>,
    /// Authenticated webhooks accepted per second for this tenant (all sources together); above
    /// it callers get 429 with `Retry-After`. Unset: no limit.
    pub ingest_per_second: Option<f64>,
    /// Webhooks that may arrive at once above `ingest_per_second` (default: one second's worth).
    pub ingest_burst: Option<u32>,
    /// Events one plugin instance may handle before it is replaced (default 1: a fresh instance
    /// per event). JavaScript and Python plugins start an interpreter per instance (~1-2 ms, see
    /// docs/BENCHMARKS.md); reusing an instance saves that, at the price that the plugin's
    /// globals persist between this tenant's events. An instance never serves another tenant or
    /// another plugin version, and is dropped after any trap or timeout.
    pub instance_reuse: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 5_000,
            memory_mib: 64,
            log_bytes: 64 * 1024,
            kv_value_bytes: 256 * 1024,
            kv_max_keys: 100_000,
            kv_write_bytes: 16 * 1024 * 1024,
            http_requests: 10,
            http_timeout_ms: 10_000,
            http_response_bytes: 1024 * 1024,
            max_concurrency: 16,
            fuel: None,
            ingest_per_second: None,
            ingest_burst: None,
            instance_reuse: 1,
        }
    }
}

/// Retries with exponential backoff and jitter; after `max_attempts` an event is a dead letter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base_ms: u64,
    /// Longest delay between attempts.
    pub cap_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_ms: 1_000,
            cap_ms: 10 * 60 * 1_000,
        }
    }
}

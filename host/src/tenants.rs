//! Tenants as the pipeline uses them: the config turned into ready-to-use pieces (providers with
//! their secrets, parsed allow-lists, limits), looked up by name on every webhook and attempt.
//! The set is swapped whole when the config is reloaded (`arc-swap`, lock-free lookups): a webhook
//! or attempt holds the `Arc<Tenant>` it looked up, so it finishes with the settings it started
//! with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use crate::capabilities::config::ConfigValues;
use crate::capabilities::http::{AllowList, HttpCapability, HttpLimits};
use crate::capabilities::kv::{KvLimits, KvTxn};
use crate::capabilities::log::LogCapture;
use crate::config::{Config, Limits, RetryPolicy};
use crate::plugins::selftest::SelfTest;
use crate::providers::{self, Source};
use crate::runtime::AttemptContext;
use crate::storage::Storage;

/// One tenant, ready to serve.
pub struct Tenant {
    /// Name (in URLs and the journal).
    pub name: String,
    /// Its plugin component.
    pub plugin_path: PathBuf,
    /// Its sources, by name.
    pub sources: HashMap<String, Source>,
    /// Resource limits per attempt.
    pub limits: Limits,
    /// kv limits (derived from `limits`).
    pub kv_limits: KvLimits,
    /// Outbound HTTP limits (derived from `limits`).
    pub http_limits: HttpLimits,
    /// Hosts the plugin may call.
    pub allow: Arc<AllowList>,
    /// Whether allow-listed names may resolve to non-public addresses.
    pub allow_private_networks: bool,
    /// Values and secrets for the plugin.
    pub config: ConfigValues,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Webhooks each new plugin version must handle before it serves.
    pub self_tests: Vec<SelfTest>,
    /// The tenant's ingest rate limit, if it has one.
    pub ingest_limit: Option<RateLimiter>,
}

/// Whether an attempt's instance may be kept for the tenant's next events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceUse {
    /// As the tenant's `limits.instance_reuse` says (real attempts).
    AsConfigured,
    /// A fresh instance, never kept (self-tests).
    Fresh,
}

impl Tenant {
    /// What one attempt of this tenant's plugin is given: its kv (through `storage`), `http`,
    /// its config and its limits. One definition for real attempts and self-tests.
    pub fn attempt_context(
        &self,
        storage: Arc<dyn Storage>,
        http: HttpCapability,
        instances: InstanceUse,
    ) -> AttemptContext {
        let limits = &self.limits;
        let (reuse, keep_warm) = match instances {
            InstanceUse::AsConfigured => (limits.instance_reuse, limits.max_concurrency),
            InstanceUse::Fresh => (1, 0),
        };
        AttemptContext {
            kv: KvTxn::new(&self.name, storage, self.kv_limits),
            http,
            config: self.config.clone(),
            log: LogCapture::new(&self.name, limits.log_bytes),
            timeout: Duration::from_millis(limits.timeout_ms),
            memory_bytes: (limits.memory_mib as usize) << 20,
            log_bytes_hint: limits.log_bytes,
            fuel: limits.fuel,
            reuse,
            keep_warm,
        }
    }
}

/// A token bucket: `rate` webhooks per second on average, `burst` at once. Shared by all of a
/// tenant's sources, so one flooded merchant is slowed at the door before it costs journal writes.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    /// Tokens left and when they were counted.
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl RateLimiter {
    /// `rate` per second, up to `burst` at once (at least 1).
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate,
            burst,
            state: std::sync::Mutex::new((burst, std::time::Instant::now())),
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.try_acquire_at(std::time::Instant::now())
    }

    fn try_acquire_at(&self, now: std::time::Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().expect("rate limiter lock");
        let (tokens, at) = *state;
        let tokens =
            (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

/// Every tenant, by name.
pub type TenantMap = HashMap<String, Arc<Tenant>>;

/// All tenants by name, replaceable as a whole on config reload.
#[derive(Default)]
pub struct Tenants(ArcSwap<TenantMap>);

impl Tenants {
    /// Builds every tenant from the config.
    pub fn from_config(config: &Config) -> Result<Tenants> {
        Ok(Tenants(ArcSwap::from_pointee(Tenants::build(config)?)))
    }

    /// Builds every tenant of `config` without installing them (a reload checks the whole new
    /// config before anything changes).
    pub fn build(config: &Config) -> Result<TenantMap> {
        let mut tenants = HashMap::new();
        for (name, t) in &config.tenants {
            let allow = AllowList::parse(&t.allowed_hosts)
                .with_context(|| format!("tenant {name}: allowed_hosts"))?;
            let sources = t
                .sources
                .iter()
                .map(|(s, cfg)| {
                    let metrics = crate::telemetry::SourceMetrics::new(name, s);
                    let source = providers::build(cfg, metrics)
                        .with_context(|| format!("tenant {name}, source {s}"))?;
                    Ok((s.clone(), source))
                })
                .collect::<Result<HashMap<_, _>>>()?;
            let self_tests = t
                .self_test
                .iter()
                .map(|case| crate::plugins::selftest::prepare(case, &sources))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("tenant {name}"))?;
            let l = t.limits.clone();
            tenants.insert(
                name.clone(),
                Arc::new(Tenant {
                    name: name.clone(),
                    plugin_path: t.plugin.clone(),
                    sources,
                    kv_limits: KvLimits {
                        max_value_bytes: l.kv_value_bytes,
                        max_keys: l.kv_max_keys,
                        max_write_bytes: l.kv_write_bytes,
                    },
                    http_limits: HttpLimits {
                        max_requests: l.http_requests,
                        timeout: Duration::from_millis(l.http_timeout_ms),
                        max_response_bytes: l.http_response_bytes,
                    },
                    limits: l,
                    allow: Arc::new(allow),
                    allow_private_networks: t.allow_private_networks,
                    config: ConfigValues::new(t.config.clone(), t.secrets.clone()),
                    retry: t.retry.clone(),
                    self_tests,
                    ingest_limit: t.limits.ingest_per_second.map(|rate| {
                        RateLimiter::new(rate, t.limits.ingest_burst.unwrap_or(rate.ceil() as u32))
                    }),
                }),
            );
        }
        Ok(tenants)
    }

    /// A tenant by name.
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        self.0.load().get(name).cloned()
    }

    /// Every tenant now configured.
    pub fn all(&self) -> Arc<TenantMap> {
        self.0.load_full()
    }

    /// Installs a new set of tenants; returns the previous one.
    pub fn replace(&self, next: TenantMap) -> Arc<TenantMap> {
        self.0.swap(Arc::new(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let limiter = RateLimiter::new(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.try_acquire_at(t0).is_ok());
        }
        let wait = limiter.try_acquire_at(t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // A tenth of a second later one more token has arrived, not more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.try_acquire_at(t1).is_ok());
        assert!(limiter.try_acquire_at(t1).is_err());
        // After a long pause the bucket is full again, never fuller.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.try_acquire_at(t2).is_ok());
        }
        assert!(limiter.try_acquire_at(t2).is_err());
    }
}

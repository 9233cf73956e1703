//! Plugin self-tests: webhooks an operator or merchant lists per tenant (`[[tenants.X.self_test]]`)
//! that every new version of the tenant's plugin must handle before it may replace the serving
//! one. A version that traps, times out, exceeds a limit, returns an error, or answers other than
//! expected is refused like a component that does not compile, and the previous version keeps
//! serving. Each case runs exactly like a real attempt (fresh instance, the tenant's limits, kv
//! reads of the tenant's real data) except that its kv writes are discarded and outbound HTTP is
//! refused, so a self-test has no effect outside the plugin.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{SelfTestConfig, SelfTestExpect};
use crate::event::NormalizedEvent;
use crate::providers::{Source, WebhookRequest};
use crate::runtime::{AttemptContext, LoadedPlugin, PluginOutcome, Runtime};
use crate::storage::StoredEvent;

/// One prepared case: the body already normalized by its source's provider.
#[derive(Debug, Clone)]
pub struct SelfTest {
    /// The case's file, to name it in errors.
    pub name: String,
    /// The source it is delivered as.
    pub source: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The normalized event the plugin gets.
    pub event: NormalizedEvent,
    /// What the plugin must answer.
    pub expect: SelfTestExpect,
}

/// Reads and normalizes a case, so that a broken case is reported when the config loads.
pub fn prepare(
    case: &SelfTestConfig,
    sources: &std::collections::HashMap<String, Source>,
) -> Result<SelfTest> {
    let name = case.file.display().to_string();
    let source = sources.get(&case.source).with_context(|| {
        format!(
            "self-test {name}: no source named {:?} in this tenant",
            case.source
        )
    })?;
    let body =
        std::fs::read(&case.file).with_context(|| format!("cannot read self-test {name}"))?;
    let payload: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("self-test {name} is not valid JSON"))?;
    let mut headers = HeaderMap::new();
    for (k, v) in &case.headers {
        headers.insert(
            HeaderName::try_from(k.as_str())
                .with_context(|| format!("self-test {name}: header name {k:?}"))?,
            HeaderValue::try_from(v.as_str())
                .with_context(|| format!("self-test {name}: header {k}"))?,
        );
    }
    let request = WebhookRequest {
        headers: &headers,
        body: &body,
        query: None,
        path_token: None,
        peer: None,
    };
    let event = source.provider.normalize(&request, &payload).map_err(|e| {
        anyhow!(
            "self-test {name} is not a valid {} payload: {e}",
            source.provider.name()
        )
    })?;
    Ok(SelfTest {
        name,
        source: case.source.clone(),
        body,
        event,
        expect: case.expect,
    })
}

/// Runs a tenant's self-tests against a candidate version.
pub struct SelfTester {
    runtime: Arc<Runtime>,
    handle: tokio::runtime::Handle,
}

impl SelfTester {
    /// Self-tests run on `handle`'s runtime (loads happen on blocking threads).
    pub fn new(runtime: Arc<Runtime>, handle: tokio::runtime::Handle) -> SelfTester {
        SelfTester { runtime, handle }
    }

    /// Runs every case of `tenant` against `plugin`, each with a context from `context` (which
    /// must discard kv writes and refuse outbound HTTP); the first failure is the error. Call
    /// from a blocking thread (it waits for the attempts).
    pub fn check(
        &self,
        tenant: &str,
        cases: &[SelfTest],
        plugin: &LoadedPlugin,
        context: impl Fn() -> AttemptContext,
    ) -> Result<()> {
        for case in cases {
            let event = StoredEvent {
                seq: 0,
                tenant: tenant.to_string(),
                source: case.source.clone(),
                received_at_ms: crate::now_ms(),
                body: case.body.clone(),
                event: case.event.clone(),
            };
            let cx = context();
            // The report's kv writes are dropped here: a self-test never commits.
            let report = self
                .handle
                .block_on(self.runtime.run(plugin, &event, 1, cx));
            let got = match &report.result {
                Ok(PluginOutcome::Done) => "done".to_string(),
                Ok(PluginOutcome::Skipped(reason)) => format!("skipped ({reason})"),
                Ok(PluginOutcome::RetryAfter(s)) => format!("retry after {s} s"),
                Err(message) => format!("error: {message}"),
            };
            let passed = match (case.expect, &report.result) {
                (_, Err(_)) => false,
                (SelfTestExpect::Ok, Ok(_)) => true,
                (SelfTestExpect::Done, Ok(PluginOutcome::Done)) => true,
                (SelfTestExpect::Skipped, Ok(PluginOutcome::Skipped(_))) => true,
                (SelfTestExpect::Retry, Ok(PluginOutcome::RetryAfter(_))) => true,
                _ => false,
            };
            if !passed {
                let logs: Vec<String> = report
                    .logs
                    .iter()
                    .rev()
                    .take(5)
                    .rev()
                    .map(|l| format!("[{}] {}", l.level, l.message))
                    .collect();
                bail!(
                    "version {} failed its self-test {}: expected {:?}, got {got}{}",
                    plugin.version,
                    case.name,
                    case.expect,
                    if logs.is_empty() {
                        String::new()
                    } else {
                        format!("; its last logs: {}", logs.join(" | "))
                    }
                );
            }
        }
        Ok(())
    }
}

//! Scale in tenants: one host with N tenants, each with its own plugin file (copies of `kv-set`
//! with distinct content, so N distinct components). Measures the time to ready (every plugin
//! loaded) with an empty precompiled cache and with a warm one, the resident memory once ready,
//! and the end-to-end rate with events spread over every tenant against all of them going to one
//! tenant, in the same run.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::{spawn_listening, target_dir, with_nonce, Process, Row, TOKEN};

/// Runs the whole figure for `count` tenants with `events` events per throughput phase.
pub fn tenants(count: usize, events: usize) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let original = std::fs::read(target_dir().join("wasm32-wasip2/release/kv_set.wasm"))?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let mut config = String::from(
        "listen = \"127.0.0.1:0\"\ndatabase = \"bench.db\"\ncache_dir = \"cache\"\nretention_hours = 0\n",
    );
    for t in 0..count {
        let file = plugins.join(format!("t{t}.wasm"));
        std::fs::write(&file, with_nonce(&original, 100_000 + t))?;
        config.push_str(&format!(
            "[tenants.t{t}]\nplugin = {file:?}\n[tenants.t{t}.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{TOKEN}\"\n"
        ));
    }
    std::fs::write(dir.path().join("hookhost.toml"), config)?;
    let start = || -> Result<(Process, String, Duration)> {
        let started = Instant::now();
        let mut command = Command::new(crate::hookhost_binary());
        command
            .args(["serve", "--config"])
            .arg(dir.path().join("hookhost.toml"))
            .env("RUST_LOG", "error");
        let (process, base) = spawn_listening(command, "hookhost listening on ")?;
        wait_ready(&base, Duration::from_secs(600))?;
        Ok((process, base, started.elapsed()))
    };

    let (cold_host, _, cold) = start()?;
    drop(cold_host);
    let (host, base, warm) = start()?;
    let rss_mib = hookhost_fixtures::rss_mib(host.0.id());
    eprintln!(
        "tenants: {count} ready in {:.1} s cold, {:.2} s warm; RSS {rss_mib:.0} MiB",
        cold.as_secs_f64(),
        warm.as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let (spread, one) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let one = rate(&client, &base, events, |_| "t0".to_string(), "one").await?;
        let spread = rate(&client, &base, events, |n| format!("t{}", n % count), "all").await?;
        anyhow::Ok((spread, one))
    })?;
    Ok(vec![
        Row {
            figure: format!("{count} tenants, each its own plugin: time to ready, warm precompiled cache (target ≤ 5 s)"),
            hookhost: format!("{:.2} s", warm.as_secs_f64()),
            baseline: format!("{:.1} s (empty cache: compiles all {count})", cold.as_secs_f64()),
            ratio: format!("{:.3}x", warm.as_secs_f64() / cold.as_secs_f64()),
        },
        Row {
            figure: format!("{count} tenants: resident memory once ready (target ≤ 1 GiB)"),
            hookhost: format!("{rss_mib:.0} MiB"),
            baseline: "1024 MiB (target)".into(),
            ratio: format!("{:.2}x", rss_mib / 1024.0),
        },
        Row {
            figure: format!("{count} tenants: end-to-end events/s, {events} events spread over all tenants vs all to one tenant"),
            hookhost: format!("{spread:.0}/s"),
            baseline: format!("{one:.0}/s (one tenant)"),
            ratio: format!("{:.2}x", spread / one),
        },
    ])
}

/// Polls `/readyz` until every tenant has its plugin.
fn wait_ready(base: &str, limit: Duration) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            let ready = client.get(format!("{base}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not ready after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Sends `events` webhooks from 32 connections, tenant chosen by `tenant_of(n)`, and returns
/// the rate from the first send to the last completion (every attempt `done`, from /metrics).
async fn rate(
    client: &reqwest::Client,
    base: &str,
    events: usize,
    tenant_of: impl Fn(usize) -> String,
    tag: &str,
) -> Result<f64> {
    let done_before = done_attempts(client, base).await?;
    let started = Instant::now();
    crate::send_webhooks(client, base, events, 32, tenant_of, tag).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while done_attempts(client, base).await? < done_before + events as f64 {
        if Instant::now() > deadline {
            bail!("{tag}: events did not complete within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Attempts ended `done`, over all tenants, from `/metrics`.
async fn done_attempts(client: &reqwest::Client, base: &str) -> Result<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("hookhost_attempts_total{") && l.contains("outcome=\"done\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

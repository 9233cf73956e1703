//! Merchant self-service on a release host (SQLite, default durability), each figure against a
//! baseline of the same run:
//!
//! - deploy → serving, Rust and JavaScript: `PUT /admin/tenants/{t}/plugin` with new content
//!   (compiled, self-tested, stored, installed; the answer comes when it serves), against the
//!   same upload again (a compile-cache hit: what is left is upload, checks and store);
//! - shadow's cost: the active attempts' p50/p99 duration with a shadow on every attempt,
//!   between two phases without one (the noise band), at a paced rate;
//! - backtest over `events` journaled events: events/s, against the rate the host handled the
//!   same events live.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    percentile, send_fincart, send_webhooks, serve_host, target_dir, with_nonce, Row, ADMIN, TOKEN,
};

/// Runs the three measurements: `events` for the backtest, `paced` events per shadow phase.
pub fn merchant(events: usize, paced: usize) -> Result<Vec<Row>> {
    crate::languages::build_script_plugins()?;
    let dir = tempfile::tempdir()?;
    let rust = std::fs::read(target_dir().join("wasm32-wasip2/release/kv_set.wasm"))?;
    let js = std::fs::read(target_dir().join("script-plugins/js-kv-set.wasm"))?;
    let live = dir.path().join("live.wasm");
    std::fs::write(&live, &rust)?;
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"bench.db\"\ncache_dir = \"cache\"\n[admin]\ntoken = \"{ADMIN}\"\n\
         [tenants.bench]\nplugin = {live:?}\nlimits = {{ kv_max_keys = 100000000 }}\n\
         [tenants.bench.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{TOKEN}\"\n"
    );
    let (_host, base) = serve_host(dir.path(), &config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = reqwest::Client::new();
    runtime.block_on(async {
        wait_serving(&client, &base).await?;
        let mut rows = Vec::new();
        for (lang, component, count) in [("Rust", &rust, 5), ("JavaScript", &js, 3)] {
            let mut fresh = Vec::new();
            let mut again = Vec::new();
            for i in 1..=count {
                let bytes = with_nonce(component, 1000 + i);
                fresh.push(deploy(&client, &base, bytes.clone()).await?);
                again.push(deploy(&client, &base, bytes).await?);
            }
            let (fresh, again) = (median(fresh), median(again));
            eprintln!("{lang} deploys (ms): new content {fresh:.0}, again {again:.0}");
            rows.push(Row {
                figure: format!(
                    "deploy → serving, {lang} ({:.1} MB, new content: compile + self-tests + store), median of {count}",
                    component.len() as f64 / 1e6
                ),
                hookhost: format!("{fresh:.0} ms"),
                baseline: format!("{again:.0} ms (same upload again: compile cached)"),
                ratio: format!("{:.1}x", fresh / again.max(0.001)),
            });
        }
        // Serve the Rust plugin for the rest.
        deploy(&client, &base, with_nonce(&rust, 1)).await?;
        rows.extend(shadow_cost(&client, &base, &rust, paced).await?);
        rows.extend(backtest(&client, &base, &rust, events).await?);
        Ok(rows)
    })
}

async fn wait_serving(client: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = crate::admin(client, base, "/admin/tenants").await?;
        if t["tenants"][0]["plugin"]["version"].is_string() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the plugin did not load");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deploys `bytes`; the milliseconds until the answer (the version serves when it comes).
async fn deploy(client: &reqwest::Client, base: &str, bytes: Vec<u8>) -> Result<f64> {
    let started = Instant::now();
    let r = client
        .put(format!("{base}/admin/tenants/bench/plugin"))
        .bearer_auth(ADMIN)
        .body(bytes)
        .send()
        .await?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    if !r.status().is_success() {
        bail!("deploy refused: {} {}", r.status(), r.text().await?);
    }
    Ok(elapsed)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(&values, 0.5)
}

/// Sends `count` webhooks at ~`rate`/s (tag `tag`) and waits until all are done; the active
/// attempts' durations (µs), sorted.
async fn paced_phase(
    client: &reqwest::Client,
    base: &str,
    count: usize,
    rate: f64,
    tag: &str,
) -> Result<Vec<f64>> {
    let mut seqs = Vec::with_capacity(count);
    let started = Instant::now();
    for n in 0..count {
        let due = started + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let body = format!(
            r#"{{"orderId":"{tag}-{n}","status":"processing","subStatus":"picked up","statusUpdatedDate":{},"action":"Order Status Changed"}}"#,
            1_700_000_000_000u64 + n as u64
        );
        seqs.push(send_fincart(client, base, body).await?);
    }
    let mut durations = Vec::with_capacity(count);
    for seq in seqs {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let e = crate::admin(client, base, &format!("/admin/events/{seq}")).await?;
            if e["state"] == "done" {
                durations.push(
                    e["attempts_detail"][0]["duration_us"]
                        .as_f64()
                        .unwrap_or(0.0),
                );
                break;
            }
            if Instant::now() > deadline {
                bail!("event {seq} did not finish");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    durations.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(durations)
}

/// The active attempts' p50/p99 with a shadow on every attempt, against the same without one
/// (measured before and after, to show the noise).
async fn shadow_cost(
    client: &reqwest::Client,
    base: &str,
    rust: &[u8],
    paced: usize,
) -> Result<Vec<Row>> {
    const RATE: f64 = 200.0;
    let before = paced_phase(client, base, paced, RATE, "plain-a").await?;
    let staged = client
        .put(format!("{base}/admin/tenants/bench/plugin?activate=false"))
        .bearer_auth(ADMIN)
        .body(with_nonce(rust, 2))
        .send()
        .await?
        .json::<Value>()
        .await?;
    let number = staged["deploy"]["number"].as_u64().context("not staged")?;
    let r = client
        .put(format!("{base}/admin/tenants/bench/plugin/shadow"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "version": number, "share": 1.0 }))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("shadow refused: {}", r.text().await?);
    }
    let shadowed = paced_phase(client, base, paced, RATE, "shadowed").await?;
    let status = crate::admin(client, base, "/admin/tenants/bench/plugin/shadow").await?;
    eprintln!("shadow counts: {}", status["counts"]);
    client
        .delete(format!("{base}/admin/tenants/bench/plugin/shadow"))
        .bearer_auth(ADMIN)
        .send()
        .await?;
    let after = paced_phase(client, base, paced, RATE, "plain-b").await?;
    let p = |d: &[f64], q: f64| percentile(d, q);
    eprintln!(
        "active attempt µs p50/p99: before {:.0}/{:.0}, shadowed {:.0}/{:.0}, after {:.0}/{:.0}",
        p(&before, 0.5),
        p(&before, 0.99),
        p(&shadowed, 0.5),
        p(&shadowed, 0.99),
        p(&after, 0.5),
        p(&after, 0.99)
    );
    let band = |q: f64| {
        (
            p(&before, q).min(p(&after, q)),
            p(&before, q).max(p(&after, q)),
        )
    };
    let mut rows = Vec::new();
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (low, high) = band(q);
        rows.push(Row {
            figure: format!(
                "active attempt {name} with a shadow on every attempt ({paced} events at {RATE:.0}/s)"
            ),
            hookhost: format!("{:.0} µs", p(&shadowed, q)),
            baseline: format!("{low:.0}–{high:.0} µs (no shadow, before and after)"),
            ratio: format!("{:.2}x", p(&shadowed, q) / ((low + high) / 2.0).max(1.0)),
        });
    }
    Ok(rows)
}

/// Journals `events` events (handled live: the baseline rate), then backtests a candidate over
/// them.
async fn backtest(
    client: &reqwest::Client,
    base: &str,
    rust: &[u8],
    events: usize,
) -> Result<Vec<Row>> {
    let started = Instant::now();
    send_webhooks(client, base, events, 32, |_| "bench".into(), "bt").await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let c = crate::admin(client, base, "/admin/tenants/bench/counts").await?;
        let waiting = ["pending", "running"]
            .iter()
            .map(|s| c["counts"][s].as_u64().unwrap_or(0))
            .sum::<u64>();
        if waiting == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the live events did not finish");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live_rate = events as f64 / started.elapsed().as_secs_f64();
    // Only the events just sent: those received since the send began.
    let since = crate::now_ms() - started.elapsed().as_millis() as u64 - 1000;
    let r: Value = client
        .post(format!(
            "{base}/admin/tenants/bench/backtests?since_ms={since}&limit={events}"
        ))
        .bearer_auth(ADMIN)
        .body(with_nonce(rust, 3))
        .send()
        .await?
        .json()
        .await?;
    let id = r["id"].as_str().context("no backtest id")?.to_string();
    let report = loop {
        let report = crate::admin(
            client,
            base,
            &format!("/admin/tenants/bench/backtests/{id}"),
        )
        .await?;
        match report["state"].as_str() {
            Some("finished") => break report,
            Some("failed") => bail!("the backtest failed: {}", report["error"]),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let rate = report["events_per_second"].as_f64().unwrap_or(0.0);
    eprintln!(
        "backtest: {} events, same {}, differs {}, inconclusive {}, {:.0}/s in {} ms; live {live_rate:.0}/s",
        report["events"], report["same"], report["differs"], report["inconclusive"], rate, report["elapsed_ms"]
    );
    if report["events"].as_u64() != Some(events as u64) {
        bail!("the backtest ran {} of {events} events", report["events"]);
    }
    Ok(vec![Row {
        figure: format!(
            "backtest over {events} journaled events (candidate and serving version both run dry per event), events/s"
        ),
        hookhost: format!("{rate:.0}/s"),
        baseline: format!("{live_rate:.0}/s (the same events handled live, from the first send)"),
        ratio: format!("{:.2}x", rate / live_rate.max(1.0)),
    }])
}

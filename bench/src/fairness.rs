//! Fairness: tenant B's latency while tenant A is flooded and its plugin waits on a slow backend,
//! against B's latency with A idle, measured in the same run.
//!
//! Both tenants run the `order-sync` example plugin; each event is a delivered order, so the
//! plugin makes one outbound call to its tenant's backend. A's backend answers after 250 ms (its
//! plugin "sleeps on a slow outbound call"); B's answers at once and records when each order's
//! call arrived. B's latency is from sending the webhook to that call: ingest, journal, queueing,
//! dispatch and the plugin, as a merchant sees it. A third run limits A's ingest (config reload)
//! to show the operator's remedy.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::{percentile, spawn_listening, target_dir, Row, ADMIN, TOKEN};

/// How long A's backend takes to answer.
const SLOW_BACKEND: Duration = Duration::from_millis(250);

/// Arrival times of B's backend calls, by order.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// Runs B's steady load twice (A idle, A flooding) and compares B's latencies.
pub fn fairness(events: usize) -> Result<Vec<Row>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let arrivals: Arrivals = Arc::default();
    let backend = runtime.block_on(start_backends(arrivals.clone()))?;
    let dir = tempfile::tempdir()?;
    let plugin = target_dir().join("wasm32-wasip2/release/order_sync.wasm");
    let config = |flood_limit: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"bench.db\"\ncache_dir = \"cache\"\n\
         [admin]\ntoken = \"{ADMIN}\"\n\
         [tenants.flooded]\nplugin = {plugin:?}\nallowed_hosts = [\"{backend}\"]\n{flood_limit}\
         config = {{ backend-url = \"http://{backend}/slow\" }}\n\
         [tenants.flooded.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{TOKEN}\"\n\
         [tenants.steady]\nplugin = {plugin:?}\nallowed_hosts = [\"{backend}\"]\n\
         config = {{ backend-url = \"http://{backend}/fast\" }}\n\
         [tenants.steady.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{TOKEN}\"\n"
        )
    };
    std::fs::write(dir.path().join("hookhost.toml"), config(""))?;
    let mut command = Command::new(crate::hookhost_binary());
    command
        .args(["serve", "--config"])
        .arg(dir.path().join("hookhost.toml"))
        .env("RUST_LOG", "error");
    let (_host, base) = spawn_listening(command, "hookhost listening on ")?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        wait_ready(&client, &base).await?;
        // Warm both tenants' plugins.
        steady_load(&client, &base, &arrivals, "warm", 20).await?;
        let idle = steady_load(&client, &base, &arrivals, "idle", events).await?;

        let (flooded, sent, _) = with_flood(&client, &base, "a", async {
            steady_load(&client, &base, &arrivals, "flooded", events).await
        })
        .await?;
        // The operator's remedy: A limited to 200 webhooks/s (config reload), the rest get 429.
        std::fs::write(
            dir.path().join("hookhost.toml"),
            config("limits = { ingest_per_second = 200 }\n"),
        )?;
        let reload = client
            .post(format!("{base}/admin/config/reload"))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        if !reload.status().is_success() {
            bail!("config reload refused: {}", reload.text().await?);
        }
        let (limited, sent_limited, accepted_limited) = with_flood(&client, &base, "l", async {
            steady_load(&client, &base, &arrivals, "limited", events).await
        })
        .await?;
        eprintln!(
            "fairness: B p50/p99 idle {:.1}/{:.1} ms; A flooding ({sent} webhooks) {:.1}/{:.1} ms; \
             A flooding limited to 200/s ({sent_limited} sent, {accepted_limited} accepted) {:.1}/{:.1} ms",
            idle.0, idle.1, flooded.0, flooded.1, limited.0, limited.1
        );
        anyhow::Ok(vec![
            Row {
                figure: format!(
                    "fairness: B's p99, webhook sent → plugin's backend call ({events} events at 50/s), A flooded ({sent} webhooks, plugin waits 250 ms on its backend) vs A idle"
                ),
                hookhost: format!("{:.1} ms", flooded.1),
                baseline: format!("{:.1} ms", idle.1),
                ratio: format!("{:.2}x", flooded.1 / idle.1.max(0.001)),
            },
            Row {
                figure: "fairness: B's p50, A flooded vs A idle".into(),
                hookhost: format!("{:.1} ms", flooded.0),
                baseline: format!("{:.1} ms", idle.0),
                ratio: format!("{:.2}x", flooded.0 / idle.0.max(0.001)),
            },
            Row {
                figure: format!(
                    "fairness: B's p99, A flooded but limited to 200/s ({sent_limited} sent, {accepted_limited} accepted, the rest 429) vs A idle"
                ),
                hookhost: format!("{:.1} ms", limited.1),
                baseline: format!("{:.1} ms", idle.1),
                ratio: format!("{:.2}x", limited.1 / idle.1.max(0.001)),
            },
        ])
    })
}

/// Floods A from 32 connections while `measure` runs (after 2 s for A's backlog to build);
/// returns what `measure` returned, the webhooks sent to A and how many A accepted.
async fn with_flood<T>(
    client: &reqwest::Client,
    base: &str,
    tag: &str,
    measure: impl std::future::Future<Output = Result<T>>,
) -> Result<(T, u64, u64)> {
    let flooding = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut flooders = Vec::new();
    for f in 0..32 {
        let (client, base, flooding, sent, accepted) = (
            client.clone(),
            base.to_string(),
            flooding.clone(),
            sent.clone(),
            accepted.clone(),
        );
        let tag = tag.to_string();
        flooders.push(tokio::spawn(async move {
            let mut n = 0u64;
            while flooding.load(Ordering::Relaxed) {
                if send(&client, &base, "flooded", &format!("{tag}-{f}-{n}"))
                    .await
                    .is_ok()
                {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let measured = measure.await;
    flooding.store(false, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    Ok((
        measured?,
        sent.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed),
    ))
}

/// A's slow backend (`/slow`) and B's recording one (`/fast`) on one loopback port.
async fn start_backends(arrivals: Arrivals) -> Result<String> {
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::post(|| async {
                tokio::time::sleep(SLOW_BACKEND).await;
                "ok"
            }),
        )
        .route(
            "/fast",
            axum::routing::post(move |body: axum::body::Bytes| {
                let arrivals = arrivals.clone();
                async move {
                    let at = Instant::now();
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                        if let Some(order) = v["order"].as_str() {
                            arrivals.lock().unwrap().insert(order.to_string(), at);
                        }
                    }
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the host did not become ready (plugins not loaded)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A delivered-order webhook for `tenant`; returns when it is acknowledged.
async fn send(client: &reqwest::Client, base: &str, tenant: &str, order: &str) -> Result<()> {
    let body = format!(
        r#"{{"orderId":"{order}","status":"successful","subStatus":"delivered to customer","statusUpdatedDate":1738337000000,"action":"Order Status Changed"}}"#
    );
    let response = client
        .post(format!("{base}/hooks/{tenant}/fincart"))
        .header("authorization", TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("{tenant}: webhook refused with {}", response.status());
    }
    Ok(())
}

/// Sends `count` webhooks to B at 50 per second and returns B's (p50, p99) latency in ms, from
/// sending each webhook to the plugin's call reaching B's backend.
async fn steady_load(
    client: &reqwest::Client,
    base: &str,
    arrivals: &Arrivals,
    phase: &str,
    count: usize,
) -> Result<(f64, f64)> {
    let mut acked = Vec::with_capacity(count);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..count {
        tick.tick().await;
        let order = format!("b-{phase}-{n}");
        let sent_at = Instant::now();
        send(client, base, "steady", &order).await?;
        acked.push((order, sent_at));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let arrived = {
            let map = arrivals.lock().unwrap();
            acked.iter().filter(|(o, _)| map.contains_key(o)).count()
        };
        if arrived == count {
            break;
        }
        if Instant::now() > deadline {
            bail!("{phase}: only {arrived} of {count} of B's events completed within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let map = arrivals.lock().unwrap();
    let mut latencies: Vec<f64> = acked
        .iter()
        .map(|(order, at)| map[order].saturating_duration_since(*at).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((percentile(&latencies, 0.5), percentile(&latencies, 0.99)))
}

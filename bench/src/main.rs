//! hookhost's benchmarks. Every figure is a ratio against a baseline measured in the same run on
//! the same machine (shared, noisy machines make lone absolute numbers meaningless). Loopback only,
//! bounded in time. Run: `cargo run -p hookhost-bench --release -- all`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hookhost_fixtures::{target_dir, workspace};
use serde_json::Value;

mod backlog;
mod dispatch;
mod fairness;
mod languages;
mod merchant;
mod replicas;
mod tenants;

const TOKEN: &str = "bench-token";
const ADMIN: &str = "bench-admin";

#[derive(Parser)]
#[command(about = "hookhost benchmarks (ratios against baselines measured in the same run)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every benchmark.
    All {
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// Ingest (authenticated + journaled acks vs bare axum) and end-to-end throughput.
    Ingest {
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// Journal with `durability = "fast"` (no fsync per commit) instead of the default.
        #[arg(long)]
        fast: bool,
        /// Diagnose ingest alone: no plugin is loaded, so events are journaled and wait (nothing
        /// is dispatched, and the end-to-end figures are skipped).
        #[arg(long)]
        ingest_only: bool,
        /// `runtime.decommit_batch` for hookhost (default 1: memory returned after every attempt).
        #[arg(long, default_value_t = 1)]
        decommit_batch: usize,
    },
    /// Hot reload latency: a new plugin file renamed into place → the first event handled by it.
    Reload {
        /// How many reloads to measure.
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
    /// Dispatch overhead: hookhost's runtime vs bare wasmtime vs native, per event.
    Dispatch {
        /// Events per variant.
        #[arg(long, default_value_t = 5000)]
        events: usize,
    },
    /// Scale in tenants: time to ready (cold and warm cache), RSS, spread vs one-tenant rate.
    Tenants {
        /// How many tenants (each with its own plugin file).
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Events per throughput phase.
        #[arg(long, default_value_t = 5000)]
        events: usize,
    },
    /// Fairness: tenant B's latency with tenant A flooded (slow plugin) vs A idle.
    Fairness {
        /// B's events per phase (sent at 50/s).
        #[arg(long, default_value_t = 500)]
        events: usize,
    },
    /// Guest languages: per-event cost of the same reaction in Rust, JavaScript and Python (fresh
    /// and reused instances), and compile vs cached-load time of each component.
    Languages {
        /// Events per variant.
        #[arg(long, default_value_t = 1000)]
        events: usize,
    },
    /// Backlog: resident memory with `events` waiting events (plugin missing) and after a
    /// restart, and the restart's time to listening, vs an empty journal.
    Backlog {
        /// Waiting events.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
    /// Replicas: claim + finish, ingest and end to end on PostgreSQL with 1 and 3 replicas, vs
    /// single-node SQLite, with CPU per event (starts its own PostgreSQL server; not in `all`).
    Replicas {
        /// Seconds of load per end-to-end measurement.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Concurrent connections, split across the replicas.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// Events of the claim + finish figure.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
    },
    /// Merchant self-service: deploy → serving (Rust, JavaScript), a shadow's cost on the active
    /// attempts' latency, a backtest's events/s.
    Merchant {
        /// Journaled events the backtest runs over.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Events per shadow-cost phase (sent at 200/s).
        #[arg(long, default_value_t = 2000)]
        paced: usize,
    },
    /// The baseline: a bare axum server answering 200 to every POST (used by `ingest`).
    #[command(hide = true)]
    BareServer,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::BareServer => bare_server(),
        Cmd::Reload { count } => {
            prepare()?;
            print_table(&reload(count)?);
            Ok(())
        }
        Cmd::Dispatch { events } => {
            prepare()?;
            print_table(&dispatch::dispatch(events)?);
            Ok(())
        }
        Cmd::Tenants { count, events } => {
            prepare()?;
            print_table(&tenants::tenants(count, events)?);
            Ok(())
        }
        Cmd::Fairness { events } => {
            prepare()?;
            print_table(&fairness::fairness(events)?);
            Ok(())
        }
        Cmd::Backlog { events } => {
            prepare()?;
            print_table(&backlog::backlog(events)?);
            Ok(())
        }
        Cmd::Replicas {
            secs,
            connections,
            events,
        } => {
            prepare()?;
            print_table(&replicas::replicas(secs, connections, events)?);
            Ok(())
        }
        Cmd::Merchant { events, paced } => {
            prepare()?;
            print_table(&merchant::merchant(events, paced)?);
            Ok(())
        }
        Cmd::Languages { events } => {
            prepare()?;
            print_table(&languages::languages(events)?);
            Ok(())
        }
        Cmd::All { secs } => {
            prepare()?;
            let mut rows = dispatch::dispatch(5000)?;
            rows.extend(ingest(secs, 64, false, false, 1)?);
            rows.extend(reload(20)?);
            rows.extend(fairness::fairness(500)?);
            rows.extend(tenants::tenants(1000, 5000)?);
            rows.extend(languages::languages(1000)?);
            print_table(&rows);
            Ok(())
        }
        Cmd::Ingest {
            secs,
            connections,
            fast,
            ingest_only,
            decommit_batch,
        } => {
            prepare()?;
            let rows = ingest(secs, connections, fast, ingest_only, decommit_batch)?;
            print_table(&rows);
            Ok(())
        }
    }
}

/// One line of the results table.
struct Row {
    figure: String,
    hookhost: String,
    baseline: String,
    ratio: String,
}

fn print_table(rows: &[Row]) {
    println!("\n| figure | hookhost | baseline | ratio |\n|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.figure, r.hookhost, r.baseline, r.ratio
        );
    }
}

/// The host binary under test: `$HOOKHOST_BENCH_BIN` (to compare another build, e.g. an older
/// commit's, in the same run conditions), else the release build of this tree.
fn hookhost_binary() -> PathBuf {
    std::env::var_os("HOOKHOST_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/hookhost"))
}

/// Runs `program args` (in the workspace, its output shown unless `quiet`); `failure` says what
/// did not work.
fn run_step(program: &str, args: &[&str], quiet: bool, failure: &str) -> Result<()> {
    let mut command = Command::new(program);
    command.current_dir(workspace()).args(args);
    if quiet {
        command.stdout(Stdio::null());
    }
    if !command.status()?.success() {
        bail!("{failure}");
    }
    Ok(())
}

/// Builds the release host and the benchmark plugins, and makes sure `wrk` is installed.
fn prepare() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_step(
        &cargo,
        &["build", "--release", "-p", "hookhost"],
        false,
        "building the release host failed",
    )?;
    run_step(
        "rustup",
        &["target", "add", "wasm32-wasip2"],
        true,
        "cannot install the wasm32-wasip2 target",
    )?;
    run_step(
        &cargo,
        &[
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "kv-set",
            "-p",
            "order-sync",
        ],
        false,
        "building the benchmark plugin failed",
    )?;
    // The Extism peer of figure 1 is a core module (Extism's ABI), not a component.
    run_step(
        "rustup",
        &["target", "add", "wasm32-unknown-unknown"],
        true,
        "cannot install the wasm32-unknown-unknown target",
    )?;
    run_step(
        &cargo,
        &[
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "extism-kv-set",
        ],
        false,
        "building the Extism benchmark plugin failed",
    )?;
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("installing wrk (Debian package) as the load generator");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-qq", "wrk"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            bail!("wrk is needed: install it with `apt-get install wrk`");
        }
    }
    Ok(())
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `events` Fincart webhooks (order `<tag>-<n>`, each distinct) from `connections`
/// connections, webhook `n` to tenant `tenant_of(n)`; fails unless every one is accepted.
async fn send_webhooks(
    client: &reqwest::Client,
    base: &str,
    events: usize,
    connections: usize,
    tenant_of: impl Fn(usize) -> String,
    tag: &str,
) -> Result<()> {
    send_webhooks_of(client, base, events, events, connections, tenant_of, tag).await
}

/// Like [`send_webhooks`], over `orders` orders: webhook `n` is a status change of order
/// `<tag>-<n % orders>` (each webhook a distinct event).
async fn send_webhooks_of(
    client: &reqwest::Client,
    base: &str,
    events: usize,
    orders: usize,
    connections: usize,
    tenant_of: impl Fn(usize) -> String,
    tag: &str,
) -> Result<()> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tenants: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new((0..events).map(tenant_of).collect());
    let mut senders = Vec::new();
    for _ in 0..connections {
        let (client, base, next, tenants, tag) = (
            client.clone(),
            base.to_string(),
            next.clone(),
            tenants.clone(),
            tag.to_string(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= tenants.len() {
                    return anyhow::Ok(());
                }
                let (order, at) = (n % orders, 1_700_000_000_000u64 + n as u64);
                let body = format!(
                    r#"{{"orderId":"{tag}-{order}","status":"processing","subStatus":"picked up","statusUpdatedDate":{at},"action":"Order Status Changed"}}"#
                );
                let r = client
                    .post(format!("{base}/hooks/{}/fincart", tenants[n]))
                    .header("authorization", TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("webhook refused: {}", r.status());
                }
            }
        }));
    }
    for s in senders {
        s.await??;
    }
    Ok(())
}

/// Starts a child that prints `<prefix><address>` on stdout once it listens (its stderr
/// discarded); returns it, killed when dropped, and that address.
/// Posts one Fincart webhook to the `bench` tenant; the journal sequence of the event.
async fn send_fincart(client: &reqwest::Client, base: &str, body: String) -> Result<i64> {
    let r: Value = client
        .post(format!("{base}/hooks/bench/fincart"))
        .header("authorization", TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?
        .json()
        .await?;
    r["event"].as_i64().context("not accepted")
}

/// Writes `config` to `dir/hookhost.toml` and starts a release host serving it (warnings only).
fn serve_host(dir: &std::path::Path, config: &str) -> Result<(Process, String)> {
    std::fs::write(dir.join("hookhost.toml"), config)?;
    let mut command = Command::new(hookhost_binary());
    command
        .args(["serve", "--config"])
        .arg(dir.join("hookhost.toml"))
        .env("RUST_LOG", "warn");
    spawn_listening(command, "hookhost listening on ")
}

fn spawn_listening(mut command: Command, prefix: &str) -> Result<(Process, String)> {
    command.stderr(Stdio::null());
    let (child, addr) =
        hookhost_fixtures::spawn_listening(command, prefix, Duration::from_secs(60))
            .map_err(anyhow::Error::msg)?;
    Ok((Process(child), addr))
}

fn bare_server() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/hooks/{tenant}/{source}",
            axum::routing::post(|_body: axum::body::Bytes| async {
                axum::Json(serde_json::json!({ "status": "accepted", "event": 0 }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("bare listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// What wrk measured.
struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
}

fn wrk(url: &str, connections: u32, secs: u64) -> Result<Load> {
    wrk_tagged(url, connections, secs, "")
}

/// [`wrk`], its webhooks' ids starting with `tag` (several `wrk` at once send distinct ones).
fn wrk_tagged(url: &str, connections: u32, secs: u64, tag: &str) -> Result<Load> {
    let script = workspace().join("bench/src/fincart.lua");
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .args(["--", tag])
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let number = |line: &str| -> Option<f64> { line.split_whitespace().last()?.parse().ok() };
    let duration_ms = |s: &str| -> Option<f64> {
        let s = s.trim();
        if let Some(v) = s.strip_suffix("us") {
            v.parse::<f64>().ok().map(|v| v / 1000.0)
        } else if let Some(v) = s.strip_suffix("ms") {
            v.parse().ok()
        } else if let Some(v) = s.strip_suffix('s') {
            v.parse::<f64>().ok().map(|v| v * 1000.0)
        } else {
            None
        }
    };
    let mut load = Load {
        requests_per_sec: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        requests: 0,
        errors: 0,
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Requests/sec:") {
            load.requests_per_sec = number(t).unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            load.p50_ms = duration_ms(v).unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("99%") {
            load.p99_ms = duration_ms(v).unwrap_or(0.0);
        } else if t.contains("requests in") {
            load.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if t.starts_with("Non-2xx or 3xx responses:") || t.starts_with("Socket errors:") {
            load.errors += t
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if load.requests_per_sec == 0.0 {
        bail!(
            "could not read wrk's output:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(load)
}

async fn admin(client: &reqwest::Client, base: &str, path: &str) -> Result<Value> {
    let r = client
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await?;
    Ok(r.json().await?)
}

/// A copy of a component with a custom section appended (`hookhost-bench-nonce`), so every
/// reload is new content that must be compiled (a realistic edit), not a cache hit.
fn with_nonce(component: &[u8], nonce: usize) -> Vec<u8> {
    let name = b"hookhost-bench-nonce";
    let payload = nonce.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // < 128: one LEB128 byte
    out.extend_from_slice(&section);
    out
}

/// Hot reload latency: the plugin file is replaced (written aside, renamed into place, as cargo
/// and editors do) with new content; events are sent one after another until one is handled by
/// the new version. The time from the rename to that event's completion is the reload latency.
/// The baseline is the round trip of one event when nothing changes (the floor of this method).
fn reload(count: usize) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("live.wasm");
    let original = std::fs::read(target_dir().join("wasm32-wasip2/release/kv_set.wasm"))?;
    std::fs::write(&live, with_nonce(&original, 0))?;
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"bench.db\"\ncache_dir = \"cache\"\n[admin]\ntoken = \"{ADMIN}\"\n\
         [tenants.bench]\nplugin = {live:?}\n[tenants.bench.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{TOKEN}\"\n"
    );
    let (_host, base) = serve_host(dir.path(), &config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = reqwest::Client::new();
    let version = || async {
        let t = admin(&client, &base, "/admin/tenants").await?;
        anyhow::Ok(
            t["tenants"][0]["plugin"]["version"]
                .as_str()
                .map(str::to_string),
        )
    };
    // Sends one event, waits for it, returns (plugin version that handled it, its finish time).
    let mut counter = 0u64;
    let mut one_event = || {
        counter += 1;
        let (client, base) = (client.clone(), base.clone());
        let order = format!("r-{counter}");
        async move {
            let body = format!(
                r#"{{"orderId":"{order}","status":"pending","statusUpdatedDate":1,"action":"Order Status Changed"}}"#
            );
            let seq = send_fincart(&client, &base, body).await?;
            loop {
                let e = admin(&client, &base, &format!("/admin/events/{seq}")).await?;
                if e["state"] == "done" {
                    let attempt = &e["attempts_detail"][0];
                    return anyhow::Ok((
                        attempt["plugin_version"].as_str().unwrap_or("").to_string(),
                        e["finished_at_ms"].as_u64().unwrap_or(0),
                    ));
                }
                if e["state"] == "pending" && e["attempts"].as_u64() == Some(0) {
                    tokio::task::yield_now().await;
                }
            }
        }
    };
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        while version().await?.is_none() {
            if Instant::now() > deadline {
                bail!("the plugin did not load");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut steady = Vec::new();
        for _ in 0..20 {
            let t0 = Instant::now();
            one_event().await?;
            steady.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let mut latencies = Vec::new();
        for i in 1..=count {
            let before = version().await?.unwrap_or_default();
            let tmp = dir.path().join("live.wasm.tmp");
            std::fs::write(&tmp, with_nonce(&original, i))?;
            let renamed_ms = now_ms();
            std::fs::rename(&tmp, &live)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (handled_by, finished_ms) = one_event().await?;
                if !handled_by.is_empty() && handled_by != before {
                    latencies.push(finished_ms.saturating_sub(renamed_ms) as f64);
                    break;
                }
                if Instant::now() > deadline {
                    bail!("reload {i} never took effect");
                }
            }
        }
        steady.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut sorted = latencies.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!("reload latencies (ms): {latencies:?}");
        let median = percentile(&sorted, 0.5);
        let steady_median = percentile(&steady, 0.5);
        anyhow::Ok(vec![
            Row {
                figure: format!("hot reload → first event on the new version, median of {count} (new content each time)"),
                hookhost: format!("{median:.0} ms"),
                baseline: format!("{steady_median:.1} ms (one event, no reload)"),
                ratio: format!("{:.1}x", median / steady_median.max(0.001)),
            },
            Row {
                figure: "hot reload, max".into(),
                hookhost: format!("{:.0} ms", sorted.last().copied().unwrap_or(0.0)),
                baseline: "-".into(),
                ratio: "-".into(),
            },
        ])
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Ingest: the same wrk load (authenticated Fincart webhooks, each unique) against a bare axum
/// 200-OK server and against hookhost (durable journal, dispatch to a wasm plugin running at the
/// same time). End to end: from the first request until every accepted event has completed in the
/// plugin, and each event's time from acceptance to completion.
fn ingest(
    secs: u64,
    connections: u32,
    fast: bool,
    ingest_only: bool,
    decommit_batch: usize,
) -> Result<Vec<Row>> {
    let (bare_process, bare) = spawn_listening(
        {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("bare-server");
            c
        },
        "bare listening on ",
    )?;
    eprintln!("baseline: bare axum at {bare}, {connections} connections, {secs} s");
    let baseline = wrk(&format!("{bare}/hooks/bench/fincart"), connections, secs)?;
    drop(bare_process);

    let dir = tempfile::tempdir()?;
    let plugin = match ingest_only {
        true => dir.path().join("no-plugin-events-wait.wasm"),
        false => target_dir().join("wasm32-wasip2/release/kv_set.wasm"),
    };
    let durability = if fast { "fast" } else { "durable" };
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"bench.db\"\ndurability = \"{durability}\"\n\
         [runtime]\ndecommit_batch = {decommit_batch}\n[admin]\ntoken = \"{ADMIN}\"\n\
         [tenants.bench]\nplugin = {plugin:?}\nlimits = {{ kv_max_keys = 100000000 }}\n[tenants.bench.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{TOKEN}\"\n"
    );
    let (_host, base) = serve_host(dir.path(), &config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = reqwest::Client::new();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let tenants = admin(&client, &base, "/admin/tenants").await?;
            let plugin = &tenants["tenants"][0]["plugin"];
            if plugin["version"].is_string() || (ingest_only && plugin["last_error"].is_string()) {
                return Ok::<_, anyhow::Error>(());
            }
            if Instant::now() > deadline {
                bail!("the benchmark plugin did not load: {tenants}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })?;
    eprintln!("hookhost at {base}");
    let started = Instant::now();
    let measured = wrk(&format!("{base}/hooks/bench/fincart"), connections, secs)?;
    let ingest_done = started.elapsed();
    let mut rows = vec![
        Row {
            figure: format!(
                "ingest acks/s ({connections} conns, {durability}{})",
                if ingest_only { ", no dispatch" } else { "" }
            ),
            hookhost: format!("{:.0}", measured.requests_per_sec),
            baseline: format!("{:.0} (bare axum)", baseline.requests_per_sec),
            ratio: format!(
                "{:.2}x",
                measured.requests_per_sec / baseline.requests_per_sec
            ),
        },
        Row {
            figure: "ingest p50 latency".into(),
            hookhost: format!("{:.2} ms", measured.p50_ms),
            baseline: format!("{:.2} ms", baseline.p50_ms),
            ratio: format!("{:.2}x", measured.p50_ms / baseline.p50_ms),
        },
        Row {
            figure: "ingest p99 latency".into(),
            hookhost: format!("{:.2} ms", measured.p99_ms),
            baseline: format!("{:.2} ms", baseline.p99_ms),
            ratio: format!("{:.2}x", measured.p99_ms / baseline.p99_ms),
        },
    ];
    if measured.errors > 0 {
        bail!("hookhost answered {} requests with errors", measured.errors);
    }
    if ingest_only {
        eprintln!(
            "hookhost accepted {} webhooks in {:.1} s (not dispatched)",
            measured.requests,
            ingest_done.as_secs_f64()
        );
        return Ok(rows);
    }
    let (total, completion, latencies) = runtime.block_on(async {
        loop {
            let pending = admin(
                &client,
                &base,
                "/admin/tenants/bench/events?state=pending&limit=1",
            )
            .await?;
            let running = admin(
                &client,
                &base,
                "/admin/tenants/bench/events?state=running&limit=1",
            )
            .await?;
            if pending["events"].as_array().is_some_and(|a| a.is_empty())
                && running["events"].as_array().is_some_and(|a| a.is_empty())
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(secs * 30 + 60) {
                bail!("events still pending long after the load stopped");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let completion = started.elapsed();
        let mut latencies = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let page = admin(
                &client,
                &base,
                &format!(
                    "/admin/tenants/bench/events?limit=500{}",
                    before.map(|b| format!("&before={b}")).unwrap_or_default()
                ),
            )
            .await?;
            for e in page["events"].as_array().unwrap() {
                if e["state"] != "done" {
                    bail!("an event did not complete: {e}");
                }
                latencies.push(
                    (e["finished_at_ms"].as_u64().unwrap() - e["received_at_ms"].as_u64().unwrap())
                        as f64,
                );
            }
            match page["next_before"].as_i64() {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        Ok::<_, anyhow::Error>((latencies.len(), completion, latencies))
    })?;
    let mut latencies = latencies;
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let e2e_rate = total as f64 / completion.as_secs_f64();
    eprintln!(
        "hookhost accepted {} webhooks in {:.1} s; all {} completed after {:.1} s",
        measured.requests,
        ingest_done.as_secs_f64(),
        total,
        completion.as_secs_f64()
    );
    rows.extend([
        Row {
            figure: "end to end events/s (accept → plugin done)".into(),
            hookhost: format!("{e2e_rate:.0}"),
            baseline: format!("{:.0} (hookhost acks/s)", measured.requests_per_sec),
            ratio: format!("{:.2}x", e2e_rate / measured.requests_per_sec),
        },
        Row {
            figure: "accept → done p50 / p99 (under saturation)".into(),
            hookhost: format!(
                "{:.0} / {:.0} ms",
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99)
            ),
            baseline: "-".into(),
            ratio: "-".into(),
        },
    ]);
    Ok(rows)
}

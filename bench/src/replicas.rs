//! Replicas: hookhost on PostgreSQL with one replica and with three, next to the single-node
//! SQLite default, all measured in the same run on one PostgreSQL server started for it (Debian's
//! package, through `scripts/pg-test-server.sh`, with `fsync` on: durable commits, like SQLite's).
//!
//! - claim + finish: the journal-as-queue alone, in process, without HTTP or plugins: a backlog
//!   appended, then drained by four workers claiming 16 heads at a time and finishing each (one kv
//!   write, durable commit). Baseline: the SQLite store.
//! - end to end: `wrk` sends unique authenticated webhooks for `secs` seconds, spread evenly over
//!   the replicas (one `wrk` each); from the first request until every accepted event is `done` in
//!   the plugin (kv-set). Ingest acks/s, end-to-end events/s and CPU time per event (the hookhost
//!   processes and the database server's together). Baseline: one SQLite hookhost.
//!
//! On one 2-core machine the replicas, the database and the load generators share the cores: CPU
//! per event, not events/s, is the figure that says what more machines would give.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hookhost::config::Durability;
use hookhost::event::{CanonicalStatus, EventKind, NormalizedEvent};
use hookhost::storage::postgres::PostgresStorage;
use hookhost::storage::sqlite::SqliteStorage;
use hookhost::storage::{
    AttemptOutcome, AttemptRecord, ClaimLimit, EventState, FinishedAttempt, KvWrite, NewEvent,
    Storage,
};

use crate::{admin, hookhost_binary, spawn_listening, target_dir, workspace, wrk_tagged, Row};

const ADMIN: &str = "bench-admin";

/// The benchmark's PostgreSQL server, stopped and removed when dropped.
struct PgServer {
    url: String,
    state: PathBuf,
}

impl PgServer {
    fn start() -> Result<PgServer> {
        let state = target_dir().join("pg-bench.state");
        let out = Command::new("bash")
            .arg(workspace().join("scripts/pg-test-server.sh"))
            .arg("start")
            .env("HOOKHOST_PG_DIR", target_dir().join("pg-bench"))
            .env("HOOKHOST_PG_STATE", &state)
            .env("HOOKHOST_PG_DURABLE", "1")
            .output()
            .context("run scripts/pg-test-server.sh")?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = String::from_utf8(out.stdout)?
            .trim()
            .strip_prefix("export HOOKHOST_TEST_PG_URL=")
            .ok_or_else(|| anyhow!("unexpected output from scripts/pg-test-server.sh"))?
            .to_string();
        Ok(PgServer { url, state })
    }

    /// A URL for a new, empty database on the server.
    async fn fresh_database(&self, name: &str) -> Result<String> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        // One statement per call: several in one would run as a transaction, which neither allows.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let (server, _) = self.url.rsplit_once('/').expect("a URL with a database");
        Ok(format!("{server}/{name}"))
    }

    /// The server's processes: the postmaster and its children (one backend per connection).
    fn pids(&self) -> Vec<u32> {
        let Ok(state) = std::fs::read_to_string(&self.state) else {
            return Vec::new();
        };
        let dir = state.split_whitespace().next().unwrap_or_default();
        let Some(postmaster) = std::fs::read_to_string(format!("{dir}/data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if stat_field(pid, 4) == Some(u64::from(postmaster)) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace().join("scripts/pg-test-server.sh"))
            .arg("stop")
            .env("HOOKHOST_PG_STATE", &self.state)
            .output();
    }
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`, as a number.
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3)?.parse().ok()
}

/// CPU seconds (user + system) the processes used so far.
fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .map(|&pid| stat_field(pid, 14).unwrap_or(0) + stat_field(pid, 15).unwrap_or(0))
        .sum();
    ticks as f64 / 100.0 // USER_HZ: 100 on Linux
}

/// Runs every figure.
pub fn replicas(secs: u64, connections: u32, events: usize) -> Result<Vec<Row>> {
    let pg = PgServer::start()?;
    eprintln!("PostgreSQL (durable) at {}", pg.url);
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();

    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Storage> = Arc::new(SqliteStorage::open(
        &dir.path().join("bench.db"),
        Durability::Durable,
    )?);
    let sqlite_rate = runtime.block_on(claim_finish(sqlite, events))?;
    let url = runtime.block_on(pg.fresh_database("claim_finish"))?;
    let postgres: Arc<dyn Storage> = Arc::new(runtime.block_on(PostgresStorage::connect(&url))?);
    let pg_rate = runtime.block_on(claim_finish(postgres, events))?;
    rows.push(Row {
        figure: format!("claim + finish, events/s ({events} events, 4 workers × 16 claims)"),
        hookhost: format!("{pg_rate:.0} (PostgreSQL)"),
        baseline: format!("{sqlite_rate:.0} (SQLite)"),
        ratio: format!("{:.2}x", pg_rate / sqlite_rate),
    });

    let single = end_to_end(&runtime, None, 1, secs, connections)?;
    let url = runtime.block_on(pg.fresh_database("one_replica"))?;
    let one = end_to_end(&runtime, Some((&pg, &url)), 1, secs, connections)?;
    let url = runtime.block_on(pg.fresh_database("three_replicas"))?;
    let three = end_to_end(&runtime, Some((&pg, &url)), 3, secs, connections)?;
    for (name, run) in [("1 replica", &one), ("3 replicas", &three)] {
        rows.push(Row {
            figure: format!("ingest acks/s, PostgreSQL, {name}"),
            hookhost: format!("{:.0}", run.acks_per_sec),
            baseline: format!("{:.0} (SQLite, one process)", single.acks_per_sec),
            ratio: format!("{:.2}x", run.acks_per_sec / single.acks_per_sec),
        });
        rows.push(Row {
            figure: format!("end to end events/s, PostgreSQL, {name}"),
            hookhost: format!("{:.0}", run.events_per_sec),
            baseline: format!("{:.0} (SQLite, one process)", single.events_per_sec),
            ratio: format!("{:.2}x", run.events_per_sec / single.events_per_sec),
        });
        rows.push(Row {
            figure: format!("CPU per event (hookhost + database), PostgreSQL, {name}"),
            hookhost: format!("{:.0} µs", run.cpu_us_per_event),
            baseline: format!("{:.0} µs (SQLite, one process)", single.cpu_us_per_event),
            ratio: format!("{:.2}x", run.cpu_us_per_event / single.cpu_us_per_event),
        });
    }
    let url = runtime.block_on(pg.fresh_database("publish"))?;
    rows.push(publish_latency(&runtime, &url, 3, 10)?);
    Ok(rows)
}

/// `replicas` hookhost processes on `database` with the kv-set plugin, all serving; the
/// processes and their admin URLs. They share a precompiled-plugin cache (one config folder).
fn start_replicas(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    database_line: &str,
    replicas: usize,
) -> Result<Vec<(crate::Process, String)>> {
    let plugin = target_dir().join("wasm32-wasip2/release/kv_set.wasm");
    let config = format!(
        "listen = \"127.0.0.1:0\"\n{database_line}\ncache_dir = \"cache\"\n[admin]\ntoken = \"{ADMIN}\"\n\
         [tenants.bench]\nplugin = {plugin:?}\nlimits = {{ kv_max_keys = 100000000 }}\n\
         [tenants.bench.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{}\"\n",
        crate::TOKEN
    );
    std::fs::write(dir.join("hookhost.toml"), config)?;
    let mut hosts = Vec::new();
    for _ in 0..replicas {
        let mut command = Command::new(hookhost_binary());
        command
            .args(["serve", "--config"])
            .arg(dir.join("hookhost.toml"))
            .env("RUST_LOG", "warn");
        hosts.push(spawn_listening(command, "hookhost listening on ")?);
    }
    let client = reqwest::Client::new();
    for (_, base) in &hosts {
        runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(120);
            while serving_version(&client, base).await?.is_none() {
                if Instant::now() > deadline {
                    bail!("the benchmark plugin did not load at {base}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<_, anyhow::Error>(())
        })?;
    }
    Ok(hosts)
}

/// The version a replica serves for the benchmark's tenant.
async fn serving_version(client: &reqwest::Client, base: &str) -> Result<Option<String>> {
    let tenants = admin(client, base, "/admin/tenants").await?;
    Ok(tenants["tenants"][0]["plugin"]["version"]
        .as_str()
        .map(str::to_string))
}

/// Publish → every replica serving: a new version of the kv-set plugin (its bytes changed by a
/// custom section, so it is new content) published through one replica's admin API, timed until
/// all `replicas` report serving it. Baseline: the publish call's own round trip (compile on
/// the publishing replica, self-tests, store; the others then load from the shared cache).
fn publish_latency(
    runtime: &tokio::runtime::Runtime,
    database: &str,
    replicas: usize,
    count: usize,
) -> Result<Row> {
    let dir = tempfile::tempdir()?;
    let hosts = start_replicas(
        runtime,
        dir.path(),
        &format!("database = {database:?}"),
        replicas,
    )?;
    let component = std::fs::read(target_dir().join("wasm32-wasip2/release/kv_set.wasm"))?;
    let client = reqwest::Client::new();
    let (mut publish_ms, mut all_ms) = (Vec::new(), Vec::new());
    for n in 0..count {
        let variant = crate::with_nonce(&component, 1_000_000 + n);
        let started = Instant::now();
        let answer: serde_json::Value = runtime.block_on(async {
            let r = client
                .put(format!("{}/admin/tenants/bench/plugin", hosts[0].1))
                .bearer_auth(ADMIN)
                .body(variant)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("publish refused: {} {}", r.status(), r.text().await?);
            }
            Ok::<_, anyhow::Error>(r.json().await?)
        })?;
        publish_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let version = answer["version"].as_str().unwrap_or_default().to_string();
        runtime.block_on(async {
            for (_, base) in &hosts {
                while serving_version(&client, base).await?.as_deref() != Some(version.as_str()) {
                    if started.elapsed() > Duration::from_secs(60) {
                        bail!("{base} never served the published version");
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Ok::<_, anyhow::Error>(())
        })?;
        all_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (publish, all) = (median(&mut publish_ms), median(&mut all_ms));
    Ok(Row {
        figure: format!(
            "publish → all {replicas} replicas serving (median of {count}; Rust plugin, shared compile cache)"
        ),
        hookhost: format!("{all:.0} ms"),
        baseline: format!("{publish:.0} ms (the publish call alone)"),
        ratio: format!("{:.2}x", all / publish),
    })
}

/// A unique event of order `o<n % 1000>`.
fn event(n: usize) -> Arc<NewEvent> {
    Arc::new(NewEvent {
        tenant: "bench".into(),
        source: "fincart".into(),
        received_at_ms: hookhost::now_ms(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(r#"{{"orderId":"o{}","n":{n}}}"#, n % 1000).into_bytes(),
        event: NormalizedEvent {
            id: format!("e{n}"),
            provider: "fincart".into(),
            kind: EventKind::OrderStatusChanged,
            order_id: Some(format!("o{}", n % 1000)),
            merchant_ref: None,
            status: CanonicalStatus::Processing,
            raw_status: Some("processing".into()),
            raw_sub_status: None,
            reason: None,
            amount: None,
            occurred_at_ms: None,
        },
    })
}

/// Appends `events` (64 at a time), then drains them with four workers; the drain's events/s.
async fn claim_finish(store: Arc<dyn Storage>, events: usize) -> Result<f64> {
    let mut appends = tokio::task::JoinSet::new();
    for n in 0..events {
        if appends.len() >= 64 {
            appends.join_next().await.expect("running")??;
        }
        let store = store.clone();
        appends.spawn(async move { store.append(event(n)).await });
    }
    while let Some(appended) = appends.join_next().await {
        appended??;
    }
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let store = store.clone();
        workers.spawn(async move {
            let mut finished = 0usize;
            let mut idle = 0;
            loop {
                let batch = store
                    .claim("bench", &format!("w{w}"), ClaimLimit::batch(16), 60_000)
                    .await?;
                if batch.claims.is_empty() {
                    if batch.next_due_ms.is_none() {
                        idle += 1;
                        if idle > 200 {
                            return Ok::<_, anyhow::Error>(finished);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                idle = 0;
                let mut finishes = tokio::task::JoinSet::new();
                for c in batch.claims {
                    let store = store.clone();
                    finishes.spawn(async move {
                        store
                            .finish_attempt(FinishedAttempt {
                                lease: c.claim.lease,
                                tenant: "bench".into(),
                                record: AttemptRecord {
                                    attempt: c.claim.attempts + 1,
                                    plugin_version: "bench".into(),
                                    started_at_ms: hookhost::now_ms(),
                                    duration_us: 1,
                                    outcome: AttemptOutcome::Done,
                                    logs: Vec::new(),
                                    logs_dropped: 0,
                                    effects: None,
                                },
                                kv_writes: vec![KvWrite::Set(
                                    format!("seen/{}", c.event.seq),
                                    b"1".to_vec(),
                                )],
                                kv_reads: Vec::new(),
                                next_state: EventState::Done,
                                next_attempt_at_ms: 0,
                            })
                            .await
                    });
                }
                while let Some(result) = finishes.join_next().await {
                    result??;
                    finished += 1;
                }
            }
        });
    }
    let mut finished = 0;
    while let Some(worker) = workers.join_next().await {
        finished += worker??;
    }
    // The idle polls at the end are not drain time.
    let elapsed = started.elapsed().as_secs_f64() - 0.2;
    if finished != events {
        bail!("{finished} of {events} events finished");
    }
    Ok(events as f64 / elapsed)
}

/// What one end-to-end run measured.
struct EndToEnd {
    acks_per_sec: f64,
    events_per_sec: f64,
    cpu_us_per_event: f64,
}

/// `replicas` hookhost processes on `database` (PostgreSQL, or SQLite when `None`), each loaded
/// by a `wrk` of its own with its share of `connections`, for `secs`; then until all is done.
fn end_to_end(
    runtime: &tokio::runtime::Runtime,
    database: Option<(&PgServer, &str)>,
    replicas: usize,
    secs: u64,
    connections: u32,
) -> Result<EndToEnd> {
    let dir = tempfile::tempdir()?;
    let database_line = match database {
        Some((_, url)) => format!("database = {url:?}"),
        None => "database = \"bench.db\"".to_string(),
    };
    let hosts = start_replicas(runtime, dir.path(), &database_line, replicas)?;
    let client = reqwest::Client::new();
    let pids = || {
        let mut pids: Vec<u32> = hosts.iter().map(|(p, _)| p.0.id()).collect();
        if let Some((pg, _)) = database {
            pids.extend(pg.pids());
        }
        pids
    };
    let what = match database {
        Some(_) => format!("PostgreSQL, {replicas} replica(s)"),
        None => "SQLite".to_string(),
    };
    eprintln!("end to end: {what}");
    let cpu_before = cpu_seconds(&pids());
    let started = Instant::now();
    let loads: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, (_, base))| {
            let url = format!("{base}/hooks/bench/fincart");
            let share = (connections / replicas as u32).max(1);
            std::thread::spawn(move || wrk_tagged(&url, share, secs, &format!("r{i}")))
        })
        .collect();
    let mut acks = 0.0;
    for load in loads {
        let load = load.join().map_err(|_| anyhow!("wrk thread panicked"))??;
        if load.errors > 0 {
            bail!("{what}: {} requests answered with errors", load.errors);
        }
        acks += load.requests_per_sec;
    }
    let base = &hosts[0].1;
    let done = runtime.block_on(async {
        loop {
            let counts = admin(&client, base, "/admin/tenants/bench/counts").await?;
            let count = |state: &str| counts["counts"][state].as_u64().unwrap_or(0);
            if count("pending") == 0 && count("running") == 0 {
                if count("dead") + count("skipped") > 0 {
                    bail!("{what}: events did not complete: {counts}");
                }
                return Ok::<_, anyhow::Error>(count("done"));
            }
            if started.elapsed() > Duration::from_secs(secs * 30 + 60) {
                bail!("{what}: events still pending long after the load stopped");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    let completion = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pids()) - cpu_before;
    eprintln!(
        "{what}: {done} events, {acks:.0} acks/s, all done after {completion:.1} s, {cpu:.1} CPU s"
    );
    Ok(EndToEnd {
        acks_per_sec: acks,
        events_per_sec: done as f64 / completion,
        cpu_us_per_event: cpu * 1e6 / done as f64,
    })
}

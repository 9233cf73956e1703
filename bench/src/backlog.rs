//! Backlog: what unfinished events cost the host while they wait, and how fast it works them off.
//! A tenant whose plugin is missing accepts `events` webhooks (four per order: an order's events
//! must run in journal order); they are journaled and wait. Measured: the host's peak resident
//! memory while accepting them and after a restart, the time from the restart to serving webhooks
//! again, and, once the plugin (kv-set) is put in place, the rate at which the backlog drains
//! (ingest finished before dispatch starts). Baselines, in the same run: the same host with an
//! empty journal, and for the drain rate bare wasmtime running the same component with one durable
//! SQLite commit per 64 events. The run fails unless every event ends `done` once and each
//! order's events finished in journal order.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{spawn_listening, target_dir, Process, Row, TOKEN};

const ADMIN: &str = "bench-admin-token";

/// Samples a process's resident memory every 100 ms until stopped; the peak in MiB.
struct PeakRss {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<f64>,
}

impl PeakRss {
    fn watch(pid: u32) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak: f64 = 0.0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(hookhost_fixtures::rss_mib(pid));
                    std::thread::sleep(Duration::from_millis(100));
                }
                peak.max(hookhost_fixtures::rss_mib(pid))
            })
        };
        PeakRss { stop, sampler }
    }

    fn peak(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap_or(0.0)
    }
}

/// Runs the figure with a backlog of `events`.
pub fn backlog(events: usize) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    // In a folder of its own: the watcher must not see the journal's writes.
    std::fs::create_dir(dir.path().join("plugins"))?;
    let plugin = dir.path().join("plugins/kv-set.wasm");
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"bench.db\"\ncache_dir = \"cache\"\nretention_hours = 0\n\
         [admin]\ntoken = \"{ADMIN}\"\n\
         [tenants.waiting]\nplugin = {plugin:?}\n[tenants.waiting.limits]\nkv_max_keys = 100000000\n[tenants.waiting.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{TOKEN}\"\n",
    );
    std::fs::write(dir.path().join("hookhost.toml"), config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = reqwest::Client::new();
    // Starts the host; returns it, its address, and the time until it accepted a webhook.
    let start = |probe: &str| -> Result<(Process, String, Duration)> {
        let started = Instant::now();
        let mut command = Command::new(crate::hookhost_binary());
        command
            .args(["serve", "--config"])
            .arg(dir.path().join("hookhost.toml"))
            .env("RUST_LOG", "error");
        let (process, base) = spawn_listening(command, "hookhost listening on ")?;
        runtime.block_on(crate::send_webhooks_of(
            &client,
            &base,
            1,
            1,
            1,
            |_| "waiting".into(),
            probe,
        ))?;
        Ok((process, base, started.elapsed()))
    };

    let (host, base, empty_start) = start("probe-empty")?;
    std::thread::sleep(Duration::from_secs(1));
    let empty_rss = hookhost_fixtures::rss_mib(host.0.id());
    let watching = PeakRss::watch(host.0.id());
    let sending = Instant::now();
    let orders = (events / 4).max(1);
    runtime.block_on(crate::send_webhooks_of(
        &client,
        &base,
        events,
        orders,
        64,
        |_| "waiting".to_string(),
        "backlog",
    ))?;
    let sent_in = sending.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let accepting_rss = watching.peak();
    drop(host);

    let (host, base, restart) = start("probe-restart")?;
    let watching = PeakRss::watch(host.0.id());
    std::thread::sleep(Duration::from_secs(3));
    let restarted_rss = watching.peak();

    // The plugin comes back: the backlog drains.
    let watching = PeakRss::watch(host.0.id());
    std::fs::copy(
        target_dir().join("wasm32-wasip2/release/kv_set.wasm"),
        &plugin,
    )
    .context("copying the kv-set plugin")?;
    // The backlog and the two probe webhooks.
    let total = events + 2;
    // Cheap probes (one index lookup each), not counts: counting a million events every second
    // would measure the poll, not the drain.
    let any_in = |base: &str, state: &str| -> Result<bool> {
        runtime.block_on(async {
            let page: serde_json::Value = client
                .get(format!(
                    "{base}/admin/tenants/waiting/events?state={state}&limit=1"
                ))
                .bearer_auth(ADMIN)
                .send()
                .await?
                .json()
                .await?;
            Ok(page["events"].as_array().is_some_and(|a| !a.is_empty()))
        })
    };
    let waiting_since = Instant::now();
    let first_at = loop {
        if any_in(&base, "done")? {
            break Instant::now();
        }
        if waiting_since.elapsed() > Duration::from_secs(120) {
            bail!("the backlog did not start draining within 120 s of the plugin's arrival");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let drained_at = loop {
        if !any_in(&base, "pending")? && !any_in(&base, "running")? {
            break Instant::now();
        }
        if first_at.elapsed() > Duration::from_secs(3600) {
            bail!("the backlog did not drain within an hour");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let drain_rss = watching.peak();
    let drain_rate = total as f64 / (drained_at - first_at).as_secs_f64();
    drop(host);
    check_journal(&dir.path().join("bench.db"), total)?;
    let bare_rate = crate::dispatch::bare_drain_rate(
        &target_dir().join("wasm32-wasip2/release/kv_set.wasm"),
        events.min(200_000),
    )?;

    eprintln!(
        "backlog: {events} events accepted in {:.1} s; peak RSS {empty_rss:.0} MiB empty, {accepting_rss:.0} MiB accepting, {restarted_rss:.0} MiB after a restart that served again in {:.2} s (empty journal: {:.2} s); drained at {drain_rate:.0}/s (peak RSS {drain_rss:.0} MiB); bare wasmtime + SQLite: {bare_rate:.0}/s",
        sent_in.as_secs_f64(),
        restart.as_secs_f64(),
        empty_start.as_secs_f64()
    );
    Ok(vec![
        Row {
            figure: format!("backlog of {events} waiting events (plugin missing): peak resident memory while accepting them (target at 1,000,000: < 150 MB)"),
            hookhost: format!("{accepting_rss:.0} MiB"),
            baseline: format!("{empty_rss:.0} MiB (empty journal)"),
            ratio: format!("{:.2}x", accepting_rss / empty_rss),
        },
        Row {
            figure: format!("backlog of {events}: peak resident memory in the 3 s after a restart"),
            hookhost: format!("{restarted_rss:.0} MiB"),
            baseline: format!("{empty_rss:.0} MiB (empty journal)"),
            ratio: format!("{:.2}x", restarted_rss / empty_rss),
        },
        Row {
            figure: format!("backlog of {events}: restart to serving webhooks again (target at 1,000,000: < 5 s)"),
            hookhost: format!("{:.2} s", restart.as_secs_f64()),
            baseline: format!("{:.2} s (empty journal)", empty_start.as_secs_f64()),
            ratio: format!("{:.1}x", restart.as_secs_f64() / empty_start.as_secs_f64()),
        },
        Row {
            figure: format!("backlog of {events}: drain rate once the plugin (kv-set) is back, every event done once and each order in journal order (peak RSS {drain_rss:.0} MiB)"),
            hookhost: format!("{drain_rate:.0} events/s"),
            baseline: format!("{bare_rate:.0} events/s (bare wasmtime, 2 workers, + one durable SQLite commit per 64 events)"),
            ratio: format!("{:.2}x", drain_rate / bare_rate),
        },
    ])
}

/// Fails unless every event is `done` with exactly one attempt and, within each order, events
/// finished in journal order.
fn check_journal(path: &std::path::Path, total: usize) -> Result<()> {
    let db = rusqlite::Connection::open(path)?;
    let (done, one_attempt): (i64, i64) = db.query_row(
        "SELECT COUNT(*), SUM(attempts = 1) FROM events WHERE state = 'done'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if done as usize != total || one_attempt != done {
        bail!("{done} of {total} events done, {one_attempt} of them in one attempt");
    }
    db.execute_batch(
        "CREATE INDEX IF NOT EXISTS check_order ON events (tenant, delivery_key, seq)",
    )?;
    let out_of_order: i64 = db.query_row(
        "SELECT COUNT(*) FROM events a JOIN events b
             ON b.tenant = a.tenant AND b.delivery_key = a.delivery_key AND b.seq > a.seq
         WHERE b.finished_at_ms < a.finished_at_ms",
        [],
        |r| r.get(0),
    )?;
    if out_of_order > 0 {
        bail!("{out_of_order} pairs of events of one order finished out of journal order");
    }
    Ok(())
}

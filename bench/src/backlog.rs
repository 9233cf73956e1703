//! Backlog: what unfinished events cost the host while they wait. A tenant whose plugin is
//! missing accepts `events` webhooks of distinct orders (they are journaled and wait); measured:
//! the resident memory before and after, and after a restart (which recovers the backlog) the time
//! to listen again and the memory then. The baselines are the same host with an empty journal in
//! the same run. This is the "before" of the journal-as-queue work (issue 17), whose target is a
//! resident memory that does not grow with the backlog and a restart under 5 s at 1,000,000 events.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{spawn_listening, Process, Row, TOKEN};

/// Runs the figure with a backlog of `events`.
pub fn backlog(events: usize) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"bench.db\"\ncache_dir = \"cache\"\nretention_hours = 0\n\
         [tenants.waiting]\nplugin = {:?}\n[tenants.waiting.sources.fincart]\nprovider = \"fincart\"\ntoken = \"{TOKEN}\"\n",
        dir.path().join("not-built.wasm")
    );
    std::fs::write(dir.path().join("hookhost.toml"), config)?;
    let start = || -> Result<(Process, String, Duration)> {
        let started = Instant::now();
        let mut command = Command::new(crate::hookhost_binary());
        command
            .args(["serve", "--config"])
            .arg(dir.path().join("hookhost.toml"))
            .env("RUST_LOG", "error");
        let (process, base) = spawn_listening(command, "hookhost listening on ")?;
        Ok((process, base, started.elapsed()))
    };

    let (host, base, empty_start) = start()?;
    std::thread::sleep(Duration::from_secs(1));
    let empty_rss = hookhost_fixtures::rss_mib(host.0.id());
    let sending = Instant::now();
    tokio::runtime::Runtime::new()?.block_on(crate::send_webhooks(
        &reqwest::Client::new(),
        &base,
        events,
        64,
        |_| "waiting".to_string(),
        "backlog",
    ))?;
    let sent_in = sending.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let full_rss = hookhost_fixtures::rss_mib(host.0.id());
    drop(host);

    let (host, _, restart) = start()?;
    std::thread::sleep(Duration::from_secs(1));
    let restarted_rss = hookhost_fixtures::rss_mib(host.0.id());
    drop(host);
    eprintln!(
        "backlog: {events} events accepted in {:.1} s; RSS {empty_rss:.0} MiB empty, {full_rss:.0} MiB with the backlog, {restarted_rss:.0} MiB after a restart that took {:.2} s (empty journal: {:.2} s)",
        sent_in.as_secs_f64(),
        restart.as_secs_f64(),
        empty_start.as_secs_f64()
    );
    let per_event_bytes = (full_rss - empty_rss).max(0.0) * 1_048_576.0 / events as f64;
    Ok(vec![
        Row {
            figure: format!("backlog of {events} waiting events (plugin missing): resident memory while accepting (target: not growing with the backlog)"),
            hookhost: format!("{full_rss:.0} MiB ({per_event_bytes:.0} B per waiting event)"),
            baseline: format!("{empty_rss:.0} MiB (empty journal)"),
            ratio: format!("{:.2}x", full_rss / empty_rss),
        },
        Row {
            figure: format!("backlog of {events}: resident memory after a restart"),
            hookhost: format!("{restarted_rss:.0} MiB"),
            baseline: format!("{empty_rss:.0} MiB (empty journal)"),
            ratio: format!("{:.2}x", restarted_rss / empty_rss),
        },
        Row {
            figure: format!("backlog of {events}: restart to listening (target at 1,000,000: < 5 s)"),
            hookhost: format!("{:.2} s", restart.as_secs_f64()),
            baseline: format!("{:.2} s (empty journal)", empty_start.as_secs_f64()),
            ratio: format!("{:.1}x", restart.as_secs_f64() / empty_start.as_secs_f64()),
        },
    ])
}

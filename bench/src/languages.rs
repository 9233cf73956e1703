//! Guest languages (figure 6): the same kv-set reaction (read the event, one kv set) as a Rust,
//! a JavaScript and a Python plugin, run through hookhost's runtime: per-event cost with a fresh
//! instance per event and with an instance reused for up to 100 events (`limits.instance_reuse`),
//! and the time to compile each component against loading it from the precompiled cache.

use std::process::Command;

use anyhow::{bail, Result};
use hookhost::runtime::Runtime;

use crate::dispatch::{bench_runtime, bench_storage, per_event};
use crate::{target_dir, workspace, Row};

/// Events one instance handles in the reuse rows.
const REUSE: u32 = 100;

/// Builds the JavaScript and Python benchmark plugins (pinned tools, incremental).
pub(crate) fn build_script_plugins() -> Result<()> {
    let status = Command::new("bash")
        .arg(workspace().join("scripts/build-script-plugins.sh"))
        .env("CARGO_TARGET_DIR", target_dir())
        .status()?;
    if !status.success() {
        bail!(
            "building the JavaScript and Python plugins failed (scripts/build-script-plugins.sh)"
        );
    }
    Ok(())
}

/// Measures each language; `events` per variant.
pub fn languages(events: usize) -> Result<Vec<Row>> {
    build_script_plugins()?;
    let plugins = [
        (
            "Rust",
            target_dir().join("wasm32-wasip2/release/kv_set.wasm"),
        ),
        (
            "JavaScript",
            target_dir().join("script-plugins/js-kv-set.wasm"),
        ),
        (
            "Python",
            target_dir().join("script-plugins/python-kv-set.wasm"),
        ),
    ];
    let runtime = tokio::runtime::Runtime::new()?;
    let mut measured = Vec::new();
    for (lang, path) in &plugins {
        let dir = tempfile::tempdir()?;
        let cache = dir.path().join("cache");
        // Compile (empty cache), then load the precompiled artifact in a new engine of the same
        // configuration, as a restarted host would.
        let compiled = Runtime::new(&bench_runtime(&cache))?.load(path)?;
        let rt = Runtime::new(&bench_runtime(&cache))?;
        let plugin = rt.load(path)?;
        if compiled.from_cache || !plugin.from_cache {
            bail!("{lang}: expected a compile and then a cached load");
        }
        let storage = bench_storage(dir.path())?;
        let size = std::fs::metadata(path)?.len();
        let fresh = runtime.block_on(per_event(&rt, &plugin, &storage, events, 1))?;
        let reused = runtime.block_on(per_event(&rt, &plugin, &storage, events, REUSE))?;
        eprintln!(
            "{lang}: {:.1} MB, compile {:.0} ms, cached load {:.1} ms, per event (µs, median/p99) fresh {:.0}/{:.0}, reuse {REUSE} {:.0}/{:.0}",
            size as f64 / 1e6,
            compiled.load_time.as_secs_f64() * 1e3,
            plugin.load_time.as_secs_f64() * 1e3,
            fresh.0,
            fresh.1,
            reused.0,
            reused.1
        );
        measured.push((
            *lang,
            size,
            compiled.load_time,
            plugin.load_time,
            fresh,
            reused,
        ));
    }
    let rust_fresh = measured[0].4 .0;
    let mut rows = Vec::new();
    for (lang, size, compile, load, fresh, reused) in &measured {
        rows.push(Row {
            figure: format!(
                "{lang} kv-set, median per event, fresh instance ({events} events) vs Rust"
            ),
            hookhost: format!("{:.0} µs (p99 {:.0})", fresh.0, fresh.1),
            baseline: format!("{rust_fresh:.0} µs"),
            ratio: format!("{:.1}x", fresh.0 / rust_fresh),
        });
        rows.push(Row {
            figure: format!(
                "{lang} kv-set, median per event, instance reused ≤ {REUSE} events vs fresh"
            ),
            hookhost: format!("{:.0} µs (p99 {:.0})", reused.0, reused.1),
            baseline: format!("{:.0} µs", fresh.0),
            ratio: format!("{:.2}x", reused.0 / fresh.0),
        });
        rows.push(Row {
            figure: format!(
                "{lang} component ({:.1} MB): cached load vs compile",
                *size as f64 / 1e6
            ),
            hookhost: format!("{:.1} ms", load.as_secs_f64() * 1e3),
            baseline: format!("{:.0} ms", compile.as_secs_f64() * 1e3),
            ratio: format!("{:.3}x", load.as_secs_f64() / compile.as_secs_f64()),
        });
    }
    Ok(rows)
}

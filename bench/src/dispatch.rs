//! Dispatch overhead (figure 1): the same small reaction (read the event, one kv set: the
//! `kv-set` plugin) per event through hookhost's runtime — fresh instance, the tenant's limits,
//! the kv transaction over SQLite, captured logs, the capabilities — against bare wasmtime (the
//! same component, `InstancePre` + pooling + one call, a `HashMap` for kv, no hookhost code),
//! against the same reaction as an Extism plugin called through the `extism` crate (the peer a
//! platform would otherwise pick; JSON in, a host function for kv), and against the same logic as
//! a native Rust function (the floor). Same process, same run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use hookhost::capabilities::config::ConfigValues;
use hookhost::capabilities::http::{AllowList, HttpCapability, HttpLimits};
use hookhost::capabilities::kv::{KvLimits, KvTxn};
use hookhost::capabilities::log::LogCapture;
use hookhost::event::{CanonicalStatus, EventKind, NormalizedEvent};
use hookhost::runtime::{AttemptContext, LoadedPlugin, PluginOutcome, Runtime, RuntimeConfig};
use hookhost::storage::StoredEvent;

use crate::{percentile, target_dir, Row};

mod bare {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "merchant-plugin",
        imports: {
            "hookhost:plugin/http.send": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

use bare::hookhost::plugin::{config as b_config, http as b_http, kv as b_kv, log as b_log};

/// Bare wasmtime's store data: WASI (nothing granted) and a map for kv.
struct BareState {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    kv: HashMap<String, Vec<u8>>,
}

impl wasmtime_wasi::WasiView for BareState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bare::hookhost::plugin::types::Host for BareState {}

impl b_log::Host for BareState {
    fn write(&mut self, _level: b_log::Level, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl b_kv::Host for BareState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, b_kv::Error>> {
        Ok(Ok(self.kv.get(&key).cloned()))
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), b_kv::Error>> {
        self.kv.insert(key, value);
        Ok(Ok(()))
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, b_kv::Error>> {
        Ok(Ok(self.kv.remove(&key).is_some()))
    }
    fn list_keys(
        &mut self,
        _prefix: String,
        _limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, b_kv::Error>> {
        Ok(Ok(Vec::new()))
    }
    fn set_if_absent(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, b_kv::Error>> {
        let absent = !self.kv.contains_key(&key);
        if absent {
            self.kv.insert(key, value);
        }
        Ok(Ok(absent))
    }
}

impl b_http::Host for BareState {
    async fn send(
        &mut self,
        _request: b_http::Request,
    ) -> wasmtime::Result<Result<b_http::Response, b_http::Error>> {
        Ok(Err(b_http::Error::Denied("bare".into())))
    }
}

impl b_config::Host for BareState {
    fn get(&mut self, _key: String) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
    fn get_secret(&mut self, _key: String) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}

const WARMUP: usize = 200;

fn event(n: usize) -> NormalizedEvent {
    NormalizedEvent {
        id: format!("evt-{n}"),
        provider: "fincart".into(),
        kind: EventKind::OrderStatusChanged,
        order_id: Some(format!("order-{n}")),
        merchant_ref: None,
        status: CanonicalStatus::Processing,
        raw_status: Some("processing".into()),
        raw_sub_status: Some("picked up".into()),
        reason: None,
        amount: None,
        occurred_at_ms: Some(1_700_000_000_000),
    }
}

fn stored(n: usize) -> StoredEvent {
    StoredEvent {
        seq: n as i64,
        tenant: "bench".into(),
        source: "fincart".into(),
        received_at_ms: 1_700_000_000_000,
        body: br#"{"orderId":"order-1","status":"processing"}"#.to_vec(),
        event: event(n),
    }
}

fn bare_event(n: usize) -> bare::hookhost::plugin::types::Event {
    use bare::hookhost::plugin::types as t;
    t::Event {
        id: format!("evt-{n}"),
        tenant: "bench".into(),
        source: "fincart".into(),
        provider: "fincart".into(),
        kind: t::EventKind::OrderStatusChanged,
        order_id: Some(format!("order-{n}")),
        merchant_ref: None,
        status: t::CanonicalStatus::Processing,
        raw_status: Some("processing".into()),
        raw_sub_status: Some("picked up".into()),
        reason: None,
        amount: None,
        occurred_at_ms: Some(1_700_000_000_000),
        received_at_ms: 1_700_000_000_000,
        attempt: 1,
        payload: r#"{"orderId":"order-1","status":"processing"}"#.into(),
    }
}

/// (median, p99) in microseconds.
fn stats(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// The runtime settings the per-event benchmarks use (no fuel, fresh memory after each attempt).
pub fn bench_runtime(cache_dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: cache_dir.to_path_buf(),
        max_instances: 16,
        max_memory_mib: 64,
        fuel: false,
        max_table_elements: 100_000,
        decommit_batch: 1,
        pagemap_scan: true,
        max_core_instances: 64,
    }
}

/// A SQLite journal/kv in `dir` (fast durability: the kv commit is not what is measured).
pub fn bench_storage(dir: &Path) -> Result<Arc<dyn hookhost::storage::Storage>> {
    Ok(Arc::new(hookhost::storage::sqlite::SqliteStorage::open(
        &dir.join("bench.db"),
        hookhost::config::Durability::Fast,
    )?))
}

/// (median, p99) µs per event of `plugin` (a kv-set reaction: one kv write expected) run through
/// hookhost's runtime with the tenant's capabilities, `reuse` events per instance.
pub async fn per_event(
    rt: &Runtime,
    plugin: &LoadedPlugin,
    storage: &Arc<dyn hookhost::storage::Storage>,
    events: usize,
    reuse: u32,
) -> Result<(f64, f64)> {
    let client = HttpCapability::shared_client(true)?;
    let allow = Arc::new(AllowList::parse(&[])?);
    let mut samples = Vec::with_capacity(events);
    for n in 0..WARMUP + events {
        let cx = AttemptContext {
            kv: KvTxn::new(
                "bench",
                storage.clone(),
                KvLimits {
                    max_value_bytes: 1 << 18,
                    max_keys: u64::MAX,
                    max_write_bytes: 16 << 20,
                },
            ),
            http: HttpCapability::new(
                client.clone(),
                allow.clone(),
                HttpLimits {
                    max_requests: 10,
                    timeout: Duration::from_secs(10),
                    max_response_bytes: 1 << 20,
                },
            ),
            config: ConfigValues::default(),
            log: LogCapture::new("bench", 65_536),
            timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            log_bytes_hint: 65_536,
            fuel: None,
            reuse,
            keep_warm: 1,
        };
        let event = stored(n);
        let started = Instant::now();
        let report = rt.run(plugin, &event, 1, cx).await;
        let took = started.elapsed();
        if !matches!(report.result, Ok(PluginOutcome::Done)) || report.kv_writes.len() != 1 {
            bail!(
                "hookhost run of {} failed: {:?} ({} kv writes)",
                plugin.path.display(),
                report.result,
                report.kv_writes.len()
            );
        }
        if n >= WARMUP {
            samples.push(took.as_secs_f64() * 1e6);
        }
    }
    Ok(stats(samples))
}

/// Runs the three variants `events` times each.
pub fn dispatch(events: usize) -> Result<Vec<Row>> {
    let component_path = target_dir().join("wasm32-wasip2/release/kv_set.wasm");
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;

    // hookhost's runtime, as the dispatcher drives it (minus the journal commit).
    let hookhost = runtime.block_on(async {
        let rt = Runtime::new(&bench_runtime(&dir.path().join("cache")))?;
        let plugin = rt.load(&component_path)?;
        let storage = bench_storage(dir.path())?;
        let fresh = per_event(&rt, &plugin, &storage, events, 1).await?;
        let reused = per_event(&rt, &plugin, &storage, events, 100).await?;
        anyhow::Ok((fresh, reused))
    })?;
    let (hookhost, hookhost_reused) = hookhost;

    // Extism, the peer: the same reaction as an Extism plugin (JSON in, a host function for kv).
    let extism_fresh = extism_per_event(events, true)?;
    let extism_reused = extism_per_event(events, false)?;

    // Bare wasmtime: the same component, pooling, InstancePre, one call per fresh instance; with
    // the pool's defaults, and tuned as hookhost tunes it (dirty pages reset in place).
    let bare = runtime.block_on(bare_per_event(&component_path, events, false))?;
    let bare_tuned = runtime.block_on(bare_per_event(&component_path, events, true))?;

    // Native: the same reaction as a Rust function (the floor).
    let native = {
        let mut kv: HashMap<String, Vec<u8>> = HashMap::new();
        let mut samples = Vec::with_capacity(events);
        for n in 0..WARMUP + events {
            let event = std::hint::black_box(event(n));
            let started = Instant::now();
            let order = event
                .merchant_ref
                .as_ref()
                .or(event.order_id.as_ref())
                .unwrap_or(&event.id);
            kv.insert(
                format!("status/{order}"),
                event
                    .raw_status
                    .as_deref()
                    .unwrap_or("")
                    .as_bytes()
                    .to_vec(),
            );
            let took = started.elapsed();
            std::hint::black_box(&kv);
            if n >= WARMUP {
                samples.push(took.as_secs_f64() * 1e6);
            }
        }
        stats(samples)
    };
    eprintln!(
        "dispatch (µs, median/p99): hookhost {:.1}/{:.1} (reused instance {:.1}/{:.1}), bare wasmtime {:.1}/{:.1} (pool defaults {:.1}/{:.1}), Extism new plugin {:.1}/{:.1} (reused plugin {:.1}/{:.1}), native {:.3}/{:.3}",
        hookhost.0, hookhost.1, hookhost_reused.0, hookhost_reused.1, bare_tuned.0, bare_tuned.1, bare.0, bare.1,
        extism_fresh.0, extism_fresh.1, extism_reused.0, extism_reused.1, native.0, native.1
    );
    Ok(vec![
        micros(format!("dispatch overhead, median per event ({events} events; kv-set plugin, fresh instance each) vs bare wasmtime with the same pool tuning (target ≤ 2×)"), hookhost.0, bare_tuned.0),
        micros("dispatch overhead, p99 per event vs bare wasmtime (same pool tuning)", hookhost.1, bare_tuned.1),
        micros("dispatch overhead, median vs bare wasmtime with the pool's defaults", hookhost.0, bare.0),
        micros("dispatch overhead, median vs Extism 1.30 (same reaction, a new Plugin per event from a CompiledPlugin) (target: faster)", hookhost.0, extism_fresh.0),
        micros("dispatch overhead, p99 vs Extism (new Plugin per event)", hookhost.1, extism_fresh.1),
        micros("dispatch overhead, median, reused instance (instance_reuse = 100) vs one Extism Plugin called for every event", hookhost_reused.0, extism_reused.0),
        Row {
            figure: "dispatch overhead, median vs the same logic as a native Rust function (the floor)".into(),
            hookhost: format!("{:.1} µs", hookhost.0),
            baseline: format!("{:.3} µs", native.0),
            ratio: format!("{:.0}x", hookhost.0 / native.0.max(0.001)),
        },
    ])
}

/// Bare wasmtime ready to instantiate `component_path`: pooling with its defaults, or (`tuned`)
/// with the pool settings hookhost uses (memory kept resident, dirty pages found with
/// PAGEMAP_SCAN).
fn bare_pre(
    component_path: &Path,
    tuned: bool,
) -> Result<(wasmtime::Engine, bare::MerchantPluginPre<BareState>)> {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    if tuned {
        pool.linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
    }
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    let engine = wasmtime::Engine::new(&config).map_err(|e| anyhow!("{e:#}"))?;
    let component = wasmtime::component::Component::from_file(&engine, component_path)
        .map_err(|e| anyhow!("{e:#}"))?;
    let mut linker = wasmtime::component::Linker::<BareState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("{e:#}"))?;
    bare::MerchantPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
        .map_err(|e| anyhow!("{e:#}"))?;
    let pre = bare::MerchantPluginPre::new(
        linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{e:#}"))?,
    )
    .map_err(|e| anyhow!("{e:#}"))?;
    Ok((engine, pre))
}

/// Runs event `n` on a fresh bare instance; its kv writes.
async fn bare_run(
    engine: &wasmtime::Engine,
    pre: &bare::MerchantPluginPre<BareState>,
    n: usize,
) -> Result<HashMap<String, Vec<u8>>> {
    let input = bare_event(n);
    let mut store = wasmtime::Store::new(
        engine,
        BareState {
            wasi: wasmtime_wasi::WasiCtx::builder().build(),
            table: wasmtime::component::ResourceTable::new(),
            kv: HashMap::new(),
        },
    );
    let instance = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| anyhow!("{e:#}"))?;
    let outcome = instance
        .hookhost_plugin_handler()
        .call_handle(&mut store, &input)
        .await
        .map_err(|e| anyhow!("{e:#}"))?;
    let kv = std::mem::take(&mut store.data_mut().kv);
    if outcome.is_err() || kv.len() != 1 {
        bail!("bare run failed: {outcome:?}");
    }
    Ok(kv)
}

/// Bare wasmtime's median and p99 per event.
async fn bare_per_event(component_path: &Path, events: usize, tuned: bool) -> Result<(f64, f64)> {
    let (engine, pre) = bare_pre(component_path, tuned)?;
    let mut samples = Vec::with_capacity(events);
    for n in 0..WARMUP + events {
        let started = Instant::now();
        bare_run(&engine, &pre, n).await?;
        let took = started.elapsed();
        if n >= WARMUP {
            samples.push(took.as_secs_f64() * 1e6);
        }
    }
    Ok(stats(samples))
}

/// The drain-rate baseline: what this machine does with no hookhost code, `events` events/s of
/// the kv-set component on bare wasmtime (fresh instance each, hookhost's pool tuning, on both
/// cores) with one durable SQLite commit per 64 events (each event marked done and its kv write
/// applied: the least a journal that survives a crash must write).
pub fn bare_drain_rate(component_path: &Path, events: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = rusqlite::Connection::open(dir.path().join("bare.db"))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute_batch(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, state TEXT NOT NULL);
         CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
    )?;
    {
        let tx = db.unchecked_transaction()?;
        let mut insert = tx.prepare("INSERT INTO events (seq, state) VALUES (?1, 'pending')")?;
        for n in 0..events {
            insert.execute([n as i64])?;
        }
        drop(insert);
        tx.commit()?;
    }
    let (engine, pre) = bare_pre(component_path, true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let started = Instant::now();
    runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, HashMap<String, Vec<u8>>)>(1024);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..2 {
            let (engine, pre, tx, next) = (engine.clone(), pre.clone(), tx.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= events {
                        return anyhow::Ok(());
                    }
                    let kv = bare_run(&engine, &pre, n).await?;
                    tx.send((n, kv))
                        .await
                        .map_err(|_| anyhow!("committer gone"))?;
                }
            }));
        }
        drop(tx);
        let committer = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(64);
            let commit = |batch: &mut Vec<(usize, HashMap<String, Vec<u8>>)>| {
                let tx = db.unchecked_transaction()?;
                for (n, kv) in batch.drain(..) {
                    tx.prepare_cached("UPDATE events SET state = 'done' WHERE seq = ?1")?
                        .execute([n as i64])?;
                    for (key, value) in kv {
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
                        )?
                        .execute(rusqlite::params![key, value])?;
                    }
                }
                tx.commit()?;
                anyhow::Ok(())
            };
            while let Some(done) = rx.blocking_recv() {
                batch.push(done);
                if batch.len() == 64 {
                    commit(&mut batch)?;
                }
            }
            commit(&mut batch)
        });
        for w in workers {
            w.await??;
        }
        committer.await?
    })?;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// A row comparing two per-event times in microseconds.
fn micros(figure: impl Into<String>, hookhost: f64, baseline: f64) -> Row {
    Row {
        figure: figure.into(),
        hookhost: format!("{hookhost:.1} µs"),
        baseline: format!("{baseline:.1} µs"),
        ratio: format!("{:.2}x", hookhost / baseline),
    }
}

/// The kv of the Extism variant: the host function's user data.
type ExtismKv = HashMap<String, String>;

extism::host_fn!(kv_set(user_data: ExtismKv; key: String, value: String) {
    let kv = user_data.get()?;
    kv.lock().expect("kv lock").insert(key, value);
    Ok(())
});

/// The event as an Extism plugin receives it: JSON bytes (Extism has no typed contract), with
/// every field the WIT record carries.
fn extism_input(n: usize) -> Vec<u8> {
    let stored = stored(n);
    let mut value = serde_json::to_value(&stored.event).expect("event serializes");
    value["tenant"] = stored.tenant.into();
    value["source"] = stored.source.into();
    value["received_at_ms"] = stored.received_at_ms.into();
    value["attempt"] = 1.into();
    value["payload"] = String::from_utf8_lossy(&stored.body).into_owned().into();
    serde_json::to_vec(&value).expect("JSON")
}

/// (median, p99) µs per event of the same reaction as an Extism plugin: compiled once
/// (`CompiledPlugin`), then either a new `Plugin` per event (`fresh`, as hookhost's default) or
/// one `Plugin` called for every event (Extism's usual way).
fn extism_per_event(events: usize, fresh: bool) -> Result<(f64, f64)> {
    let path = target_dir().join("wasm32-unknown-unknown/release/extism_kv_set.wasm");
    let kv = extism::UserData::new(ExtismKv::new());
    let wasm = std::fs::read(&path)
        .map_err(|e| anyhow!("cannot read {} (built by prepare): {e}", path.display()))?;
    let builder = extism::PluginBuilder::new(extism::Manifest::new([extism::Wasm::data(wasm)]))
        .with_wasi(false)
        .with_function("kv_set", [extism::PTR, extism::PTR], [], kv.clone(), kv_set);
    let compiled = extism::CompiledPlugin::new(builder)
        .map_err(|e| anyhow!("Extism cannot compile {}: {e:#}", path.display()))?;
    let mut reused = extism::Plugin::new_from_compiled(&compiled).map_err(|e| anyhow!("{e:#}"))?;
    let store = kv.get().map_err(|e| anyhow!("{e:#}"))?;
    let mut samples = Vec::with_capacity(events);
    for n in 0..WARMUP + events {
        let input = extism_input(n);
        store.lock().expect("kv lock").clear();
        let started = Instant::now();
        let answer = if fresh {
            let mut plugin =
                extism::Plugin::new_from_compiled(&compiled).map_err(|e| anyhow!("{e:#}"))?;
            plugin
                .call::<&[u8], String>("handle", &input)
                .map_err(|e| anyhow!("{e:#}"))?
        } else {
            reused
                .call::<&[u8], String>("handle", &input)
                .map_err(|e| anyhow!("{e:#}"))?
        };
        let took = started.elapsed();
        if answer != "done" || store.lock().expect("kv lock").len() != 1 {
            bail!("Extism run failed: {answer:?}");
        }
        if n >= WARMUP {
            samples.push(took.as_secs_f64() * 1e6);
        }
    }
    Ok(stats(samples))
}

//! The WebAssembly runtime: the only module that touches wasmtime.
//!
//! One [`Engine`] (component model, pooling allocator, copy-on-write memory images, epoch
//! interruption) serves every tenant. A plugin is compiled once (off the request path, cached on
//! disk by content hash and the engine's compatibility hash) and pre-linked into an `InstancePre`;
//! each event then gets a fresh `Store` and instance, with the tenant's time and memory limits and
//! its own capabilities. WASI p2 is linked so that components from other languages load, but
//! nothing is granted: no preopened directories, no environment, no arguments, no sockets.
//!
//! Rooms: [`wit`] (one module per WIT version: bindings, conversions, host impls), [`store`]
//! (the store's data, clocks, limiter, warm instances), [`cache`] (the precompiled cache, the
//! only `unsafe`), [`trap`] (failures as merchants read them).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Linker;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, UpdateDeadline,
};

use crate::capabilities::config::ConfigValues;
use crate::capabilities::http::HttpCapability;
use crate::capabilities::kv::KvTxn;
use crate::capabilities::log::{Level, LogCapture};
use crate::storage::{KvRead, KvWrite, LogLine, OutboundRequest, StoredEvent};

mod cache;
mod store;
mod trap;
pub mod wit;

pub use cache::check_cache_dir;
pub use store::PluginState;
pub use trap::MAX_MESSAGE_BYTES;

use store::{AttemptCaps, WarmInstance};
use trap::{bounded, describe_trap};
use wit::PluginPre;

/// How often the epoch ticks; deadlines are checked at this granularity and a running plugin
/// yields to other tasks this often.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A component's SHA-256 (hex): the precompiled cache's key, and, cut short, the version every
/// attempt records. The one definition of a plugin version, for the host and `hookhost dev`.
pub struct PluginDigest(String);

impl PluginDigest {
    /// The digest of a component's bytes.
    pub fn of(bytes: &[u8]) -> PluginDigest {
        PluginDigest(hex::encode(Sha256::digest(bytes)))
    }

    /// The version name: the first 16 hex digits.
    pub fn version(&self) -> &str {
        &self.0[..16]
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where precompiled components are cached.
    pub cache_dir: PathBuf,
    /// Most instances alive at once (sizes the pooling allocator).
    pub max_instances: u32,
    /// Largest linear memory any tenant may be given, in MiB (sizes the pool's slots).
    pub max_memory_mib: u64,
    /// Count fuel (instruction budgets); attempts without a budget get an unlimited one.
    pub fuel: bool,
    /// Most elements a plugin's table may grow to.
    pub max_table_elements: usize,
    /// Most core instances one component may create.
    pub max_core_instances: u32,
    /// Freed instance slots whose memory is returned to the OS together (1 = at once).
    pub decommit_batch: usize,
    /// Reset freed slots' dirty pages in place where the kernel can list them (PAGEMAP_SCAN).
    pub pagemap_scan: bool,
}

/// A compiled, type-checked plugin ready to be instantiated per event.
pub struct LoadedPlugin {
    pre: PluginPre,
    /// Instances kept for the next events when the tenant reuses instances (`limits.instance_reuse`).
    /// A LoadedPlugin belongs to one tenant, so an instance never serves another tenant; a new
    /// version is a new LoadedPlugin, so an instance never outlives its version.
    warm: Mutex<Vec<WarmInstance>>,
    /// Content hash of the component (the version recorded with every attempt).
    pub version: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// When it was loaded (ms since the epoch).
    pub loaded_at_ms: u64,
    /// Whether it came from the precompiled cache.
    pub from_cache: bool,
    /// How long loading took.
    pub load_time: Duration,
}

/// What an attempt is given: its capabilities and limits.
pub struct AttemptContext {
    /// The tenant's kv, as this attempt sees it.
    pub kv: KvTxn,
    /// Outbound HTTP.
    pub http: HttpCapability,
    /// The tenant's config.
    pub config: ConfigValues,
    /// Log capture.
    pub log: LogCapture,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Memory limit in bytes.
    pub memory_bytes: usize,
    /// Bytes of stdout/stderr output kept (what is printed beyond fails to write).
    pub log_bytes_hint: usize,
    /// Instruction budget, when the tenant has one (and the engine counts fuel).
    pub fuel: Option<u64>,
    /// Events one instance may handle (`limits.instance_reuse`); 1 means a fresh instance per event.
    pub reuse: u32,
    /// Most idle instances kept for reuse (the tenant's concurrency).
    pub keep_warm: usize,
}

/// What the plugin returned (WIT `outcome`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginOutcome {
    /// Handled.
    Done,
    /// Not handled, on purpose.
    Skipped(String),
    /// Call again after this many seconds.
    RetryAfter(u32),
}

/// The result of running one attempt.
#[derive(Debug)]
pub struct AttemptReport {
    /// The outcome, or why there is none (the plugin's error, a trap, a limit).
    pub result: Result<PluginOutcome, String>,
    /// kv writes made (to commit only on success).
    pub kv_writes: Vec<KvWrite>,
    /// What the attempt read from the committed kv (validated when the writes commit).
    pub kv_reads: Vec<KvRead>,
    /// Log lines kept.
    pub logs: Vec<LogLine>,
    /// Log lines dropped.
    pub logs_dropped: u32,
    /// The outbound requests it made (sent, or in a dry attempt recorded only).
    pub requests: Vec<OutboundRequest>,
    /// How long the attempt took.
    pub duration: Duration,
}

/// The engine and linker shared by all plugins.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache_dir: PathBuf,
    compat: String,
    _ticker: Arc<()>,
    fuel: bool,
    max_table_elements: usize,
}

impl Runtime {
    /// Whether this engine counts fuel (decided at start).
    pub fn counts_fuel(&self) -> bool {
        self.fuel
    }

    /// Creates the engine, the linker (WASI with nothing granted + hookhost's capabilities) and the
    /// epoch ticker.
    pub fn new(config: &RuntimeConfig) -> Result<Runtime> {
        check_cache_dir(&config.cache_dir)?;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * config.max_core_instances.min(16))
            .total_memories(config.max_instances * 2)
            .total_tables(config.max_instances * 4)
            .total_stacks(config.max_instances)
            .max_memory_size((config.max_memory_mib as usize) << 20)
            .table_elements(config.max_table_elements)
            .max_component_instance_size(1 << 20)
            .max_core_instances_per_component(config.max_core_instances)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10)
            // Linux 6.7+: reset only the pages an instance dirtied, in place, instead of dropping
            // its memory and faulting it back in for the next event; halves the cost of a fresh
            // instance per event (docs/BENCHMARKS.md). `Auto` falls back on older kernels.
            .pagemap_scan(match config.pagemap_scan {
                true => Enabled::Auto,
                false => Enabled::No,
            })
            // Every event frees an instance; batching the decommits (madvise) cuts the syscalls
            // and the TLB-shootdown interrupts that showed up in profiles (docs/BENCHMARKS.md),
            // but a batch keeps up to `decommit_batch` slots' touched memory resident until it
            // fills: off by default, so memory returns to its baseline after every attempt.
            .decommit_batch_size(config.decommit_batch);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(config.fuel)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&wasm).map_err(|e| anyhow!("cannot create the wasmtime engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("cannot link WASI: {e:#}"))?;
        wit::add_to_linker(&mut linker)?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        // The ticker stops when the runtime (the only other holder of the Arc) is dropped.
        let ticker = Arc::new(());
        let weak = Arc::downgrade(&ticker);
        let ticking = engine.clone();
        thread::Builder::new()
            .name("hookhost-epoch".into())
            .spawn(move || {
                while weak.upgrade().is_some() {
                    thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .context("cannot start the epoch ticker thread")?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir: config.cache_dir.clone(),
            compat,
            _ticker: ticker,
            fuel: config.fuel,
            max_table_elements: config.max_table_elements,
        })
    }

    /// Loads a plugin: reads the component, compiles it (or loads the cached precompiled form),
    /// and checks that it is a `hookhost:plugin/merchant-plugin` whose imports hookhost provides.
    /// Blocking and possibly slow (seconds for large components): call it off the request path.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin> {
        let started = Instant::now();
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read plugin {}", path.display()))?;
        self.load_bytes(&bytes, path, started)
    }

    /// [`Self::load`] of a component already in memory (a published one); `origin` names it in
    /// messages, `started` is when loading began (for the load time).
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        origin: &Path,
        started: Instant,
    ) -> Result<LoadedPlugin> {
        let path = origin;
        let digest = PluginDigest::of(bytes);
        let version = digest.version().to_string();
        let cached = self
            .cache_dir
            .join(format!("{}-{}.cwasm", digest.0, self.compat));
        let (component, from_cache) = match cache::load_cached(&self.engine, &cached) {
            Some(c) => (c, true),
            None => (
                cache::compile_and_cache(&self.engine, bytes, &cached, path)?,
                false,
            ),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{e:#}"))
            .with_context(|| {
                format!(
                    "plugin {} imports something hookhost does not provide",
                    path.display()
                )
            })?;
        let pre = PluginPre::new(pre).with_context(|| {
                format!("plugin {} is not a hookhost:plugin/merchant-plugin@0.1.0 component (does it export `handler`?)", path.display())
            })?;
        Ok(LoadedPlugin {
            pre,
            warm: Mutex::new(Vec::new()),
            version,
            path: path.to_path_buf(),
            loaded_at_ms: crate::now_ms(),
            from_cache,
            load_time: started.elapsed(),
        })
    }

    /// Runs one attempt of `event` in an instance of `plugin`: a fresh one, or, when the tenant
    /// reuses instances (`cx.reuse` > 1), one kept from its previous events (discarded after
    /// `reuse` events, or at once after a trap or timeout).
    pub async fn run(
        &self,
        plugin: &LoadedPlugin,
        event: &StoredEvent,
        attempt: u32,
        cx: AttemptContext,
    ) -> AttemptReport {
        let started = Instant::now();
        let reuse = cx.reuse.max(1);
        let kept = match reuse {
            1 => None,
            _ => plugin.warm.lock().expect("warm instances lock").pop(),
        };
        let mut warm = kept.unwrap_or_else(|| {
            // A reused instance's pipe holds the output of all its events (each event's own
            // share is still cut at the tenant's log budget when read).
            WarmInstance::new(
                &self.engine,
                cx.log_bytes_hint.saturating_mul(reuse as usize),
                cx.memory_bytes,
                self.max_table_elements,
            )
        });
        warm.wall_ms.store(event.received_at_ms, Ordering::Relaxed);
        {
            let state = warm.store.data_mut();
            state.limiter.max_bytes = cx.memory_bytes;
            state.limiter.exceeded = None;
            state.caps = Some(AttemptCaps {
                kv: cx.kv,
                http: cx.http,
                config: cx.config,
                log: cx.log,
            });
        }
        let fuel = cx.fuel.filter(|_| self.fuel);
        let timeout_ms = cx.timeout.as_millis();
        let instance = warm.instance.take();
        let outcome = {
            let store = &mut warm.store;
            if self.fuel {
                if let Err(e) = store.set_fuel(cx.fuel.unwrap_or(u64::MAX)) {
                    tracing::error!("cannot set the attempt's fuel: {e:#}");
                }
            }
            let deadline = started + cx.timeout;
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                if Instant::now() >= deadline {
                    Err(wasmtime::format_err!(
                        "plugin exceeded its time limit of {timeout_ms} ms"
                    ))
                } else {
                    Ok(UpdateDeadline::Yield(1))
                }
            });
            let call = async {
                let instance = match instance {
                    Some(instance) => instance,
                    None => plugin.pre.instantiate(&mut *store).await?,
                };
                let result = instance.handle(&mut *store, event, attempt).await?;
                Ok::<_, wasmtime::Error>((instance, result))
            };
            // Host calls are bounded by their own timeouts; this is the backstop for the call.
            tokio::time::timeout(cx.timeout + Duration::from_secs(1), call).await
        };
        let (result, instance) = match outcome {
            Err(_) => (
                Err(format!("plugin exceeded its time limit of {timeout_ms} ms")),
                None,
            ),
            Ok(Ok((instance, Ok(outcome)))) => (
                Ok(match outcome {
                    PluginOutcome::Skipped(why) => PluginOutcome::Skipped(bounded(why)),
                    outcome => outcome,
                }),
                Some(instance),
            ),
            // The plugin's own error: it returned normally, its instance is intact.
            Ok(Ok((instance, Err(message)))) => (
                Err(format!("plugin returned an error: {}", bounded(message))),
                Some(instance),
            ),
            Ok(Err(trap)) => (
                Err(describe_trap(
                    &trap,
                    warm.store.data().limiter.exceeded.as_deref(),
                    fuel,
                )),
                None,
            ),
        };
        let mut caps = warm
            .store
            .data_mut()
            .caps
            .take()
            .expect("the attempt's capabilities are set above");
        let printed = warm.output.contents();
        let own = printed.get(warm.printed..).unwrap_or_default();
        for line in String::from_utf8_lossy(own)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            caps.log.write(Level::Print, line.to_string());
        }
        warm.printed = printed.len();
        let (logs, logs_dropped) = caps.log.finish();
        let requests = caps.http.take_requested();
        // Only a handled event (done or skipped) commits its kv writes; retry-after, errors,
        // traps and timeouts leave no change behind.
        let (kv_writes, kv_reads) = match result {
            Ok(PluginOutcome::Done | PluginOutcome::Skipped(_)) => caps.kv.into_parts(),
            _ => (Vec::new(), Vec::new()),
        };
        // Keep the instance for the tenant's next event when it may serve more and nothing went
        // wrong inside it (after a trap or timeout it may be half-way through: it is dropped).
        if let Some(instance) = instance {
            warm.uses += 1;
            if warm.uses < reuse {
                warm.instance = Some(instance);
                let mut kept = plugin.warm.lock().expect("warm instances lock");
                if kept.len() < cx.keep_warm.max(1) {
                    kept.push(warm);
                }
            }
        }
        AttemptReport {
            kv_writes,
            kv_reads,
            result,
            logs,
            logs_dropped,
            requests,
            duration: started.elapsed(),
        }
    }
}

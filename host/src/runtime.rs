//! The WebAssembly runtime: the only module that touches wasmtime.
//!
//! One [`Engine`] (component model, pooling allocator, copy-on-write memory images, epoch
//! interruption) serves every tenant. A plugin is compiled once (off the request path, cached on
//! disk by content hash and the engine's compatibility hash) and pre-linked into an `InstancePre`;
//! each event then gets a fresh `Store` and instance, with the tenant's time and memory limits and
//! its own capabilities. WASI p2 is linked so that components from other languages load, but
//! nothing is granted: no preopened directories, no environment, no arguments, no sockets.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    Store, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::config::ConfigValues;
use crate::capabilities::http::{HttpCapability, HttpError, HttpRequest, Method};
use crate::capabilities::kv::{KvError, KvTxn};
use crate::capabilities::log::{Level, LogCapture};
use crate::event::{CanonicalStatus, EventKind};
use crate::storage::{KvRead, KvWrite, LogLine, StoredEvent};

mod bindings {
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

use bindings::hookhost::plugin::{
    config as wit_config, http as wit_http, kv as wit_kv, log as wit_log, types as wit,
};
use bindings::{MerchantPlugin, MerchantPluginPre};

/// How often the epoch ticks; deadlines are checked at this granularity and a running plugin
/// yields to other tasks this often.
const EPOCH_TICK: Duration = Duration::from_millis(5);

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
    pre: MerchantPluginPre<PluginState>,
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

/// What an attempt may call: its capabilities, set for the attempt and taken back after it.
struct AttemptCaps {
    kv: KvTxn,
    http: HttpCapability,
    config: ConfigValues,
    log: LogCapture,
}

/// An instance kept between events of one tenant (instance reuse): its store, the instance, how
/// many events it handled, and its output pipe (read from where the previous event stopped).
struct WarmInstance {
    store: Store<PluginState>,
    instance: Option<MerchantPlugin>,
    uses: u32,
    output: MemoryOutputPipe,
    printed: usize,
    wall_ms: Arc<AtomicU64>,
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
    /// How long the attempt took.
    pub duration: Duration,
}

/// The store data: WASI with nothing granted, the limiter, and the running attempt's
/// capabilities (absent between attempts of a reused instance).
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    caps: Option<AttemptCaps>,
}

impl PluginState {
    fn caps(&mut self) -> wasmtime::Result<&mut AttemptCaps> {
        self.caps
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("host call outside an attempt"))
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The only time a plugin is given is the contract's: WASI's wall clock reads the event's
/// `received-at-ms`, on every attempt and replay alike. Plugins cannot time the host (a side
/// channel) and their results do not depend on when an attempt happens to run. (A reused
/// instance reads each event's time in turn.)
struct ContractWallClock(Arc<AtomicU64>);

impl wasmtime_wasi::HostWallClock for ContractWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// WASI's monotonic clock starts at zero when the instance starts (with a fresh instance per event:
/// the attempt) and ticks in whole milliseconds: timers, sleeps and event loops (JavaScript's,
/// Python's) work, but a plugin learns nothing about the host beyond how long its own instance has
/// run, and too coarsely to time the host's work.
struct AttemptMonotonicClock(std::time::Instant);

impl wasmtime_wasi::HostMonotonicClock for AttemptMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        (self.0.elapsed().as_millis() as u64).saturating_mul(1_000_000)
    }
}

/// Caps linear memory and counts instances per store; refusing growth traps with a message that
/// says which limit was hit.
struct MemoryLimiter {
    max_bytes: usize,
    max_table_elements: usize,
    exceeded: Option<String>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            let message = format!(
                "plugin exceeded its memory limit: it asked for {} MiB (has {} MiB), the tenant's limit is {} MiB",
                desired >> 20,
                current >> 20,
                self.max_bytes >> 20
            );
            self.exceeded = Some(message.clone());
            return Err(wasmtime::format_err!(message));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            let message = format!(
                "plugin exceeded its table limit: it asked for {desired} elements (has {current}), the limit is {} (runtime.max_table_elements)",
                self.max_table_elements
            );
            self.exceeded = Some(message.clone());
            return Err(wasmtime::format_err!(message));
        }
        Ok(true)
    }
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
        MerchantPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow!("cannot link hookhost's capabilities: {e:#}"))?;

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
        let digest = hex::encode(Sha256::digest(&bytes));
        let version = digest[..16].to_string();
        let cached = self
            .cache_dir
            .join(format!("{digest}-{}.cwasm", self.compat));
        let (component, from_cache) = match self.load_cached(&cached) {
            Some(c) => (c, true),
            None => (self.compile_and_cache(&bytes, &cached, path)?, false),
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
        let pre = MerchantPluginPre::new(pre)
            .map_err(|e| anyhow!("{e:#}"))
            .with_context(|| {
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

    fn load_cached(&self, cached: &Path) -> Option<Component> {
        if !cached.exists() {
            return None;
        }
        // SAFETY: the file is in hookhost's own cache directory, written by `compile_and_cache`
        // with this engine's configuration (the compatibility hash is in its name); wasmtime also
        // checks the header. A corrupt or foreign file fails to load and is recompiled.
        match unsafe { Component::deserialize_file(&self.engine, cached) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %cached.display(), "ignoring unusable precompiled plugin: {e:#}");
                None
            }
        }
    }

    fn compile_and_cache(&self, bytes: &[u8], cached: &Path, source: &Path) -> Result<Component> {
        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| anyhow!("{e:#}"))
            .with_context(|| {
                format!(
                    "plugin {} is not a valid WebAssembly component",
                    source.display()
                )
            })?;
        if let Err(e) = write_atomically(cached, &artifact) {
            tracing::warn!(path = %cached.display(), "cannot cache the precompiled plugin (it will be compiled again next start): {e:#}");
        }
        // SAFETY: `artifact` was produced just now by this engine's `precompile_component`.
        unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(|e| anyhow!("{e:#}"))
    }

    /// A store for a new instance, with WASI granting nothing.
    fn new_store(&self, output_bytes: usize, memory_bytes: usize) -> WarmInstance {
        let output = MemoryOutputPipe::new(output_bytes);
        let wall_ms = Arc::new(AtomicU64::new(0));
        let state = PluginState {
            // Nothing granted: no args, env, preopens, sockets or name lookup. What the plugin
            // prints (a Rust panic message, Python's print) is kept with the attempt's logs.
            wasi: WasiCtx::builder()
                .stdout(output.clone())
                .stderr(output.clone())
                .wall_clock(ContractWallClock(wall_ms.clone()))
                .monotonic_clock(AttemptMonotonicClock(Instant::now()))
                .build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                max_table_elements: self.max_table_elements,
                exceeded: None,
            },
            caps: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        WarmInstance {
            store,
            instance: None,
            uses: 0,
            output,
            printed: 0,
            wall_ms,
        }
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
            self.new_store(
                cx.log_bytes_hint.saturating_mul(reuse as usize),
                cx.memory_bytes,
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
        let input = to_wit(event, attempt);
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
                    None => plugin.pre.instantiate_async(&mut *store).await?,
                };
                let result = instance
                    .hookhost_plugin_handler()
                    .call_handle(&mut *store, &input)
                    .await?;
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
                    wit::Outcome::Done => PluginOutcome::Done,
                    wit::Outcome::Skipped(why) => PluginOutcome::Skipped(bounded(why)),
                    wit::Outcome::RetryAfter(s) => PluginOutcome::RetryAfter(s),
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
            duration: started.elapsed(),
        }
    }
}

/// Longest reason or error message kept from a plugin; the rest is cut (and says so), so a hostile
/// or buggy plugin cannot fill the journal through its return value.
pub const MAX_MESSAGE_BYTES: usize = 4096;

fn bounded(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let total = text.len();
        let mut cut = MAX_MESSAGE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!("... [{} more bytes cut]", total - cut));
    }
    text
}

/// A trap as a merchant should read it: what happened, in plain words, and where (the innermost
/// wasm functions, repeated frames folded), without a hundred-frame backtrace.
fn describe_trap(
    trap: &wasmtime::Error,
    memory_exceeded: Option<&str>,
    fuel: Option<u64>,
) -> String {
    if let Some(message) = memory_exceeded {
        return message.to_string();
    }
    let what = match trap.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "plugin overflowed its call stack (runaway recursion?)".to_string(),
        Some(wasmtime::Trap::MemoryOutOfBounds) => {
            "plugin accessed memory out of bounds (in Rust or C plugins this is usually a stack overflow from deep recursion)".to_string()
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "plugin trapped: a Rust panic or abort ends this way (its message, if any, is in the attempt's logs)".to_string()
        }
        Some(wasmtime::Trap::OutOfFuel) => format!(
            "plugin used up its instruction budget of {} (limits.fuel)",
            fuel.unwrap_or(u64::MAX)
        ),
        Some(code) => format!("plugin trapped: {code}"),
        None => format!("plugin failed: {}", trap.root_cause()),
    };
    let Some(backtrace) = trap.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return what;
    };
    let mut frames: Vec<(String, usize)> = Vec::new();
    for frame in backtrace.frames() {
        let name = frame.func_name().unwrap_or("?").to_string();
        if let Some((last, count)) = frames.last_mut() {
            if *last == name {
                *count += 1;
                continue;
            }
        }
        if frames.len() == 4 {
            break;
        }
        frames.push((name, 1));
    }
    if frames.is_empty() {
        return what;
    }
    let at: Vec<String> = frames
        .into_iter()
        .map(|(name, n)| {
            if n > 1 {
                format!("{name} (x{n})")
            } else {
                name
            }
        })
        .collect();
    format!("{what}; at {}", at.join(" < "))
}

/// The precompiled cache holds native code that is loaded without verification (`unsafe`
/// deserialization): whoever can write to it can run code in hookhost. So the folder must belong
/// to hookhost's user and be writable by nobody else; a folder that is missing is created so
/// (mode 0700).
pub fn check_cache_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the plugin cache {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the plugin cache {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("cache_dir {} is not a folder", dir.display());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "cache_dir {} belongs to user {}, not to hookhost's user {me}: precompiled plugins are native code loaded without verification, so only hookhost may write there (chown it, or point cache_dir elsewhere)",
            dir.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        bail!(
            "cache_dir {} is writable by its group or by everyone (mode {:o}): precompiled plugins are native code loaded without verification, so only hookhost may write there (chmod go-w it)",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    Ok(())
}

fn to_wit(stored: &StoredEvent, attempt: u32) -> wit::Event {
    let e = &stored.event;
    wit::Event {
        id: e.id.clone(),
        tenant: stored.tenant.clone(),
        source: stored.source.clone(),
        provider: e.provider.clone(),
        kind: match e.kind {
            EventKind::OrderStatusChanged => wit::EventKind::OrderStatusChanged,
            EventKind::OrderUpdated => wit::EventKind::OrderUpdated,
            EventKind::Payment => wit::EventKind::Payment,
            EventKind::Payout => wit::EventKind::Payout,
            EventKind::Transaction => wit::EventKind::Transaction,
            EventKind::Other => wit::EventKind::Other,
        },
        order_id: e.order_id.clone(),
        merchant_ref: e.merchant_ref.clone(),
        status: match e.status {
            CanonicalStatus::Pending => wit::CanonicalStatus::Pending,
            CanonicalStatus::Processing => wit::CanonicalStatus::Processing,
            CanonicalStatus::Succeeded => wit::CanonicalStatus::Succeeded,
            CanonicalStatus::Failed => wit::CanonicalStatus::Failed,
            CanonicalStatus::Cancelled => wit::CanonicalStatus::Cancelled,
            CanonicalStatus::Refunded => wit::CanonicalStatus::Refunded,
            CanonicalStatus::Unknown => wit::CanonicalStatus::Unknown,
        },
        raw_status: e.raw_status.clone(),
        raw_sub_status: e.raw_sub_status.clone(),
        reason: e.reason.clone(),
        amount: e.amount.as_ref().map(|m| wit::Money {
            amount: m.amount.clone(),
            currency: m.currency.clone(),
        }),
        occurred_at_ms: e.occurred_at_ms,
        received_at_ms: stored.received_at_ms,
        attempt,
        payload: String::from_utf8_lossy(&stored.body).into_owned(),
    }
}

impl wit::Host for PluginState {}

impl wit_log::Host for PluginState {
    fn write(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            wit_log::Level::Trace => Level::Trace,
            wit_log::Level::Debug => Level::Debug,
            wit_log::Level::Info => Level::Info,
            wit_log::Level::Warn => Level::Warn,
            wit_log::Level::Error => Level::Error,
        };
        self.caps()?.log.write(level, message);
        Ok(())
    }
}

fn kv_error(e: KvError) -> wit_kv::Error {
    match e {
        KvError::InvalidKey(max) => wit_kv::Error::InvalidKey(max),
        KvError::ValueTooLarge(max) => wit_kv::Error::ValueTooLarge(max),
        KvError::TooManyKeys(max) => wit_kv::Error::TooManyKeys(max),
        KvError::WriteBudgetExceeded(budget) => wit_kv::Error::ValueTooLarge(budget),
        KvError::Storage(m) => wit_kv::Error::Storage(m),
    }
}

impl wit_kv::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, wit_kv::Error>> {
        Ok(self.caps()?.kv.get(&key).map_err(kv_error))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), wit_kv::Error>> {
        Ok(self.caps()?.kv.set(&key, value).map_err(kv_error))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, wit_kv::Error>> {
        Ok(self.caps()?.kv.delete(&key).map_err(kv_error))
    }

    fn list_keys(
        &mut self,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, wit_kv::Error>> {
        Ok(self.caps()?.kv.list_keys(&prefix, limit).map_err(kv_error))
    }

    fn set_if_absent(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, wit_kv::Error>> {
        Ok(self.caps()?.kv.set_if_absent(&key, value).map_err(kv_error))
    }
}

impl wit_http::Host for PluginState {
    async fn send(
        &mut self,
        request: wit_http::Request,
    ) -> wasmtime::Result<Result<wit_http::Response, wit_http::Error>> {
        let request = HttpRequest {
            method: match request.method {
                wit_http::Method::Get => Method::Get,
                wit_http::Method::Head => Method::Head,
                wit_http::Method::Post => Method::Post,
                wit_http::Method::Put => Method::Put,
                wit_http::Method::Patch => Method::Patch,
                wit_http::Method::Delete => Method::Delete,
            },
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout_ms: request.timeout_ms,
        };
        Ok(match self.caps()?.http.send(request).await {
            Ok(r) => Ok(wit_http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(match e {
                HttpError::Denied(m) => wit_http::Error::Denied(m),
                HttpError::InvalidRequest(m) => wit_http::Error::InvalidRequest(m),
                HttpError::Timeout => wit_http::Error::Timeout,
                HttpError::Transport(m) => wit_http::Error::Transport(m),
                HttpError::ResponseTooLarge(n) => wit_http::Error::ResponseTooLarge(n),
                HttpError::TooManyRequests(n) => wit_http::Error::TooManyRequests(n),
            }),
        })
    }
}

impl wit_config::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.caps()?.config.get(&key))
    }

    fn get_secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.caps()?.config.get_secret(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        check_cache_dir(&cache).unwrap();
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "created for hookhost alone");
        for loose in [0o777, 0o775, 0o757] {
            std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(loose)).unwrap();
            let err = check_cache_dir(&cache).unwrap_err().to_string();
            assert!(
                err.contains("writable by its group or by everyone"),
                "{loose:o}: {err}"
            );
        }
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_cache_dir(&cache).unwrap();
        if rustix::process::geteuid().is_root() {
            // Another user's folder, even with a strict mode.
            std::os::unix::fs::chown(&cache, Some(65534), None).unwrap();
            let err = check_cache_dir(&cache).unwrap_err().to_string();
            assert!(err.contains("belongs to user 65534"), "{err}");
        }
    }

    #[test]
    fn plugin_messages_are_bounded_on_a_char_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(3000); // 6000 bytes
        let cut = bounded(long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 40, "{}", cut.len());
        assert!(
            cut.ends_with("... [1904 more bytes cut]"),
            "{}",
            &cut[cut.len() - 40..]
        );
    }
}

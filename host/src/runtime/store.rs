//! What an instance lives in: its store's data (WASI granting nothing, the limiter, the running
//! attempt's capabilities), the clocks a plugin is given, and the instances kept warm between a
//! tenant's events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::wit::PluginInstance;
use crate::capabilities::config::ConfigValues;
use crate::capabilities::http::HttpCapability;
use crate::capabilities::kv::KvTxn;
use crate::capabilities::log::LogCapture;

/// What an attempt may call: its capabilities, set for the attempt and taken back after it.
pub struct AttemptCaps {
    pub kv: KvTxn,
    pub http: HttpCapability,
    pub config: ConfigValues,
    pub log: LogCapture,
}

/// An instance kept between events of one tenant (instance reuse): its store, the instance, how
/// many events it handled, and its output pipe (read from where the previous event stopped).
pub struct WarmInstance {
    pub store: Store<PluginState>,
    pub instance: Option<PluginInstance>,
    pub uses: u32,
    pub output: MemoryOutputPipe,
    pub printed: usize,
    pub wall_ms: Arc<AtomicU64>,
}

impl WarmInstance {
    /// A store for a new instance, with WASI granting nothing.
    pub fn new(
        engine: &Engine,
        output_bytes: usize,
        memory_bytes: usize,
        max_table_elements: usize,
    ) -> WarmInstance {
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
                max_table_elements,
                exceeded: None,
            },
            caps: None,
        };
        let mut store = Store::new(engine, state);
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
}

/// The store data: WASI with nothing granted, the limiter, and the running attempt's
/// capabilities (absent between attempts of a reused instance).
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub caps: Option<AttemptCaps>,
}

impl PluginState {
    /// The running attempt's capabilities; a host call between attempts traps.
    pub fn caps(&mut self) -> wasmtime::Result<&mut AttemptCaps> {
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
pub struct MemoryLimiter {
    /// The attempt's memory limit.
    pub max_bytes: usize,
    max_table_elements: usize,
    /// Which limit was hit, if one was.
    pub exceeded: Option<String>,
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

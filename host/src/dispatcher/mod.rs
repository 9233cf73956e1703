//! The dispatcher: claims due order heads from the journal and hands them to plugins.
//!
//! The journal is the queue (see [`Storage`]): events of the same (tenant, order) run one at a
//! time in the order they were received, because only an order's head can be claimed; different
//! orders run in parallel up to the worker limit, each tenant within its `max_concurrency`,
//! round-robin across tenants. The dispatcher holds only what it has claimed (per tenant a window
//! of at most twice its `max_concurrency` events, read by the claim itself), never the backlog:
//! its memory does not grow with it.
//!
//! A claim is a lease. Running attempts' leases are renewed; a reaper turns leases that expired
//! (their holder stopped) into interrupted attempts; a finish whose lease was lost writes
//! nothing. An attempt gives its worker back as soon as the plugin returns and keeps its order's
//! head claimed until its finish commits, so commits are grouped without idling workers. What an
//! outcome does to its event is decided by one pure function, [`decide`] (in [`decision`]), for
//! attempts that ran and for attempts a stop interrupted alike.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument as _;

pub mod decision;

pub use decision::{backoff_ms, decide, random_jitter, Decision};

use crate::capabilities::http::HttpCapability;
use crate::now_ms;
use crate::plugins::PluginRegistry;
use crate::runtime::{PluginOutcome, Runtime};
use crate::storage::{
    AttemptOutcome, AttemptRecord, ClaimBatch, ClaimLimit, ClaimedEvent, Duty, Effects, EventState,
    ExpiredLease, FinishResult, FinishedAttempt, Lease, Storage,
};
use crate::tenants::{InstanceUse, Tenants};

/// How long an event waits before looking again for a plugin that is not loaded.
const NO_PLUGIN_WAIT_MS: u64 = 1_000;

/// A tenant's window, in multiples of its `max_concurrency`.
const WINDOW_PER_WORKER: usize = 16;

/// Bytes of events (bodies and normalized forms) a tenant's window holds at most, whatever its
/// webhooks weigh: past it, no new claim until attempts take events out.
const WINDOW_BYTES: usize = 16 << 20;

/// How soon a tenant held back by its bound across replicas (see [`ClaimBatch::capped`]) asks
/// again: a claim is one short transaction, and a place freed elsewhere waits at most this long.
const CAPPED_RETRY_MS: u64 = 20;

/// Expired leases the reaper takes per round.
const REAP_BATCH: u32 = 256;

/// How the dispatcher paces itself.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Attempts running at once across all tenants.
    pub workers: usize,
    /// How long a claim is good for without renewal.
    pub lease: Duration,
    /// How often running attempts' leases are renewed (well under `lease`).
    pub renew_every: Duration,
    /// How often the reaper looks for expired leases.
    pub reap_every: Duration,
    /// The safety net: how often every tenant is looked at even without a wake-up (appends by
    /// another process, a plugin that came back).
    pub poll_every: Duration,
}

impl DispatchSettings {
    /// The defaults: 30 s leases renewed every 10 s, reaping and polling every second.
    pub fn new(workers: usize) -> DispatchSettings {
        DispatchSettings {
            workers,
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            reap_every: Duration::from_secs(1),
            poll_every: Duration::from_secs(1),
        }
    }
}

/// Handle used by ingress and the admin API to say that a tenant has new work.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    owner: Arc<str>,
    in_flight: watch::Receiver<usize>,
    stop: Arc<watch::Sender<bool>>,
}

/// Wake-ups, coalesced per tenant: a flood of appends is one set entry, not a queue.
#[derive(Default)]
struct Shared {
    woken: Mutex<HashSet<String>>,
    notify: Notify,
    /// Every lease this process holds (claimed, running or finishing): the renewer extends
    /// exactly these. A lease not in it (a claim whose commit failed ambiguously) expires.
    held: Mutex<HashSet<Lease>>,
}

impl Shared {
    fn wake(&self, tenant: &str) {
        let mut woken = self.woken.lock().expect("wake set");
        if !woken.contains(tenant) {
            woken.insert(tenant.to_string());
        }
        drop(woken);
        self.notify.notify_one();
    }
}

/// What the dispatcher's workers need.
pub struct DispatchDeps {
    /// The journal.
    pub storage: Arc<dyn Storage>,
    /// The wasm runtime.
    pub runtime: Arc<Runtime>,
    /// Loaded plugins.
    pub registry: Arc<PluginRegistry>,
    /// Tenants' settings.
    pub tenants: Arc<Tenants>,
    /// Shared outbound HTTP client that refuses host names resolving to non-public addresses.
    pub http_client: reqwest::Client,
    /// Shared client for tenants with `allow_private_networks`.
    pub http_client_private: reqwest::Client,
}

impl Dispatcher {
    /// Starts the dispatcher, its lease renewer, its reaper and its backlog gauge.
    pub fn start(deps: DispatchDeps, settings: DispatchSettings) -> Dispatcher {
        let deps = Arc::new(deps);
        let shared = Arc::new(Shared::default());
        let (in_flight_tx, in_flight) = watch::channel(0);
        let (stop, stop_rx) = watch::channel(false);
        // Unique per process start: leases say who holds them.
        let owner = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let core = Core {
            deps: deps.clone(),
            settings: settings.clone(),
            owner: owner.clone(),
            shared: shared.clone(),
            reports,
            in_flight: in_flight_tx,
            work: HashMap::new(),
            rotation: VecDeque::new(),
            running: 0,
            stopping: false,
        };
        tokio::spawn(core.run(reports_rx, stop_rx));
        tokio::spawn(renew_forever(
            deps.clone(),
            shared.clone(),
            settings.clone(),
        ));
        tokio::spawn(reap_forever(
            deps.clone(),
            shared.clone(),
            owner.clone(),
            settings,
        ));
        tokio::spawn(gauge_backlog_forever(deps));
        Dispatcher {
            shared,
            owner: owner.into(),
            in_flight,
            stop: Arc::new(stop),
        }
    }

    /// Who this process is to the store: its leases and duties are held under this name (unique
    /// per start).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// `tenant` has new events (appended or replayed): claim them now rather than at the next
    /// poll.
    pub fn wake(&self, tenant: &str) {
        self.shared.wake(tenant);
    }

    /// Stops starting attempts, gives back what was claimed but not started, and waits until
    /// every running attempt is recorded, or `timeout` passes; returns whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.stop.send_replace(true);
        let mut rx = self.in_flight.clone();
        let drained = tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        drained
    }
}

/// What a tenant's claims are doing in this process.
#[derive(Default)]
struct TenantWork {
    /// Claimed heads with their events, waiting for a worker (at most `Core::window` of them).
    window: VecDeque<ClaimedEvent>,
    /// The window's events' bytes (bounded by [`WINDOW_BYTES`]).
    window_bytes: usize,
    /// Attempts whose plugin runs (each holds a worker).
    running: usize,
    /// Attempts whose plugin returned, waiting for their finish to commit (the head stays
    /// claimed; the worker is free).
    finishing: usize,
    /// A claim request is in flight.
    claiming: bool,
    /// A claim may find something (woken, due, polled, or a head moved on).
    wanted: bool,
    /// When the earliest unclaimed head is due, if in the future.
    due_at_ms: Option<u64>,
}

impl TenantWork {
    /// Claims this process holds for the tenant.
    fn held(&self) -> usize {
        self.window.len() + self.running + self.finishing
    }

    /// Claims waiting or running: what the window bounds. Finishing attempts hold their heads
    /// but no worker and no event, so they do not hold back the next claim (commit pipelining:
    /// the next claims commit in the same group as these finishes).
    fn in_window(&self) -> usize {
        self.window.len() + self.running
    }
}

/// What attempt and claim tasks report to the loop.
enum Report {
    Claimed {
        tenant: String,
        asked: usize,
        batch: anyhow::Result<ClaimBatch>,
    },
    /// The plugin returned (or never ran): the worker is free.
    Returned { tenant: String },
    /// The claim is no longer held; the order's head is due again at this time, if known.
    Finished {
        tenant: String,
        lease: Lease,
        due_again_at_ms: Option<u64>,
    },
}

struct Core {
    deps: Arc<DispatchDeps>,
    settings: DispatchSettings,
    owner: String,
    shared: Arc<Shared>,
    reports: mpsc::UnboundedSender<Report>,
    in_flight: watch::Sender<usize>,
    work: HashMap<String, TenantWork>,
    /// Tenants with claims waiting, in turn order (round-robin).
    rotation: VecDeque<String>,
    /// Workers busy.
    running: usize,
    stopping: bool,
}

impl Core {
    async fn run(
        mut self,
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut poll = tokio::time::interval(self.settings.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !self.stopping {
                self.start_attempts();
                self.request_claims();
            }
            self.publish();
            let next_due = self.work.values().filter_map(|w| w.due_at_ms).min();
            let due = async {
                match next_due {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => self.on_report(report),
                    None => return,
                },
                _ = self.shared.notify.notified() => self.on_wake(),
                _ = due => self.on_due(),
                _ = poll.tick() => self.on_poll(),
                changed = stop.changed(), if !self.stopping => {
                    if changed.is_err() || *stop.borrow() {
                        self.on_stop();
                    }
                }
            }
        }
    }

    fn cap(&self, tenant: &str) -> usize {
        self.deps
            .tenants
            .get(tenant)
            .map(|t| t.limits.max_concurrency)
            .unwrap_or(self.settings.workers)
            .clamp(1, self.settings.workers)
    }

    /// Heads a tenant may hold claimed, waiting or running: enough to keep its workers busy
    /// while the next claim commits (a claim waits for a group commit, up to two under load).
    /// On a store shared by replicas, its cap: the store bounds the tenant's claims across all
    /// of them by the cap, and a head claimed here is one no other replica can run.
    fn window(&self, tenant: &str) -> usize {
        if self.deps.storage.is_shared() {
            self.cap(tenant)
        } else {
            self.cap(tenant) * WINDOW_PER_WORKER
        }
    }

    /// Hands claimed heads to free workers, round-robin across tenants (one attempt per tenant
    /// per turn), each within its cap. A tenant is in the rotation while it has claims waiting.
    fn start_attempts(&mut self) {
        let workers = self.settings.workers;
        loop {
            let mut started = false;
            for _ in 0..self.rotation.len() {
                if self.running >= workers {
                    return;
                }
                let Some(tenant) = self.rotation.pop_front() else {
                    return;
                };
                let cap = self.cap(&tenant);
                let Some(work) = self.work.get_mut(&tenant) else {
                    continue;
                };
                if work.running >= cap {
                    self.rotation.push_back(tenant);
                    continue;
                }
                let Some(claim) = work.window.pop_front() else {
                    continue;
                };
                work.window_bytes -= event_bytes(&claim);
                work.running += 1;
                self.running += 1;
                if !work.window.is_empty() {
                    self.rotation.push_back(tenant);
                }
                self.spawn_attempt(claim);
                started = true;
            }
            if !started {
                return;
            }
        }
    }

    fn spawn_attempt(&self, claimed: ClaimedEvent) {
        let deps = self.deps.clone();
        let reports = self.reports.clone();
        let claim = &claimed.claim;
        let span = tracing::info_span!("attempt", tenant = %claim.tenant, event = claim.lease.seq, attempt = claim.attempts + 1);
        tokio::spawn(
            async move {
                let tenant = claimed.claim.tenant.clone();
                let lease = claimed.claim.lease;
                let returned = {
                    let reports = reports.clone();
                    let tenant = tenant.clone();
                    move || {
                        let _ = reports.send(Report::Returned { tenant });
                    }
                };
                let due_again_at_ms = attempt(&deps, claimed, returned).await;
                let _ = reports.send(Report::Finished {
                    tenant,
                    lease,
                    due_again_at_ms,
                });
            }
            .instrument(span),
        );
    }

    /// Asks the store for more heads for every tenant that may have some and has room.
    fn request_claims(&mut self) {
        let tenants: Vec<String> = self
            .work
            .iter()
            .filter(|(_, w)| w.wanted && !w.claiming)
            .map(|(t, _)| t.clone())
            .collect();
        for tenant in tenants {
            let window = self.window(&tenant);
            if self.deps.registry.get(&tenant).is_none() {
                // No plugin loaded (yet, or it failed to load): claim nothing; the poll looks
                // again. A backlog behind a broken plugin stays in the journal.
                continue;
            }
            let shared = self.deps.storage.is_shared();
            let cap = self.cap(&tenant) as u32;
            let work = self.work.get_mut(&tenant).expect("listed above");
            let room = window.saturating_sub(work.in_window());
            // Claim in large batches (each costs a commit): once half the window is free. A
            // shared store's window is the cap, every place of which is worth a claim.
            let worth = if shared { 1 } else { window.div_ceil(2) };
            if room < worth || work.window_bytes >= WINDOW_BYTES {
                continue;
            }
            let limit = if shared {
                ClaimLimit::batch(room as u32).within(cap)
            } else {
                ClaimLimit::batch(room as u32)
            };
            work.wanted = false;
            work.claiming = true;
            let deps = self.deps.clone();
            let reports = self.reports.clone();
            let owner = self.owner.clone();
            let lease_ms = self.settings.lease.as_millis() as u64;
            tokio::spawn(async move {
                let batch = deps.storage.claim(&tenant, &owner, limit, lease_ms).await;
                let _ = reports.send(Report::Claimed {
                    tenant,
                    asked: room,
                    batch,
                });
            });
        }
    }

    /// Publishes what the loop holds: attempts not yet recorded (for `drain`) and claims waiting.
    fn publish(&self) {
        let unrecorded: usize = self.work.values().map(|w| w.running + w.finishing).sum();
        self.in_flight.send_replace(unrecorded);
        let waiting: usize = self.work.values().map(|w| w.window.len()).sum();
        metrics::gauge!(crate::telemetry::QUEUE_DEPTH).set(waiting as f64);
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Claimed {
                tenant,
                asked,
                batch,
            } => {
                let stopping = self.stopping;
                let work = self.work.entry(tenant.clone()).or_default();
                work.claiming = false;
                match batch {
                    Ok(batch) => {
                        let got = batch.claims.len();
                        let now = now_ms();
                        match batch.next_due_ms {
                            Some(at) if at > now => {
                                work.due_at_ms = Some(work.due_at_ms.map_or(at, |d| d.min(at)))
                            }
                            // Due heads wait for other replicas' claims to finish: nothing here
                            // hears of those, so look again shortly.
                            Some(_) if batch.capped => {
                                let at = now + CAPPED_RETRY_MS;
                                work.due_at_ms = Some(work.due_at_ms.map_or(at, |d| d.min(at)))
                            }
                            // More are due than were asked for (or became due meanwhile).
                            Some(_) => work.wanted = true,
                            None => {}
                        }
                        if got == asked {
                            work.wanted = true;
                        }
                        if got > 0 && work.window.is_empty() && !self.rotation.contains(&tenant) {
                            self.rotation.push_back(tenant.clone());
                        }
                        self.shared
                            .held
                            .lock()
                            .expect("held leases")
                            .extend(batch.claims.iter().map(|c| c.claim.lease));
                        work.window_bytes += batch.claims.iter().map(event_bytes).sum::<usize>();
                        work.window.extend(batch.claims);
                        if stopping {
                            self.release_window(&tenant);
                        }
                    }
                    Err(e) => {
                        // The poll asks again.
                        tracing::error!(%tenant, "cannot claim events from the journal: {e:#}");
                    }
                }
            }
            Report::Returned { tenant } => {
                self.running -= 1;
                if let Some(work) = self.work.get_mut(&tenant) {
                    work.running -= 1;
                    work.finishing += 1;
                    if !work.window.is_empty() && !self.rotation.contains(&tenant) {
                        self.rotation.push_back(tenant);
                    }
                }
            }
            Report::Finished {
                tenant,
                lease,
                due_again_at_ms,
            } => {
                self.shared.held.lock().expect("held leases").remove(&lease);
                if let Some(work) = self.work.get_mut(&tenant) {
                    work.finishing -= 1;
                    // The order's next event may be its head now.
                    work.wanted = true;
                    if let Some(at) = due_again_at_ms.filter(|at| *at > now_ms()) {
                        work.due_at_ms = Some(work.due_at_ms.map_or(at, |d| d.min(at)));
                    }
                }
            }
        }
    }

    fn on_wake(&mut self) {
        let woken = std::mem::take(&mut *self.shared.woken.lock().expect("wake set"));
        for tenant in woken {
            self.work.entry(tenant).or_default().wanted = true;
        }
    }

    fn on_due(&mut self) {
        let now = now_ms();
        for work in self.work.values_mut() {
            if work.due_at_ms.is_some_and(|at| at <= now) {
                work.due_at_ms = None;
                work.wanted = true;
            }
        }
    }

    /// The safety net: every configured tenant is looked at; tenants gone from the config and
    /// idle are forgotten.
    fn on_poll(&mut self) {
        let configured = self.deps.tenants.all();
        for name in configured.keys() {
            self.work.entry(name.clone()).or_default().wanted = true;
        }
        self.work
            .retain(|name, w| configured.contains_key(name) || w.held() > 0 || w.claiming);
    }

    /// Shutdown: no new attempts; claims not started are given back at once, so that they do not
    /// wait for their leases to expire.
    fn on_stop(&mut self) {
        self.stopping = true;
        let tenants: Vec<String> = self.work.keys().cloned().collect();
        for tenant in tenants {
            self.release_window(&tenant);
        }
        self.rotation.clear();
    }

    fn release_window(&mut self, tenant: &str) {
        let Some(work) = self.work.get_mut(tenant) else {
            return;
        };
        work.window_bytes = 0;
        for ClaimedEvent { claim, .. } in work.window.drain(..) {
            work.finishing += 1;
            let deps = self.deps.clone();
            let reports = self.reports.clone();
            tokio::spawn(async move {
                if let Err(e) = deps.storage.release(claim.lease, now_ms()).await {
                    tracing::warn!(
                        seq = claim.lease.seq,
                        "cannot give back a claim (its lease will expire): {e:#}"
                    );
                }
                let _ = reports.send(Report::Finished {
                    tenant: claim.tenant,
                    lease: claim.lease,
                    due_again_at_ms: None,
                });
            });
        }
    }
}

/// What a claimed event weighs in a window (its body; the rest is small and bounded).
fn event_bytes(claimed: &ClaimedEvent) -> usize {
    claimed.event.body.len() + 256
}

/// Keeps the leases this process holds alive while it runs.
async fn renew_forever(deps: Arc<DispatchDeps>, shared: Arc<Shared>, settings: DispatchSettings) {
    let mut tick = tokio::time::interval(settings.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held: Vec<Lease> = shared
            .held
            .lock()
            .expect("held leases")
            .iter()
            .copied()
            .collect();
        if held.is_empty() {
            continue;
        }
        if let Err(e) = deps
            .storage
            .renew_leases(&held, settings.lease.as_millis() as u64)
            .await
        {
            tracing::error!("cannot renew this process's leases: {e:#}");
        }
    }
}

/// Takes back expired leases: a started attempt counts as interrupted (and follows the retry
/// policy), a claim never started is released as if it had not been made.
async fn reap_forever(
    deps: Arc<DispatchDeps>,
    shared: Arc<Shared>,
    owner: String,
    settings: DispatchSettings,
) {
    let mut tick = tokio::time::interval(settings.reap_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One replica reaps at a time; if it stops, another takes over after three rounds.
    let turn_ms = 3 * settings.reap_every.as_millis() as u64;
    loop {
        tick.tick().await;
        match deps.storage.hold_duty(Duty::Reaper, &owner, turn_ms).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!("cannot take the reaping duty: {e:#}");
                continue;
            }
        }
        loop {
            let expired = match deps.storage.expired_leases(REAP_BATCH).await {
                Ok(expired) => expired,
                Err(e) => {
                    tracing::error!("cannot look for expired leases: {e:#}");
                    break;
                }
            };
            let full = expired.len() == REAP_BATCH as usize;
            for lease in expired {
                let tenant = lease.claim.tenant.clone();
                if let Err(e) = reap(&deps, lease).await {
                    tracing::error!(%tenant, "cannot take back an expired lease: {e:#}");
                }
                shared.wake(&tenant);
            }
            if !full {
                break;
            }
        }
    }
}

/// Once a second: the age of each tenant's oldest unfinished event (a gauge), from the journal.
async fn gauge_backlog_forever(deps: Arc<DispatchDeps>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_ms();
        for tenant in deps.tenants.all().keys() {
            match deps.storage.oldest_unfinished(tenant).await {
                Ok(oldest) => {
                    let age = oldest.map_or(0.0, |at| now.saturating_sub(at) as f64 / 1000.0);
                    metrics::gauge!(crate::telemetry::OLDEST_PENDING_SECONDS, "tenant" => tenant.clone())
                        .set(age);
                }
                Err(e) => tracing::warn!(%tenant, "cannot read the backlog's age: {e:#}"),
            }
        }
    }
}

/// Gives a claim back (pending, due at `at`), trying again until the store answers. Giving up
/// would strand the event: this process keeps renewing its leases, so the reaper would never take
/// it back (a database outage, a full disk). The head stays claimed meanwhile, which is right: its
/// last attempt's outcome is not known to the store yet.
async fn release_until_answered(deps: &DispatchDeps, lease: Lease, at: u64) {
    let mut wait = Duration::from_millis(100);
    loop {
        match deps.storage.release(lease, at).await {
            // False: the lease is no longer ours (the attempt's finish committed after all, or
            // the event was reaped); nothing to give back.
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(
                    seq = lease.seq,
                    "cannot give back a claim yet; trying again in {wait:?}: {e:#}"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Runs one attempt of a claimed head (its event came with the claim) and records it under its
/// lease; calls `returned` when the
/// worker is free (the plugin returned, or nothing could run). Returns when the order's head is
/// due again, if it is known to be (a retry, or a claim given back).
async fn attempt(
    deps: &DispatchDeps,
    ClaimedEvent { claim, event }: ClaimedEvent,
    returned: impl FnOnce(),
) -> Option<u64> {
    let lease = claim.lease;
    let give_back = |wait_ms: u64| async move {
        let at = now_ms() + wait_ms;
        release_until_answered(deps, lease, at).await;
        Some(at)
    };
    let Some(tenant) = deps.tenants.get(&claim.tenant) else {
        tracing::warn!(tenant = %claim.tenant, seq = lease.seq, "event's tenant is not configured; it waits");
        returned();
        return give_back(NO_PLUGIN_WAIT_MS * 10).await;
    };
    let Some(plugin) = deps.registry.get(&claim.tenant) else {
        returned();
        return give_back(NO_PLUGIN_WAIT_MS).await;
    };
    let number = claim.attempts + 1;
    let http = HttpCapability::new(
        match tenant.allow_private_networks {
            true => deps.http_client_private.clone(),
            false => deps.http_client.clone(),
        },
        tenant.allow.clone(),
        tenant.http_limits,
    );
    let cx = tenant.attempt_context(deps.storage.clone(), http, InstanceUse::AsConfigured);
    let started_at_ms = now_ms();
    // Queued before the plugin runs, so that if this process stops, the attempt counts.
    if let Err(e) = deps
        .storage
        .mark_started(lease, started_at_ms, &plugin.version)
        .await
    {
        tracing::error!(seq = lease.seq, "cannot mark the attempt as started: {e:#}");
    }
    let shadow = start_shadow(deps, &tenant, &event, number);
    let report = deps.runtime.run(&plugin, &event, number, cx).await;
    let outcome = match report.result {
        Ok(PluginOutcome::Done) => AttemptOutcome::Done,
        Ok(PluginOutcome::Skipped(reason)) => AttemptOutcome::Skipped { reason },
        Ok(PluginOutcome::RetryAfter(seconds)) => AttemptOutcome::RetryAfter { seconds },
        Err(message) => AttemptOutcome::Error { message },
    };
    let decision = decide(
        &outcome,
        number,
        claim.attempt_base,
        &tenant.retry,
        now_ms(),
        random_jitter(),
    );
    let (next_state, next_attempt_at_ms) = decision.next_state();
    match &outcome {
        AttemptOutcome::Error { message } => {
            tracing::warn!(tenant = %claim.tenant, seq = lease.seq, attempt = number,
            version = %plugin.version, dead = next_state == EventState::Dead, "attempt failed: {message}")
        }
        _ => {
            tracing::debug!(tenant = %claim.tenant, seq = lease.seq, attempt = number, version = %plugin.version,
            us = report.duration.as_micros() as u64, "attempt finished: {outcome:?}")
        }
    }
    let outcome_label = match &outcome {
        AttemptOutcome::Done => "done",
        AttemptOutcome::Skipped { .. } => "skipped",
        AttemptOutcome::RetryAfter { .. } => "retry",
        AttemptOutcome::Error { .. } => "error",
    };
    let effects = Effects::of(&report.kv_writes, report.requests);
    if let Some(shadow) = shadow {
        shadow.compare_with(
            deps,
            ServingAttempt {
                seq: lease.seq,
                attempt: number,
                version: plugin.version.clone(),
                outcome: outcome.clone(),
                effects: effects.clone(),
                kv_reads: report.kv_reads.clone(),
                duration: report.duration,
            },
        );
    }
    let finished = FinishedAttempt {
        lease,
        tenant: claim.tenant.clone(),
        record: AttemptRecord {
            attempt: number,
            plugin_version: plugin.version.clone(),
            started_at_ms,
            duration_us: report.duration.as_micros() as u64,
            outcome,
            logs: report.logs,
            logs_dropped: report.logs_dropped,
            effects: Some(effects),
        },
        kv_writes: report.kv_writes,
        kv_reads: report.kv_reads,
        next_state,
        next_attempt_at_ms,
    };
    use crate::telemetry as m;
    // The worker goes to the next attempt now, without waiting for this commit (commit
    // pipelining); but only once the finish is queued to the store (its first poll), so that the
    // next attempt's start mark never commits before this attempt's end.
    let mut finish = std::pin::pin!(deps.storage.finish_attempt(finished));
    let finished_at_once = tokio::select! {
        biased;
        result = &mut finish => Some(result),
        () = std::future::ready(()) => None,
    };
    returned();
    let result = match finished_at_once {
        Some(result) => result,
        None => finish.await,
    };
    match result {
        Ok(FinishResult::Committed) => {
            metrics::counter!(m::ATTEMPTS, "tenant" => claim.tenant.clone(), "outcome" => outcome_label)
                .increment(1);
            metrics::histogram!(m::PLUGIN_SECONDS, "tenant" => claim.tenant.clone())
                .record(report.duration.as_secs_f64());
            if next_state == EventState::Dead {
                metrics::counter!(m::DEAD_LETTERS, "tenant" => claim.tenant.clone()).increment(1);
            }
            (next_state == EventState::Pending).then_some(next_attempt_at_ms)
        }
        Ok(FinishResult::KvConflict(conflict)) => {
            // Another attempt of this tenant changed what this one read, and committed first:
            // nothing was written, and the attempt is not counted (it had no effect and it is
            // not the plugin's fault). The store gave the claim back, due at once: the event
            // runs again on fresh data with the same attempt number. Every conflict means
            // another attempt committed, so the tenant always makes progress.
            tracing::debug!(tenant = %claim.tenant, seq = lease.seq, "{conflict}");
            metrics::counter!(m::KV_CONFLICTS, "tenant" => claim.tenant.clone()).increment(1);
            Some(now_ms())
        }
        Ok(FinishResult::LeaseLost) => {
            // The lease expired and was reaped (this process stalled past its term): the event
            // was or will be run again by its new holder; this attempt leaves nothing behind.
            tracing::warn!(tenant = %claim.tenant, seq = lease.seq, attempt = number,
                "the attempt's lease expired before it finished: its outcome and kv writes were discarded");
            metrics::counter!(m::LEASES_LOST, "tenant" => claim.tenant.clone()).increment(1);
            None
        }
        Err(e) => {
            // The attempt's effects were not recorded: run it again (at-least-once).
            tracing::error!(tenant = %claim.tenant, seq = lease.seq, "cannot record the attempt; it will run again: {e:#}");
            give_back(NO_PLUGIN_WAIT_MS).await
        }
    }
}

/// A shadow's dry run of one attempt's event, running beside it.
struct ShadowAttempt {
    tenant: String,
    number: u32,
    run: tokio::task::JoinHandle<crate::plugins::dryrun::DryAttempt>,
}

/// What the active attempt did, for its shadow to be compared with.
struct ServingAttempt {
    seq: i64,
    attempt: u32,
    version: String,
    outcome: AttemptOutcome,
    effects: Effects,
    kv_reads: Vec<crate::storage::KvRead>,
    duration: Duration,
}

/// Starts `tenant`'s shadow on `event` beside attempt `number`, if it has one, this attempt
/// falls in its share, and one of its runs is free (the attempt itself never waits for it).
fn start_shadow(
    deps: &DispatchDeps,
    tenant: &Arc<crate::tenants::Tenant>,
    event: &crate::storage::StoredEvent,
    number: u32,
) -> Option<ShadowAttempt> {
    let shadow = deps.registry.shadow(&tenant.name)?;
    if rand::random::<f64>() >= shadow.share {
        return None;
    }
    let Ok(permit) = shadow.running.clone().try_acquire_owned() else {
        metrics::counter!(crate::telemetry::SHADOW_RUNS, "tenant" => tenant.name.clone(), "verdict" => "skipped")
            .increment(1);
        return None;
    };
    let runner = crate::plugins::dryrun::DryRunner::from_parts(
        deps.runtime.clone(),
        deps.storage.clone(),
        deps.http_client.clone(),
    );
    let (for_run, event) = (tenant.clone(), event.clone());
    let plugin = shadow.plugin.clone();
    let run = tokio::spawn(async move {
        let _permit = permit;
        runner.run(&for_run, &plugin, &event, number).await
    });
    Some(ShadowAttempt {
        tenant: tenant.name.clone(),
        number: shadow.number,
        run,
    })
}

impl ShadowAttempt {
    /// Once the shadow's run ends, compares it with `serving` and records the verdict, in a
    /// task of its own: the attempt goes on at once.
    fn compare_with(self, deps: &DispatchDeps, serving: ServingAttempt) {
        let storage = deps.storage.clone();
        tokio::spawn(async move {
            let Ok(dry) = self.run.await else {
                return;
            };
            let observed = crate::plugins::dryrun::Observed {
                outcome: &serving.outcome,
                effects: Some(&serving.effects),
                kv_reads: Some(&serving.kv_reads),
            };
            let comparison = crate::plugins::dryrun::compare(&observed, &dry);
            let verdict = comparison.verdict();
            use crate::telemetry as m;
            metrics::counter!(m::SHADOW_RUNS, "tenant" => self.tenant.clone(), "verdict" => verdict)
                .increment(1);
            metrics::histogram!(m::SHADOW_SECONDS, "tenant" => self.tenant.clone())
                .record(dry.duration.as_secs_f64());
            let run = crate::storage::ShadowRun {
                tenant: self.tenant,
                number: self.number,
                seq: serving.seq,
                attempt: serving.attempt,
                at_ms: now_ms(),
                serving_version: serving.version,
                shadow_version: dry.version.clone(),
                verdict: verdict.to_string(),
                comparison: serde_json::to_value(&comparison).unwrap_or_default(),
                serving_us: serving.duration.as_micros() as u64,
                shadow_us: dry.duration.as_micros() as u64,
            };
            if let Err(e) = storage.record_shadow_run(&run).await {
                tracing::warn!(tenant = %run.tenant, seq = run.seq, "cannot record a shadow run: {e:#}");
            }
        });
    }
}

/// Takes back one expired lease. A started attempt is recorded as failed ("interrupted") and
/// follows its retry policy like any failure; a claim never started is released uncounted.
async fn reap(deps: &DispatchDeps, expired: ExpiredLease) -> anyhow::Result<()> {
    let claim = expired.claim;
    let Some((started_at_ms, version)) = expired.started else {
        deps.storage.release(claim.lease, now_ms()).await?;
        return Ok(());
    };
    let number = claim.attempts + 1;
    let policy = deps
        .tenants
        .get(&claim.tenant)
        .map(|t| t.retry.clone())
        .unwrap_or_default();
    let outcome = AttemptOutcome::Error {
        message: "interrupted: the attempt's lease expired before it finished (hookhost stopped: crash, kill or shutdown timeout, or stalled); \
                  its kv writes were discarded"
            .into(),
    };
    // The same rule as for an attempt that returned an error.
    let decision = decide(
        &outcome,
        number,
        claim.attempt_base,
        &policy,
        now_ms(),
        random_jitter(),
    );
    let (next_state, next_attempt_at_ms) = decision.next_state();
    let result = deps
        .storage
        .finish_attempt(FinishedAttempt {
            lease: claim.lease,
            tenant: claim.tenant.clone(),
            record: AttemptRecord {
                attempt: number,
                plugin_version: version,
                started_at_ms,
                duration_us: now_ms().saturating_sub(started_at_ms) * 1000,
                outcome,
                logs: Vec::new(),
                logs_dropped: 0,
                effects: None,
            },
            kv_writes: Vec::new(),
            kv_reads: Vec::new(),
            next_state,
            next_attempt_at_ms,
        })
        .await?;
    if result == FinishResult::Committed {
        let dead = decision == Decision::Dead;
        tracing::warn!(seq = claim.lease.seq, tenant = %claim.tenant, attempt = number, dead, "attempt whose lease expired recorded as interrupted");
        if dead {
            metrics::counter!(crate::telemetry::DEAD_LETTERS, "tenant" => claim.tenant.clone())
                .increment(1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! The dispatcher: hands journaled events to plugins.
//!
//! Events of the same (tenant, order) run one at a time in the order they were received, so an
//! order's status changes are never handled out of order; different orders run in parallel up to
//! the worker limit. A failed attempt (error, trap, timeout, `retry-after`) is retried with
//! exponential backoff and jitter, holding back later events of that order; after the tenant's
//! last attempt the event becomes a dead letter and the order moves on. Each attempt's record, kv
//! writes and the event's next state are committed together. What an outcome does to its event
//! is decided by one pure function, [`decide`] (in [`decision`]), for attempts that ran and for
//! attempts a stop interrupted alike.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

pub mod decision;

pub use decision::{backoff_ms, decide, random_jitter, Decision};

use crate::capabilities::http::HttpCapability;
use crate::now_ms;
use crate::plugins::PluginRegistry;
use crate::runtime::{PluginOutcome, Runtime};
use crate::storage::{
    AttemptOutcome, AttemptRecord, EventState, FinishedAttempt, KvConflict, Storage, StoredEvent,
};
use crate::tenants::{InstanceUse, Tenants};

/// How long an event waits before looking again for a plugin that is not loaded.
const NO_PLUGIN_WAIT_MS: u64 = 1_000;

type OrderKey = (String, String);

/// What the dispatcher is told.
enum Message {
    Enqueue(Box<StoredEvent>),
    Finished(OrderKey, Next),
}

/// What happens to an order's head event after an attempt.
enum Next {
    /// Finished (done, skipped or dead): the order's next event may run.
    Completed,
    /// Try the same event again at this time (attempts now made given).
    Retry { at_ms: u64, attempts: u32 },
}

/// Handle used by ingress to hand over newly journaled events.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::UnboundedSender<Message>,
    in_flight: watch::Receiver<usize>,
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
    /// Starts the dispatcher with `workers` concurrent attempts.
    pub fn start(deps: DispatchDeps, workers: usize) -> Dispatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let (in_flight_tx, in_flight) = watch::channel(0);
        let core = Core {
            deps: Arc::new(deps),
            workers,
            tx: tx.clone(),
            in_flight: in_flight_tx,
        };
        tokio::spawn(core.run(rx));
        Dispatcher { tx, in_flight }
    }

    /// Queues a journaled event.
    pub fn enqueue(&self, event: StoredEvent) {
        // The loop only ends when every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send(Message::Enqueue(Box::new(event)));
    }

    /// Waits until no attempt is running, or `timeout` passes; returns whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let mut rx = self.in_flight.clone();
        let drained = tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        drained
    }
}

#[derive(Default)]
struct OrderQueue {
    events: VecDeque<StoredEvent>,
    /// An attempt of the head event is running.
    busy: bool,
    /// The head event waits for a timer.
    waiting: bool,
}

impl OrderQueue {
    /// Adds an event in journal order. Webhooks of one order committed in the same group commit
    /// reach the dispatcher in whatever order their tasks run; the journal's sequence is the order
    /// they were received in, so a late arrival goes before later events — but never ahead of a
    /// head whose attempt is running or waiting for its retry, nor (not yet due) ahead of any head.
    fn insert(&mut self, event: StoredEvent) {
        let first_movable =
            usize::from(self.busy || self.waiting || event.next_attempt_at_ms > now_ms());
        let mut at = self.events.len();
        while at > first_movable && self.events[at - 1].seq > event.seq {
            at -= 1;
        }
        self.events.insert(at, event);
    }
}

struct Core {
    deps: Arc<DispatchDeps>,
    workers: usize,
    tx: mpsc::UnboundedSender<Message>,
    in_flight: watch::Sender<usize>,
}

impl Core {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let mut queues: HashMap<OrderKey, OrderQueue> = HashMap::new();
        let mut ready = Ready::default();
        let deps = self.deps.clone();
        let workers = self.workers;
        let cap = move |tenant: &str| {
            deps.tenants
                .get(tenant)
                .map(|t| t.limits.max_concurrency)
                .unwrap_or(workers)
        };
        let mut timers: BinaryHeap<Reverse<(u64, OrderKey)>> = BinaryHeap::new();
        // Once a second: the age of each tenant's oldest unfinished event (a gauge).
        let mut age_tick = tokio::time::interval(Duration::from_secs(1));
        age_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut aged_tenants: Vec<String> = Vec::new();
        let mut running = 0usize;
        // Events queued (a running count: summing the queues on every message would make the
        // loop quadratic under a flood of distinct orders).
        let mut queued = 0usize;
        loop {
            while running < self.workers {
                let Some(key) = ready.next(&cap) else { break };
                let Some(queue) = queues.get_mut(&key).filter(|q| !q.events.is_empty()) else {
                    ready.finished(&key.0);
                    continue;
                };
                if self.deps.registry.get(&key.0).is_none() {
                    // No plugin loaded (yet, or it failed to load): look again later without
                    // starting an attempt, so a backlog behind a broken plugin costs a timer
                    // per order, not a task per order every second.
                    ready.finished(&key.0);
                    queue.waiting = true;
                    timers.push(Reverse((now_ms() + NO_PLUGIN_WAIT_MS, key)));
                    continue;
                }
                let event = queue.events.front().cloned().expect("checked above");
                queue.busy = true;
                running += 1;
                let deps = self.deps.clone();
                let tx = self.tx.clone();
                let span = tracing::info_span!("attempt", tenant = %event.tenant, event = event.seq, attempt = event.attempts + 1);
                tokio::spawn(async move {
                    let next = attempt(&deps, event).instrument(span).await;
                    let _ = tx.send(Message::Finished(key, next));
                });
            }
            self.in_flight.send_replace(running);
            metrics::gauge!(crate::telemetry::QUEUE_DEPTH).set(queued as f64);
            let next_timer = timers.peek().map(|Reverse((at, _))| *at);
            let sleep = async {
                match next_timer {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = rx.recv() => match message {
                    None => return,
                    Some(Message::Enqueue(event)) => {
                        let key = (event.tenant.clone(), event.event.delivery_key());
                        // Most orders hold one event at a time: room for exactly one (a default
                        // VecDeque reserves four, ~1.5 KB per queued event under a backlog).
                        let queue = queues.entry(key.clone()).or_insert_with(|| OrderQueue {
                            events: VecDeque::with_capacity(1),
                            ..OrderQueue::default()
                        });
                        queue.insert(*event);
                        queued += 1;
                        if queue.events.len() == 1 {
                            schedule_head(&key, queue, &mut ready, &mut timers);
                        }
                    }
                    Some(Message::Finished(key, next)) => {
                        running -= 1;
                        ready.finished(&key.0);
                        let Some(queue) = queues.get_mut(&key) else { continue };
                        queue.busy = false;
                        match next {
                            Next::Completed => {
                                if queue.events.pop_front().is_some() {
                                    queued -= 1;
                                }
                            }
                            Next::Retry { at_ms, attempts } => {
                                if let Some(head) = queue.events.front_mut() {
                                    head.next_attempt_at_ms = at_ms;
                                    head.attempts = attempts;
                                }
                            }
                        }
                        if queue.events.is_empty() {
                            queues.remove(&key);
                        } else {
                            schedule_head(&key, queue, &mut ready, &mut timers);
                        }
                    }
                },
                _ = age_tick.tick() => {
                    // Each order's head is its oldest event: O(orders) once a second.
                    let mut oldest: HashMap<&str, u64> = HashMap::new();
                    for ((tenant, _), queue) in &queues {
                        if let Some(head) = queue.events.front() {
                            let at = oldest.entry(tenant.as_str()).or_insert(u64::MAX);
                            *at = (*at).min(head.received_at_ms);
                        }
                    }
                    let now = now_ms();
                    for tenant in &aged_tenants {
                        if !oldest.contains_key(tenant.as_str()) {
                            metrics::gauge!(crate::telemetry::OLDEST_PENDING_SECONDS, "tenant" => tenant.clone()).set(0.0);
                        }
                    }
                    for (tenant, at) in &oldest {
                        metrics::gauge!(crate::telemetry::OLDEST_PENDING_SECONDS, "tenant" => tenant.to_string())
                            .set(now.saturating_sub(*at) as f64 / 1000.0);
                    }
                    aged_tenants = oldest.keys().map(|t| t.to_string()).collect();
                }
                _ = sleep => {
                    let now = now_ms();
                    while let Some(Reverse((at, _))) = timers.peek() {
                        if *at > now {
                            break;
                        }
                        let Reverse((_, key)) = timers.pop().expect("peeked");
                        if let Some(queue) = queues.get_mut(&key) {
                            queue.waiting = false;
                            ready.push(key);
                        }
                    }
                }
            }
        }
    }
}

/// Orders whose head event can run now, kept per tenant and served round-robin across tenants,
/// each tenant within its concurrency cap: a tenant flooded with webhooks, or with a slow plugin,
/// cannot take every worker from the others.
#[derive(Default)]
struct Ready {
    by_tenant: HashMap<String, VecDeque<OrderKey>>,
    /// Tenants with ready orders, in turn order (a tenant is here iff it has ready orders).
    rotation: VecDeque<String>,
    running: HashMap<String, usize>,
}

impl Ready {
    fn push(&mut self, key: OrderKey) {
        let queue = self.by_tenant.entry(key.0.clone()).or_default();
        if queue.is_empty() {
            self.rotation.push_back(key.0.clone());
        }
        queue.push_back(key);
    }

    /// The next order to run: the first order of the next tenant in turn that is under its cap.
    fn next(&mut self, cap: impl Fn(&str) -> usize) -> Option<OrderKey> {
        for _ in 0..self.rotation.len() {
            let tenant = self.rotation.pop_front()?;
            if self.running.get(&tenant).copied().unwrap_or(0) >= cap(&tenant) {
                self.rotation.push_back(tenant);
                continue;
            }
            let queue = self.by_tenant.get_mut(&tenant)?;
            let key = queue.pop_front()?;
            if queue.is_empty() {
                self.by_tenant.remove(&tenant);
            } else {
                self.rotation.push_back(tenant.clone());
            }
            *self.running.entry(tenant).or_default() += 1;
            return Some(key);
        }
        None
    }

    /// One of `tenant`'s attempts ended.
    fn finished(&mut self, tenant: &str) {
        if let Some(n) = self.running.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(tenant);
            }
        }
    }
}

fn schedule_head(
    key: &OrderKey,
    queue: &mut OrderQueue,
    ready: &mut Ready,
    timers: &mut BinaryHeap<Reverse<(u64, OrderKey)>>,
) {
    if queue.busy || queue.waiting {
        return;
    }
    let Some(head) = queue.events.front() else {
        return;
    };
    if head.next_attempt_at_ms <= now_ms() {
        ready.push(key.clone());
    } else {
        queue.waiting = true;
        timers.push(Reverse((head.next_attempt_at_ms, key.clone())));
    }
}

/// Runs one attempt of `event` and records it; returns what the order's queue should do next.
async fn attempt(deps: &DispatchDeps, event: StoredEvent) -> Next {
    let Some(tenant) = deps.tenants.get(&event.tenant) else {
        tracing::warn!(tenant = %event.tenant, seq = event.seq, "event's tenant is not configured; it waits");
        return Next::Retry {
            at_ms: now_ms() + NO_PLUGIN_WAIT_MS * 10,
            attempts: event.attempts,
        };
    };
    let Some(plugin) = deps.registry.get(&event.tenant) else {
        return Next::Retry {
            at_ms: now_ms() + NO_PLUGIN_WAIT_MS,
            attempts: event.attempts,
        };
    };
    let number = event.attempts + 1;
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
    // Marked before running, so an attempt cut short by a crash still counts at the next start.
    if let Err(e) = deps
        .storage
        .start_attempt(event.seq, number, started_at_ms, &plugin.version)
        .await
    {
        tracing::error!(seq = event.seq, "cannot mark the attempt as started: {e:#}");
    }
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
        event.attempt_base,
        &tenant.retry,
        now_ms(),
        random_jitter(),
    );
    let (next_state, next_attempt_at_ms) = decision.next_state();
    match &outcome {
        AttemptOutcome::Error { message } => {
            tracing::warn!(tenant = %event.tenant, seq = event.seq, attempt = number,
            version = %plugin.version, dead = next_state == EventState::Dead, "attempt failed: {message}")
        }
        _ => {
            tracing::debug!(tenant = %event.tenant, seq = event.seq, attempt = number, version = %plugin.version,
            us = report.duration.as_micros() as u64, "attempt finished: {outcome:?}")
        }
    }
    {
        use crate::telemetry as m;
        let outcome = match &outcome {
            AttemptOutcome::Done => "done",
            AttemptOutcome::Skipped { .. } => "skipped",
            AttemptOutcome::RetryAfter { .. } => "retry",
            AttemptOutcome::Error { .. } => "error",
        };
        metrics::counter!(m::ATTEMPTS, "tenant" => event.tenant.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(m::PLUGIN_SECONDS, "tenant" => event.tenant.clone())
            .record(report.duration.as_secs_f64());
        if next_state == EventState::Dead {
            metrics::counter!(m::DEAD_LETTERS, "tenant" => event.tenant.clone()).increment(1);
        }
    }
    let finished = FinishedAttempt {
        seq: event.seq,
        tenant: event.tenant.clone(),
        record: AttemptRecord {
            attempt: number,
            plugin_version: plugin.version.clone(),
            started_at_ms,
            duration_us: report.duration.as_micros() as u64,
            outcome,
            logs: report.logs,
            logs_dropped: report.logs_dropped,
        },
        kv_writes: report.kv_writes,
        kv_reads: report.kv_reads,
        next_state,
        next_attempt_at_ms,
    };
    let committed = deps.storage.finish_attempt(finished).await;
    if let Some(conflict) = committed
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<KvConflict>())
    {
        // Another attempt of this tenant changed what this one read, and committed first:
        // nothing was written, and the attempt is not counted (it had no effect and it is not the
        // plugin's fault). The event runs again at once on fresh data with the same attempt
        // number, as if this run had not happened; every conflict means another attempt
        // committed, so the tenant always makes progress.
        tracing::debug!(tenant = %event.tenant, seq = event.seq, "{conflict}");
        metrics::counter!(crate::telemetry::KV_CONFLICTS, "tenant" => event.tenant.clone())
            .increment(1);
        if let Err(e) = deps.storage.release_attempt(event.seq).await {
            tracing::error!(
                seq = event.seq,
                "cannot take back the attempt's start mark: {e:#}"
            );
        }
        return Next::Retry {
            at_ms: now_ms() + rand::rng().random_range(1..=20),
            attempts: event.attempts,
        };
    }
    if let Err(e) = committed {
        // The attempt's effects were not recorded: run it again (at-least-once).
        tracing::error!(tenant = %event.tenant, seq = event.seq, "cannot record the attempt; it will run again: {e:#}");
        return Next::Retry {
            at_ms: now_ms() + NO_PLUGIN_WAIT_MS,
            attempts: event.attempts,
        };
    }
    match next_state {
        EventState::Pending => Next::Retry {
            at_ms: next_attempt_at_ms,
            attempts: number,
        },
        _ => Next::Completed,
    }
}

/// At start: an event whose attempt was running when hookhost stopped (crash, kill, or a shutdown
/// that timed out) gets that attempt recorded as failed, then follows its retry policy like any
/// failure. Returns the event to dispatch, or `None` if that was its last attempt (dead letter).
pub async fn record_interrupted(
    storage: &dyn Storage,
    tenants: &Tenants,
    mut event: StoredEvent,
) -> anyhow::Result<Option<StoredEvent>> {
    let Some((started_at_ms, version)) = event.interrupted.take() else {
        return Ok(Some(event));
    };
    let number = event.attempts + 1;
    let policy = tenants
        .get(&event.tenant)
        .map(|t| t.retry.clone())
        .unwrap_or_default();
    let outcome = AttemptOutcome::Error {
        message: "interrupted: hookhost stopped while this attempt was running (crash, kill or shutdown timeout); \
                  its kv writes were discarded"
            .into(),
    };
    // The same rule as for an attempt that returned an error.
    let decision = decide(
        &outcome,
        number,
        event.attempt_base,
        &policy,
        now_ms(),
        random_jitter(),
    );
    let (next_state, next_attempt_at_ms) = decision.next_state();
    let dead = decision == Decision::Dead;
    storage
        .finish_attempt(FinishedAttempt {
            seq: event.seq,
            tenant: event.tenant.clone(),
            record: AttemptRecord {
                attempt: number,
                plugin_version: version,
                started_at_ms,
                duration_us: now_ms().saturating_sub(started_at_ms) * 1000,
                outcome,
                logs: Vec::new(),
                logs_dropped: 0,
            },
            kv_writes: Vec::new(),
            kv_reads: Vec::new(),
            next_state,
            next_attempt_at_ms,
        })
        .await?;
    tracing::warn!(seq = event.seq, tenant = %event.tenant, attempt = number, dead, "attempt interrupted by the last stop recorded as failed");
    if dead {
        return Ok(None);
    }
    event.attempts = number;
    event.next_attempt_at_ms = next_attempt_at_ms;
    Ok(Some(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, order: &str) -> OrderKey {
        (tenant.to_string(), order.to_string())
    }

    fn stored(seq: i64) -> StoredEvent {
        StoredEvent {
            seq,
            tenant: "acme".into(),
            source: "fc".into(),
            received_at_ms: 0,
            attempts: 0,
            next_attempt_at_ms: 0,
            attempt_base: 0,
            interrupted: None,
            body: Vec::new(),
            event: crate::event::NormalizedEvent::sample(&format!("e{seq}"), Some("o1")),
        }
    }

    #[test]
    fn an_order_runs_its_events_in_journal_order_whatever_order_they_arrive_in() {
        let seqs = |q: &OrderQueue| q.events.iter().map(|e| e.seq).collect::<Vec<_>>();
        let mut q = OrderQueue::default();
        for seq in [3, 5, 4, 1] {
            q.insert(stored(seq));
        }
        assert_eq!(seqs(&q), [1, 3, 4, 5]);
        // A running head stays first; a late arrival goes right behind it.
        q.busy = true;
        q.insert(stored(0));
        assert_eq!(seqs(&q), [1, 0, 3, 4, 5]);
        // Likewise a head waiting for its retry, and an event not due yet (never ahead of a head).
        let mut q = OrderQueue {
            waiting: true,
            ..OrderQueue::default()
        };
        q.insert(stored(7));
        q.insert(stored(6));
        assert_eq!(seqs(&q), [7, 6]);
        let mut q = OrderQueue::default();
        q.insert(stored(9));
        q.insert(StoredEvent {
            next_attempt_at_ms: u64::MAX,
            ..stored(8)
        });
        assert_eq!(seqs(&q), [9, 8]);
    }

    #[test]
    fn ready_orders_are_served_round_robin_within_caps() {
        let mut ready = Ready::default();
        for i in 0..4 {
            ready.push(key("flood", &format!("f{i}")));
        }
        ready.push(key("quiet", "q0"));
        ready.push(key("quiet", "q1"));
        let cap = |t: &str| if t == "flood" { 2 } else { 10 };
        let order: Vec<String> = std::iter::from_fn(|| ready.next(cap))
            .map(|k| k.1)
            .collect();
        // flood is capped at 2 running; quiet gets its turns in between.
        assert_eq!(order, ["f0", "q0", "f1", "q1"]);
        assert_eq!(ready.next(cap), None, "flood is at its cap");
        ready.finished("flood");
        assert_eq!(ready.next(cap), Some(key("flood", "f2")));
        assert_eq!(ready.next(cap), None);
        ready.finished("flood");
        ready.finished("flood");
        assert_eq!(ready.next(cap), Some(key("flood", "f3")));
        assert!(ready.rotation.is_empty() && ready.by_tenant.is_empty());
    }
}

//! The journal and the tenants' kv, behind one trait so that a PostgreSQL backend (for several
//! replicas) can be added without touching the pipeline. SQLite is the embedded default.

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::event::NormalizedEvent;

#[cfg(test)]
mod conformance;
pub mod memory;
pub mod sqlite;

/// A boxed future, so the trait stays object-safe (`Arc<dyn Storage>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An accepted webhook, to be journaled before it is acknowledged.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Tenant name.
    pub tenant: String,
    /// Source name.
    pub source: String,
    /// When hookhost accepted it (ms since the epoch).
    pub received_at_ms: u64,
    /// The request headers worth keeping (never credentials).
    pub headers: Vec<(String, String)>,
    /// The raw body, verbatim.
    pub body: Vec<u8>,
    /// The normalized event.
    pub event: NormalizedEvent,
}

/// What the journal did with an appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// New: journaled under this sequence number and to be dispatched.
    Accepted(i64),
    /// Already journaled (same tenant, source and dedupe key) under this sequence number; it is not
    /// dispatched again.
    Duplicate(i64),
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventState {
    /// Waiting for (another) attempt.
    Pending,
    /// An attempt is running (if hookhost stops now, that attempt counts as failed at restart).
    Running,
    /// The plugin returned `done`.
    Done,
    /// The plugin returned `skipped`.
    Skipped,
    /// Every attempt failed; kept for inspection and replay.
    Dead,
}

impl EventState {
    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::Running => "running",
            EventState::Done => "done",
            EventState::Skipped => "skipped",
            EventState::Dead => "dead",
        }
    }

    /// Every state, in the order of an event's life.
    pub const ALL: [EventState; 5] = [
        EventState::Pending,
        EventState::Running,
        EventState::Done,
        EventState::Skipped,
        EventState::Dead,
    ];
}

/// A state name that is none of [`EventState::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState(pub String);

impl std::fmt::Display for UnknownState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown state {:?}: use pending, running, done, skipped or dead",
            self.0
        )
    }
}

impl std::error::Error for UnknownState {}

impl std::str::FromStr for EventState {
    type Err = UnknownState;

    /// The state named `s`, as stored and as admin filters name it.
    fn from_str(s: &str) -> Result<EventState, UnknownState> {
        EventState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// An event as the dispatcher needs it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Journal sequence number (global receive order).
    pub seq: i64,
    /// Tenant name.
    pub tenant: String,
    /// Source name.
    pub source: String,
    /// When it was accepted.
    pub received_at_ms: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub next_attempt_at_ms: u64,
    /// Attempts made before the last replay: the retry budget counts from here.
    pub attempt_base: u32,
    /// Set when an attempt was running when hookhost stopped: when it started (ms) and the
    /// plugin version it ran.
    pub interrupted: Option<(u64, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The normalized event.
    pub event: NormalizedEvent,
}

/// One line a plugin logged during an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// trace, debug, info, warn or error.
    pub level: String,
    /// The text.
    pub message: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum AttemptOutcome {
    /// The plugin returned `done`.
    Done,
    /// The plugin returned `skipped` with this reason.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The plugin asked to be called again after this many seconds.
    RetryAfter {
        /// Seconds.
        seconds: u32,
    },
    /// The plugin returned an error, trapped, timed out or ran out of memory.
    Error {
        /// What happened, for the merchant.
        message: String,
    },
}

/// The record of one attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The plugin version (content hash) that ran.
    pub plugin_version: String,
    /// When it started (ms since the epoch).
    pub started_at_ms: u64,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: AttemptOutcome,
    /// What the plugin logged (bounded by the tenant's limit).
    pub logs: Vec<LogLine>,
    /// Log lines dropped over the limit.
    pub logs_dropped: u32,
}

/// One kv change of an attempt, applied only if the attempt succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    /// Set key to value.
    Set(String, Vec<u8>),
    /// Remove key.
    Delete(String),
}

/// Which of a tenant's events the admin API lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events in this state.
    pub state: Option<EventState>,
    /// Only events of this order (the provider's order id or the merchant's reference).
    pub order: Option<String>,
    /// Only events received at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only events received before this time (ms since the epoch).
    pub until_ms: Option<u64>,
}

impl EventFilter {
    /// Only events in `state`.
    pub fn state(state: EventState) -> EventFilter {
        EventFilter {
            state: Some(state),
            ..Default::default()
        }
    }
}

/// A kv key an attempt read from the committed store, with a digest of what it saw (`None`: the
/// key was absent). Checked when the attempt commits writes: see [`KvConflict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRead {
    /// The key.
    pub key: String,
    /// SHA-256 of the value seen, or `None` if it was absent.
    pub seen: Option<[u8; 32]>,
}

/// The digest a [`KvRead`] keeps.
pub fn kv_digest(value: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(value).into()
}

/// Why an attempt's kv writes were not committed: a key it read was changed by another attempt
/// (another order of the same tenant, running at the same time) before it committed. Committing
/// would lose that attempt's update, so nothing is written and the event runs again on fresh data
/// (optimistic concurrency: each tenant's kv behaves as if attempts ran one after another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvConflict {
    /// The key that changed.
    pub key: String,
}

impl std::fmt::Display for KvConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kv key {:?} was changed by a concurrent attempt after this one read it; nothing was written and the event runs again",
            self.key
        )
    }
}

impl std::error::Error for KvConflict {}

/// The end of an attempt: its record, its kv changes and the event's next state, committed in one
/// transaction.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    /// The event.
    pub seq: i64,
    /// Its tenant (whose kv the writes go to).
    pub tenant: String,
    /// The attempt.
    pub record: AttemptRecord,
    /// kv writes to commit (empty unless the attempt succeeded).
    pub kv_writes: Vec<KvWrite>,
    /// What the attempt read: if any of it changed since, the writes are refused with
    /// [`KvConflict`] (checked only when there are writes).
    pub kv_reads: Vec<KvRead>,
    /// The event's state after this attempt.
    pub next_state: EventState,
    /// For `Pending`: when to try again.
    pub next_attempt_at_ms: u64,
}

/// A kv entry, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// When it was last written (ms since the epoch).
    pub updated_at_ms: u64,
}

/// An event as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    /// Journal sequence number.
    pub seq: i64,
    /// Tenant.
    pub tenant: String,
    /// Source.
    pub source: String,
    /// Where it is in its life.
    pub state: EventState,
    /// Attempts made.
    pub attempts: u32,
    /// When it was accepted.
    pub received_at_ms: u64,
    /// When it reached done, skipped or dead.
    pub finished_at_ms: Option<u64>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at_ms: Option<u64>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// Duplicate deliveries received after it.
    pub duplicates: u64,
    /// The normalized event.
    pub event: NormalizedEvent,
}

/// One event with everything known about it.
#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: EventSummary,
    /// The headers kept with it.
    pub headers: Vec<(String, String)>,
    /// The raw body (as text when it is UTF-8).
    pub body: String,
    /// Every attempt, oldest first.
    pub attempts_detail: Vec<AttemptRecord>,
}

/// What a replay request found.
#[derive(Debug)]
pub enum Replay {
    /// No such event.
    NotFound,
    /// The event is still pending or running; it is not replayed.
    NotFinished(EventState),
    /// Back to pending with a fresh retry budget; hand it to the dispatcher.
    Replayed(Box<StoredEvent>),
}

/// The storage behind the pipeline.
pub trait Storage: Send + Sync {
    /// Journals an accepted webhook durably (per the durability setting), deduplicating on
    /// (tenant, source, event id) atomically with the insert. Concurrent calls share commits.
    /// The event is shared so that the caller keeps it (for the dispatcher) without a copy.
    fn append(&self, event: std::sync::Arc<NewEvent>) -> BoxFuture<'_, Result<Appended>>;
    /// Records an attempt, applies its kv writes and moves the event on, atomically; or, when a
    /// key the attempt read has changed since, writes nothing and fails with [`KvConflict`].
    fn finish_attempt(&self, finished: FinishedAttempt) -> BoxFuture<'_, Result<()>>;
    /// Proves the store can commit a write now (readiness): a no-op through the writer.
    fn ping(&self) -> BoxFuture<'_, Result<()>>;
    /// Takes back an attempt's start mark without recording an attempt (its commit was refused
    /// with [`KvConflict`] and it runs again): the event is pending again, not running.
    fn release_attempt(&self, seq: i64) -> BoxFuture<'_, Result<()>>;
    /// Marks an attempt as started. The returned future resolves once the mark is queued, not
    /// committed: writes commit in order, so it is committed no later than the attempt's end.
    fn start_attempt(
        &self,
        seq: i64,
        attempt: u32,
        started_at_ms: u64,
        plugin_version: &str,
    ) -> BoxFuture<'_, Result<()>>;
    /// Every event still pending or running, in receive order (for recovery at start).
    fn unfinished(&self) -> Result<Vec<StoredEvent>>;
    /// Sends a finished event (done, skipped or dead) back to pending, with a fresh retry budget.
    fn replay(&self, seq: i64) -> BoxFuture<'_, Result<Replay>>;
    /// Sends a tenant's dead letters (that died at or after `since_ms`) back to pending.
    fn replay_dead(
        &self,
        tenant: &str,
        since_ms: Option<u64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>>>;
    /// Deletes up to `limit` events finished before `before_ms` (with their attempts); returns how
    /// many it deleted. Small batches keep the writer free for ingest.
    fn prune(&self, before_ms: u64, limit: u32) -> BoxFuture<'_, Result<u64>>;
    /// A kv value of a tenant.
    fn kv_get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` kv keys of a tenant starting with `prefix`, ascending.
    fn kv_list(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<String>>;
    /// How many kv keys a tenant has.
    fn kv_count(&self, tenant: &str) -> Result<u64>;
    /// Up to `limit` kv entries of a tenant starting with `prefix`, in key order, after the key
    /// `after` when given (admin, paginated).
    fn kv_entries(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvEntry>>;
    /// A tenant's events, newest first, before `before_seq` when given, matching `filter`
    /// (admin, paginated).
    fn events(
        &self,
        tenant: &str,
        limit: u32,
        before_seq: Option<i64>,
        filter: &EventFilter,
    ) -> Result<Vec<EventSummary>>;
    /// How many of a tenant's events are in each state (admin counters).
    fn event_counts(&self, tenant: &str) -> Result<std::collections::BTreeMap<String, u64>>;
    /// One event with its attempts (admin).
    fn event_detail(&self, seq: i64) -> Result<Option<EventDetail>>;
}

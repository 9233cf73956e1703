//! The journal and the tenants' kv, behind one trait so that a PostgreSQL backend (for several
//! replicas) can be added without touching the pipeline. SQLite is the embedded default.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::access::{StoredToken, TokenInfo};
use crate::event::NormalizedEvent;
pub use deploys::{
    DeployAction, DeployKind, DeployRecord, Deployed, NewDeploy, ShadowReport, ShadowRun,
    ShadowSetting,
};

#[cfg(test)]
mod conformance;
pub mod deploys;
pub mod memory;
#[cfg(test)]
pub mod pg_test;
pub mod postgres;
pub mod sqlite;

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
    /// Waiting for (another) attempt, claimed or not.
    Pending,
    /// An attempt started under a lease (a claimed event waiting for a worker is still
    /// pending). If its dispatcher stops, the lease expires and the reaper counts the attempt as
    /// failed ("interrupted").
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

/// An event as an attempt needs it, with its body: read by the claim that takes it for an
/// attempt, never held while it waits in the backlog.
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
    /// The raw body.
    pub body: Vec<u8>,
    /// The normalized event.
    pub event: NormalizedEvent,
}

/// The right to run one order's head event, until `until`: whoever holds the token may record
/// the attempt; a finish with a token that is no longer the event's writes nothing (fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The event.
    pub seq: i64,
    /// Unique per claim.
    pub token: i64,
}

/// A claimed order head: the lease and what deciding its attempt's outcome needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The lease.
    pub lease: Lease,
    /// The event's tenant.
    pub tenant: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts made before the last replay: the retry budget counts from here.
    pub attempt_base: u32,
}

/// A claimed head with its event, as the dispatcher holds it in its window until a worker is free.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    /// The claim.
    pub claim: Claim,
    /// The event with its body.
    pub event: StoredEvent,
}

/// How many heads one claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimit {
    /// Heads this claim takes at most.
    pub batch: u32,
    /// Heads of the tenant claimed at once at most, counting every holder's claims (every
    /// replica's): how a tenant's `max_concurrency` holds when several processes share the
    /// store. `u32::MAX` for no bound.
    pub tenant_claimed: u32,
}

impl ClaimLimit {
    /// Up to `batch` heads, with no tenant-wide bound (one process: its dispatcher bounds itself).
    pub fn batch(batch: u32) -> ClaimLimit {
        ClaimLimit {
            batch,
            tenant_claimed: u32::MAX,
        }
    }

    /// The same, and never more than `tenant_claimed` of the tenant's heads claimed at once.
    pub fn within(self, tenant_claimed: u32) -> ClaimLimit {
        ClaimLimit {
            tenant_claimed,
            ..self
        }
    }

    /// Whether a tenant-wide bound applies (a claim then counts the tenant's claimed heads).
    pub fn is_bounded(&self) -> bool {
        self.tenant_claimed != u32::MAX
    }
}

/// A tenant's published plugin: the version the store says every replica serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPlugin {
    /// The tenant.
    pub tenant: String,
    /// The component's SHA-256 (hex): its address in the store (its first 16 digits are the
    /// version name).
    pub digest: String,
    /// The component's size in bytes.
    pub size: u64,
    /// When it was published (ms since the epoch).
    pub published_at_ms: u64,
}

/// A change in the store that every process serving from it must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// A tenant's published plugin changed.
    PluginPublished {
        /// The tenant.
        tenant: String,
    },
    /// A config reload was stored (see [`Storage::publish_config`]).
    ConfigPublished,
    /// Changes may have been missed (the connection that hears them was lost and is back):
    /// re-read everything.
    Resync,
}

/// The config text a reload stored for every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedConfig {
    /// The config file's text (secrets in it are `env:`/`file:` references, resolved by each
    /// replica on its own machine, or literal ones the operator chose to write there).
    pub text: String,
    /// SHA-256 of the text (hex).
    pub digest: String,
    /// When it was stored (ms since the epoch).
    pub published_at_ms: u64,
}

/// Work that one replica at a time does for all of them; see [`Storage::hold_duty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Taking back expired leases.
    Reaper,
    /// Deleting events past the retention period.
    Pruner,
}

impl Duty {
    /// The duty's name, as the store keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            Duty::Reaper => "reaper",
            Duty::Pruner => "pruner",
        }
    }
}

/// What a claim returned.
#[derive(Debug, Clone, Default)]
pub struct ClaimBatch {
    /// The heads claimed, earliest due first, with their events.
    pub claims: Vec<ClaimedEvent>,
    /// When the tenant's next unclaimed head is due (a time in the future, or now if more heads
    /// are due than were asked for), or `None` if it has none.
    pub next_due_ms: Option<u64>,
    /// The tenant-wide bound held this claim back: heads are due that the claim could not take
    /// because other claims (perhaps another replica's) fill the bound. Their finishes free room;
    /// nothing wakes this claimer when they happen elsewhere, so it asks again soon.
    pub capped: bool,
}

/// A lease that expired before its holder finished: the holder stopped (crash, kill, a stalled
/// process) or lost contact with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The claim it was.
    pub claim: Claim,
    /// When the attempt started and the plugin version it ran; `None` if the holder claimed the
    /// head but never started an attempt (nothing ran, so no attempt is counted).
    pub started: Option<(u64, String)>,
}

/// What a finish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishResult {
    /// The attempt, its kv writes and the event's next state are committed.
    Committed,
    /// A key the attempt read changed since: nothing of the attempt was written, the claim is
    /// released and the event is due again at once (it runs again on fresh data).
    KvConflict(KvConflict),
    /// The lease was no longer the event's (it expired and was reaped, perhaps run again): this
    /// attempt is not recorded and none of its kv writes are applied.
    LeaseLost,
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
    /// Its kv changes and requests; `None` for attempts recorded before hookhost kept them
    /// (and for attempts that never ran: an interrupted one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effects: Option<Effects>,
}

/// An outbound request as an attempt records it: enough to compare what two plugin versions did
/// (shadow runs, backtests) without keeping bodies or query strings, which may hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The URL's host (and port, when not the scheme's default).
    pub host: String,
    /// The URL's path.
    pub path: String,
    /// The first 16 hex digits of the body's SHA-256, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

/// A kv change an attempt made, as recorded: the key and a digest of the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEffect {
    /// The key.
    pub key: String,
    /// The first 16 hex digits of the value's SHA-256; absent for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_sha256: Option<String>,
}

/// What an attempt did outside itself, recorded so that two plugin versions' behaviour on one
/// event can be compared (shadow runs, backtests): the kv changes it committed (or, dry, would
/// have) and the requests it made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects {
    /// kv changes, in the order made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<KvEffect>,
    /// Outbound requests, in the order made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<OutboundRequest>,
}

impl Effects {
    /// The effects of kv `writes` and `requests`.
    pub fn of(writes: &[KvWrite], requests: Vec<OutboundRequest>) -> Effects {
        let kv = writes
            .iter()
            .map(|w| match w {
                KvWrite::Set(key, value) => KvEffect {
                    key: key.clone(),
                    value_sha256: Some(component_digest(value)[..16].to_string()),
                },
                KvWrite::Delete(key) => KvEffect {
                    key: key.clone(),
                    value_sha256: None,
                },
            })
            .collect();
        Effects { kv, requests }
    }

    /// Whether it did nothing.
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty() && self.requests.is_empty()
    }
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
    /// Only events from this source (a name in the tenant's config).
    pub source: Option<String>,
    /// Only the event with this provider event id (`event.id`).
    pub event_id: Option<String>,
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

/// A plugin component's address in a store: its SHA-256, in hex.
pub fn component_digest(component: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(component))
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
    /// The event and the lease the attempt ran under.
    pub lease: Lease,
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

/// One event's life as the activity charts draw it: when it arrived and, if it has, when it
/// finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpan {
    /// When it was accepted (ms since the epoch).
    pub received_at_ms: u64,
    /// When it reached done, skipped or dead; `None` while it waits or runs.
    pub finished_at_ms: Option<u64>,
}

/// How an attempt ended, without its details: what the charts count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// `done`.
    Done,
    /// `skipped`.
    Skipped,
    /// `retry-after`.
    RetryAfter,
    /// An error, trap, timeout or exhausted memory.
    Error,
}

impl AttemptKind {
    /// The kind of a serialized outcome (`"done"`, `"skipped"`, ...); unknown ones are errors.
    pub fn of_tag(tag: &str) -> AttemptKind {
        match tag {
            "done" => AttemptKind::Done,
            "skipped" => AttemptKind::Skipped,
            "retry-after" => AttemptKind::RetryAfter,
            _ => AttemptKind::Error,
        }
    }
}

impl From<&AttemptOutcome> for AttemptKind {
    fn from(outcome: &AttemptOutcome) -> AttemptKind {
        match outcome {
            AttemptOutcome::Done => AttemptKind::Done,
            AttemptOutcome::Skipped { .. } => AttemptKind::Skipped,
            AttemptOutcome::RetryAfter { .. } => AttemptKind::RetryAfter,
            AttemptOutcome::Error { .. } => AttemptKind::Error,
        }
    }
}

/// One attempt as the activity charts count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptSample {
    /// When it started (ms since the epoch).
    pub started_at_ms: u64,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// How it ended.
    pub kind: AttemptKind,
}

/// What a tenant's activity charts are drawn from: the events alive at some point since a time
/// (received since, finished since, or not finished), newest first and at most a limit, and their
/// attempts started since that time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityRows {
    /// The events' spans.
    pub events: Vec<EventSpan>,
    /// Their attempts started since the time.
    pub attempts: Vec<AttemptSample>,
    /// The limit cut the events (the oldest part of the window is missing).
    pub truncated: bool,
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

/// A journaled event with its last attempt: what a backtest runs a candidate on and compares
/// with.
#[derive(Debug, Clone)]
pub struct JournaledEvent {
    /// The event as attempts get it.
    pub event: StoredEvent,
    /// Where it is in its life.
    pub state: EventState,
    /// Its latest attempt, if it had one.
    pub last_attempt: Option<AttemptRecord>,
}

/// What a replay request found.
#[derive(Debug)]
pub enum Replay {
    /// No such event.
    NotFound,
    /// The event is still pending or running; it is not replayed.
    NotFinished(EventState),
    /// Back to pending with a fresh retry budget, for this tenant's dispatcher to claim.
    Replayed {
        /// The event's tenant.
        tenant: String,
    },
}

/// The storage behind the pipeline, and the dispatcher's queue: the journal is the queue.
///
/// Every unfinished event belongs to an order (tenant, delivery key); each order with unfinished
/// events has a *head*, its oldest unfinished event, and only a head can run. A dispatcher
/// *claims* due heads (a lease with a token and an expiry), runs them and *finishes* them under
/// the lease, which moves the order's head on; leases of a holder that stopped expire and are
/// reaped. Every method is async and the store keeps its own clock for leases, so that one
/// implementation can serve several processes (PostgreSQL) as well as one (SQLite).
#[async_trait::async_trait]
pub trait Storage: Send + Sync {
    /// Journals an accepted webhook durably (per the durability setting), deduplicating on
    /// (tenant, source, event id) atomically with the insert, and makes it its order's head if
    /// the order had none. Concurrent calls share commits.
    async fn append(&self, event: std::sync::Arc<NewEvent>) -> Result<Appended>;
    /// Claims up to `limit.batch` of `tenant`'s due, unclaimed heads for `owner` (never more
    /// than `limit.tenant_claimed` of the tenant's heads claimed in all), earliest due first
    /// (then oldest), each with a lease of `lease_ms`, and returns them with their events (read
    /// where the claim writes, not in a read of its own per attempt). Committed before it
    /// returns, so a claim is never lost while its attempt runs.
    async fn claim(
        &self,
        tenant: &str,
        owner: &str,
        limit: ClaimLimit,
        lease_ms: u64,
    ) -> Result<ClaimBatch>;
    /// Whether other processes may claim from this store at the same time (several replicas on
    /// one database). Then only the store can bound a tenant's concurrency, through
    /// [`ClaimLimit::tenant_claimed`]; a store of one process leaves it to the dispatcher.
    fn is_shared(&self) -> bool {
        false
    }
    /// Records that the lease's attempt starts now with this plugin version (so that if its
    /// holder stops, the attempt counts as interrupted). Resolves once queued: writes commit in
    /// order, so the mark is committed no later than the attempt's finish.
    async fn mark_started(
        &self,
        lease: Lease,
        started_at_ms: u64,
        plugin_version: &str,
    ) -> Result<()>;
    /// Extends each of these leases that has not expired to `lease_ms` from now; returns how
    /// many. The caller names the leases it holds, not its owner name: a claim whose commit
    /// failed ambiguously (the connection dropped) may still hold heads under that name, and
    /// only leases nobody renews expire and go back to the reaper.
    async fn renew_leases(&self, leases: &[Lease], lease_ms: u64) -> Result<u64>;
    /// Up to `limit` leases that expired, oldest event first, for the reaper to finish (an
    /// interrupted attempt) or release (never started), fenced by their tokens.
    async fn expired_leases(&self, limit: u32) -> Result<Vec<ExpiredLease>>;
    /// Records an attempt, applies its kv writes and moves the event on (and its order's head),
    /// atomically, if the lease is still the event's; see [`FinishResult`] for what else it
    /// may do. The keys the attempt read are validated inside the same transaction.
    async fn finish_attempt(&self, finished: FinishedAttempt) -> Result<FinishResult>;
    /// Gives a claim back without recording an attempt (no plugin to run it, or it was never
    /// started): the event is pending again, due at `due_at_ms`. False if the lease was lost.
    async fn release(&self, lease: Lease, due_at_ms: u64) -> Result<bool>;
    /// Takes `duty` for `owner` for the next `for_ms`, or keeps it if `owner` has it; false while
    /// another owner's turn has not expired. Replicas sharing a store call this before each round
    /// of the duty so that one does it at a time (the work is fenced anyway: this saves doing it
    /// N times). A store of one process has one owner: it always answers true.
    async fn hold_duty(&self, _duty: Duty, _owner: &str, _for_ms: u64) -> Result<bool> {
        Ok(true)
    }
    /// Records a deploy as the next entry of its tenant's history. An activating one stores
    /// its component (once per content: its SHA-256 is its address) and makes it the tenant's
    /// published version in the same transaction; every process serving from this store hears of
    /// it through [`Self::changes`]. Deploys of one tenant are numbered one after another, even
    /// from several processes at once.
    async fn deploy(&self, deploy: NewDeploy) -> Result<Deployed>;
    /// A tenant's deploy history, newest first, at most `limit` entries.
    async fn deploys(&self, tenant: &str, limit: u32) -> Result<Vec<DeployRecord>>;
    /// Sets (or, with `None`, ends) `tenant`'s shadow, forgetting the runs of the one before;
    /// every process hears of it as a [`StoreChange::PluginPublished`].
    async fn set_shadow(&self, tenant: &str, setting: Option<ShadowSetting>) -> Result<()>;
    /// Every tenant's shadow.
    async fn shadows(&self) -> Result<Vec<ShadowSetting>>;
    /// Records a shadowed attempt (again for the same attempt: replaced).
    async fn record_shadow_run(&self, run: &ShadowRun) -> Result<()>;
    /// What `tenant`'s shadow of entry `number` found: counts, and the newest `limit` runs that
    /// were not the same.
    async fn shadow_report(&self, tenant: &str, number: u32, limit: u32) -> Result<ShadowReport>;
    /// Every tenant's published plugin.
    async fn published_plugins(&self) -> Result<Vec<PublishedPlugin>>;
    /// A stored component, by its digest.
    async fn plugin_component(&self, digest: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a config text that a reload applied, for every process on this store to apply
    /// ([`StoreChange::ConfigPublished`]); the newest replaces the last.
    async fn publish_config(&self, text: &str) -> Result<PublishedConfig>;
    /// The config text last stored, if any.
    async fn published_config(&self) -> Result<Option<PublishedConfig>>;
    /// Changes made by any process (this one's included), as they commit. A receiver that
    /// lagged behind, or a [`StoreChange::Resync`], means: re-read everything.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<StoreChange>;
    /// Stores a new merchant token (its hash, never its text).
    async fn create_token(&self, info: &TokenInfo, hash: &[u8; 32]) -> Result<()>;
    /// A token by its public id, with its hash.
    async fn token(&self, id: &str) -> Result<Option<StoredToken>>;
    /// Tokens, of one tenant or of all, oldest first.
    async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>>;
    /// Revokes a token for good (a revoked one stays, for the record); `None` if there is none
    /// by that id.
    async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>>;
    /// Records that a token was used at `at_ms`.
    async fn token_used(&self, id: &str, at_ms: u64) -> Result<()>;
    /// A tenant's events after `after_seq` received at or after `since_ms`, oldest first, at most
    /// `limit`, each with its latest attempt (backtests page through the journal with it).
    async fn journal_page(
        &self,
        tenant: &str,
        after_seq: i64,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<JournaledEvent>>;
    /// The tenant an event belongs to (who may see it), if it exists.
    async fn event_tenant(&self, seq: i64) -> Result<Option<String>>;
    /// Proves the store can commit a write now (readiness): a no-op through the writer.
    async fn ping(&self) -> Result<()>;
    /// Sends a finished event (done, skipped or dead) back to pending, with a fresh retry budget.
    async fn replay(&self, seq: i64) -> Result<Replay>;
    /// Sends a tenant's dead letters (that died at or after `since_ms`) back to pending; returns
    /// their sequence numbers, in journal order.
    async fn replay_dead(&self, tenant: &str, since_ms: Option<u64>) -> Result<Vec<i64>>;
    /// Deletes up to `limit` events finished before `before_ms` (with their attempts); returns how
    /// many it deleted. Small batches keep the writer free for ingest.
    async fn prune(&self, before_ms: u64, limit: u32) -> Result<u64>;
    /// When `tenant`'s oldest unfinished event was received, if it has one (the backlog's age).
    async fn oldest_unfinished(&self, tenant: &str) -> Result<Option<u64>>;
    /// A kv value of a tenant.
    async fn kv_get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` kv keys of a tenant starting with `prefix`, ascending.
    async fn kv_list(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<String>>;
    /// How many kv keys a tenant has.
    async fn kv_count(&self, tenant: &str) -> Result<u64>;
    /// Up to `limit` kv entries of a tenant starting with `prefix`, in key order, after the key
    /// `after` when given (admin, paginated).
    async fn kv_entries(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvEntry>>;
    /// A tenant's events, newest first, before `before_seq` when given, matching `filter`
    /// (admin, paginated).
    async fn events(
        &self,
        tenant: &str,
        limit: u32,
        before_seq: Option<i64>,
        filter: &EventFilter,
    ) -> Result<Vec<EventSummary>>;
    /// How many of a tenant's events are in each state (admin counters).
    async fn event_counts(&self, tenant: &str) -> Result<std::collections::BTreeMap<String, u64>>;
    /// One event with its attempts (admin).
    async fn event_detail(&self, seq: i64) -> Result<Option<EventDetail>>;
    /// What `tenant`'s activity charts since `since_ms` are drawn from, at most `limit` events.
    async fn activity(&self, tenant: &str, since_ms: u64, limit: u32) -> Result<ActivityRows>;
}

//! A store that keeps everything in process memory: the second implementation of [`Storage`], for
//! in-process tests (the HTTP router's, the pipeline's) that need a journal but not a file. It
//! behaves like the SQLite store, which the conformance suite (`storage::conformance`) checks on
//! both; nothing survives the process, so it is never used to serve.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use super::{
    component_digest, kv_digest, Appended, AttemptOutcome, AttemptRecord, Claim, ClaimBatch,
    ClaimLimit, ClaimedEvent, EventDetail, EventFilter, EventState, EventSummary, ExpiredLease,
    FinishResult, FinishedAttempt, KvConflict, KvEntry, KvWrite, Lease, NewEvent, PublishedConfig,
    PublishedPlugin, Replay, Storage, StoreChange, StoredEvent,
};
use super::{ActivityRows, AttemptKind, AttemptSample, EventSpan};
use super::{
    DeployAction, DeployRecord, Deployed, JournaledEvent, NewDeploy, ShadowReport, ShadowRun,
    ShadowSetting,
};
use crate::access::{StoredToken, TokenInfo};
use crate::now_ms;

/// One journaled event with its bookkeeping, as the SQLite `events` row holds it.
#[derive(Clone)]
struct Row {
    new: Arc<NewEvent>,
    state: EventState,
    attempts: u32,
    attempt_base: u32,
    /// The lease, while the event is running.
    lease: Option<Held>,
    /// When the leased attempt started and its plugin version (the start mark).
    started: Option<(u64, String)>,
    next_attempt_at_ms: u64,
    finished_at_ms: Option<u64>,
    last_error: Option<String>,
    duplicates: u64,
    history: Vec<AttemptRecord>,
}

/// A lease as the row keeps it.
#[derive(Clone)]
struct Held {
    token: i64,
    until_ms: u64,
}

/// An order's head.
#[derive(Clone, Copy)]
struct Head {
    seq: i64,
    due_at_ms: u64,
    claimed: bool,
}

#[derive(Default)]
struct Journal {
    last_seq: i64,
    last_token: i64,
    events: BTreeMap<i64, Row>,
    dedupe: HashMap<(String, String, String), i64>,
    /// (tenant, delivery key) → its head, for each order with unfinished events.
    heads: BTreeMap<(String, String), Head>,
    /// (tenant, key) → (value, updated_at_ms); ordered, so prefix scans are range scans.
    kv: BTreeMap<(String, String), (Vec<u8>, u64)>,
}

/// Published plugins.
#[derive(Default)]
struct Published {
    /// Digest → component.
    components: HashMap<String, Vec<u8>>,
    /// Each tenant's pointer.
    pointers: BTreeMap<String, PublishedPlugin>,
    /// The config text last stored.
    config: Option<PublishedConfig>,
    /// Each tenant's deploy history, oldest first.
    deploys: BTreeMap<String, Vec<DeployRecord>>,
    /// Merchant tokens by id.
    tokens: BTreeMap<String, StoredToken>,
    /// Each tenant's shadow.
    shadows: BTreeMap<String, ShadowSetting>,
    /// Shadowed attempts by (tenant, number, seq, attempt).
    shadow_runs: BTreeMap<(String, u32, i64, u32), ShadowRun>,
}

/// The in-memory store.
pub struct MemoryStorage {
    journal: Mutex<Journal>,
    plugins: Mutex<Published>,
    changes: tokio::sync::broadcast::Sender<StoreChange>,
}

impl Default for MemoryStorage {
    fn default() -> MemoryStorage {
        MemoryStorage {
            journal: Mutex::default(),
            plugins: Mutex::default(),
            changes: tokio::sync::broadcast::channel(64).0,
        }
    }
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().expect("memory store lock")
    }
}

impl Row {
    fn stored(&self, seq: i64) -> StoredEvent {
        StoredEvent {
            seq,
            tenant: self.new.tenant.clone(),
            source: self.new.source.clone(),
            received_at_ms: self.new.received_at_ms,
            body: self.new.body.clone(),
            event: self.new.event.clone(),
        }
    }

    fn order(&self) -> (String, String) {
        (self.new.tenant.clone(), self.new.event.delivery_key())
    }

    fn claim(&self, seq: i64) -> Option<Claim> {
        self.lease.as_ref().map(|held| Claim {
            lease: Lease {
                seq,
                token: held.token,
            },
            tenant: self.new.tenant.clone(),
            attempts: self.attempts,
            attempt_base: self.attempt_base,
        })
    }

    fn summary(&self, seq: i64) -> EventSummary {
        EventSummary {
            seq,
            tenant: self.new.tenant.clone(),
            source: self.new.source.clone(),
            state: self.state,
            attempts: self.attempts,
            received_at_ms: self.new.received_at_ms,
            finished_at_ms: self.finished_at_ms,
            next_attempt_at_ms: (self.state == EventState::Pending)
                .then_some(self.next_attempt_at_ms),
            last_error: self.last_error.clone(),
            duplicates: self.duplicates,
            event: self.new.event.clone(),
        }
    }

    /// Back to pending with a fresh retry budget (a replay).
    fn replay(&mut self) {
        self.state = EventState::Pending;
        self.attempt_base = self.attempts;
        self.next_attempt_at_ms = now_ms();
        self.finished_at_ms = None;
        self.last_error = None;
    }

    fn matches(&self, filter: &EventFilter) -> bool {
        let event = &self.new.event;
        filter.state.is_none_or(|s| s == self.state)
            && filter.order.as_ref().is_none_or(|o| {
                event.order_id.as_ref() == Some(o) || event.merchant_ref.as_ref() == Some(o)
            })
            && filter.since_ms.is_none_or(|t| self.new.received_at_ms >= t)
            && filter.until_ms.is_none_or(|t| self.new.received_at_ms < t)
            && filter.source.as_ref().is_none_or(|s| *s == self.new.source)
            && filter.event_id.as_ref().is_none_or(|id| *id == event.id)
    }
}

impl Journal {
    /// The row whose lease is `lease`, if it still is.
    fn leased(&mut self, lease: Lease) -> Option<&mut Row> {
        self.events
            .get_mut(&lease.seq)
            .filter(|row| row.lease.as_ref().is_some_and(|h| h.token == lease.token))
    }

    fn release(&mut self, lease: Lease, due_at_ms: u64) -> bool {
        let Some(row) = self.leased(lease) else {
            return false;
        };
        row.state = EventState::Pending;
        row.lease = None;
        row.started = None;
        row.next_attempt_at_ms = due_at_ms;
        let order = row.order();
        if let Some(head) = self.heads.get_mut(&order) {
            head.claimed = false;
            head.due_at_ms = due_at_ms;
        }
        true
    }

    fn finish(&mut self, fin: &FinishedAttempt) -> FinishResult {
        if !fin.kv_writes.is_empty() {
            for read in &fin.kv_reads {
                let current = self.kv.get(&(fin.tenant.clone(), read.key.clone()));
                if current.map(|(v, _)| kv_digest(v)) != read.seen {
                    let conflict = KvConflict {
                        key: read.key.clone(),
                    };
                    return match self.release(fin.lease, now_ms()) {
                        true => FinishResult::KvConflict(conflict),
                        false => FinishResult::LeaseLost,
                    };
                }
            }
        }
        let now = now_ms();
        let Some(row) = self.leased(fin.lease) else {
            return FinishResult::LeaseLost;
        };
        row.state = fin.next_state;
        row.attempts = fin.record.attempt;
        row.next_attempt_at_ms = fin.next_attempt_at_ms;
        row.finished_at_ms = (fin.next_state != EventState::Pending).then_some(now);
        row.last_error = match &fin.record.outcome {
            AttemptOutcome::Error { message } => Some(message.clone()),
            AttemptOutcome::RetryAfter { seconds } => {
                Some(format!("plugin asked to retry after {seconds} s"))
            }
            _ => None,
        };
        row.lease = None;
        row.started = None;
        row.history.retain(|r| r.attempt != fin.record.attempt);
        row.history.push(fin.record.clone());
        row.history.sort_by_key(|r| r.attempt);
        let order = row.order();
        self.advance_head(order, fin.next_state, fin.next_attempt_at_ms);
        for write in &fin.kv_writes {
            match write {
                KvWrite::Set(key, value) => {
                    self.kv
                        .insert((fin.tenant.clone(), key.clone()), (value.clone(), now));
                }
                KvWrite::Delete(key) => {
                    self.kv.remove(&(fin.tenant.clone(), key.clone()));
                }
            }
        }
        FinishResult::Committed
    }

    /// As SQLite's `advance_head`: a retry keeps the head; an end moves it to the order's oldest
    /// unfinished event or removes it.
    fn advance_head(&mut self, order: (String, String), next_state: EventState, due_at_ms: u64) {
        if next_state == EventState::Pending {
            if let Some(head) = self.heads.get_mut(&order) {
                head.claimed = false;
                head.due_at_ms = due_at_ms;
            }
            return;
        }
        let next = self
            .events
            .iter()
            .find(|(_, r)| {
                matches!(r.state, EventState::Pending | EventState::Running) && r.order() == order
            })
            .map(|(seq, r)| Head {
                seq: *seq,
                due_at_ms: r.next_attempt_at_ms,
                claimed: false,
            });
        match next {
            Some(head) => self.heads.insert(order, head),
            None => self.heads.remove(&order),
        };
    }

    /// A replayed event becomes its order's head if the order has none.
    fn head_for_replayed(&mut self, seq: i64) {
        if let Some(row) = self.events.get(&seq) {
            let head = Head {
                seq,
                due_at_ms: row.next_attempt_at_ms,
                claimed: false,
            };
            self.heads.entry(row.order()).or_insert(head);
        }
    }

    /// The tenant's kv entries starting with `prefix`, after `after`, in key order.
    fn kv_range<'a>(
        &'a self,
        tenant: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a (Vec<u8>, u64))> + 'a {
        self.kv
            .range((tenant.to_string(), prefix.to_string())..)
            .take_while(move |((t, k), _)| t == tenant && k.starts_with(prefix))
            .filter(move |((_, k), _)| after.is_none_or(|a| k.as_str() > a))
            .map(|((_, k), v)| (k, v))
    }
}

#[async_trait::async_trait]
impl Storage for MemoryStorage {
    async fn append(&self, event: Arc<NewEvent>) -> Result<Appended> {
        let mut journal = self.journal();
        let key = (
            event.tenant.clone(),
            event.source.clone(),
            event.event.id.clone(),
        );
        if let Some(&seq) = journal.dedupe.get(&key) {
            if let Some(row) = journal.events.get_mut(&seq) {
                row.duplicates += 1;
            }
            return Ok(Appended::Duplicate(seq));
        }
        journal.last_seq += 1;
        let seq = journal.last_seq;
        journal.dedupe.insert(key, seq);
        let received_at_ms = event.received_at_ms;
        let row = Row {
            new: event,
            state: EventState::Pending,
            attempts: 0,
            attempt_base: 0,
            lease: None,
            started: None,
            next_attempt_at_ms: received_at_ms,
            finished_at_ms: None,
            last_error: None,
            duplicates: 0,
            history: Vec::new(),
        };
        journal.heads.entry(row.order()).or_insert(Head {
            seq,
            due_at_ms: received_at_ms,
            claimed: false,
        });
        journal.events.insert(seq, row);
        Ok(Appended::Accepted(seq))
    }

    async fn claim(
        &self,
        tenant: &str,
        _owner: &str, // one process: the token alone identifies a lease
        limit: ClaimLimit,
        lease_ms: u64,
    ) -> Result<ClaimBatch> {
        let now = now_ms();
        let mut journal = self.journal();
        let claimed = journal
            .heads
            .iter()
            .filter(|((t, _), h)| t == tenant && h.claimed)
            .count();
        let free = (limit.tenant_claimed as usize).saturating_sub(claimed);
        let take = (limit.batch as usize).min(free);
        let mut due: Vec<((String, String), Head)> = journal
            .heads
            .iter()
            .filter(|((t, _), h)| t == tenant && !h.claimed)
            .map(|(k, h)| (k.clone(), *h))
            .collect();
        due.sort_by_key(|(_, h)| (h.due_at_ms, h.seq));
        let mut claims = Vec::new();
        let mut next_due_ms = None;
        let mut capped = false;
        for (order, head) in due {
            if head.due_at_ms > now || claims.len() >= take {
                capped = head.due_at_ms <= now && take < limit.batch as usize;
                next_due_ms = Some(head.due_at_ms);
                break;
            }
            journal.last_token += 1;
            let token = journal.last_token;
            let Some(row) = journal.events.get_mut(&head.seq) else {
                bail!("order head {} is not in the journal", head.seq);
            };
            row.started = None;
            row.lease = Some(Held {
                token,
                until_ms: now + lease_ms,
            });
            let event = row.stored(head.seq);
            claims.extend(
                row.claim(head.seq)
                    .map(|claim| ClaimedEvent { claim, event }),
            );
            if let Some(h) = journal.heads.get_mut(&order) {
                h.claimed = true;
            }
        }
        Ok(ClaimBatch {
            claims,
            next_due_ms,
            capped,
        })
    }

    async fn mark_started(
        &self,
        lease: Lease,
        started_at_ms: u64,
        plugin_version: &str,
    ) -> Result<()> {
        if let Some(row) = self.journal().leased(lease) {
            row.state = EventState::Running;
            row.started = Some((started_at_ms, plugin_version.to_string()));
        }
        Ok(())
    }

    async fn renew_leases(&self, leases: &[Lease], lease_ms: u64) -> Result<u64> {
        let now = now_ms();
        let mut renewed = 0;
        let mut journal = self.journal();
        for lease in leases {
            let Some(row) = journal.events.get_mut(&lease.seq) else {
                continue;
            };
            if let Some(held) = row.lease.as_mut() {
                if held.token == lease.token && held.until_ms >= now {
                    held.until_ms = now + lease_ms;
                    renewed += 1;
                }
            }
        }
        Ok(renewed)
    }

    async fn expired_leases(&self, limit: u32) -> Result<Vec<ExpiredLease>> {
        let now = now_ms();
        Ok(self
            .journal()
            .events
            .iter()
            .filter(|(_, r)| r.lease.as_ref().is_some_and(|h| h.until_ms < now))
            .filter_map(|(seq, r)| {
                r.claim(*seq).map(|claim| ExpiredLease {
                    claim,
                    started: r.started.clone(),
                })
            })
            .take(limit as usize)
            .collect())
    }

    async fn finish_attempt(&self, finished: FinishedAttempt) -> Result<FinishResult> {
        Ok(self.journal().finish(&finished))
    }

    async fn release(&self, lease: Lease, due_at_ms: u64) -> Result<bool> {
        Ok(self.journal().release(lease, due_at_ms))
    }

    async fn deploy(&self, deploy: NewDeploy) -> Result<Deployed> {
        let at_ms = now_ms();
        let mut plugins = self.plugins.lock().expect("memory store lock");
        let history = plugins.deploys.entry(deploy.tenant.clone()).or_default();
        let number = history.last().map_or(1, |d| d.number + 1);
        let kind = deploy.action.kind();
        let (reactivates, message) = (deploy.action.target(), deploy.action.reason());
        let component = deploy.action.component().map(<[u8]>::to_vec);
        let (digest, size) = match (&deploy.action, &component) {
            (_, Some(component)) => (component_digest(component), component.len() as u64),
            (DeployAction::Refused { digest, size, .. }, None) => (digest.clone(), *size),
            (_, None) => {
                let target = history
                    .iter()
                    .find(|d| Some(d.number) == reactivates && d.kind.has_component());
                let Some(target) = target else {
                    return Ok(Deployed::NoSuchEntry);
                };
                (target.digest.clone(), target.size)
            }
        };
        let record = DeployRecord {
            tenant: deploy.tenant.clone(),
            number,
            kind,
            digest: digest.clone(),
            size,
            by: deploy.by,
            at_ms,
            reactivates,
            message,
        };
        history.push(record.clone());
        if let Some(component) = component {
            plugins
                .components
                .entry(digest.clone())
                .or_insert(component);
        }
        if kind.activates() {
            let pointer = PublishedPlugin {
                tenant: deploy.tenant.clone(),
                digest,
                size,
                published_at_ms: at_ms,
            };
            plugins.pointers.insert(deploy.tenant.clone(), pointer);
            drop(plugins);
            let _ = self.changes.send(StoreChange::PluginPublished {
                tenant: deploy.tenant,
            });
        }
        Ok(Deployed::Recorded(record))
    }

    async fn deploys(&self, tenant: &str, limit: u32) -> Result<Vec<DeployRecord>> {
        let plugins = self.plugins.lock().expect("memory store lock");
        Ok(plugins
            .deploys
            .get(tenant)
            .map_or_else(Vec::new, |history| {
                history.iter().rev().take(limit as usize).cloned().collect()
            }))
    }

    async fn set_shadow(&self, tenant: &str, setting: Option<ShadowSetting>) -> Result<()> {
        let mut plugins = self.plugins.lock().expect("memory store lock");
        plugins.shadow_runs.retain(|(t, ..), _| t != tenant);
        match setting {
            Some(setting) => plugins.shadows.insert(tenant.to_string(), setting),
            None => plugins.shadows.remove(tenant),
        };
        drop(plugins);
        let _ = self.changes.send(StoreChange::PluginPublished {
            tenant: tenant.to_string(),
        });
        Ok(())
    }

    async fn shadows(&self) -> Result<Vec<ShadowSetting>> {
        let plugins = self.plugins.lock().expect("memory store lock");
        Ok(plugins.shadows.values().cloned().collect())
    }

    async fn record_shadow_run(&self, run: &ShadowRun) -> Result<()> {
        let key = (run.tenant.clone(), run.number, run.seq, run.attempt);
        let mut plugins = self.plugins.lock().expect("memory store lock");
        plugins.shadow_runs.insert(key, run.clone());
        Ok(())
    }

    async fn shadow_report(&self, tenant: &str, number: u32, limit: u32) -> Result<ShadowReport> {
        let plugins = self.plugins.lock().expect("memory store lock");
        let mut report = ShadowReport::default();
        let runs = plugins
            .shadow_runs
            .values()
            .filter(|r| r.tenant == tenant && r.number == number);
        for run in runs.clone() {
            *report.counts.entry(run.verdict.clone()).or_default() += 1;
        }
        report.differing = runs
            .rev()
            .filter(|r| r.verdict != "same")
            .take(limit as usize)
            .cloned()
            .collect();
        Ok(report)
    }

    async fn create_token(&self, info: &TokenInfo, hash: &[u8; 32]) -> Result<()> {
        let mut plugins = self.plugins.lock().expect("memory store lock");
        if plugins.tokens.contains_key(&info.id) {
            bail!("a token with id {} exists", info.id);
        }
        let token = StoredToken {
            info: info.clone(),
            hash: hash.to_vec(),
        };
        plugins.tokens.insert(info.id.clone(), token);
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>> {
        let plugins = self.plugins.lock().expect("memory store lock");
        Ok(plugins.tokens.get(id).cloned())
    }

    async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>> {
        let plugins = self.plugins.lock().expect("memory store lock");
        let mut tokens: Vec<TokenInfo> = plugins
            .tokens
            .values()
            .filter(|t| tenant.is_none_or(|name| t.info.tenant == name))
            .map(|t| t.info.clone())
            .collect();
        tokens.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(tokens)
    }

    async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>> {
        let mut plugins = self.plugins.lock().expect("memory store lock");
        Ok(plugins.tokens.get_mut(id).map(|t| {
            t.info.revoked_at_ms.get_or_insert_with(now_ms);
            t.info.clone()
        }))
    }

    async fn token_used(&self, id: &str, at_ms: u64) -> Result<()> {
        let mut plugins = self.plugins.lock().expect("memory store lock");
        if let Some(token) = plugins.tokens.get_mut(id) {
            token.info.last_used_at_ms = Some(at_ms);
        }
        Ok(())
    }

    async fn journal_page(
        &self,
        tenant: &str,
        after_seq: i64,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<JournaledEvent>> {
        let journal = self.journal();
        Ok(journal
            .events
            .range(after_seq.saturating_add(1)..)
            .filter(|(_, row)| row.new.tenant == tenant && row.new.received_at_ms >= since_ms)
            .take(limit as usize)
            .map(|(seq, row)| JournaledEvent {
                event: row.stored(*seq),
                state: row.state,
                last_attempt: row.history.last().cloned(),
            })
            .collect())
    }

    async fn event_tenant(&self, seq: i64) -> Result<Option<String>> {
        Ok(self
            .journal()
            .events
            .get(&seq)
            .map(|row| row.new.tenant.clone()))
    }

    async fn published_plugins(&self) -> Result<Vec<PublishedPlugin>> {
        let plugins = self.plugins.lock().expect("memory store lock");
        Ok(plugins.pointers.values().cloned().collect())
    }

    async fn plugin_component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let plugins = self.plugins.lock().expect("memory store lock");
        Ok(plugins.components.get(digest).cloned())
    }

    async fn publish_config(&self, text: &str) -> Result<PublishedConfig> {
        let published = PublishedConfig {
            text: text.to_string(),
            digest: component_digest(text.as_bytes()),
            published_at_ms: now_ms(),
        };
        self.plugins.lock().expect("memory store lock").config = Some(published.clone());
        let _ = self.changes.send(StoreChange::ConfigPublished);
        Ok(published)
    }

    async fn published_config(&self) -> Result<Option<PublishedConfig>> {
        Ok(self
            .plugins
            .lock()
            .expect("memory store lock")
            .config
            .clone())
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<StoreChange> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn replay(&self, seq: i64) -> Result<Replay> {
        let mut journal = self.journal();
        let Some(row) = journal.events.get_mut(&seq) else {
            return Ok(Replay::NotFound);
        };
        if matches!(row.state, EventState::Pending | EventState::Running) {
            return Ok(Replay::NotFinished(row.state));
        }
        row.replay();
        let tenant = row.new.tenant.clone();
        journal.head_for_replayed(seq);
        Ok(Replay::Replayed { tenant })
    }

    async fn replay_dead(&self, tenant: &str, since_ms: Option<u64>) -> Result<Vec<i64>> {
        let since = since_ms.unwrap_or(0);
        let mut journal = self.journal();
        let mut replayed = Vec::new();
        for (seq, row) in journal.events.iter_mut() {
            if row.new.tenant == tenant
                && row.state == EventState::Dead
                && row.finished_at_ms.is_some_and(|t| t >= since)
            {
                row.replay();
                replayed.push(*seq);
            }
        }
        for &seq in &replayed {
            journal.head_for_replayed(seq);
        }
        Ok(replayed)
    }

    async fn prune(&self, before_ms: u64, limit: u32) -> Result<u64> {
        let mut journal = self.journal();
        let old: Vec<i64> = journal
            .events
            .iter()
            .filter(|(_, r)| r.finished_at_ms.is_some_and(|t| t < before_ms))
            .map(|(seq, _)| *seq)
            .take(limit as usize)
            .collect();
        for seq in &old {
            if let Some(row) = journal.events.remove(seq) {
                let new = &row.new;
                journal.dedupe.remove(&(
                    new.tenant.clone(),
                    new.source.clone(),
                    new.event.id.clone(),
                ));
            }
        }
        Ok(old.len() as u64)
    }

    async fn oldest_unfinished(&self, tenant: &str) -> Result<Option<u64>> {
        let journal = self.journal();
        Ok(journal
            .heads
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, h)| h.seq)
            .min()
            .and_then(|seq| journal.events.get(&seq))
            .map(|r| r.new.received_at_ms))
    }

    async fn kv_get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .journal()
            .kv
            .get(&(tenant.to_string(), key.to_string()))
            .map(|(v, _)| v.clone()))
    }

    async fn kv_list(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<String>> {
        let journal = self.journal();
        Ok(journal
            .kv_range(tenant, prefix, None)
            .take(limit as usize)
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn kv_count(&self, tenant: &str) -> Result<u64> {
        Ok(self.journal().kv_range(tenant, "", None).count() as u64)
    }

    async fn kv_entries(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvEntry>> {
        let journal = self.journal();
        Ok(journal
            .kv_range(tenant, prefix, after)
            .take(limit as usize)
            .map(|(key, (value, at))| KvEntry {
                key: key.clone(),
                value: value.clone(),
                updated_at_ms: *at,
            })
            .collect())
    }

    async fn events(
        &self,
        tenant: &str,
        limit: u32,
        before_seq: Option<i64>,
        filter: &EventFilter,
    ) -> Result<Vec<EventSummary>> {
        let journal = self.journal();
        Ok(journal
            .events
            .range(..before_seq.unwrap_or(i64::MAX))
            .rev()
            .filter(|(_, r)| r.new.tenant == tenant && r.matches(filter))
            .take(limit as usize)
            .map(|(seq, r)| r.summary(*seq))
            .collect())
    }

    async fn event_counts(&self, tenant: &str) -> Result<BTreeMap<String, u64>> {
        let mut counts: BTreeMap<String, u64> = EventState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for row in self.journal().events.values() {
            if row.new.tenant == tenant {
                *counts.entry(row.state.as_str().to_string()).or_default() += 1;
            }
        }
        Ok(counts)
    }

    async fn event_detail(&self, seq: i64) -> Result<Option<EventDetail>> {
        Ok(self.journal().events.get(&seq).map(|row| EventDetail {
            summary: row.summary(seq),
            headers: row.new.headers.clone(),
            body: String::from_utf8_lossy(&row.new.body).into_owned(),
            attempts_detail: row.history.clone(),
        }))
    }

    async fn activity(&self, tenant: &str, since_ms: u64, limit: u32) -> Result<ActivityRows> {
        let journal = self.journal();
        let mut rows = ActivityRows::default();
        let alive = journal.events.values().rev().filter(|r| {
            r.new.tenant == tenant
                && (r.new.received_at_ms >= since_ms
                    || r.finished_at_ms.is_none_or(|t| t >= since_ms))
        });
        for row in alive {
            if rows.events.len() == limit as usize {
                rows.truncated = true;
                break;
            }
            rows.events.push(EventSpan {
                received_at_ms: row.new.received_at_ms,
                finished_at_ms: row.finished_at_ms,
            });
            rows.attempts.extend(
                row.history
                    .iter()
                    .filter(|a| a.started_at_ms >= since_ms)
                    .map(|a| AttemptSample {
                        started_at_ms: a.started_at_ms,
                        duration_us: a.duration_us,
                        kind: AttemptKind::from(&a.outcome),
                    }),
            );
        }
        Ok(rows)
    }
}

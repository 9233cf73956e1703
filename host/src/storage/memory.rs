//! A store that keeps everything in process memory: the second implementation of [`Storage`], for
//! in-process tests (the HTTP router's, the pipeline's) that need a journal but not a file. It
//! behaves like the SQLite store, which the conformance suite (`storage::conformance`) checks on
//! both; nothing survives the process, so it is never used to serve.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use super::{
    kv_digest, Appended, AttemptOutcome, AttemptRecord, BoxFuture, EventDetail, EventFilter,
    EventState, EventSummary, FinishedAttempt, KvConflict, KvEntry, KvWrite, NewEvent, Replay,
    Storage, StoredEvent,
};
use crate::now_ms;

/// One journaled event with its bookkeeping, as the SQLite `events` row holds it.
#[derive(Clone)]
struct Row {
    new: Arc<NewEvent>,
    state: EventState,
    attempts: u32,
    attempt_base: u32,
    running: Option<(u64, String)>,
    next_attempt_at_ms: u64,
    finished_at_ms: Option<u64>,
    last_error: Option<String>,
    duplicates: u64,
    history: Vec<AttemptRecord>,
}

#[derive(Default)]
struct Journal {
    last_seq: i64,
    events: BTreeMap<i64, Row>,
    dedupe: HashMap<(String, String, String), i64>,
    /// (tenant, key) → (value, updated_at_ms); ordered, so prefix scans are range scans.
    kv: BTreeMap<(String, String), (Vec<u8>, u64)>,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStorage(Mutex<Journal>);

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.0.lock().expect("memory store lock")
    }
}

impl Row {
    fn stored(&self, seq: i64) -> StoredEvent {
        StoredEvent {
            seq,
            tenant: self.new.tenant.clone(),
            source: self.new.source.clone(),
            received_at_ms: self.new.received_at_ms,
            attempts: self.attempts,
            next_attempt_at_ms: self.next_attempt_at_ms,
            attempt_base: self.attempt_base,
            interrupted: self.running.clone(),
            body: self.new.body.clone(),
            event: self.new.event.clone(),
        }
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
    }
}

impl Journal {
    fn finish(&mut self, fin: &FinishedAttempt) -> Result<()> {
        if !fin.kv_writes.is_empty() {
            for read in &fin.kv_reads {
                let current = self.kv.get(&(fin.tenant.clone(), read.key.clone()));
                if current.map(|(v, _)| kv_digest(v)) != read.seen {
                    return Err(KvConflict {
                        key: read.key.clone(),
                    }
                    .into());
                }
            }
        }
        let now = now_ms();
        let Some(row) = self.events.get_mut(&fin.seq) else {
            bail!(
                "event {} is not in the journal; its attempt is not recorded",
                fin.seq
            );
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
        row.running = None;
        row.history.retain(|r| r.attempt != fin.record.attempt);
        row.history.push(fin.record.clone());
        row.history.sort_by_key(|r| r.attempt);
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
        Ok(())
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

impl Storage for MemoryStorage {
    fn append(&self, event: Arc<NewEvent>) -> BoxFuture<'_, Result<Appended>> {
        Box::pin(async move {
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
            journal.events.insert(
                seq,
                Row {
                    new: event,
                    state: EventState::Pending,
                    attempts: 0,
                    attempt_base: 0,
                    running: None,
                    next_attempt_at_ms: received_at_ms,
                    finished_at_ms: None,
                    last_error: None,
                    duplicates: 0,
                    history: Vec::new(),
                },
            );
            Ok(Appended::Accepted(seq))
        })
    }

    fn finish_attempt(&self, finished: FinishedAttempt) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.journal().finish(&finished) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn release_attempt(&self, seq: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if let Some(row) = self.journal().events.get_mut(&seq) {
                if row.state == EventState::Running {
                    row.state = EventState::Pending;
                    row.running = None;
                }
            }
            Ok(())
        })
    }

    fn start_attempt(
        &self,
        seq: i64,
        attempt: u32,
        started_at_ms: u64,
        plugin_version: &str,
    ) -> BoxFuture<'_, Result<()>> {
        let version = plugin_version.to_string();
        Box::pin(async move {
            if let Some(row) = self.journal().events.get_mut(&seq) {
                // As in SQLite: a stale mark (another attempt number) changes nothing.
                if row.attempts + 1 == attempt {
                    row.state = EventState::Running;
                    row.running = Some((started_at_ms, version));
                }
            }
            Ok(())
        })
    }

    fn unfinished(&self) -> Result<Vec<StoredEvent>> {
        Ok(self
            .journal()
            .events
            .iter()
            .filter(|(_, r)| matches!(r.state, EventState::Pending | EventState::Running))
            .map(|(seq, r)| r.stored(*seq))
            .collect())
    }

    fn replay(&self, seq: i64) -> BoxFuture<'_, Result<Replay>> {
        Box::pin(async move {
            let mut journal = self.journal();
            let Some(row) = journal.events.get_mut(&seq) else {
                return Ok(Replay::NotFound);
            };
            if matches!(row.state, EventState::Pending | EventState::Running) {
                return Ok(Replay::NotFinished(row.state));
            }
            row.replay();
            Ok(Replay::Replayed(Box::new(row.stored(seq))))
        })
    }

    fn replay_dead(
        &self,
        tenant: &str,
        since_ms: Option<u64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>>> {
        let tenant = tenant.to_string();
        Box::pin(async move {
            let since = since_ms.unwrap_or(0);
            let mut journal = self.journal();
            let mut replayed = Vec::new();
            for (seq, row) in journal.events.iter_mut() {
                if row.new.tenant == tenant
                    && row.state == EventState::Dead
                    && row.finished_at_ms.is_some_and(|t| t >= since)
                {
                    row.replay();
                    replayed.push(row.stored(*seq));
                }
            }
            Ok(replayed)
        })
    }

    fn prune(&self, before_ms: u64, limit: u32) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
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
        })
    }

    fn kv_get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .journal()
            .kv
            .get(&(tenant.to_string(), key.to_string()))
            .map(|(v, _)| v.clone()))
    }

    fn kv_list(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<String>> {
        let journal = self.journal();
        Ok(journal
            .kv_range(tenant, prefix, None)
            .take(limit as usize)
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn kv_count(&self, tenant: &str) -> Result<u64> {
        Ok(self.journal().kv_range(tenant, "", None).count() as u64)
    }

    fn kv_entries(
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

    fn events(
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

    fn event_counts(&self, tenant: &str) -> Result<BTreeMap<String, u64>> {
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

    fn event_detail(&self, seq: i64) -> Result<Option<EventDetail>> {
        Ok(self.journal().events.get(&seq).map(|row| EventDetail {
            summary: row.summary(seq),
            headers: row.new.headers.clone(),
            body: String::from_utf8_lossy(&row.new.body).into_owned(),
            attempts_detail: row.history.clone(),
        }))
    }
}

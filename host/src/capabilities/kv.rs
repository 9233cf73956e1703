//! `kv`: the tenant's private key-value store, seen through one attempt.
//!
//! Writes are buffered in the attempt's overlay and committed with the attempt's outcome in one
//! transaction (see `Storage::finish_attempt`), so a failed, trapped or timed-out attempt leaves no
//! change behind, and a retried event never sees half of a previous attempt's writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::storage::{kv_digest, KvRead, KvWrite, Storage};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: u32 = 512;

/// Why a kv operation was refused (mirrors WIT `kv.error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// Empty or longer than [`MAX_KEY_BYTES`].
    InvalidKey(u32),
    /// Value over the tenant's limit (bytes).
    ValueTooLarge(u64),
    /// The tenant's key limit is reached.
    TooManyKeys(u64),
    /// This attempt's buffered writes would exceed its byte budget (given). WIT v0.1.0 is
    /// frozen, so the plugin sees it as `value-too-large` with the budget.
    WriteBudgetExceeded(u64),
    /// The store failed.
    Storage(String),
}

/// Limits on a tenant's kv.
#[derive(Debug, Clone, Copy)]
pub struct KvLimits {
    /// Largest value in bytes.
    pub max_value_bytes: usize,
    /// Most keys the tenant may hold.
    pub max_keys: u64,
    /// Bytes of writes (keys + values) one attempt may buffer: they live in host memory, outside
    /// the plugin's own memory limit, until the attempt ends.
    pub max_write_bytes: usize,
}

/// One attempt's view of a tenant's kv: the committed store plus this attempt's own writes.
pub struct KvTxn {
    tenant: String,
    storage: Arc<dyn Storage>,
    limits: KvLimits,
    /// Key → new value, or `None` for a deletion.
    overlay: BTreeMap<String, Option<Vec<u8>>>,
    /// Bytes the overlay holds (keys and values), bounded by `limits.max_write_bytes`.
    overlay_bytes: usize,
    /// Net keys this attempt adds to the committed store, not counting `unchecked`.
    added: i64,
    /// Keys this attempt set without looking whether they exist in the committed store: each
    /// adds one key or none. Far from the tenant's key limit a set needs no read (the commit
    /// counts exactly); near it they are looked up (`resolve_unchecked`).
    unchecked: std::collections::BTreeSet<String>,
    /// The tenant's committed key count, read once per attempt when first needed.
    committed_keys: Option<i64>,
    /// What `get` saw in the committed store, per key (first read): validated at commit.
    reads: BTreeMap<String, Option<[u8; 32]>>,
}

impl KvTxn {
    /// A fresh view of `tenant`'s kv.
    pub fn new(tenant: &str, storage: Arc<dyn Storage>, limits: KvLimits) -> KvTxn {
        KvTxn {
            tenant: tenant.to_string(),
            storage,
            limits,
            overlay: BTreeMap::new(),
            overlay_bytes: 0,
            added: 0,
            unchecked: std::collections::BTreeSet::new(),
            committed_keys: None,
            reads: BTreeMap::new(),
        }
    }

    /// Refuses a write that would take the overlay past the attempt's byte budget.
    fn check_budget(&self, key: &str, value_len: usize) -> Result<(), KvError> {
        let replaced = match self.overlay.get(key) {
            Some(old) => key.len() + old.as_ref().map_or(0, Vec::len),
            None => 0,
        };
        let after = self.overlay_bytes - replaced + key.len() + value_len;
        if after > self.limits.max_write_bytes {
            return Err(KvError::WriteBudgetExceeded(
                self.limits.max_write_bytes as u64,
            ));
        }
        Ok(())
    }

    /// Puts a write into the overlay, keeping `overlay_bytes` exact.
    fn put(&mut self, key: &str, value: Option<Vec<u8>>) {
        self.overlay_bytes += key.len() + value.as_ref().map_or(0, Vec::len);
        if let Some(old) = self.overlay.insert(key.to_string(), value) {
            self.overlay_bytes -= key.len() + old.as_ref().map_or(0, Vec::len);
        }
    }

    /// Takes a key out of the overlay.
    fn unput(&mut self, key: &str) {
        if let Some(old) = self.overlay.remove(key) {
            self.overlay_bytes -= key.len() + old.as_ref().map_or(0, Vec::len);
        }
    }

    fn check_key(key: &str) -> Result<(), KvError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES as usize {
            return Err(KvError::InvalidKey(MAX_KEY_BYTES));
        }
        Ok(())
    }

    async fn committed(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.storage
            .kv_get(&self.tenant, key)
            .await
            .map_err(|e| KvError::Storage(format!("{e:#}")))
    }

    /// The value as this attempt sees it. A value read from the committed store is remembered,
    /// so that the attempt's writes commit only if it is still the same then.
    pub async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Self::check_key(key)?;
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => {
                let value = self.committed(key).await?;
                self.reads
                    .entry(key.to_string())
                    .or_insert_with(|| value.as_deref().map(kv_digest));
                Ok(value)
            }
        }
    }

    /// Whether the key is visible to this attempt, without counting as a read (a blind write
    /// does not depend on the old value).
    async fn visible(&self, key: &str) -> Result<bool, KvError> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.is_some()),
            None => self.exists_committed(key).await,
        }
    }

    /// Whether the key exists in the committed store (ignoring this attempt's writes).
    async fn exists_committed(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.committed(key).await?.is_some())
    }

    /// Sets a value (visible to others once the attempt succeeds).
    pub async fn set(&mut self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        Self::check_key(key)?;
        if value.len() > self.limits.max_value_bytes {
            return Err(KvError::ValueTooLarge(self.limits.max_value_bytes as u64));
        }
        self.check_budget(key, value.len())?;
        let max_keys = self.limits.max_keys.min(i64::MAX as u64) as i64;
        if !self.overlay.contains_key(key) {
            // Even if this key and every unchecked one were new, the limit would hold: no need
            // to know whether it exists.
            let count = self.committed_keys().await?;
            if count + self.added + (self.unchecked.len() as i64) < max_keys {
                self.unchecked.insert(key.to_string());
                self.put(key, Some(value));
                return Ok(());
            }
            self.resolve_unchecked().await?;
        }
        let visible_before = self.visible(key).await?;
        if !visible_before {
            self.resolve_unchecked().await?;
            if self.committed_keys().await? + self.added >= max_keys {
                return Err(KvError::TooManyKeys(self.limits.max_keys));
            }
            self.added += 1;
        }
        self.put(key, Some(value));
        Ok(())
    }

    /// The tenant's committed key count, read once per attempt.
    async fn committed_keys(&mut self) -> Result<i64, KvError> {
        if let Some(n) = self.committed_keys {
            return Ok(n);
        }
        let n = self
            .storage
            .kv_count(&self.tenant)
            .await
            .map_err(|e| KvError::Storage(format!("{e:#}")))? as i64;
        self.committed_keys = Some(n);
        Ok(n)
    }

    /// Looks up every unchecked key, counting the new ones exactly.
    async fn resolve_unchecked(&mut self) -> Result<(), KvError> {
        for key in std::mem::take(&mut self.unchecked) {
            if !self.exists_committed(&key).await? {
                self.added += 1;
            }
        }
        Ok(())
    }

    /// Deletes a key; returns whether it existed (as this attempt saw it).
    pub async fn delete(&mut self, key: &str) -> Result<bool, KvError> {
        Self::check_key(key)?;
        if self.unchecked.remove(key) {
            // Set by this attempt without a lookup: it existed (as this attempt sees it); it
            // removes a committed key, or undoes a key this attempt added (no change).
            let committed = self.exists_committed(key).await?;
            if committed {
                self.added -= 1;
                self.put(key, None);
            } else {
                self.unput(key);
            }
            return Ok(true);
        }
        if self.exists_committed(key).await? {
            // A deletion is kept as its key: it counts against the budget too.
            self.check_budget(key, 0)?;
        }
        let existed = self.visible(key).await?;
        if existed {
            self.added -= 1;
        }
        if self.exists_committed(key).await? {
            self.put(key, None);
        } else {
            self.unput(key);
        }
        Ok(existed)
    }

    /// Sets the value only if the key is absent (as this attempt sees it).
    pub async fn set_if_absent(&mut self, key: &str, value: Vec<u8>) -> Result<bool, KvError> {
        if self.get(key).await?.is_some() {
            return Ok(false);
        }
        self.set(key, value).await?;
        Ok(true)
    }

    /// Up to `limit` keys starting with `prefix`, ascending, as this attempt sees them.
    pub async fn list_keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
        let limit = limit.min(10_000);
        let in_overlay = self
            .overlay
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix));
        let deleted = in_overlay.clone().filter(|(_, v)| v.is_none()).count() as u32;
        let mut keys: Vec<String> = self
            .storage
            .kv_list(&self.tenant, prefix, limit.saturating_add(deleted))
            .await
            .map_err(|e| KvError::Storage(format!("{e:#}")))?;
        keys.retain(|k| !matches!(self.overlay.get(k), Some(None)));
        keys.extend(
            in_overlay
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| k.clone()),
        );
        keys.sort();
        keys.dedup();
        keys.truncate(limit as usize);
        Ok(keys)
    }

    /// The writes to commit if the attempt succeeds, with what it read (to validate them).
    pub fn into_parts(self) -> (Vec<KvWrite>, Vec<KvRead>) {
        let reads = self
            .reads
            .into_iter()
            .map(|(key, seen)| KvRead { key, seen })
            .collect();
        let writes = self
            .overlay
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => KvWrite::Set(k, v),
                None => KvWrite::Delete(k),
            })
            .collect();
        (writes, reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use crate::storage::sqlite::SqliteStorage;
    use crate::storage::{
        AttemptOutcome, AttemptRecord, ClaimLimit, EventState, FinishResult, FinishedAttempt, Lease,
    };

    fn storage() -> (tempfile::TempDir, Arc<dyn Storage>) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(&dir.path().join("kv.db"), Durability::Fast).unwrap();
        (dir, Arc::new(s))
    }

    const LIMITS: KvLimits = KvLimits {
        max_value_bytes: 8,
        max_keys: 3,
        max_write_bytes: 1 << 20,
    };

    /// An attempt under `lease` that did `writes`.
    fn attempt(lease: Lease, tenant: &str, writes: Vec<KvWrite>) -> FinishedAttempt {
        FinishedAttempt {
            lease,
            tenant: tenant.into(),
            record: AttemptRecord {
                attempt: 1,
                plugin_version: "t".into(),
                started_at_ms: 0,
                duration_us: 0,
                outcome: AttemptOutcome::Done,
                logs: vec![],
                logs_dropped: 0,
                effects: None,
            },
            kv_writes: writes,
            kv_reads: Vec::new(),
            next_state: EventState::Done,
            next_attempt_at_ms: 0,
        }
    }

    /// Commits `writes` as the successful attempt of a journaled event.
    async fn commit_ok(storage: &Arc<dyn Storage>, tenant: &str, writes: Vec<KvWrite>) {
        let event = crate::event::NormalizedEvent::sample("e1", None);
        let appended = storage
            .append(Arc::new(crate::storage::NewEvent {
                tenant: tenant.into(),
                source: "s".into(),
                received_at_ms: 0,
                headers: vec![],
                body: b"{}".to_vec(),
                event,
            }))
            .await
            .unwrap();
        let crate::storage::Appended::Accepted(_) = appended else {
            panic!("not journaled: {appended:?}")
        };
        let claim = storage
            .claim(tenant, "me", ClaimLimit::batch(1), 60_000)
            .await
            .unwrap()
            .claims;
        let finished = storage
            .finish_attempt(attempt(claim[0].claim.lease, tenant, writes))
            .await
            .unwrap();
        assert_eq!(finished, FinishResult::Committed);
    }

    /// Commits `writes` under a lease that is not the event's: refused, whole.
    async fn commit(storage: &Arc<dyn Storage>, tenant: &str, writes: Vec<KvWrite>) {
        let lost = Lease { seq: 1, token: 7 };
        let finished = storage
            .finish_attempt(attempt(lost, tenant, writes))
            .await
            .unwrap();
        assert_eq!(finished, FinishResult::LeaseLost);
    }

    #[tokio::test]
    async fn an_attempt_buffers_at_most_its_write_budget() {
        let (_d, s) = storage();
        let limits = KvLimits {
            max_value_bytes: 100,
            max_keys: 1_000_000,
            max_write_bytes: 1_000,
        };
        let mut a = KvTxn::new("acme", s, limits);
        let value = vec![7u8; 100];
        let mut stored = 0;
        let refused = loop {
            match a.set(&format!("k{stored:04}"), value.clone()).await {
                Ok(()) => stored += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(refused, KvError::WriteBudgetExceeded(1_000));
        assert_eq!(
            stored, 9,
            "9 × (5 + 100) bytes fit in 1,000, a tenth does not"
        );
        // Overwriting a buffered key replaces its bytes (no growth); deleting frees them.
        a.set("k0000", vec![1u8; 100]).await.unwrap();
        assert!(a.delete("k0001").await.unwrap());
        a.set("another", vec![1u8; 90]).await.unwrap();
        assert!(a.set("one-more", vec![1u8; 100]).await.is_err());
        let (writes, _) = a.into_parts();
        assert_eq!(writes.len(), 9);
    }

    #[tokio::test]
    async fn reads_see_own_writes_and_nothing_leaks_before_commit() {
        let (_d, s) = storage();
        let mut a = KvTxn::new("acme", s.clone(), LIMITS);
        a.set("k", b"v".to_vec()).await.unwrap();
        assert_eq!(a.get("k").await.unwrap(), Some(b"v".to_vec()));
        let mut b = KvTxn::new("acme", s.clone(), LIMITS);
        assert_eq!(
            b.get("k").await.unwrap(),
            None,
            "uncommitted write visible to another attempt"
        );
        let mut other = KvTxn::new("globex", s, LIMITS);
        assert_eq!(other.get("k").await.unwrap(), None);
        assert_eq!(
            a.into_parts().0,
            vec![KvWrite::Set("k".into(), b"v".to_vec())]
        );
    }

    #[tokio::test]
    async fn an_unlimited_key_count_does_not_overflow() {
        let (_d, s) = storage();
        let mut t = KvTxn::new(
            "acme",
            s,
            KvLimits {
                max_value_bytes: 8,
                max_keys: u64::MAX,
                max_write_bytes: 1 << 20,
            },
        );
        t.set("k", b"v".to_vec()).await.unwrap();
    }

    #[tokio::test]
    async fn limits_are_enforced() {
        let (_d, s) = storage();
        let mut t = KvTxn::new("acme", s, LIMITS);
        assert_eq!(
            t.set("", b"v".to_vec()).await,
            Err(KvError::InvalidKey(MAX_KEY_BYTES))
        );
        assert_eq!(
            t.set(&"x".repeat(513), b"v".to_vec()).await,
            Err(KvError::InvalidKey(MAX_KEY_BYTES))
        );
        assert_eq!(t.set("k", vec![0; 9]).await, Err(KvError::ValueTooLarge(8)));
        t.set("a", vec![]).await.unwrap();
        t.set("b", vec![]).await.unwrap();
        t.set("c", vec![]).await.unwrap();
        t.set("c", vec![1]).await.unwrap(); // overwriting is not a new key
        assert_eq!(t.set("d", vec![]).await, Err(KvError::TooManyKeys(3)));
        assert!(t.delete("a").await.unwrap());
        t.set("d", vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn set_if_absent_and_list_follow_the_overlay() {
        let (_d, s) = storage();
        let mut t = KvTxn::new(
            "acme",
            s,
            KvLimits {
                max_value_bytes: 8,
                max_keys: 100,
                max_write_bytes: 1 << 20,
            },
        );
        assert!(t.set_if_absent("n/1", b"x".to_vec()).await.unwrap());
        assert!(!t.set_if_absent("n/1", b"y".to_vec()).await.unwrap());
        t.set("n/2", vec![]).await.unwrap();
        t.set("m/1", vec![]).await.unwrap();
        assert_eq!(t.list_keys("n/", 10).await.unwrap(), vec!["n/1", "n/2"]);
        assert_eq!(t.list_keys("", 2).await.unwrap(), vec!["m/1", "n/1"]);
        assert!(t.delete("n/1").await.unwrap());
        assert!(!t.delete("n/1").await.unwrap());
        assert_eq!(t.list_keys("n/", 10).await.unwrap(), vec!["n/2"]);
        assert_eq!(t.get("n/1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn sets_without_a_lookup_still_count_exactly_at_the_limit() {
        let (_d, s) = storage();
        let writes = ["x", "y"].map(|k| KvWrite::Set(k.into(), vec![])).to_vec();
        commit_ok(&s, "acme", writes).await;
        let mut t = KvTxn::new("acme", s, LIMITS); // 3 keys at most; x and y exist
        t.set("x", vec![1]).await.unwrap(); // unchecked: within the limit even if new
        t.set("z", vec![]).await.unwrap(); // near the limit: x is looked up (exists), z is the third
        assert_eq!(t.set("w", vec![]).await, Err(KvError::TooManyKeys(3)));
        assert!(t.delete("x").await.unwrap());
        t.set("w", vec![]).await.unwrap(); // y, z, w
        assert_eq!(t.set("v", vec![]).await, Err(KvError::TooManyKeys(3)));
        assert!(t.delete("w").await.unwrap()); // set unchecked, then deleted: never committed
        assert_eq!(t.get("w").await.unwrap(), None);
        let (writes, _) = t.into_parts();
        let keys: Vec<String> = writes
            .iter()
            .map(|w| match w {
                KvWrite::Set(k, _) => format!("set {k}"),
                KvWrite::Delete(k) => format!("delete {k}"),
            })
            .collect();
        assert_eq!(keys, vec!["delete x", "set z"]);
    }

    #[tokio::test]
    async fn a_failed_commit_writes_nothing() {
        let (_d, s) = storage();
        commit(&s, "acme", vec![KvWrite::Set("k".into(), b"v".to_vec())]).await;
        let mut t = KvTxn::new("acme", s, LIMITS);
        assert_eq!(t.get("k").await.unwrap(), None);
    }
}

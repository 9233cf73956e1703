//! The behaviour every [`Storage`] implementation must have, written once and run against each
//! (`conformance_tests!`), so that a new backend is held to what the pipeline relies on: atomic
//! dedupe, optimistic kv validation, replay budgets, pruning.

use std::sync::Arc;

use super::{
    Appended, AttemptOutcome, AttemptRecord, EventFilter, EventState, FinishedAttempt, KvConflict,
    KvWrite, LogLine, NewEvent, Replay, Storage,
};
use crate::event::{CanonicalStatus, EventKind, NormalizedEvent};
use crate::now_ms;

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh store from `$make`
/// (an expression giving `(Arc<dyn Storage>, guard)`; the guard lives as long as the test).
macro_rules! conformance_tests {
    ($make:expr) => {
        conformance_tests!(@cases $make;
            append_dedupes_atomically_even_when_concurrent,
            a_read_modify_write_on_stale_data_is_refused_not_lost,
            finish_commits_kv_with_the_outcome_and_counts_keys,
            replay_only_finished_events_with_a_fresh_budget,
            prune_deletes_only_old_finished_events_in_batches,
        );
    };
    (@cases $make:expr; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $make;
                super::$case(store).await;
            }
        )*
    };
}

mod sqlite {
    use std::sync::Arc;

    use crate::config::Durability;
    use crate::storage::sqlite::SqliteStorage;
    use crate::storage::Storage;

    fn open() -> (Arc<dyn Storage>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStorage::open(&dir.path().join("h.db"), Durability::Fast).unwrap();
        (Arc::new(store), dir)
    }

    conformance_tests!(open());
}

mod memory {
    use std::sync::Arc;

    use crate::storage::memory::MemoryStorage;
    use crate::storage::Storage;

    conformance_tests!((Arc::new(MemoryStorage::new()) as Arc<dyn Storage>, ()));
}

pub fn event(id: &str) -> Arc<NewEvent> {
    Arc::new(NewEvent {
        tenant: "acme".into(),
        source: "fc".into(),
        received_at_ms: 1000,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"x":1}"#.to_vec(),
        event: NormalizedEvent {
            id: id.into(),
            provider: "fincart".into(),
            kind: EventKind::OrderStatusChanged,
            order_id: Some("o1".into()),
            merchant_ref: None,
            status: CanonicalStatus::Pending,
            raw_status: Some("pending".into()),
            raw_sub_status: None,
            reason: None,
            amount: None,
            occurred_at_ms: None,
        },
    })
}

pub fn record(attempt: u32, outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        attempt,
        plugin_version: "v1".into(),
        started_at_ms: 1,
        duration_us: 5,
        outcome,
        logs: vec![LogLine {
            level: "info".into(),
            message: "hi".into(),
        }],
        logs_dropped: 0,
    }
}

pub fn finished(
    seq: i64,
    attempt: u32,
    outcome: AttemptOutcome,
    next_state: EventState,
) -> FinishedAttempt {
    FinishedAttempt {
        seq,
        tenant: "acme".into(),
        record: record(attempt, outcome),
        kv_writes: vec![],
        kv_reads: Vec::new(),
        next_state,
        next_attempt_at_ms: 0,
    }
}

pub async fn append_dedupes_atomically_even_when_concurrent(store: Arc<dyn Storage>) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.append(event("same")).await.unwrap()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        if let Appended::Accepted(_) = t.await.unwrap() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
    let pending = store.unfinished().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        store
            .events("acme", 10, None, &EventFilter::default())
            .unwrap()[0]
            .duplicates,
        19
    );
}

pub async fn a_read_modify_write_on_stale_data_is_refused_not_lost(store: Arc<dyn Storage>) {
    use crate::capabilities::kv::{KvLimits, KvTxn};
    let limits = KvLimits {
        max_value_bytes: 64,
        max_keys: 100,
        max_write_bytes: 1 << 20,
    };
    let mut seqs = Vec::new();
    for id in ["e1", "e2", "e3", "e4"] {
        let Appended::Accepted(seq) = store.append(event(id)).await.unwrap() else {
            panic!()
        };
        seqs.push(seq);
    }
    let finish = |seq: i64, txn: KvTxn| {
        let (kv_writes, kv_reads) = txn.into_parts();
        store.finish_attempt(FinishedAttempt {
            seq,
            tenant: "acme".into(),
            record: record(1, AttemptOutcome::Done),
            kv_writes,
            kv_reads,
            next_state: EventState::Done,
            next_attempt_at_ms: 0,
        })
    };
    // Two attempts read the counter (absent), both write 1: the second must not commit.
    let mut a = KvTxn::new("acme", store.clone(), limits);
    let mut b = KvTxn::new("acme", store.clone(), limits);
    assert_eq!(a.get("counter").unwrap(), None);
    assert_eq!(b.get("counter").unwrap(), None);
    a.set("counter", b"1".to_vec()).unwrap();
    b.set("counter", b"1".to_vec()).unwrap();
    finish(seqs[0], a).await.unwrap();
    let err = finish(seqs[1], b).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<KvConflict>(),
        Some(&KvConflict {
            key: "counter".into()
        })
    );
    // Nothing of the refused attempt was written: its event is still pending.
    assert_eq!(
        store.kv_get("acme", "counter").unwrap(),
        Some(b"1".to_vec())
    );
    let pending: Vec<i64> = store.unfinished().unwrap().iter().map(|e| e.seq).collect();
    assert!(pending.contains(&seqs[1]));
    // Run again on fresh data, it commits 2. Blind writes (no read) never conflict.
    let mut b = KvTxn::new("acme", store.clone(), limits);
    assert_eq!(b.get("counter").unwrap(), Some(b"1".to_vec()));
    b.set("counter", b"2".to_vec()).unwrap();
    let mut c = KvTxn::new("acme", store.clone(), limits);
    c.set("last", b"c".to_vec()).unwrap();
    let mut d = KvTxn::new("acme", store.clone(), limits);
    d.set("last", b"d".to_vec()).unwrap();
    finish(seqs[1], b).await.unwrap();
    finish(seqs[2], c).await.unwrap();
    finish(seqs[3], d).await.unwrap();
    assert_eq!(
        store.kv_get("acme", "counter").unwrap(),
        Some(b"2".to_vec())
    );
}

pub async fn finish_commits_kv_with_the_outcome_and_counts_keys(store: Arc<dyn Storage>) {
    let Appended::Accepted(seq) = store.append(event("e1")).await.unwrap() else {
        panic!()
    };
    store
        .finish_attempt(FinishedAttempt {
            seq,
            tenant: "acme".into(),
            record: record(
                1,
                AttemptOutcome::Error {
                    message: "boom".into(),
                },
            ),
            kv_writes: vec![],
            kv_reads: Vec::new(),
            next_state: EventState::Pending,
            next_attempt_at_ms: 5000,
        })
        .await
        .unwrap();
    let summary = &store
        .events("acme", 10, None, &EventFilter::default())
        .unwrap()[0];
    assert_eq!(
        (
            summary.state,
            summary.attempts,
            summary.last_error.as_deref()
        ),
        (EventState::Pending, 1, Some("boom"))
    );
    assert_eq!(summary.next_attempt_at_ms, Some(5000));
    store
        .finish_attempt(FinishedAttempt {
            seq,
            tenant: "acme".into(),
            record: record(2, AttemptOutcome::Done),
            kv_writes: vec![
                KvWrite::Set("a".into(), b"1".to_vec()),
                KvWrite::Set("ab".into(), b"2".to_vec()),
                KvWrite::Set("b".into(), b"3".to_vec()),
                KvWrite::Delete("b".into()),
            ],
            kv_reads: Vec::new(),
            next_state: EventState::Done,
            next_attempt_at_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(store.kv_get("acme", "ab").unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.kv_get("other", "ab").unwrap(), None);
    assert_eq!(store.kv_list("acme", "a", 10).unwrap(), vec!["a", "ab"]);
    assert_eq!(store.kv_list("acme", "", 1).unwrap(), vec!["a"]);
    assert_eq!(store.kv_count("acme").unwrap(), 2);
    assert!(store.unfinished().unwrap().is_empty());
    let detail = store.event_detail(seq).unwrap().unwrap();
    assert_eq!(detail.attempts_detail.len(), 2);
    assert_eq!(detail.summary.state, EventState::Done);
    assert_eq!(detail.body, r#"{"x":1}"#);
}

pub async fn replay_only_finished_events_with_a_fresh_budget(store: Arc<dyn Storage>) {
    let Appended::Accepted(dead) = store.append(event("dead")).await.unwrap() else {
        panic!()
    };
    let Appended::Accepted(pending) = store.append(event("pending")).await.unwrap() else {
        panic!()
    };
    let error = || AttemptOutcome::Error {
        message: "x".into(),
    };
    store
        .finish_attempt(finished(dead, 1, error(), EventState::Pending))
        .await
        .unwrap();
    store
        .finish_attempt(finished(dead, 2, error(), EventState::Dead))
        .await
        .unwrap();
    assert!(matches!(
        store.replay(pending).await.unwrap(),
        Replay::NotFinished(EventState::Pending)
    ));
    assert!(matches!(store.replay(999).await.unwrap(), Replay::NotFound));
    assert!(
        store
            .replay_dead("acme", Some(now_ms() + 60_000))
            .await
            .unwrap()
            .is_empty(),
        "since filters"
    );
    let replayed = store.replay_dead("acme", None).await.unwrap();
    assert_eq!(
        replayed
            .iter()
            .map(|e| (e.seq, e.attempts, e.attempt_base))
            .collect::<Vec<_>>(),
        vec![(dead, 2, 2)]
    );
    let summary = &store
        .events("acme", 10, None, &EventFilter::default())
        .unwrap()[1];
    assert_eq!(
        (
            summary.state,
            summary.last_error.as_deref(),
            summary.finished_at_ms
        ),
        (EventState::Pending, None, None)
    );
    assert!(
        store.replay_dead("acme", None).await.unwrap().is_empty(),
        "already replayed"
    );
    store
        .finish_attempt(finished(dead, 3, AttemptOutcome::Done, EventState::Done))
        .await
        .unwrap();
    let Replay::Replayed(again) = store.replay(dead).await.unwrap() else {
        panic!()
    };
    assert_eq!((again.attempts, again.attempt_base), (3, 3));
    assert_eq!(
        store
            .event_detail(dead)
            .unwrap()
            .unwrap()
            .attempts_detail
            .len(),
        3,
        "history is kept"
    );
}

pub async fn prune_deletes_only_old_finished_events_in_batches(store: Arc<dyn Storage>) {
    let mut seqs = Vec::new();
    for i in 0..5 {
        let Appended::Accepted(seq) = store.append(event(&format!("e{i}"))).await.unwrap() else {
            panic!()
        };
        seqs.push(seq);
    }
    for seq in &seqs[..4] {
        store
            .finish_attempt(finished(*seq, 1, AttemptOutcome::Done, EventState::Done))
            .await
            .unwrap();
    }
    assert_eq!(
        store.prune(1, 10).await.unwrap(),
        0,
        "nothing finished that long ago"
    );
    let later = now_ms() + 1;
    assert_eq!(store.prune(later, 3).await.unwrap(), 3);
    assert_eq!(store.prune(later, 3).await.unwrap(), 1);
    let left = store
        .events("acme", 10, None, &EventFilter::default())
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![seqs[4]],
        "the pending event stays"
    );
    assert!(store.event_detail(seqs[0]).unwrap().is_none());
}

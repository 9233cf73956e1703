//! The behaviour every [`Storage`] implementation must have, written once and run against each
//! (`conformance_tests!`), so that a new backend is held to what the pipeline relies on: atomic
//! dedupe, order heads and claims, leases (fencing, renewal, reaping), optimistic kv validation,
//! replay budgets, retention, pagination.

use std::sync::Arc;

use super::{ActivityRows, AttemptKind, AttemptSample, EventSpan};
use super::{
    Appended, AttemptOutcome, AttemptRecord, Claim, ClaimLimit, DeployAction, DeployKind,
    DeployRecord, Deployed, Duty, EventFilter, EventState, FinishResult, FinishedAttempt,
    KvConflict, KvWrite, Lease, LogLine, NewDeploy, NewEvent, Replay, Storage, StoreChange,
};
use crate::event::{CanonicalStatus, EventKind, NormalizedEvent};
use crate::now_ms;

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh store from `$make`
/// (an expression giving `(Arc<dyn Storage>, guard)`; the guard lives as long as the test).
macro_rules! conformance_tests {
    (@each [$($mode:ident)?] $make:expr) => {
        conformance_tests!(@cases [$($mode)?] $make;
            append_dedupes_atomically_even_when_concurrent,
            only_an_orders_head_is_claimed_in_journal_order,
            a_retrying_head_holds_back_its_order_not_others,
            claims_stay_within_the_limit_and_the_tenant,
            a_tenant_bound_counts_every_holders_claims,
            a_duty_has_one_holder_at_a_time,
            published_plugins_are_kept_by_content_and_announced,
            deploys_are_numbered_and_rolled_back,
            tokens_are_stored_listed_and_revoked,
            staged_versions_shadow_and_are_promoted,
            the_journal_pages_in_order_with_the_latest_attempt,
            a_stored_config_replaces_the_last_and_is_announced,
            a_finish_is_fenced_by_its_lease,
            expired_leases_are_reaped_and_renewed_ones_are_not,
            pagination_of_events_and_kv,
            a_read_modify_write_on_stale_data_is_refused_not_lost,
            attempts_reading_each_others_writes_cannot_both_commit,
            finish_commits_kv_with_the_outcome_and_counts_keys,
            replay_only_finished_events_with_a_fresh_budget,
            prune_deletes_only_old_finished_events_in_batches,
            activity_and_filters_by_source_and_event_id,
        );
    };
    (@cases [] $make:expr; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $make;
                super::$case(store).await;
            }
        )*
    };
    (@cases [optional] $make:expr; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((store, _guard)) = $make(stringify!($case)).await else {
                    return;
                };
                super::$case(store).await;
            }
        )*
    };
    // `$make` gives `Option<(store, guard)>` for the test named by its argument: `None` skips.
    (optional: $make:expr) => {
        conformance_tests!(@each [optional] $make);
    };
    ($make:expr) => {
        conformance_tests!(@each [] $make);
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

mod postgres {
    use std::sync::Arc;

    use crate::storage::pg_test::fresh_database;
    use crate::storage::postgres::PostgresStorage;
    use crate::storage::Storage;

    async fn open(test: &str) -> Option<(Arc<dyn Storage>, ())> {
        let config = fresh_database(test).await?;
        let store = PostgresStorage::connect_with(config).await.unwrap();
        Some((Arc::new(store) as Arc<dyn Storage>, ()))
    }

    conformance_tests!(optional: open);
}

mod memory {
    use std::sync::Arc;

    use crate::storage::memory::MemoryStorage;
    use crate::storage::Storage;

    conformance_tests!((Arc::new(MemoryStorage::new()) as Arc<dyn Storage>, ()));
}

/// An event of order `o1`.
pub fn event(id: &str) -> Arc<NewEvent> {
    event_of(id, Some("o1"))
}

/// An event of tenant `acme` with this order id (`None`: an order of its own).
pub fn event_of(id: &str, order: Option<&str>) -> Arc<NewEvent> {
    event_for("acme", id, order)
}

/// An event of `tenant` with this order id.
pub fn event_for(tenant: &str, id: &str, order: Option<&str>) -> Arc<NewEvent> {
    Arc::new(NewEvent {
        tenant: tenant.into(),
        source: "fc".into(),
        received_at_ms: now_ms(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"x":1}"#.to_vec(),
        event: NormalizedEvent {
            id: id.into(),
            provider: "fincart".into(),
            kind: EventKind::OrderStatusChanged,
            order_id: order.map(str::to_string),
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
        effects: None,
    }
}

pub fn finished(
    lease: Lease,
    attempt: u32,
    outcome: AttemptOutcome,
    next_state: EventState,
) -> FinishedAttempt {
    FinishedAttempt {
        lease,
        tenant: "acme".into(),
        record: record(attempt, outcome),
        kv_writes: vec![],
        kv_reads: Vec::new(),
        next_state,
        next_attempt_at_ms: 0,
    }
}

const LEASE_MS: u64 = 60_000;

/// Appends, expecting a new event.
async fn accepted(store: &Arc<dyn Storage>, event: Arc<NewEvent>) -> i64 {
    match store.append(event).await.unwrap() {
        Appended::Accepted(seq) => seq,
        other => panic!("expected a new event, got {other:?}"),
    }
}

/// Claims every due head of `acme` for owner `me`.
async fn claim_all(store: &Arc<dyn Storage>) -> Vec<Claim> {
    claims_of(
        store
            .claim("acme", "me", ClaimLimit::batch(100), LEASE_MS)
            .await
            .unwrap(),
    )
}

fn claims_of(batch: super::ClaimBatch) -> Vec<Claim> {
    batch.claims.into_iter().map(|c| c.claim).collect()
}

fn seqs(claims: &[Claim]) -> Vec<i64> {
    claims.iter().map(|c| c.lease.seq).collect()
}

/// The lease of the claim for `seq`.
fn lease_of(claims: &[Claim], seq: i64) -> Lease {
    claims
        .iter()
        .find(|c| c.lease.seq == seq)
        .unwrap_or_else(|| panic!("event {seq} not claimed"))
        .lease
}

async fn summary_of(store: &Arc<dyn Storage>, seq: i64) -> super::EventSummary {
    store.event_detail(seq).await.unwrap().unwrap().summary
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
    let listed = store
        .events("acme", 10, None, &EventFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].duplicates, 19);
    assert_eq!(claim_all(&store).await.len(), 1, "one event to run");
}

pub async fn only_an_orders_head_is_claimed_in_journal_order(store: Arc<dyn Storage>) {
    let e1 = accepted(&store, event_of("e1", Some("o1"))).await;
    let e2 = accepted(&store, event_of("e2", Some("o1"))).await;
    let e3 = accepted(&store, event_of("e3", Some("o2"))).await;
    let e4 = accepted(&store, event_of("e4", None)).await;
    let batch = store
        .claim("acme", "me", ClaimLimit::batch(100), LEASE_MS)
        .await
        .unwrap();
    let events: Vec<(i64, String, Vec<u8>)> = batch
        .claims
        .iter()
        .map(|c| (c.event.seq, c.event.event.id.clone(), c.event.body.clone()))
        .collect();
    let body = br#"{"x":1}"#.to_vec();
    assert_eq!(
        events,
        [
            (e1, "e1".into(), body.clone()),
            (e3, "e3".into(), body.clone()),
            (e4, "e4".into(), body)
        ],
        "each claim comes with its event; e2 waits behind its order's head"
    );
    let claims = claims_of(batch);
    // Claimed is not running: running means an attempt started.
    assert_eq!(summary_of(&store, e1).await.state, EventState::Pending);
    store
        .mark_started(lease_of(&claims, e1), now_ms(), "v1")
        .await
        .unwrap();
    // The mark resolves once queued; writes commit in order, so a later write's commit covers it.
    store.ping().await.unwrap();
    assert_eq!(summary_of(&store, e1).await.state, EventState::Running);
    assert_eq!(summary_of(&store, e2).await.state, EventState::Pending);
    let again = store
        .claim("acme", "me", ClaimLimit::batch(100), LEASE_MS)
        .await
        .unwrap();
    assert!(
        again.claims.is_empty(),
        "claimed heads are not claimed twice"
    );
    assert_eq!(again.next_due_ms, None, "no unclaimed head");
    // The head ends: the order's next event becomes its head.
    let done = finished(
        lease_of(&claims, e1),
        1,
        AttemptOutcome::Done,
        EventState::Done,
    );
    assert_eq!(
        store.finish_attempt(done).await.unwrap(),
        FinishResult::Committed
    );
    let next = claim_all(&store).await;
    assert_eq!(seqs(&next), [e2]);
    assert_eq!(next[0].attempts, 0);
}

pub async fn a_retrying_head_holds_back_its_order_not_others(store: Arc<dyn Storage>) {
    let e1 = accepted(&store, event_of("e1", Some("o1"))).await;
    let _e2 = accepted(&store, event_of("e2", Some("o1"))).await;
    let e3 = accepted(&store, event_of("e3", Some("o2"))).await;
    let e4 = accepted(&store, event_of("e4", Some("o2"))).await;
    let claims = claim_all(&store).await;
    let later = now_ms() + 60_000;
    let mut retry = finished(
        lease_of(&claims, e1),
        1,
        AttemptOutcome::Error {
            message: "x".into(),
        },
        EventState::Pending,
    );
    retry.next_attempt_at_ms = later;
    assert_eq!(
        store.finish_attempt(retry).await.unwrap(),
        FinishResult::Committed
    );
    let done = finished(
        lease_of(&claims, e3),
        1,
        AttemptOutcome::Done,
        EventState::Done,
    );
    store.finish_attempt(done).await.unwrap();
    let batch = store
        .claim("acme", "me", ClaimLimit::batch(100), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(
        seqs(&claims_of(batch.clone())),
        [e4],
        "o2 moves on; o1 waits for its retry"
    );
    assert_eq!(batch.next_due_ms, Some(later), "when o1's head is due");
    let summary = summary_of(&store, e1).await;
    assert_eq!(
        (summary.state, summary.attempts, summary.next_attempt_at_ms),
        (EventState::Pending, 1, Some(later))
    );
}

pub async fn claims_stay_within_the_limit_and_the_tenant(store: Arc<dyn Storage>) {
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(accepted(&store, event_of(&format!("a{i}"), None)).await);
    }
    let other = accepted(&store, event_for("other", "b0", None)).await;
    let first = store
        .claim("acme", "me", ClaimLimit::batch(2), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(
        seqs(&claims_of(first.clone())),
        all[..2],
        "oldest first, at most the limit"
    );
    assert!(
        first.next_due_ms.is_some_and(|t| t <= now_ms()),
        "more are due now"
    );
    assert!(first
        .claims
        .iter()
        .all(|c| c.claim.tenant == "acme" && c.event.tenant == "acme"));
    let rest = store
        .claim("acme", "me", ClaimLimit::batch(10), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seqs(&claims_of(rest)), all[2..]);
    let theirs = store
        .claim("other", "me", ClaimLimit::batch(10), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seqs(&claims_of(theirs)), [other]);
    assert!(store
        .claim("nobody", "me", ClaimLimit::batch(10), LEASE_MS)
        .await
        .unwrap()
        .claims
        .is_empty());
}

/// The bound that keeps a tenant's `max_concurrency` across replicas: claims count every
/// holder's claimed heads, say when the bound (not a lack of due heads) held them back, and get
/// room again when a head is finished or given back.
pub async fn a_tenant_bound_counts_every_holders_claims(store: Arc<dyn Storage>) {
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(accepted(&store, event_of(&format!("a{i}"), Some(&format!("o{i}")))).await);
    }
    let other = accepted(&store, event_for("other", "b0", None)).await;
    let bounded = ClaimLimit::batch(10).within(3);
    let a = store
        .claim("acme", "a", ClaimLimit::batch(2).within(3), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(
        seqs(&claims_of(a.clone())),
        all[..2],
        "the batch, under the bound"
    );
    assert!(!a.capped, "the batch, not the bound, limited this claim");
    let b = store.claim("acme", "b", bounded, LEASE_MS).await.unwrap();
    assert_eq!(
        seqs(&claims_of(b.clone())),
        all[2..3],
        "one left under the bound of 3"
    );
    assert!(b.capped, "due heads were left because of the bound");
    let full = store.claim("acme", "c", bounded, LEASE_MS).await.unwrap();
    assert!(full.claims.is_empty() && full.capped);
    // Another tenant's bound is its own.
    let theirs = store.claim("other", "c", bounded, LEASE_MS).await.unwrap();
    assert_eq!(seqs(&claims_of(theirs.clone())), [other]);
    assert!(!theirs.capped);
    // A finish and a release each free one place.
    let done = finished(
        lease_of(&claims_of(a.clone()), all[0]),
        1,
        AttemptOutcome::Done,
        EventState::Done,
    );
    assert_eq!(
        store.finish_attempt(done).await.unwrap(),
        FinishResult::Committed
    );
    assert!(store.release(b.claims[0].claim.lease, 0).await.unwrap());
    let after = store.claim("acme", "c", bounded, LEASE_MS).await.unwrap();
    assert_eq!(
        seqs(&claims_of(after.clone())),
        [all[2], all[3]],
        "two places free again, earliest due first"
    );
    assert!(after.capped, "a4 is still due and held back");
    // Without a bound, the rest is claimable at once.
    let unbounded = store
        .claim("acme", "c", ClaimLimit::batch(10), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seqs(&claims_of(unbounded.clone())), [all[4]]);
    assert!(!unbounded.capped);
}

/// Reaping and pruning: one holder at a time on a shared store, each duty on its own, taken
/// over once the holder's turn expires; a store of one process lets its one process hold all.
pub async fn a_duty_has_one_holder_at_a_time(store: Arc<dyn Storage>) {
    assert!(store.hold_duty(Duty::Reaper, "a", 300).await.unwrap());
    assert!(
        store.hold_duty(Duty::Reaper, "a", 300).await.unwrap(),
        "kept"
    );
    assert!(
        store.hold_duty(Duty::Pruner, "b", 300).await.unwrap(),
        "another duty"
    );
    if !store.is_shared() {
        assert!(store.hold_duty(Duty::Reaper, "b", 300).await.unwrap());
        return;
    }
    assert!(
        !store.hold_duty(Duty::Reaper, "b", 300).await.unwrap(),
        "a's turn"
    );
    assert!(
        !store.hold_duty(Duty::Pruner, "a", 300).await.unwrap(),
        "b's turn"
    );
    // a stops renewing: after its turn, b takes over, and a no longer holds it.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        store.hold_duty(Duty::Reaper, "b", 60_000).await.unwrap(),
        "taken over"
    );
    assert!(
        !store.hold_duty(Duty::Reaper, "a", 300).await.unwrap(),
        "a lost it"
    );
}

/// The next change heard, other than a resync (a listener's first words); panics after 10 s.
pub async fn next_published(
    changes: &mut tokio::sync::broadcast::Receiver<StoreChange>,
) -> StoreChange {
    let deadline = std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout(deadline, changes.recv()).await {
            Ok(Ok(StoreChange::Resync)) => continue,
            Ok(Ok(change)) => return change,
            Ok(Err(e)) => panic!("the store's changes: {e}"),
            Err(_) => panic!("no change heard in {deadline:?}"),
        }
    }
}

/// Deploys `component` for `tenant` as the operator; panics unless it was recorded.
pub async fn activate(store: &Arc<dyn Storage>, tenant: &str, component: &[u8]) -> DeployRecord {
    deploy(store, tenant, DeployAction::Activate(component.to_vec())).await
}

async fn deploy(store: &Arc<dyn Storage>, tenant: &str, action: DeployAction) -> DeployRecord {
    let deploy = NewDeploy {
        tenant: tenant.into(),
        by: "operator".into(),
        action,
    };
    match store.deploy(deploy).await.unwrap() {
        Deployed::Recorded(record) => record,
        Deployed::NoSuchEntry => panic!("not recorded"),
    }
}

/// A deploy stores a component by its content and moves the tenant's pointer; every subscriber
/// hears of it; another tenant's pointer is its own.
pub async fn published_plugins_are_kept_by_content_and_announced(store: Arc<dyn Storage>) {
    let mut changes = store.changes();
    assert!(store.published_plugins().await.unwrap().is_empty());
    let v1 = activate(&store, "acme", b"component one").await;
    assert_eq!(v1.digest, super::component_digest(b"component one"));
    assert_eq!((v1.tenant.as_str(), v1.size, v1.number), ("acme", 13, 1));
    assert_eq!(v1.kind, DeployKind::Deploy);
    assert_eq!(
        next_published(&mut changes).await,
        StoreChange::PluginPublished {
            tenant: "acme".into()
        }
    );
    // The same component for another tenant: stored once, two pointers.
    let same = activate(&store, "other", b"component one").await;
    assert_eq!((same.digest.as_str(), same.number), (v1.digest.as_str(), 1));
    let v2 = activate(&store, "acme", b"component two").await;
    assert_ne!(v2.digest, v1.digest);
    assert_eq!(v2.number, 2);
    let pointers: Vec<(String, String)> = store
        .published_plugins()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.tenant, p.digest))
        .collect();
    assert_eq!(
        pointers,
        [
            ("acme".into(), v2.digest.clone()),
            ("other".into(), v1.digest.clone())
        ]
    );
    assert_eq!(
        store.plugin_component(&v1.digest).await.unwrap().as_deref(),
        Some(&b"component one"[..])
    );
    assert_eq!(
        store.plugin_component(&v2.digest).await.unwrap().as_deref(),
        Some(&b"component two"[..])
    );
    assert_eq!(store.plugin_component("0000").await.unwrap(), None);
}

/// A tenant's history numbers every deploy, refused ones too; a rollback re-activates an earlier
/// entry's component as a new entry; a rollback to an entry that activated nothing records
/// nothing; many deploys at once get distinct numbers.
pub async fn deploys_are_numbered_and_rolled_back(store: Arc<dyn Storage>) {
    let v1 = activate(&store, "acme", b"one").await;
    let v2 = activate(&store, "acme", b"two").await;
    let refused = deploy(
        &store,
        "acme",
        DeployAction::Refused {
            digest: "bad".into(),
            size: 3,
            reason: "not a component".into(),
        },
    )
    .await;
    assert_eq!((refused.number, refused.kind), (3, DeployKind::Refused));
    assert_eq!(refused.message.as_deref(), Some("not a component"));
    // The refused upload changed nothing.
    let pointer = |store: Arc<dyn Storage>| async move {
        store.published_plugins().await.unwrap()[0].digest.clone()
    };
    assert_eq!(pointer(store.clone()).await, v2.digest);
    assert_eq!(
        store
            .deploy(NewDeploy {
                tenant: "acme".into(),
                by: "operator".into(),
                action: DeployAction::Rollback { to: 3 },
            })
            .await
            .unwrap(),
        Deployed::NoSuchEntry
    );
    let mut changes = store.changes();
    let back = deploy(&store, "acme", DeployAction::Rollback { to: 1 }).await;
    assert_eq!(
        (back.number, back.kind, back.reactivates),
        (4, DeployKind::Rollback, Some(1))
    );
    assert_eq!((back.digest.as_str(), back.size), (v1.digest.as_str(), 3));
    assert_eq!(pointer(store.clone()).await, v1.digest);
    assert_eq!(
        next_published(&mut changes).await,
        StoreChange::PluginPublished {
            tenant: "acme".into()
        }
    );
    let history = store.deploys("acme", 10).await.unwrap();
    let numbers: Vec<u32> = history.iter().map(|d| d.number).collect();
    assert_eq!(numbers, [4, 3, 2, 1]);
    assert_eq!(history[0], back);
    assert_eq!(store.deploys("acme", 2).await.unwrap().len(), 2);
    assert!(store.deploys("nobody", 10).await.unwrap().is_empty());
    // Eight deploys at once: eight distinct numbers after the four.
    let mut all = Vec::new();
    for i in 0..8u8 {
        let store = store.clone();
        all.push(tokio::spawn(async move {
            activate(&store, "acme", &[b'c', i]).await.number
        }));
    }
    let mut numbers = Vec::new();
    for one in all {
        numbers.push(one.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (5..=12).collect::<Vec<u32>>());
}

/// The journal, paged oldest first for backtests: one tenant's events with their latest attempt
/// (its effects kept).
pub async fn the_journal_pages_in_order_with_the_latest_attempt(store: Arc<dyn Storage>) {
    let first = accepted(&store, event_for("acme", "j1", None)).await;
    accepted(&store, event_for("other", "j2", None)).await;
    let second = accepted(&store, event_for("acme", "j3", Some("o3"))).await;
    let third = accepted(&store, event_for("acme", "j4", Some("o4"))).await;
    let claims = claim_all(&store).await;
    let mut done = finished(
        lease_of(&claims, first),
        1,
        AttemptOutcome::Done,
        EventState::Done,
    );
    done.record.effects = Some(super::Effects {
        kv: vec![super::KvEffect {
            key: "k".into(),
            value_sha256: Some("0123456789abcdef".into()),
        }],
        requests: vec![super::OutboundRequest {
            method: "POST".into(),
            host: "example.com".into(),
            path: "/x".into(),
            body_sha256: None,
        }],
    });
    let effects = done.record.effects.clone();
    assert_eq!(
        store.finish_attempt(done).await.unwrap(),
        FinishResult::Committed
    );
    let page = store.journal_page("acme", 0, 0, 2).await.unwrap();
    let seqs: Vec<i64> = page.iter().map(|j| j.event.seq).collect();
    assert_eq!(seqs, [first, second]);
    assert_eq!(page[0].state, EventState::Done);
    let last = page[0].last_attempt.as_ref().expect("its attempt");
    assert_eq!((last.attempt, &last.effects), (1, &effects));
    assert!(page[1].last_attempt.is_none());
    assert_eq!(page[1].event.body, event_for("acme", "j3", Some("o3")).body);
    let rest = store.journal_page("acme", second, 0, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|j| j.event.seq).collect::<Vec<_>>(),
        [third]
    );
    let received = page[0].event.received_at_ms;
    let later = store
        .journal_page("acme", 0, received + 1_000_000, 10)
        .await
        .unwrap();
    assert!(later.is_empty());
}

/// A staged deploy stores its component without activating it; a promotion activates it; a
/// shadow is set, announced, replaced (forgetting its runs) and reports what it found.
pub async fn staged_versions_shadow_and_are_promoted(store: Arc<dyn Storage>) {
    let active = activate(&store, "acme", b"active").await;
    let staged = deploy(&store, "acme", DeployAction::Stage(b"candidate".to_vec())).await;
    assert_eq!((staged.number, staged.kind), (2, DeployKind::Staged));
    assert_eq!(
        store.published_plugins().await.unwrap()[0].digest,
        active.digest,
        "staging activates nothing"
    );
    assert_eq!(
        store
            .plugin_component(&staged.digest)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"candidate"[..])
    );
    let mut changes = store.changes();
    let setting = super::ShadowSetting {
        tenant: "acme".into(),
        number: 2,
        digest: staged.digest.clone(),
        share: 0.5,
        since_ms: 7,
        by: "operator".into(),
    };
    store
        .set_shadow("acme", Some(setting.clone()))
        .await
        .unwrap();
    assert_eq!(
        next_published(&mut changes).await,
        StoreChange::PluginPublished {
            tenant: "acme".into()
        }
    );
    assert_eq!(
        store.shadows().await.unwrap(),
        std::slice::from_ref(&setting)
    );
    let run = |seq: i64, verdict: &str| super::ShadowRun {
        tenant: "acme".into(),
        number: 2,
        seq,
        attempt: 1,
        at_ms: seq as u64,
        serving_version: "a".into(),
        shadow_version: "b".into(),
        verdict: verdict.into(),
        comparison: serde_json::json!({ "verdict": verdict }),
        serving_us: 1,
        shadow_us: 2,
    };
    for (seq, verdict) in [
        (1, "same"),
        (2, "differs"),
        (3, "same"),
        (4, "inconclusive"),
    ] {
        store.record_shadow_run(&run(seq, verdict)).await.unwrap();
    }
    // The same attempt again replaces its run.
    store.record_shadow_run(&run(2, "differs")).await.unwrap();
    let report = store.shadow_report("acme", 2, 10).await.unwrap();
    assert_eq!(
        report.counts,
        [
            ("differs".to_string(), 1),
            ("inconclusive".to_string(), 1),
            ("same".to_string(), 2)
        ]
        .into()
    );
    let seqs: Vec<i64> = report.differing.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [4, 2]);
    assert_eq!(report.differing[1], run(2, "differs"));
    assert_eq!(
        store
            .shadow_report("acme", 2, 1)
            .await
            .unwrap()
            .differing
            .len(),
        1
    );
    let promoted = deploy(&store, "acme", DeployAction::Promote { to: 2 }).await;
    assert_eq!(
        (
            promoted.kind,
            promoted.reactivates,
            promoted.digest.as_str()
        ),
        (DeployKind::Promote, Some(2), staged.digest.as_str())
    );
    assert_eq!(
        store.published_plugins().await.unwrap()[0].digest,
        staged.digest
    );
    store.set_shadow("acme", None).await.unwrap();
    assert!(store.shadows().await.unwrap().is_empty());
    assert!(store
        .shadow_report("acme", 2, 10)
        .await
        .unwrap()
        .counts
        .is_empty());
}

/// Tokens are kept by id with their hash, listed per tenant, revoked for good, and their last
/// use recorded.
pub async fn tokens_are_stored_listed_and_revoked(store: Arc<dyn Storage>) {
    use crate::access::{Scope, TokenInfo};
    let info = |id: &str, tenant: &str, at: u64| TokenInfo {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("{tenant} token"),
        scopes: [Scope::Read, Scope::Deploy].into(),
        created_at_ms: at,
        expires_at_ms: Some(at + 1000),
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    let a = info("0000000000aa", "acme", 10);
    let b = info("0000000000bb", "other", 20);
    store.create_token(&a, &[7; 32]).await.unwrap();
    store.create_token(&b, &[8; 32]).await.unwrap();
    assert!(
        store.create_token(&a, &[9; 32]).await.is_err(),
        "an id is taken once"
    );
    let stored = store.token(&a.id).await.unwrap().unwrap();
    assert_eq!((stored.info, stored.hash), (a.clone(), vec![7; 32]));
    assert!(store.token("0000000000cc").await.unwrap().is_none());
    assert_eq!(
        store.tokens(Some("acme")).await.unwrap(),
        std::slice::from_ref(&a)
    );
    assert_eq!(store.tokens(None).await.unwrap(), [a.clone(), b.clone()]);
    store.token_used(&a.id, 55).await.unwrap();
    let revoked = store.revoke_token(&a.id).await.unwrap().unwrap();
    assert_eq!(revoked.last_used_at_ms, Some(55));
    let at = revoked.revoked_at_ms.expect("revoked");
    // Revoking again keeps the first time.
    let again = store.revoke_token(&a.id).await.unwrap().unwrap();
    assert_eq!(again.revoked_at_ms, Some(at));
    assert_eq!(store.revoke_token("0000000000cc").await.unwrap(), None);
    assert_eq!(
        store
            .token(&b.id)
            .await
            .unwrap()
            .unwrap()
            .info
            .revoked_at_ms,
        None
    );
}

/// A config reload's text, stored for the other replicas: the newest replaces the last, and
/// every subscriber hears of it.
pub async fn a_stored_config_replaces_the_last_and_is_announced(store: Arc<dyn Storage>) {
    let mut changes = store.changes();
    assert_eq!(store.published_config().await.unwrap(), None);
    let first = store.publish_config("[tenants.a]\n").await.unwrap();
    assert_eq!(first.digest, super::component_digest(b"[tenants.a]\n"));
    assert_eq!(
        next_published(&mut changes).await,
        StoreChange::ConfigPublished
    );
    let second = store.publish_config("[tenants.b]\n").await.unwrap();
    let stored = store.published_config().await.unwrap().unwrap();
    assert_eq!(
        (stored.text.as_str(), stored.digest),
        ("[tenants.b]\n", second.digest)
    );
}

pub async fn a_finish_is_fenced_by_its_lease(store: Arc<dyn Storage>) {
    let e1 = accepted(&store, event_of("e1", None)).await;
    let claims = claim_all(&store).await;
    let lease = lease_of(&claims, e1);
    let stale = Lease {
        seq: e1,
        token: lease.token.wrapping_add(1),
    };
    let mut impostor = finished(stale, 1, AttemptOutcome::Done, EventState::Done);
    impostor.kv_writes = vec![KvWrite::Set("k".into(), b"v".to_vec())];
    assert_eq!(
        store.finish_attempt(impostor).await.unwrap(),
        FinishResult::LeaseLost
    );
    assert!(!store.release(stale, 0).await.unwrap());
    assert_eq!(
        store.kv_get("acme", "k").await.unwrap(),
        None,
        "nothing written"
    );
    let summary = summary_of(&store, e1).await;
    assert_eq!((summary.state, summary.attempts), (EventState::Pending, 0));
    assert!(store
        .event_detail(e1)
        .await
        .unwrap()
        .unwrap()
        .attempts_detail
        .is_empty());
    // Released, the head is claimable again (with a new lease: the old one is dead).
    assert!(store.release(lease, 0).await.unwrap());
    let again = claim_all(&store).await;
    assert_eq!(seqs(&again), [e1]);
    assert_ne!(again[0].lease.token, lease.token);
    let late = finished(lease, 1, AttemptOutcome::Done, EventState::Done);
    assert_eq!(
        store.finish_attempt(late).await.unwrap(),
        FinishResult::LeaseLost
    );
    let good = finished(again[0].lease, 1, AttemptOutcome::Done, EventState::Done);
    assert_eq!(
        store.finish_attempt(good).await.unwrap(),
        FinishResult::Committed
    );
    assert_eq!(summary_of(&store, e1).await.state, EventState::Done);
}

pub async fn expired_leases_are_reaped_and_renewed_ones_are_not(store: Arc<dyn Storage>) {
    let started = accepted(&store, event_of("started", None)).await;
    let idle = accepted(&store, event_of("idle", None)).await;
    let kept = accepted(&store, event_of("kept", None)).await;
    let short = claims_of(
        store
            .claim("acme", "me", ClaimLimit::batch(2), 1)
            .await
            .unwrap(),
    );
    let long = claims_of(
        store
            .claim("acme", "me", ClaimLimit::batch(1), LEASE_MS)
            .await
            .unwrap(),
    );
    assert_eq!(
        (seqs(&short), seqs(&long)),
        (vec![started, idle], vec![kept])
    );
    store
        .mark_started(lease_of(&short, started), 1234, "v7")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Only the unexpired lease is renewed: an expired one may already be someone else's.
    let held: Vec<Lease> = short.iter().chain(&long).map(|c| c.lease).collect();
    assert_eq!(store.renew_leases(&held, LEASE_MS).await.unwrap(), 1);
    // A lease is renewed only with its own token.
    let forged: Vec<Lease> = held
        .iter()
        .map(|l| Lease {
            token: l.token ^ 1,
            ..*l
        })
        .collect();
    assert_eq!(store.renew_leases(&forged, LEASE_MS).await.unwrap(), 0);
    let expired = store.expired_leases(10).await.unwrap();
    assert_eq!(
        expired
            .iter()
            .map(|e| (e.claim.lease, e.started.clone()))
            .collect::<Vec<_>>(),
        [
            (lease_of(&short, started), Some((1234, "v7".to_string()))),
            (lease_of(&short, idle), None),
        ]
    );
    // The reaper records the started one as an interrupted attempt and releases the other.
    let interrupted = finished(
        expired[0].claim.lease,
        1,
        AttemptOutcome::Error {
            message: "interrupted".into(),
        },
        EventState::Pending,
    );
    assert_eq!(
        store.finish_attempt(interrupted).await.unwrap(),
        FinishResult::Committed
    );
    assert!(store.release(expired[1].claim.lease, 0).await.unwrap());
    assert!(store.expired_leases(10).await.unwrap().is_empty());
    // The first holder finishes late: nothing of it is written.
    let mut late = finished(
        lease_of(&short, started),
        1,
        AttemptOutcome::Done,
        EventState::Done,
    );
    late.kv_writes = vec![KvWrite::Set("late".into(), b"1".to_vec())];
    assert_eq!(
        store.finish_attempt(late).await.unwrap(),
        FinishResult::LeaseLost
    );
    assert_eq!(store.kv_get("acme", "late").await.unwrap(), None);
    let summary = summary_of(&store, started).await;
    assert_eq!((summary.state, summary.attempts), (EventState::Pending, 1));
    assert_eq!(
        summary_of(&store, idle).await.attempts,
        0,
        "never started: not counted"
    );
    let rerun = claim_all(&store).await;
    assert_eq!(seqs(&rerun), [started, idle]);
    assert_eq!(rerun[0].attempts, 1);
}

/// Finishes the lease's first attempt as done, with what its kv transaction read and wrote.
async fn finish_with_kv(
    store: &Arc<dyn Storage>,
    lease: Lease,
    txn: crate::capabilities::kv::KvTxn,
) -> anyhow::Result<FinishResult> {
    let (kv_writes, kv_reads) = txn.into_parts();
    store
        .finish_attempt(FinishedAttempt {
            lease,
            tenant: "acme".into(),
            record: record(1, AttemptOutcome::Done),
            kv_writes,
            kv_reads,
            next_state: EventState::Done,
            next_attempt_at_ms: 0,
        })
        .await
}

pub async fn a_read_modify_write_on_stale_data_is_refused_not_lost(store: Arc<dyn Storage>) {
    use crate::capabilities::kv::{KvLimits, KvTxn};
    let limits = KvLimits {
        max_value_bytes: 64,
        max_keys: 100,
        max_write_bytes: 1 << 20,
    };
    for id in ["e1", "e2", "e3", "e4"] {
        accepted(&store, event_of(id, None)).await;
    }
    let claims = claim_all(&store).await;
    assert_eq!(claims.len(), 4);
    let finish = |claim: &Claim, txn: KvTxn| finish_with_kv(&store, claim.lease, txn);
    // Two attempts read the counter (absent), both write 1: the second must not commit.
    let mut a = KvTxn::new("acme", store.clone(), limits);
    let mut b = KvTxn::new("acme", store.clone(), limits);
    assert_eq!(a.get("counter").await.unwrap(), None);
    assert_eq!(b.get("counter").await.unwrap(), None);
    a.set("counter", b"1".to_vec()).await.unwrap();
    b.set("counter", b"1".to_vec()).await.unwrap();
    assert_eq!(
        finish(&claims[0], a).await.unwrap(),
        FinishResult::Committed
    );
    assert_eq!(
        finish(&claims[1], b).await.unwrap(),
        FinishResult::KvConflict(KvConflict {
            key: "counter".into()
        })
    );
    // Nothing of the refused attempt was written; its claim is given back, due now.
    assert_eq!(
        store.kv_get("acme", "counter").await.unwrap(),
        Some(b"1".to_vec())
    );
    let refused = summary_of(&store, claims[1].lease.seq).await;
    assert_eq!((refused.state, refused.attempts), (EventState::Pending, 0));
    let rerun = claim_all(&store).await;
    assert_eq!(seqs(&rerun), [claims[1].lease.seq]);
    // Run again on fresh data, it commits 2. Blind writes (no read) never conflict.
    let mut b = KvTxn::new("acme", store.clone(), limits);
    assert_eq!(b.get("counter").await.unwrap(), Some(b"1".to_vec()));
    b.set("counter", b"2".to_vec()).await.unwrap();
    let mut c = KvTxn::new("acme", store.clone(), limits);
    c.set("last", b"c".to_vec()).await.unwrap();
    let mut d = KvTxn::new("acme", store.clone(), limits);
    d.set("last", b"d".to_vec()).await.unwrap();
    assert_eq!(finish(&rerun[0], b).await.unwrap(), FinishResult::Committed);
    assert_eq!(
        finish(&claims[2], c).await.unwrap(),
        FinishResult::Committed
    );
    assert_eq!(
        finish(&claims[3], d).await.unwrap(),
        FinishResult::Committed
    );
    assert_eq!(
        store.kv_get("acme", "counter").await.unwrap(),
        Some(b"2".to_vec())
    );
}

/// Write skew: A reads x and writes y while B reads y and writes x, finishing at the same time.
/// Each read is valid when checked on its own, so "re-read and compare" alone lets both commit
/// where concurrent writers exist (read committed); the keys must be locked before the check.
/// Exactly one commits, every time; the other is refused and runs again.
pub async fn attempts_reading_each_others_writes_cannot_both_commit(store: Arc<dyn Storage>) {
    use crate::capabilities::kv::{KvLimits, KvTxn};
    let limits = KvLimits {
        max_value_bytes: 64,
        max_keys: 1000,
        max_write_bytes: 1 << 20,
    };
    for round in 0..20 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        accepted(&store, event_of(&format!("a{round}"), None)).await;
        accepted(&store, event_of(&format!("b{round}"), None)).await;
        let claims = claim_all(&store).await;
        assert_eq!(claims.len(), 2, "round {round}");
        let mut a = KvTxn::new("acme", store.clone(), limits);
        let mut b = KvTxn::new("acme", store.clone(), limits);
        assert_eq!(a.get(&x).await.unwrap(), None);
        assert_eq!(b.get(&y).await.unwrap(), None);
        a.set(&y, b"a".to_vec()).await.unwrap();
        b.set(&x, b"b".to_vec()).await.unwrap();
        let finish = |claim: &Claim, txn: KvTxn| finish_with_kv(&store, claim.lease, txn);
        let (first, second) = tokio::join!(finish(&claims[0], a), finish(&claims[1], b));
        let outcomes = [first.unwrap(), second.unwrap()];
        let committed = outcomes
            .iter()
            .filter(|o| **o == FinishResult::Committed)
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, FinishResult::KvConflict(_)))
            .count();
        assert_eq!((committed, refused), (1, 1), "round {round}: {outcomes:?}");
        // Exactly the committed attempt's write is there; the refused one's event runs again.
        let written = [
            store.kv_get("acme", &x).await.unwrap(),
            store.kv_get("acme", &y).await.unwrap(),
        ];
        assert_eq!(
            written.iter().filter(|v| v.is_some()).count(),
            1,
            "round {round}"
        );
        let rerun = claim_all(&store).await;
        assert_eq!(rerun.len(), 1, "round {round}");
        store
            .finish_attempt(finished(
                rerun[0].lease,
                1,
                AttemptOutcome::Done,
                EventState::Done,
            ))
            .await
            .unwrap();
    }
}

pub async fn finish_commits_kv_with_the_outcome_and_counts_keys(store: Arc<dyn Storage>) {
    let seq = accepted(&store, event("e1")).await;
    let lease = claim_all(&store).await[0].lease;
    let mut retry = finished(
        lease,
        1,
        AttemptOutcome::Error {
            message: "boom".into(),
        },
        EventState::Pending,
    );
    retry.next_attempt_at_ms = 5000;
    store.finish_attempt(retry).await.unwrap();
    let summary = summary_of(&store, seq).await;
    assert_eq!(
        (
            summary.state,
            summary.attempts,
            summary.last_error.as_deref()
        ),
        (EventState::Pending, 1, Some("boom"))
    );
    assert_eq!(summary.next_attempt_at_ms, Some(5000));
    let lease = claim_all(&store).await[0].lease;
    let mut done = finished(lease, 2, AttemptOutcome::Done, EventState::Done);
    done.kv_writes = vec![
        KvWrite::Set("a".into(), b"1".to_vec()),
        KvWrite::Set("ab".into(), b"2".to_vec()),
        KvWrite::Set("b".into(), b"3".to_vec()),
        KvWrite::Delete("b".into()),
    ];
    assert_eq!(
        store.finish_attempt(done).await.unwrap(),
        FinishResult::Committed
    );
    assert_eq!(
        store.kv_get("acme", "ab").await.unwrap(),
        Some(b"2".to_vec())
    );
    assert_eq!(store.kv_get("other", "ab").await.unwrap(), None);
    assert_eq!(
        store.kv_list("acme", "a", 10).await.unwrap(),
        vec!["a", "ab"]
    );
    assert_eq!(store.kv_list("acme", "", 1).await.unwrap(), vec!["a"]);
    assert_eq!(store.kv_count("acme").await.unwrap(), 2);
    assert_eq!(store.oldest_unfinished("acme").await.unwrap(), None);
    let detail = store.event_detail(seq).await.unwrap().unwrap();
    assert_eq!(detail.attempts_detail.len(), 2);
    assert_eq!(detail.summary.state, EventState::Done);
    assert_eq!(detail.body, r#"{"x":1}"#);
}

pub async fn replay_only_finished_events_with_a_fresh_budget(store: Arc<dyn Storage>) {
    let dead = accepted(&store, event_of("dead", Some("o1"))).await;
    let pending = accepted(&store, event_of("pending", Some("o2"))).await;
    let error = || AttemptOutcome::Error {
        message: "x".into(),
    };
    let claims = claim_all(&store).await;
    store
        .finish_attempt(finished(
            lease_of(&claims, dead),
            1,
            error(),
            EventState::Pending,
        ))
        .await
        .unwrap();
    let lease = claim_all(&store).await[0].lease;
    store
        .finish_attempt(finished(lease, 2, error(), EventState::Dead))
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
    assert_eq!(store.replay_dead("acme", None).await.unwrap(), [dead]);
    let summary = summary_of(&store, dead).await;
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
    // Replayed, it is its order's head again, with a fresh budget.
    let claimed = claim_all(&store).await;
    assert_eq!(seqs(&claimed), [dead]);
    assert_eq!((claimed[0].attempts, claimed[0].attempt_base), (2, 2));
    store
        .finish_attempt(finished(
            claimed[0].lease,
            3,
            AttemptOutcome::Done,
            EventState::Done,
        ))
        .await
        .unwrap();
    assert!(matches!(
        store.replay(dead).await.unwrap(),
        Replay::Replayed { tenant } if tenant == "acme"
    ));
    let claimed = claim_all(&store).await;
    assert_eq!((claimed[0].attempts, claimed[0].attempt_base), (3, 3));
    assert_eq!(
        store
            .event_detail(dead)
            .await
            .unwrap()
            .unwrap()
            .attempts_detail
            .len(),
        3,
        "history is kept"
    );
}

/// The activity charts' rows: the events alive since a time (received, finished or waiting),
/// their attempts started since then, cut at a limit that says so; and the source and event id
/// filters of the event list.
pub async fn activity_and_filters_by_source_and_event_id(store: Arc<dyn Storage>) {
    let start = now_ms();
    let first = accepted(&store, event_of("e1", Some("o1"))).await;
    let second = accepted(&store, event_of("e2", Some("o2"))).await;
    let waiting = accepted(&store, event_of("e3", Some("o2"))).await;
    accepted(&store, event_for("other", "x1", Some("o1"))).await;
    let claims = claim_all(&store).await;
    assert_eq!(
        seqs(&claims),
        [first, second],
        "o2's second event waits for its head"
    );
    let timed = |attempt: u32, duration_us: u64, outcome: AttemptOutcome| AttemptRecord {
        started_at_ms: now_ms(),
        duration_us,
        ..record(attempt, outcome)
    };
    let done = FinishedAttempt {
        record: timed(1, 2_000, AttemptOutcome::Done),
        ..finished(
            lease_of(&claims, first),
            1,
            AttemptOutcome::Done,
            EventState::Done,
        )
    };
    store.finish_attempt(done).await.unwrap();
    let failed = AttemptOutcome::Error {
        message: "boom".into(),
    };
    let dead = FinishedAttempt {
        record: timed(1, 9_000, failed.clone()),
        ..finished(lease_of(&claims, second), 1, failed, EventState::Dead)
    };
    store.finish_attempt(dead).await.unwrap();

    let rows = store.activity("acme", start, 100).await.unwrap();
    assert!(!rows.truncated);
    assert_eq!(rows.events.len(), 3, "{rows:?}");
    assert_eq!(
        rows.events
            .iter()
            .filter(|e| e.finished_at_ms.is_none())
            .count(),
        1,
        "the waiting one"
    );
    assert!(rows.events.iter().all(|e| e.received_at_ms >= start));
    let mut attempts: Vec<(AttemptKind, u64)> = rows
        .attempts
        .iter()
        .map(|a| (a.kind, a.duration_us))
        .collect();
    attempts.sort_by_key(|a| a.1);
    assert_eq!(
        attempts,
        [(AttemptKind::Done, 2_000), (AttemptKind::Error, 9_000)]
    );
    assert!(rows
        .attempts
        .iter()
        .all(|a: &AttemptSample| a.started_at_ms >= start));

    // Cut at the limit: the newest events, and it says so.
    let cut = store.activity("acme", start, 1).await.unwrap();
    assert!(cut.truncated);
    assert_eq!(cut.events.len(), 1);
    assert_eq!(cut.attempts, [], "the newest event has not run");
    // Since later: only what still waits.
    let later = store
        .activity("acme", now_ms() + 60_000, 100)
        .await
        .unwrap();
    assert_eq!(
        later,
        ActivityRows {
            events: vec![EventSpan {
                received_at_ms: later.events[0].received_at_ms,
                finished_at_ms: None
            }],
            attempts: vec![],
            truncated: false
        }
    );
    assert_eq!(
        store.activity("nobody", start, 100).await.unwrap(),
        ActivityRows::default()
    );

    let list = |filter: EventFilter| {
        let store = store.clone();
        async move {
            store
                .events("acme", 10, None, &filter)
                .await
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    let by_source = |source: &str| EventFilter {
        source: Some(source.into()),
        ..Default::default()
    };
    assert_eq!(list(by_source("fc")).await, [waiting, second, first]);
    assert_eq!(list(by_source("elsewhere")).await, Vec::<i64>::new());
    let by_id = EventFilter {
        event_id: Some("e2".into()),
        ..Default::default()
    };
    assert_eq!(list(by_id).await, [second]);
}

pub async fn prune_deletes_only_old_finished_events_in_batches(store: Arc<dyn Storage>) {
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(accepted(&store, event_of(&format!("e{i}"), None)).await);
    }
    let claims = claim_all(&store).await;
    for seq in &all[..4] {
        store
            .finish_attempt(finished(
                lease_of(&claims, *seq),
                1,
                AttemptOutcome::Done,
                EventState::Done,
            ))
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
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[4]],
        "the unfinished event stays"
    );
    assert!(store.event_detail(all[0]).await.unwrap().is_none());
    assert!(store.oldest_unfinished("acme").await.unwrap().is_some());
}

pub async fn pagination_of_events_and_kv(store: Arc<dyn Storage>) {
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(accepted(&store, event_of(&format!("e{i}"), None)).await);
    }
    let page = |before| {
        let store = store.clone();
        async move {
            store
                .events("acme", 2, before, &EventFilter::default())
                .await
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None).await, [all[4], all[3]]);
    assert_eq!(page(Some(all[3])).await, [all[2], all[1]]);
    assert_eq!(page(Some(all[1])).await, [all[0]]);
    let lease = claim_all(&store).await[0].lease;
    let mut done = finished(lease, 1, AttemptOutcome::Done, EventState::Done);
    done.kv_writes = ["k1", "k2", "k3", "x"]
        .iter()
        .map(|k| KvWrite::Set(k.to_string(), b"v".to_vec()))
        .collect();
    store.finish_attempt(done).await.unwrap();
    let keys = |after: Option<&'static str>| {
        let store = store.clone();
        async move {
            store
                .kv_entries("acme", "k", after, 2)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(keys(None).await, ["k1", "k2"]);
    assert_eq!(keys(Some("k2")).await, ["k3"]);
    let done_only = store
        .events("acme", 10, None, &EventFilter::state(EventState::Done))
        .await
        .unwrap();
    assert_eq!(
        done_only.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [all[0]]
    );
}

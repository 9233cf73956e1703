//! The dispatcher in process, over a real SQLite journal and a real plugin component: what
//! happens when a lease expires under a running attempt (a stalled process), which the
//! end-to-end tests cannot provoke in a healthy binary (it renews its leases).

use std::sync::Arc;
use std::time::Duration;

use hookhost_fixtures::TenantToml;

use super::{DispatchDeps, DispatchSettings, Dispatcher};
use crate::capabilities::http::HttpCapability;
use crate::config::{Config, Durability};
use crate::plugins::{LoadOutcome, PluginLoader, PluginRegistry};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::storage::sqlite::SqliteStorage;
use crate::storage::{AttemptOutcome, EventState, NewEvent, Storage};
use crate::tenants::Tenants;

/// A dispatcher for tenant `t` served by the misbehave test plugin, with `settings`; the store
/// and the temporary folder that holds it.
async fn dispatcher_with(
    settings: DispatchSettings,
) -> (Dispatcher, Arc<dyn Storage>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantToml::new("t", &hookhost_fixtures::plugin("misbehave"))
        .limit("timeout_ms", 20_000)
        .fast_retries(5)
        .fincart("fc");
    let config = Config::from_toml(&format!("database = \"h.db\"\n{tenant}"), dir.path()).unwrap();
    let storage: Arc<dyn Storage> =
        Arc::new(SqliteStorage::open(&dir.path().join("h.db"), Durability::Fast).unwrap());
    let tenants = Arc::new(Tenants::from_config(&config).unwrap());
    let registry = Arc::new(PluginRegistry::default());
    let runtime = Arc::new(
        Runtime::new(&RuntimeConfig {
            cache_dir: dir.path().join("cache"),
            max_instances: 8,
            max_memory_mib: 64,
            max_table_elements: 10_000,
            decommit_batch: 1,
            pagemap_scan: false,
            max_core_instances: 16,
            fuel: false,
        })
        .unwrap(),
    );
    let loader = Arc::new(
        PluginLoader::new(
            runtime.clone(),
            registry.clone(),
            tenants.clone(),
            storage.clone(),
            tokio::runtime::Handle::current(),
        )
        .unwrap(),
    );
    let plugin = hookhost_fixtures::plugin("misbehave");
    let loaded = tokio::task::spawn_blocking(move || loader.load("t", &plugin))
        .await
        .unwrap();
    if let LoadOutcome::Failed(e) = &loaded {
        panic!("the misbehave plugin did not load: {e:#}");
    }
    let dispatcher = Dispatcher::start(
        DispatchDeps {
            storage: storage.clone(),
            runtime,
            registry,
            tenants,
            http_client: HttpCapability::shared_client(true).unwrap(),
            http_client_private: HttpCapability::shared_client(false).unwrap(),
        },
        settings,
    );
    (dispatcher, storage, dir)
}

/// Journals event `id` of order `order` for tenant `t`.
async fn append(storage: &Arc<dyn Storage>, id: &str, order: &str, body: &str) -> i64 {
    let appended = storage
        .append(Arc::new(NewEvent {
            tenant: "t".into(),
            source: "fc".into(),
            received_at_ms: crate::now_ms(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            event: crate::event::NormalizedEvent::sample(id, Some(order)),
        }))
        .await
        .unwrap();
    match appended {
        crate::storage::Appended::Accepted(seq) => seq,
        other => panic!("{other:?}"),
    }
}

/// Waits until `check` holds, or fails after `timeout`.
async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plugin slower than its lease, in a process that does not renew it (as if stalled): the
/// reaper records the attempt as interrupted and the event runs again; when the slow attempt
/// finally returns, its finish is fenced off: no kv write, no second `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_after_the_lease_expired_writes_nothing_and_the_event_reruns() {
    let settings = DispatchSettings {
        lease: Duration::from_millis(300),
        renew_every: Duration::from_secs(3600),
        reap_every: Duration::from_millis(50),
        poll_every: Duration::from_millis(100),
        ..DispatchSettings::new(4)
    };
    let (dispatcher, storage, _dir) = dispatcher_with(settings).await;
    let slow = append(
        &storage,
        "slow",
        "o-1",
        r#"{"misbehave": "spin-first", "spin_ms": 2000}"#,
    )
    .await;
    // Behind it in the same order: must not run before the slow event is done.
    let next = append(&storage, "next", "o-1", r#"{"status": "ok"}"#).await;
    dispatcher.wake("t");
    let state_of = |seq| {
        let storage = storage.clone();
        async move { storage.event_detail(seq).await.unwrap().unwrap() }
    };
    eventually(Duration::from_secs(20), async || {
        state_of(next).await.summary.state == EventState::Done
    })
    .await;
    let rerun = state_of(slow).await;
    assert_eq!(rerun.summary.state, EventState::Done);
    let outcomes: Vec<_> = rerun
        .attempts_detail
        .iter()
        .map(|a| (a.attempt, a.outcome.clone()))
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        matches!(&outcomes[0], (1, AttemptOutcome::Error { message }) if message.starts_with("interrupted")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], (2, AttemptOutcome::Done));
    // The slow attempt is still spinning: let it return and try to finish.
    assert!(dispatcher.drain(Duration::from_secs(20)).await);
    let after = state_of(slow).await;
    assert_eq!(
        after.attempts_detail.len(),
        2,
        "the late finish recorded nothing"
    );
    assert_eq!(after.summary.state, EventState::Done);
    // Each successful run of misbehave increments `ok`: the rerun and `next`, not the late one.
    assert_eq!(
        storage.kv_get("t", "ok").await.unwrap(),
        Some(b"2".to_vec())
    );
}

/// Many events of few orders through the dispatcher: every event done once, each order's events
/// in journal order (the plugin's `touched/` writes are kv effects of successful attempts only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_runs_once_and_each_order_in_journal_order() {
    let (dispatcher, storage, _dir) = dispatcher_with(DispatchSettings::new(4)).await;
    let mut seqs = Vec::new();
    for i in 0..60 {
        let (id, order) = (format!("e{i}"), format!("o-{}", i % 5));
        seqs.push(append(&storage, &id, &order, r#"{"status": "ok"}"#).await);
        dispatcher.wake("t");
    }
    eventually(Duration::from_secs(60), async || {
        storage.kv_get("t", "ok").await.unwrap() == Some(b"60".to_vec())
    })
    .await;
    let mut finished = Vec::new();
    for seq in &seqs {
        let detail = storage.event_detail(*seq).await.unwrap().unwrap();
        assert_eq!(detail.summary.state, EventState::Done);
        assert_eq!(detail.attempts_detail.len(), 1);
        finished.push((
            detail.summary.event.order_id.clone(),
            detail.summary.finished_at_ms,
            *seq,
        ));
    }
    for order in 0..5 {
        let mut of_order: Vec<_> = finished
            .iter()
            .filter(|(o, _, _)| o.as_deref() == Some(&format!("o-{order}")))
            .collect();
        let by_seq: Vec<i64> = of_order.iter().map(|f| f.2).collect();
        of_order.sort_by_key(|f| (f.1, f.2));
        assert_eq!(
            of_order.iter().map(|f| f.2).collect::<Vec<_>>(),
            by_seq,
            "order o-{order} finished out of journal order"
        );
    }
}

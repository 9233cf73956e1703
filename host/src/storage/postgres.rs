//! The PostgreSQL store: the same queue seam as the embedded SQLite store, for several hookhost
//! replicas over one database.
//!
//! What SQLite's single writer gave for free is made explicit here, because any number of
//! connections (of any number of replicas) write at once:
//! - an order's appends, head moves and replays take the order's advisory lock (transaction
//!   scoped), so its events get sequence numbers in commit order and a finish that advances the
//!   head sees every append committed before it;
//! - claims take due heads with `FOR UPDATE SKIP LOCKED`, so two replicas never claim the same
//!   head and neither waits for the other;
//! - a finish locks every kv key its attempt read or wrote (advisory locks, in one fixed order)
//!   before it validates the reads, so two attempts that each read what the other writes cannot
//!   both commit (write skew under read committed);
//! - lease times come from the database's clock, the one clock every replica shares.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_postgres::{NoTls, Row};

use super::{ActivityRows, AttemptKind, AttemptSample, EventSpan};
use super::{
    DeployAction, DeployKind, DeployRecord, Deployed, JournaledEvent, NewDeploy, ShadowReport,
    ShadowRun, ShadowSetting,
};
use crate::access::{scopes_text, stored_scopes, StoredToken, TokenInfo};

use super::{
    Appended, AttemptRecord, Claim, ClaimBatch, ClaimLimit, ClaimedEvent, Duty, EventDetail,
    EventFilter, EventState, EventSummary, ExpiredLease, FinishResult, FinishedAttempt, KvConflict,
    KvEntry, KvWrite, Lease, NewEvent, PublishedConfig, PublishedPlugin, Replay, Storage,
    StoreChange, StoredEvent,
};

/// The schema's versions, in order; each runs once, in a transaction with its version's row, under
/// the migration lock (replicas starting together apply them one at a time).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "the journal, order heads, leases, attempts and kv",
        r#"
CREATE FUNCTION hookhost_now_ms() RETURNS bigint
    LANGUAGE sql VOLATILE AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
CREATE SEQUENCE lease_tokens;
CREATE TABLE events (
    seq                 bigserial PRIMARY KEY,
    tenant              text NOT NULL,
    source              text NOT NULL,
    dedupe_key          text NOT NULL,
    delivery_key        text NOT NULL,
    state               text NOT NULL,
    attempts            integer NOT NULL DEFAULT 0,
    attempt_base        integer NOT NULL DEFAULT 0,
    running_since_ms    bigint,
    running_version     text,
    next_attempt_at_ms  bigint NOT NULL,
    received_at_ms      bigint NOT NULL,
    finished_at_ms      bigint,
    last_error          text,
    duplicates          bigint NOT NULL DEFAULT 0,
    headers             text NOT NULL,
    body                bytea NOT NULL,
    event               text NOT NULL,
    lease_owner         text,
    lease_token         bigint,
    lease_until_ms      bigint,
    UNIQUE (tenant, source, dedupe_key)
);
CREATE INDEX events_by_tenant ON events (tenant, seq);
CREATE INDEX events_by_tenant_state ON events (tenant, state, seq);
CREATE INDEX events_finished ON events (finished_at_ms) WHERE finished_at_ms IS NOT NULL;
CREATE INDEX events_unfinished_by_order
    ON events (tenant, delivery_key, seq) WHERE state IN ('pending', 'running');
CREATE INDEX events_leased ON events (lease_until_ms) WHERE lease_token IS NOT NULL;
CREATE TABLE order_heads (
    tenant          text NOT NULL,
    delivery_key    text NOT NULL,
    head_seq        bigint NOT NULL,
    due_at_ms       bigint NOT NULL,
    claimed         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, delivery_key)
);
CREATE INDEX order_heads_due ON order_heads (tenant, due_at_ms, head_seq) WHERE NOT claimed;
CREATE TABLE attempts (
    event_seq       bigint NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    record          text NOT NULL,
    PRIMARY KEY (event_seq, attempt)
);
-- Keys compare byte by byte (as in SQLite), whatever the database's locale: prefix ranges and
-- pagination depend on it.
CREATE TABLE kv (
    tenant          text NOT NULL,
    key             text COLLATE "C" NOT NULL,
    value           bytea NOT NULL,
    updated_at_ms   bigint NOT NULL,
    PRIMARY KEY (tenant, key)
);
"#,
    ),
    (
        "an index of claimed heads (a tenant's concurrency bound counts them at every claim)",
        "CREATE INDEX order_heads_claimed ON order_heads (tenant) WHERE claimed;",
    ),
    (
        "duties that one replica at a time holds (reaping, pruning)",
        "CREATE TABLE duties (
             name      text PRIMARY KEY,
             holder    text NOT NULL,
             until_ms  bigint NOT NULL);",
    ),
    (
        "kv key counts kept by finishes, heads by age, autovacuum for the queue's churn",
        r#"
-- A tenant's key count is the sum of its rows; a finish adds its change to the row of its event's
-- seq modulo 16, so finishes of one tenant seldom wait for each other's row.
CREATE TABLE kv_counts (
    tenant  text NOT NULL,
    shard   integer NOT NULL,
    keys    bigint NOT NULL,
    PRIMARY KEY (tenant, shard)
);
INSERT INTO kv_counts (tenant, shard, keys) SELECT tenant, 0, count(*) FROM kv GROUP BY tenant;
-- The backlog's age: a tenant's oldest unfinished event is its oldest order head.
CREATE INDEX order_heads_by_age ON order_heads (tenant, head_seq);
-- Every event's row is rewritten several times and every head is inserted and deleted: vacuum
-- and analyze these often, or claims walk dead index entries and plan with stale counts.
ALTER TABLE order_heads SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000);
ALTER TABLE events SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
"#,
    ),
    (
        "published plugins: components by content, each tenant's pointer",
        "CREATE TABLE plugin_components (
             digest        text PRIMARY KEY,
             component     bytea NOT NULL,
             stored_at_ms  bigint NOT NULL);
         CREATE TABLE plugin_pointers (
             tenant           text PRIMARY KEY,
             digest           text NOT NULL REFERENCES plugin_components (digest),
             size             bigint NOT NULL,
             published_at_ms  bigint NOT NULL);
         CREATE TABLE published_config (
             one              integer PRIMARY KEY CHECK (one = 1),
             text             text NOT NULL,
             digest           text NOT NULL,
             published_at_ms  bigint NOT NULL);",
    ),
    (
        "deploy history and merchant tokens",
        "CREATE TABLE plugin_deploys (
             tenant       text NOT NULL,
             number       integer NOT NULL,
             kind         text NOT NULL,
             digest       text NOT NULL,
             size         bigint NOT NULL,
             deployed_by  text NOT NULL,
             at_ms        bigint NOT NULL,
             reactivates  integer,
             message      text,
             PRIMARY KEY (tenant, number));
         INSERT INTO plugin_deploys (tenant, number, kind, digest, size, deployed_by, at_ms)
             SELECT tenant, 1, 'deploy', digest, size, 'operator', published_at_ms
             FROM plugin_pointers;
         CREATE TABLE api_tokens (
             id               text PRIMARY KEY,
             tenant           text NOT NULL,
             name             text NOT NULL,
             scopes           text NOT NULL,
             hash             bytea NOT NULL,
             created_at_ms    bigint NOT NULL,
             expires_at_ms    bigint,
             last_used_at_ms  bigint,
             revoked_at_ms    bigint);
         CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant, created_at_ms);
         CREATE TABLE plugin_shadows (
             tenant     text PRIMARY KEY,
             number     integer NOT NULL,
             digest     text NOT NULL,
             share      double precision NOT NULL,
             since_ms   bigint NOT NULL,
             set_by     text NOT NULL);
         CREATE TABLE shadow_runs (
             tenant   text NOT NULL,
             number   integer NOT NULL,
             seq      bigint NOT NULL,
             attempt  integer NOT NULL,
             verdict  text NOT NULL,
             record   text NOT NULL,
             PRIMARY KEY (tenant, number, seq, attempt));
         CREATE INDEX shadow_runs_by_verdict ON shadow_runs (tenant, number, verdict, seq);",
    ),
];

/// The lock every replica takes to apply migrations (an arbitrary constant, "hookhost" in ASCII).
const MIGRATION_LOCK: i64 = 0x686f_6f6b_686f_7374;

/// The PostgreSQL store.
pub struct PostgresStorage {
    pool: Pool,
    /// Appends waiting for their group commit (see [`commit_in_groups`]).
    appends: mpsc::Sender<Queued<Arc<NewEvent>>>,
    /// Finishes waiting for theirs.
    finishes: mpsc::Sender<Queued<FinishedAttempt>>,
    /// What the listener hears (every replica's changes); see [`listen_forever`].
    changes: Arc<broadcast::Sender<StoreChange>>,
}

/// The channel publications are notified on; the payload is the tenant whose plugin changed,
/// or [`CONFIG_PAYLOAD`] (not a tenant name: tenant names have no spaces).
const PLUGINS_CHANNEL: &str = "hookhost_plugins";

/// The payload saying a config reload was stored.
const CONFIG_PAYLOAD: &str = "config reload";

/// A write waiting for its group commit, and who waits for its outcome.
struct Queued<W: GroupWrite> {
    write: W,
    reply: oneshot::Sender<Result<W::Outcome>>,
}

/// Writes one transaction takes at most.
const GROUP_MAX: usize = 64;

/// Transactions of one kind of write in flight at once (each holds a connection): while they
/// commit, new writes queue up and the next transaction takes them all.
const GROUP_COMMITTERS: usize = 4;

/// Hears every replica's changes on a connection of its own (LISTEN needs one that stays open),
/// for as long as the store exists. Notifications sent while it is disconnected are lost, so
/// each time it is listening again it tells its receivers to re-read everything
/// ([`StoreChange::Resync`]).
async fn listen_forever(
    config: tokio_postgres::Config,
    changes: std::sync::Weak<broadcast::Sender<StoreChange>>,
) {
    let mut retry = std::time::Duration::from_millis(100);
    loop {
        if changes.strong_count() == 0 {
            return;
        }
        match listen_once(&config, &changes).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("lost the database's change notifications (reconnecting): {e:#}");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// One connection's life: LISTEN, then forward what it hears until it fails (an error) or the
/// store is gone (`Ok`).
async fn listen_once(
    config: &tokio_postgres::Config,
    changes: &std::sync::Weak<broadcast::Sender<StoreChange>>,
) -> Result<()> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (heard, mut hearing) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    let _ = heard.send(Ok(n.payload().to_string()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = heard.send(Err(e));
                    return;
                }
                None => return,
            }
        }
    });
    let listening = async {
        client
            .batch_execute(&format!("LISTEN {PLUGINS_CHANNEL}"))
            .await?;
        let Some(sender) = changes.upgrade() else {
            return Ok(());
        };
        let _ = sender.send(StoreChange::Resync);
        drop(sender);
        let mut alive = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                message = hearing.recv() => match message {
                    Some(Ok(payload)) => {
                        let Some(sender) = changes.upgrade() else { return Ok(()) };
                        let _ = sender.send(if payload == CONFIG_PAYLOAD {
                            StoreChange::ConfigPublished
                        } else {
                            StoreChange::PluginPublished { tenant: payload }
                        });
                    }
                    Some(Err(e)) => return Err(anyhow::Error::from(e)),
                    None => anyhow::bail!("the notification connection closed"),
                },
                _ = alive.tick() => {
                    if changes.strong_count() == 0 {
                        return Ok(());
                    }
                    // A query proves the connection is alive (a dead peer is otherwise only
                    // found by TCP, minutes later).
                    client.simple_query("SELECT 1").await?;
                }
            }
        }
    };
    let result = listening.await;
    driver.abort();
    result
}

/// A kind of write that is group-committed: many in one transaction, so that one durable commit
/// (one WAL flush) answers many callers. Nobody is answered before the commit.
#[async_trait::async_trait]
trait GroupWrite: Sized + Send + Sync + 'static {
    type Outcome: Send + 'static;
    /// Writes these in one transaction, in their order; one outcome each.
    async fn commit(pool: &Pool, writes: &[Self]) -> Result<Vec<Self::Outcome>>;
}

#[async_trait::async_trait]
impl GroupWrite for Arc<NewEvent> {
    type Outcome = Appended;
    async fn commit(pool: &Pool, events: &[Self]) -> Result<Vec<Appended>> {
        append_batch(pool, events).await
    }
}

#[async_trait::async_trait]
impl GroupWrite for FinishedAttempt {
    type Outcome = FinishResult;
    async fn commit(pool: &Pool, finishes: &[Self]) -> Result<Vec<FinishResult>> {
        finish_batch(pool, finishes).await
    }
}

/// Queues a write for its group commit and waits for its outcome.
async fn in_group<W: GroupWrite>(queue: &mpsc::Sender<Queued<W>>, write: W) -> Result<W::Outcome> {
    let (reply, outcome) = oneshot::channel();
    queue
        .send(Queued { write, reply })
        .await
        .map_err(|_| anyhow!("the store's committer has stopped"))?;
    outcome
        .await
        .map_err(|_| anyhow!("the store's committer has stopped"))?
}

impl PostgresStorage {
    /// Connects to `url` (a `postgres://` URL or key=value string), applies missing migrations
    /// (one replica at a time) and returns the store. The URL's password is never logged.
    pub async fn connect(url: &str) -> Result<PostgresStorage> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow!("the database URL is not valid: {e}"))?;
        PostgresStorage::connect_with(config).await
    }

    /// Like [`Self::connect`], with the connection settings already parsed.
    pub async fn connect_with(mut config: tokio_postgres::Config) -> Result<PostgresStorage> {
        config.connect_timeout(std::time::Duration::from_secs(5));
        let mut listener = config.clone();
        listener.application_name("hookhost-listen");
        config.application_name("hookhost");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .context("cannot create the database connection pool")?;
        let (appends, queued_appends) = mpsc::channel(4 * GROUP_MAX * GROUP_COMMITTERS);
        let (finishes, queued_finishes) = mpsc::channel(4 * GROUP_MAX * GROUP_COMMITTERS);
        let changes = Arc::new(broadcast::channel(256).0);
        let store = PostgresStorage {
            pool,
            appends,
            finishes,
            changes: changes.clone(),
        };
        store.migrate().await?;
        tokio::spawn(listen_forever(listener, Arc::downgrade(&changes)));
        tokio::spawn(commit_in_groups(store.pool.clone(), queued_appends));
        tokio::spawn(commit_in_groups(store.pool.clone(), queued_finishes));
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        connection(&self.pool).await
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS hookhost_schema (
                     version integer PRIMARY KEY,
                     what text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .context("cannot create the schema version table")?;
        client
            .execute(
                &client.prepare_cached("SELECT pg_advisory_lock($1)").await?,
                &[&MIGRATION_LOCK],
            )
            .await?;
        let result = async {
            let current: i32 = client
                .query_one(
                    &client.prepare_cached("SELECT coalesce(max(version), 0) FROM hookhost_schema").await?,
                    &[],
                )
                .await?
                .get(0);
            if current as usize > MIGRATIONS.len() {
                anyhow::bail!(
                    "the database's schema (version {current}) is newer than this hookhost knows ({}): upgrade hookhost",
                    MIGRATIONS.len()
                );
            }
            for (index, (what, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
                let version = index as i32 + 1;
                let tx = client.transaction().await?;
                tx.batch_execute(sql)
                    .await
                    .with_context(|| format!("database migration {version} ({what}) failed"))?;
                tx.execute(
                    &tx.prepare_cached("INSERT INTO hookhost_schema (version, what) VALUES ($1, $2)").await?,
                    &[&version, what],
                )
                .await?;
                tx.commit().await?;
                tracing::info!(version, "database schema step applied: {what}");
            }
            Ok(())
        }
        .await;
        client
            .execute(
                &client
                    .prepare_cached("SELECT pg_advisory_unlock($1)")
                    .await?,
                &[&MIGRATION_LOCK],
            )
            .await?;
        result
    }
}

/// A pooled connection, or why there is none.
async fn connection(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get()
        .await
        .map_err(|e| anyhow!("cannot reach the database: {e}"))
}

/// Makes an order's head claimable again, due at `due_at_ms` (the head's event stays its head).
async fn unclaim_head(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: &str,
    delivery_key: &str,
    due_at_ms: i64,
) -> Result<()> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE order_heads SET claimed = false, due_at_ms = $3
             WHERE tenant = $1 AND delivery_key = $2",
        )
        .await?,
        &[&tenant, &delivery_key, &due_at_ms],
    )
    .await?;
    Ok(())
}

/// An order's advisory lock key: appends, head moves and replays of one order serialize on it.
const ORDER_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))";

fn stored(r: &Row) -> Result<StoredEvent> {
    Ok(StoredEvent {
        seq: r.try_get("seq")?,
        tenant: r.try_get("tenant")?,
        source: r.try_get("source")?,
        received_at_ms: r.try_get::<_, i64>("received_at_ms")?.max(0) as u64,
        body: r.try_get("body")?,
        event: serde_json::from_str(r.try_get("event")?)
            .context("a stored event is not valid JSON")?,
    })
}

fn state_of(r: &Row, column: &str) -> Result<EventState> {
    Ok(r.try_get::<_, &str>(column)?.parse()?)
}

const SUMMARY_COLUMNS: &str = "seq, tenant, source, state, attempts, received_at_ms, finished_at_ms, next_attempt_at_ms, last_error, duplicates, event";

fn summary(r: &Row) -> Result<EventSummary> {
    let state = state_of(r, "state")?;
    Ok(EventSummary {
        seq: r.try_get("seq")?,
        tenant: r.try_get("tenant")?,
        source: r.try_get("source")?,
        state,
        attempts: r.try_get::<_, i32>("attempts")?.max(0) as u32,
        received_at_ms: r.try_get::<_, i64>("received_at_ms")?.max(0) as u64,
        finished_at_ms: r
            .try_get::<_, Option<i64>>("finished_at_ms")?
            .map(|v| v.max(0) as u64),
        next_attempt_at_ms: match state {
            EventState::Pending => Some(r.try_get::<_, i64>("next_attempt_at_ms")?.max(0) as u64),
            _ => None,
        },
        last_error: r.try_get("last_error")?,
        duplicates: r.try_get::<_, i64>("duplicates")?.max(0) as u64,
        event: serde_json::from_str(r.try_get("event")?)
            .context("a stored event is not valid JSON")?,
    })
}

/// Makes a replayed event its order's head if the order has none (otherwise it runs when its turn
/// comes: the head search takes the oldest unfinished event). The caller holds the order's lock.
async fn head_for_replayed(
    tx: &deadpool_postgres::Transaction<'_>,
    seq: i64,
    due_at_ms: i64,
) -> Result<()> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO order_heads (tenant, delivery_key, head_seq, due_at_ms)
             SELECT tenant, delivery_key, seq, $2 FROM events WHERE seq = $1
         ON CONFLICT (tenant, delivery_key) DO NOTHING",
        )
        .await?,
        &[&seq, &due_at_ms],
    )
    .await?;
    Ok(())
}

/// After an order's head ran: a retry keeps it the head, unclaimed and due later; an end makes
/// the order's oldest unfinished event its head, or removes the order from the heads. The caller
/// holds the order's lock, so that every append committed before it is seen.
async fn advance_head(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: &str,
    delivery_key: &str,
    next_state: EventState,
    next_attempt_at_ms: i64,
) -> Result<()> {
    if next_state == EventState::Pending {
        return unclaim_head(tx, tenant, delivery_key, next_attempt_at_ms).await;
    }
    let next = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT seq, next_attempt_at_ms FROM events
             WHERE tenant = $1 AND delivery_key = $2 AND state IN ('pending', 'running')
             ORDER BY seq LIMIT 1",
            )
            .await?,
            &[&tenant, &delivery_key],
        )
        .await?;
    match next {
        Some(row) => {
            let (seq, due): (i64, i64) = (row.get(0), row.get(1));
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE order_heads SET head_seq = $3, due_at_ms = $4, claimed = false
                 WHERE tenant = $1 AND delivery_key = $2",
                )
                .await?,
                &[&tenant, &delivery_key, &seq, &due],
            )
            .await?
        }
        None => {
            tx.execute(
                &tx.prepare_cached(
                    "DELETE FROM order_heads WHERE tenant = $1 AND delivery_key = $2",
                )
                .await?,
                &[&tenant, &delivery_key],
            )
            .await?
        }
    };
    Ok(())
}

/// Marks the lease's event pending again (due at `due_at_ms`) and unclaims its order's head;
/// false if the lease is no longer the event's.
async fn release_in(
    tx: &deadpool_postgres::Transaction<'_>,
    lease: Lease,
    due_at_ms: i64,
) -> Result<bool> {
    let Some(row) = tx
        .query_opt(
            &tx.prepare_cached("UPDATE events SET state = 'pending', next_attempt_at_ms = $3, lease_owner = NULL,
                 lease_token = NULL, lease_until_ms = NULL, running_since_ms = NULL, running_version = NULL
             WHERE seq = $1 AND lease_token = $2 RETURNING tenant, delivery_key").await?,
            &[&lease.seq, &lease.token, &due_at_ms],
        )
        .await?
    else {
        return Ok(false);
    };
    let (tenant, delivery_key): (String, String) = (row.get(0), row.get(1));
    unclaim_head(tx, &tenant, &delivery_key, due_at_ms).await?;
    Ok(true)
}

/// Checks each key the attempt read against the committed value; the caller holds the locks of
/// every key the attempt read or wrote. Holding them to the commit is what makes the check valid:
/// no other finish can change a checked key before this one commits.
async fn first_stale_read(
    tx: &deadpool_postgres::Transaction<'_>,
    fin: &FinishedAttempt,
) -> Result<Option<KvConflict>> {
    if fin.kv_writes.is_empty() {
        return Ok(None);
    }
    for read in &fin.kv_reads {
        let current: Option<Vec<u8>> = tx
            .query_opt(
                &tx.prepare_cached("SELECT value FROM kv WHERE tenant = $1 AND key = $2")
                    .await?,
                &[&fin.tenant, &read.key],
            )
            .await?
            .map(|row| row.get(0));
        if current.as_deref().map(super::kv_digest) != read.seen {
            return Ok(Some(KvConflict {
                key: read.key.clone(),
            }));
        }
    }
    Ok(None)
}

/// Takes the advisory locks named (an order's: "tenant/delivery key", the lock [`ORDER_LOCK`]
/// takes; a kv key's: "kv/tenant/key"), in one fixed order (by lock key) whoever takes several,
/// so that two transactions locking overlapping sets cannot deadlock.
async fn lock_names(tx: &deadpool_postgres::Transaction<'_>, names: &[String]) -> Result<()> {
    tx.execute(
        &tx.prepare_cached(
            "SELECT pg_advisory_xact_lock(k) FROM (
             SELECT DISTINCT hashtextextended(o, 0) AS k FROM unnest($1::text[]) AS o ORDER BY k
         ) AS locks",
        )
        .await?,
        &[&names],
    )
    .await?;
    Ok(())
}

/// The group commit of one kind of write: takes whatever is queued (up to [`GROUP_MAX`]) into one
/// transaction, with up to [`GROUP_COMMITTERS`] transactions at once.
async fn commit_in_groups<W: GroupWrite>(pool: Pool, mut queued: mpsc::Receiver<Queued<W>>) {
    let committers = Arc::new(tokio::sync::Semaphore::new(GROUP_COMMITTERS));
    loop {
        let Ok(committer) = committers.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queued.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queued.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            answer_group(&pool, group).await;
            drop(committer);
        });
    }
}

/// Commits a group in one transaction and answers each caller. If the database refused the
/// group (a deadlock, a row it would not take), each write is tried alone, so that one bad write
/// costs only its own caller; if the database could not be reached, every one gets the error.
async fn answer_group<W: GroupWrite>(pool: &Pool, group: Vec<Queued<W>>) {
    let (writes, replies): (Vec<W>, Vec<_>) = group.into_iter().map(|q| (q.write, q.reply)).unzip();
    match W::commit(pool, &writes).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) if writes.len() > 1 && refused_by_database(&e) => {
            tracing::warn!(
                writes = writes.len(),
                "a group of writes was refused ({e:#}); committing each alone"
            );
            for (write, reply) in writes.iter().zip(replies) {
                let alone = W::commit(pool, std::slice::from_ref(write))
                    .await
                    .map(|mut outcomes| outcomes.remove(0));
                let _ = reply.send(alone);
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            for reply in replies {
                let _ = reply.send(Err(anyhow!("{message}")));
            }
        }
    }
}

/// Whether the database itself answered with an error (as opposed to an unreachable server or a
/// dropped connection, where retrying each append alone would only wait longer).
fn refused_by_database(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(|e| e.as_db_error().is_some())
    })
}

/// Appends `events` in one transaction, in their order: the orders' locks first (sequence numbers
/// in commit order per order), then each insert deduplicated on its unique key (a duplicate within
/// the batch is one too: the transaction sees its own rows).
async fn append_batch(pool: &Pool, events: &[Arc<NewEvent>]) -> Result<Vec<Appended>> {
    let mut client = connection(pool).await?;
    let tx = client.transaction().await?;
    let keys: Vec<String> = events.iter().map(|e| e.event.delivery_key()).collect();
    let orders: Vec<String> = events
        .iter()
        .zip(&keys)
        .map(|(e, key)| format!("{}/{key}", e.tenant))
        .collect();
    lock_names(&tx, &orders).await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO events (tenant, source, dedupe_key, delivery_key, state, next_attempt_at_ms,
                 received_at_ms, headers, body, event)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5, $6, $7, $8)
             ON CONFLICT (tenant, source, dedupe_key) DO NOTHING RETURNING seq",
        )
        .await?;
    // Under the order's lock, an order that already has a head keeps it: it is older.
    let head = tx
        .prepare_cached(
            "INSERT INTO order_heads (tenant, delivery_key, head_seq, due_at_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, delivery_key) DO NOTHING",
        )
        .await?;
    let duplicate = tx
        .prepare_cached(
            "UPDATE events SET duplicates = duplicates + 1
             WHERE tenant = $1 AND source = $2 AND dedupe_key = $3 RETURNING seq",
        )
        .await?;
    let mut outcomes = Vec::with_capacity(events.len());
    for (event, delivery_key) in events.iter().zip(&keys) {
        let received = event.received_at_ms as i64;
        let inserted = tx
            .query_opt(
                &insert,
                &[
                    &event.tenant,
                    &event.source,
                    &event.event.id,
                    delivery_key,
                    &received,
                    &serde_json::to_string(&event.headers)?,
                    &event.body,
                    &serde_json::to_string(&event.event)?,
                ],
            )
            .await?;
        outcomes.push(match inserted {
            Some(row) => {
                let seq: i64 = row.get(0);
                tx.execute(&head, &[&event.tenant, delivery_key, &seq, &received])
                    .await?;
                Appended::Accepted(seq)
            }
            None => {
                let row = tx
                    .query_one(&duplicate, &[&event.tenant, &event.source, &event.event.id])
                    .await?;
                Appended::Duplicate(row.get(0))
            }
        });
    }
    tx.commit().await.context("database commit failed")?;
    Ok(outcomes)
}

/// One finish inside a group's transaction, whose locks (kv keys, orders) are already held.
async fn finish_in(
    tx: &deadpool_postgres::Transaction<'_>,
    fin: &FinishedAttempt,
    added_keys: &mut BTreeMap<String, i64>,
) -> Result<FinishResult> {
    if let Some(conflict) = first_stale_read(tx, fin).await? {
        let now: i64 = tx
            .query_one(&tx.prepare_cached("SELECT hookhost_now_ms()").await?, &[])
            .await?
            .get(0);
        return Ok(match release_in(tx, fin.lease, now).await? {
            true => FinishResult::KvConflict(conflict),
            false => FinishResult::LeaseLost,
        });
    }
    let last_error = match &fin.record.outcome {
        super::AttemptOutcome::Error { message } => Some(message.clone()),
        super::AttemptOutcome::RetryAfter { seconds } => {
            Some(format!("plugin asked to retry after {seconds} s"))
        }
        _ => None,
    };
    let finished = fin.next_state != EventState::Pending;
    let attempt = fin.record.attempt as i32;
    let next_attempt_at_ms = fin.next_attempt_at_ms as i64;
    // Fenced: only the lease's holder moves the event on.
    let Some(row) = tx
        .query_opt(
            &tx.prepare_cached(
                "UPDATE events SET state = $3, attempts = $4, next_attempt_at_ms = $5,
                     finished_at_ms = CASE WHEN $6 THEN hookhost_now_ms() END, last_error = $7,
                     running_since_ms = NULL, running_version = NULL,
                     lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL
                 WHERE seq = $1 AND lease_token = $2 RETURNING delivery_key",
            )
            .await?,
            &[
                &fin.lease.seq,
                &fin.lease.token,
                &fin.next_state.as_str(),
                &attempt,
                &next_attempt_at_ms,
                &finished,
                &last_error,
            ],
        )
        .await?
    else {
        // Nothing was written.
        return Ok(FinishResult::LeaseLost);
    };
    let delivery_key: String = row.get(0);
    advance_head(
        tx,
        &fin.tenant,
        &delivery_key,
        fin.next_state,
        next_attempt_at_ms,
    )
    .await?;
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO attempts (event_seq, attempt, record) VALUES ($1, $2, $3)
             ON CONFLICT (event_seq, attempt) DO UPDATE SET record = excluded.record",
        )
        .await?,
        &[
            &fin.lease.seq,
            &attempt,
            &serde_json::to_string(&fin.record)?,
        ],
    )
    .await?;
    let added = added_keys.entry(fin.tenant.clone()).or_default();
    for write in &fin.kv_writes {
        match write {
            KvWrite::Set(key, value) => {
                // `xmax = 0`: the row is new (inserted, not updated). The key's lock, taken
                // before validation, keeps this exact.
                let inserted: bool = tx
                    .query_one(
                        &tx.prepare_cached(
                            "INSERT INTO kv (tenant, key, value, updated_at_ms)
                             VALUES ($1, $2, $3, hookhost_now_ms())
                             ON CONFLICT (tenant, key) DO UPDATE
                                 SET value = excluded.value, updated_at_ms = excluded.updated_at_ms
                             RETURNING xmax = 0",
                        )
                        .await?,
                        &[&fin.tenant, key, value],
                    )
                    .await?
                    .get(0);
                *added += i64::from(inserted);
            }
            KvWrite::Delete(key) => {
                let deleted = tx
                    .execute(
                        &tx.prepare_cached("DELETE FROM kv WHERE tenant = $1 AND key = $2")
                            .await?,
                        &[&fin.tenant, key],
                    )
                    .await?;
                *added -= deleted as i64;
            }
        }
    }
    Ok(FinishResult::Committed)
}

/// Finishes a group in one transaction, in order (as if one after the other: a later finish's
/// validation sees an earlier one's writes). Every lock first, each kind in one fixed order:
/// the kv keys the finishes read or wrote, then their orders (appends take orders only, and
/// every finish of any group takes keys before orders, so no two transactions wait on each
/// other in a circle); then the finishes; then the tenants' key counts, in tenant order.
async fn finish_batch(pool: &Pool, finishes: &[FinishedAttempt]) -> Result<Vec<FinishResult>> {
    let mut client = connection(pool).await?;
    let tx = client.transaction().await?;
    // Only finishes that write validate their reads (and so lock them).
    let keys: Vec<String> = finishes
        .iter()
        .filter(|f| !f.kv_writes.is_empty())
        .flat_map(|f| {
            let read = f.kv_reads.iter().map(|r| r.key.as_str());
            let written = f.kv_writes.iter().map(|w| match w {
                KvWrite::Set(key, _) | KvWrite::Delete(key) => key.as_str(),
            });
            read.chain(written)
                .map(|key| format!("kv/{}/{key}", f.tenant))
        })
        .collect();
    if !keys.is_empty() {
        lock_names(&tx, &keys).await?;
    }
    let seqs: Vec<i64> = finishes.iter().map(|f| f.lease.seq).collect();
    tx.execute(
        &tx.prepare_cached(
            "SELECT pg_advisory_xact_lock(k) FROM (
                 SELECT DISTINCT hashtextextended(tenant || '/' || delivery_key, 0) AS k
                 FROM events WHERE seq = ANY($1) ORDER BY k) AS locks",
        )
        .await?,
        &[&seqs],
    )
    .await?;
    let mut added_keys = BTreeMap::new();
    let mut results = Vec::with_capacity(finishes.len());
    for fin in finishes {
        results.push(finish_in(&tx, fin, &mut added_keys).await?);
    }
    // Last before the commit: the counts' rows stay locked until then. The row (of 16 per
    // tenant) is the group's first event's, so that concurrent groups seldom share one.
    let shard = (finishes.first().map_or(0, |f| f.lease.seq) % 16) as i32;
    for (tenant, added) in added_keys.iter().filter(|(_, n)| **n != 0) {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO kv_counts (tenant, shard, keys) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, shard) DO UPDATE SET keys = kv_counts.keys + excluded.keys",
            )
            .await?,
            &[tenant, &shard, added],
        )
        .await?;
    }
    tx.commit().await.context("database commit failed")?;
    Ok(results)
}

#[async_trait::async_trait]
impl Storage for PostgresStorage {
    async fn append(&self, event: Arc<NewEvent>) -> Result<Appended> {
        in_group(&self.appends, event).await
    }

    async fn claim(
        &self,
        tenant: &str,
        owner: &str,
        limit: ClaimLimit,
        lease_ms: u64,
    ) -> Result<ClaimBatch> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // A claim lost with the server only runs again: no need to wait for its flush.
        // Due heads come from their index in due order: the planner, with counts of a table this
        // busy often stale, would otherwise fetch every head of the tenant and sort them.
        // A generic plan for `FOR UPDATE SKIP LOCKED LIMIT $n` can lock far more rows than asked
        // for: the claim is planned with its values (every other statement keeps its cached plan).
        tx.batch_execute(
            "SET LOCAL synchronous_commit = off; SET LOCAL enable_sort = off;
             SET LOCAL plan_cache_mode = force_custom_plan",
        )
        .await?;
        let take = if limit.is_bounded() {
            // The tenant's claims serialize on its lock, so that two replicas counting at once
            // cannot both fill the same free room; each statement after the lock sees every
            // claim committed before it (read committed takes a snapshot per statement).
            tx.execute(
                &tx.prepare_cached(
                    "SELECT pg_advisory_xact_lock(hashtextextended('claim/' || $1, 0))",
                )
                .await?,
                &[&tenant],
            )
            .await?;
            let claimed: i64 = tx
                .query_one(
                    &tx.prepare_cached(
                        "SELECT count(*) FROM order_heads WHERE tenant = $1 AND claimed",
                    )
                    .await?,
                    &[&tenant],
                )
                .await?
                .get(0);
            i64::from(limit.batch).min((i64::from(limit.tenant_claimed) - claimed).max(0))
        } else {
            i64::from(limit.batch)
        };
        let lease_ms = lease_ms as i64;
        let rows = tx
            .query(
                &tx.prepare_cached("WITH due AS (
                     SELECT tenant, delivery_key FROM order_heads
                     WHERE tenant = $1 AND NOT claimed AND due_at_ms <= (SELECT hookhost_now_ms())
                     ORDER BY due_at_ms, head_seq LIMIT $3
                     FOR UPDATE SKIP LOCKED),
                 heads AS (
                     UPDATE order_heads o SET claimed = true FROM due
                     WHERE o.tenant = due.tenant AND o.delivery_key = due.delivery_key
                     RETURNING o.head_seq, o.due_at_ms)
                 UPDATE events e SET lease_owner = $2, lease_token = nextval('lease_tokens'),
                     lease_until_ms = hookhost_now_ms() + $4, running_since_ms = NULL, running_version = NULL
                 FROM heads WHERE e.seq = heads.head_seq
                 RETURNING e.seq, e.tenant, e.source, e.received_at_ms, e.body, e.event,
                     e.attempts, e.attempt_base, e.lease_token, heads.due_at_ms").await?,
                &[&tenant, &owner, &take, &lease_ms],
            )
            .await?;
        let after = tx
            .query_one(
                &tx.prepare_cached(
                    "SELECT min(due_at_ms), hookhost_now_ms() FROM order_heads
                 WHERE tenant = $1 AND NOT claimed",
                )
                .await?,
                &[&tenant],
            )
            .await?;
        let (next_due_ms, now): (Option<i64>, i64) = (after.get(0), after.get(1));
        tx.commit().await.context("database commit failed")?;
        let mut claims = rows
            .iter()
            .map(|r| {
                let due: i64 = r.try_get("due_at_ms")?;
                Ok((
                    due,
                    ClaimedEvent {
                        claim: Claim {
                            lease: Lease {
                                seq: r.try_get("seq")?,
                                token: r.try_get("lease_token")?,
                            },
                            tenant: tenant.to_string(),
                            attempts: r.try_get::<_, i32>("attempts")?.max(0) as u32,
                            attempt_base: r.try_get::<_, i32>("attempt_base")?.max(0) as u32,
                        },
                        event: stored(r)?,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        // Earliest due first, then journal order, as the heads were chosen.
        claims.sort_by_key(|(due, c)| (*due, c.event.seq));
        Ok(ClaimBatch {
            claims: claims.into_iter().map(|(_, c)| c).collect(),
            next_due_ms: next_due_ms.map(|v| v.max(0) as u64),
            capped: take < i64::from(limit.batch) && next_due_ms.is_some_and(|at| at <= now),
        })
    }

    async fn hold_duty(&self, duty: Duty, owner: &str, for_ms: u64) -> Result<bool> {
        let client = self.client().await?;
        let held = client
            .query_opt(
                &client.prepare_cached("INSERT INTO duties (name, holder, until_ms) VALUES ($1, $2, hookhost_now_ms() + $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
                 WHERE duties.holder = excluded.holder OR duties.until_ms < hookhost_now_ms()
                 RETURNING holder").await?,
                &[&duty.as_str(), &owner, &(for_ms as i64)],
            )
            .await?;
        Ok(held.is_some())
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn mark_started(
        &self,
        lease: Lease,
        started_at_ms: u64,
        plugin_version: &str,
    ) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                &client.prepare_cached("UPDATE events SET state = 'running', running_since_ms = $3, running_version = $4
                 WHERE seq = $1 AND lease_token = $2").await?,
                &[
                    &lease.seq,
                    &lease.token,
                    &(started_at_ms as i64),
                    &plugin_version,
                ],
            )
            .await?;
        Ok(())
    }

    async fn renew_leases(&self, leases: &[Lease], lease_ms: u64) -> Result<u64> {
        let seqs: Vec<i64> = leases.iter().map(|l| l.seq).collect();
        let tokens: Vec<i64> = leases.iter().map(|l| l.token).collect();
        let client = self.client().await?;
        let n = client
            .execute(
                &client
                    .prepare_cached(
                        // A row locked now is being finished (or marked started): skipped, it
                        // needs no renewal, or gets it next round; waiting for it could close a
                        // circle with a group of finishes that locks rows in another order.
                        "UPDATE events e SET lease_until_ms = hookhost_now_ms() + $3
                         FROM (SELECT x.seq FROM events x
                               JOIN unnest($1::bigint[], $2::bigint[]) AS held (seq, token)
                                 ON x.seq = held.seq AND x.lease_token = held.token
                               WHERE x.lease_until_ms >= hookhost_now_ms()
                               FOR UPDATE OF x SKIP LOCKED) AS mine
                         WHERE e.seq = mine.seq",
                    )
                    .await?,
                &[&seqs, &tokens, &(lease_ms as i64)],
            )
            .await?;
        Ok(n)
    }

    async fn expired_leases(&self, limit: u32) -> Result<Vec<ExpiredLease>> {
        let client = self.client().await?;
        let rows = client
            .query(
                // The clock read once (an index condition, not a filter run on every row), the
                // leases in expiry order from their index, then the oldest events first.
                "SELECT * FROM (
                     SELECT seq, lease_token, tenant, attempts, attempt_base, running_since_ms, running_version
                     FROM events
                     WHERE lease_token IS NOT NULL AND lease_until_ms < (SELECT hookhost_now_ms())
                     ORDER BY lease_until_ms LIMIT $1) AS expired
                 ORDER BY seq",
                &[&i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let since: Option<i64> = r.try_get(5)?;
                Ok(ExpiredLease {
                    claim: Claim {
                        lease: Lease {
                            seq: r.try_get(0)?,
                            token: r.try_get(1)?,
                        },
                        tenant: r.try_get(2)?,
                        attempts: r.try_get::<_, i32>(3)?.max(0) as u32,
                        attempt_base: r.try_get::<_, i32>(4)?.max(0) as u32,
                    },
                    started: match since {
                        Some(at) => Some((
                            at.max(0) as u64,
                            r.try_get::<_, Option<String>>(6)?.unwrap_or_default(),
                        )),
                        None => None,
                    },
                })
            })
            .collect()
    }

    async fn finish_attempt(&self, fin: FinishedAttempt) -> Result<FinishResult> {
        in_group(&self.finishes, fin).await
    }

    async fn release(&self, lease: Lease, due_at_ms: u64) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let released = release_in(&tx, lease, due_at_ms as i64).await?;
        tx.commit().await.context("database commit failed")?;
        Ok(released)
    }

    async fn deploy(&self, deploy: NewDeploy) -> Result<Deployed> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Deploys of one tenant, from any replica, take their numbers one after another.
        tx.execute(
            &tx.prepare_cached(
                "SELECT pg_advisory_xact_lock(hashtextextended('deploy/' || $1, 0))",
            )
            .await?,
            &[&deploy.tenant],
        )
        .await?;
        let number: i32 = tx
            .query_one(
                &tx.prepare_cached(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM plugin_deploys WHERE tenant = $1",
                )
                .await?,
                &[&deploy.tenant],
            )
            .await?
            .get(0);
        let kind = deploy.action.kind();
        let reactivates = deploy.action.target().map(|to| to as i32);
        let message = deploy.action.reason();
        let (digest, size): (String, i64) = match (&deploy.action, deploy.action.component()) {
            (_, Some(component)) => {
                let digest = super::component_digest(component);
                tx.execute(
                    &tx.prepare_cached(
                        "INSERT INTO plugin_components (digest, component, stored_at_ms)
                         VALUES ($1, $2, hookhost_now_ms()) ON CONFLICT (digest) DO NOTHING",
                    )
                    .await?,
                    &[&digest, &component],
                )
                .await?;
                (digest, component.len() as i64)
            }
            (DeployAction::Refused { digest, size, .. }, None) => (digest.clone(), *size as i64),
            (_, None) => {
                let target = tx
                    .query_opt(
                        &tx.prepare_cached(
                            "SELECT digest, size FROM plugin_deploys
                             WHERE tenant = $1 AND number = $2 AND kind <> 'refused'",
                        )
                        .await?,
                        &[&deploy.tenant, &reactivates],
                    )
                    .await?;
                let Some(target) = target else {
                    return Ok(Deployed::NoSuchEntry);
                };
                (target.get(0), target.get(1))
            }
        };
        if kind.activates() {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO plugin_pointers (tenant, digest, size, published_at_ms)
                     VALUES ($1, $2, $3, hookhost_now_ms())
                     ON CONFLICT (tenant) DO UPDATE SET digest = excluded.digest,
                         size = excluded.size, published_at_ms = excluded.published_at_ms",
                )
                .await?,
                &[&deploy.tenant, &digest, &size],
            )
            .await?;
            // Delivered to every listener when (and only if) this commits.
            tx.execute(
                &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
                &[&PLUGINS_CHANNEL, &deploy.tenant],
            )
            .await?;
        }
        let row = tx
            .query_one(
                &tx.prepare_cached(&format!(
                    "INSERT INTO plugin_deploys
                         (tenant, number, kind, digest, size, deployed_by, at_ms, reactivates, message)
                     VALUES ($1, $2, $3, $4, $5, $6, hookhost_now_ms(), $7, $8)
                     RETURNING {DEPLOY_COLUMNS}"
                ))
                .await?,
                &[
                    &deploy.tenant,
                    &number,
                    &kind.as_str(),
                    &digest,
                    &size,
                    &deploy.by,
                    &reactivates,
                    &message,
                ],
            )
            .await?;
        tx.commit().await.context("database commit failed")?;
        if kind.activates() {
            // This process hears it at once, whatever its listener's state.
            let _ = self.changes.send(StoreChange::PluginPublished {
                tenant: deploy.tenant.clone(),
            });
        }
        Ok(Deployed::Recorded(deploy_record(&row)))
    }

    async fn deploys(&self, tenant: &str, limit: u32) -> Result<Vec<DeployRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "SELECT {DEPLOY_COLUMNS} FROM plugin_deploys WHERE tenant = $1
                         ORDER BY number DESC LIMIT $2"
                    ))
                    .await?,
                &[&tenant, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(deploy_record).collect())
    }

    async fn set_shadow(&self, tenant: &str, setting: Option<ShadowSetting>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            &tx.prepare_cached("DELETE FROM shadow_runs WHERE tenant = $1")
                .await?,
            &[&tenant],
        )
        .await?;
        tx.execute(
            &tx.prepare_cached("DELETE FROM plugin_shadows WHERE tenant = $1")
                .await?,
            &[&tenant],
        )
        .await?;
        if let Some(s) = &setting {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO plugin_shadows (tenant, number, digest, share, since_ms, set_by)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?,
                &[
                    &s.tenant,
                    &(s.number as i32),
                    &s.digest,
                    &s.share,
                    &(s.since_ms as i64),
                    &s.by,
                ],
            )
            .await?;
        }
        tx.execute(
            &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
            &[&PLUGINS_CHANNEL, &tenant],
        )
        .await?;
        tx.commit().await.context("database commit failed")?;
        let _ = self.changes.send(StoreChange::PluginPublished {
            tenant: tenant.to_string(),
        });
        Ok(())
    }

    async fn shadows(&self) -> Result<Vec<ShadowSetting>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT tenant, number, digest, share, since_ms, set_by FROM plugin_shadows
                         ORDER BY tenant",
                    )
                    .await?,
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ShadowSetting {
                tenant: r.get(0),
                number: r.get::<_, i32>(1).max(0) as u32,
                digest: r.get(2),
                share: r.get(3),
                since_ms: r.get::<_, i64>(4).max(0) as u64,
                by: r.get(5),
            })
            .collect())
    }

    async fn record_shadow_run(&self, run: &ShadowRun) -> Result<()> {
        let record = serde_json::to_string(run)?;
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO shadow_runs (tenant, number, seq, attempt, verdict, record)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (tenant, number, seq, attempt)
                         DO UPDATE SET verdict = excluded.verdict, record = excluded.record",
                    )
                    .await?,
                &[
                    &run.tenant,
                    &(run.number as i32),
                    &run.seq,
                    &(run.attempt as i32),
                    &run.verdict,
                    &record,
                ],
            )
            .await?;
        Ok(())
    }

    async fn shadow_report(&self, tenant: &str, number: u32, limit: u32) -> Result<ShadowReport> {
        let client = self.client().await?;
        let counts = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT verdict, count(*) FROM shadow_runs
                         WHERE tenant = $1 AND number = $2 GROUP BY verdict",
                    )
                    .await?,
                &[&tenant, &(number as i32)],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
            .collect();
        let differing = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT record FROM shadow_runs
                         WHERE tenant = $1 AND number = $2 AND verdict <> 'same'
                         ORDER BY seq DESC, attempt DESC LIMIT $3",
                    )
                    .await?,
                &[&tenant, &(number as i32), &(limit as i64)],
            )
            .await?
            .iter()
            .map(|r| {
                serde_json::from_str::<ShadowRun>(r.get(0))
                    .context("a stored shadow run is not valid JSON")
            })
            .collect::<Result<_>>()?;
        Ok(ShadowReport { counts, differing })
    }

    async fn create_token(&self, info: &TokenInfo, hash: &[u8; 32]) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO api_tokens
                             (id, tenant, name, scopes, hash, created_at_ms, expires_at_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .await?,
                &[
                    &info.id,
                    &info.tenant,
                    &info.name,
                    &scopes_text(&info.scopes),
                    &hash.as_slice(),
                    &(info.created_at_ms as i64),
                    &info.expires_at_ms.map(|v| v as i64),
                ],
            )
            .await?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "SELECT {TOKEN_COLUMNS}, hash FROM api_tokens WHERE id = $1"
                    ))
                    .await?,
                &[&id],
            )
            .await?;
        Ok(row.map(|r| StoredToken {
            info: token_info(&r),
            hash: r.get(8),
        }))
    }

    async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "SELECT {TOKEN_COLUMNS} FROM api_tokens
                         WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at_ms, id"
                    ))
                    .await?,
                &[&tenant],
            )
            .await?;
        Ok(rows.iter().map(token_info).collect())
    }

    async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, hookhost_now_ms())
                         WHERE id = $1 RETURNING {TOKEN_COLUMNS}"
                    ))
                    .await?,
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(token_info))
    }

    async fn token_used(&self, id: &str, at_ms: u64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                &client
                    .prepare_cached("UPDATE api_tokens SET last_used_at_ms = $2 WHERE id = $1")
                    .await?,
                &[&id, &(at_ms as i64)],
            )
            .await?;
        Ok(())
    }

    async fn journal_page(
        &self,
        tenant: &str,
        after_seq: i64,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<JournaledEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT e.seq, e.tenant, e.source, e.received_at_ms, e.body, e.event, e.state,
                             (SELECT a.record FROM attempts a WHERE a.event_seq = e.seq
                              ORDER BY a.attempt DESC LIMIT 1) AS last_attempt
                         FROM events e
                         WHERE e.tenant = $1 AND e.seq > $2 AND e.received_at_ms >= $3
                         ORDER BY e.seq LIMIT $4",
                    )
                    .await?,
                &[&tenant, &after_seq, &(since_ms as i64), &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let last_attempt: Option<String> = r.try_get("last_attempt")?;
                Ok(JournaledEvent {
                    event: stored(r)?,
                    state: state_of(r, "state")?,
                    last_attempt: last_attempt
                        .map(|text| serde_json::from_str::<AttemptRecord>(&text))
                        .transpose()
                        .context("a stored attempt is not valid JSON")?,
                })
            })
            .collect()
    }

    async fn event_tenant(&self, seq: i64) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached("SELECT tenant FROM events WHERE seq = $1")
                    .await?,
                &[&seq],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn published_plugins(&self) -> Result<Vec<PublishedPlugin>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT tenant, digest, size, published_at_ms FROM plugin_pointers
                         ORDER BY tenant",
                    )
                    .await?,
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PublishedPlugin {
                    tenant: r.try_get(0)?,
                    digest: r.try_get(1)?,
                    size: r.try_get::<_, i64>(2)?.max(0) as u64,
                    published_at_ms: r.try_get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .collect()
    }

    async fn plugin_component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &client
                    .prepare_cached("SELECT component FROM plugin_components WHERE digest = $1")
                    .await?,
                &[&digest],
            )
            .await?
            .map(|row| row.get(0)))
    }

    async fn publish_config(&self, text: &str) -> Result<PublishedConfig> {
        let digest = super::component_digest(text.as_bytes());
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let published_at: i64 = tx
            .query_one(
                &tx.prepare_cached(
                    "INSERT INTO published_config (one, text, digest, published_at_ms)
                     VALUES (1, $1, $2, hookhost_now_ms())
                     ON CONFLICT (one) DO UPDATE SET text = excluded.text, digest = excluded.digest,
                         published_at_ms = excluded.published_at_ms
                     RETURNING published_at_ms",
                )
                .await?,
                &[&text, &digest],
            )
            .await?
            .get(0);
        tx.execute(
            &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
            &[&PLUGINS_CHANNEL, &CONFIG_PAYLOAD],
        )
        .await?;
        tx.commit().await.context("database commit failed")?;
        let _ = self.changes.send(StoreChange::ConfigPublished);
        Ok(PublishedConfig {
            text: text.to_string(),
            digest,
            published_at_ms: published_at.max(0) as u64,
        })
    }

    async fn published_config(&self) -> Result<Option<PublishedConfig>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached("SELECT text, digest, published_at_ms FROM published_config")
                    .await?,
                &[],
            )
            .await?;
        row.map(|r| {
            Ok(PublishedConfig {
                text: r.try_get(0)?,
                digest: r.try_get(1)?,
                published_at_ms: r.try_get::<_, i64>(2)?.max(0) as u64,
            })
        })
        .transpose()
    }

    fn changes(&self) -> broadcast::Receiver<StoreChange> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(&client.prepare_cached("SELECT 1").await?, &[])
            .await?;
        Ok(())
    }

    async fn replay(&self, seq: i64) -> Result<Replay> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                &tx.prepare_cached("SELECT state, tenant, delivery_key FROM events WHERE seq = $1")
                    .await?,
                &[&seq],
            )
            .await?
        else {
            return Ok(Replay::NotFound);
        };
        let (tenant, delivery_key): (String, String) = (row.get(1), row.get(2));
        tx.execute(
            &tx.prepare_cached(ORDER_LOCK).await?,
            &[&tenant, &delivery_key],
        )
        .await?;
        // Read again under the order's lock (and lock the row): a finish may have moved it on.
        let state = state_of(
            &tx.query_one(
                &tx.prepare_cached("SELECT state FROM events WHERE seq = $1 FOR UPDATE")
                    .await?,
                &[&seq],
            )
            .await?,
            "state",
        )?;
        if matches!(state, EventState::Pending | EventState::Running) {
            return Ok(Replay::NotFinished(state));
        }
        let now: i64 = tx
            .query_one(
                &tx.prepare_cached("UPDATE events SET state = 'pending', attempt_base = attempts,
                     next_attempt_at_ms = hookhost_now_ms(), finished_at_ms = NULL, last_error = NULL
                 WHERE seq = $1 RETURNING next_attempt_at_ms").await?,
                &[&seq],
            )
            .await?
            .get(0);
        head_for_replayed(&tx, seq, now).await?;
        tx.commit().await.context("database commit failed")?;
        Ok(Replay::Replayed { tenant })
    }

    async fn replay_dead(&self, tenant: &str, since_ms: Option<u64>) -> Result<Vec<i64>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The dead letters' orders locked first (as appends and finishes lock: order, then
        // rows), then those same events replayed (one that died meanwhile waits for the next).
        let dead = tx
            .query(
                &tx.prepare_cached(
                    "SELECT seq, delivery_key FROM events
                 WHERE tenant = $1 AND state = 'dead' AND finished_at_ms >= $2",
                )
                .await?,
                &[&tenant, &(since_ms.unwrap_or(0) as i64)],
            )
            .await?;
        let seqs: Vec<i64> = dead.iter().map(|r| r.get(0)).collect();
        let orders: Vec<String> = dead
            .iter()
            .map(|r| format!("{tenant}/{}", r.get::<_, &str>(1)))
            .collect();
        lock_names(&tx, &orders).await?;
        let rows = tx
            .query(
                &tx.prepare_cached("UPDATE events SET state = 'pending', attempt_base = attempts,
                     next_attempt_at_ms = hookhost_now_ms(), finished_at_ms = NULL, last_error = NULL
                 WHERE seq = ANY($1) AND state = 'dead'
                 RETURNING seq, next_attempt_at_ms").await?,
                &[&seqs],
            )
            .await?;
        let mut replayed: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        // The oldest of each order first: it becomes the head.
        replayed.sort_unstable();
        for (seq, due) in &replayed {
            head_for_replayed(&tx, *seq, *due).await?;
        }
        tx.commit().await.context("database commit failed")?;
        Ok(replayed.into_iter().map(|(seq, _)| seq).collect())
    }

    async fn prune(&self, before_ms: u64, limit: u32) -> Result<u64> {
        let client = self.client().await?;
        let n = client
            .execute(
                &client
                    .prepare_cached(
                        "DELETE FROM events WHERE seq IN (
                     SELECT seq FROM events
                     WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1 LIMIT $2)",
                    )
                    .await?,
                &[&(before_ms as i64), &i64::from(limit)],
            )
            .await?;
        Ok(n)
    }

    async fn oldest_unfinished(&self, tenant: &str) -> Result<Option<u64>> {
        let client = self.client().await?;
        let at: Option<i64> = client
            .query_opt(
                // Each order's head is its oldest unfinished event: the oldest head is the
                // tenant's (the heads are far fewer than the events' index entries by state).
                "SELECT received_at_ms FROM events
                 WHERE seq = (SELECT min(head_seq) FROM order_heads WHERE tenant = $1)",
                &[&tenant],
            )
            .await?
            .map(|row| row.get(0));
        Ok(at.map(|v| v.max(0) as u64))
    }

    async fn kv_get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &client
                    .prepare_cached("SELECT value FROM kv WHERE tenant = $1 AND key = $2")
                    .await?,
                &[&tenant, &key],
            )
            .await?
            .map(|row| row.get(0)))
    }

    async fn kv_list(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<String>> {
        // Keys only: a plugin listing keys must not make the host read every value.
        let client = self.client().await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT key FROM kv WHERE tenant = $1 AND key >= $2 AND starts_with(key, $2)
                 ORDER BY key LIMIT $3").await?,
                &[&tenant, &prefix, &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn kv_count(&self, tenant: &str) -> Result<u64> {
        let client = self.client().await?;
        let n: i64 = client
            .query_one(
                &client
                    .prepare_cached(
                        "SELECT coalesce(sum(keys), 0)::bigint FROM kv_counts WHERE tenant = $1",
                    )
                    .await?,
                &[&tenant],
            )
            .await?
            .get(0);
        Ok(n.max(0) as u64)
    }

    async fn kv_entries(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvEntry>> {
        let client = self.client().await?;
        // `starts_with` with the "C" collation of the key column: byte order, like SQLite.
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT key, value, updated_at_ms FROM kv
                 WHERE tenant = $1 AND key >= $2 AND starts_with(key, $2)
                   AND ($4::text IS NULL OR key > $4)
                 ORDER BY key LIMIT $3",
                    )
                    .await?,
                &[&tenant, &prefix, &i64::from(limit), &after],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(KvEntry {
                    key: r.try_get(0)?,
                    value: r.try_get(1)?,
                    updated_at_ms: r.try_get::<_, i64>(2)?.max(0) as u64,
                })
            })
            .collect()
    }

    async fn events(
        &self,
        tenant: &str,
        limit: u32,
        before_seq: Option<i64>,
        filter: &EventFilter,
    ) -> Result<Vec<EventSummary>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM events
                     WHERE tenant = $1 AND seq < $2
                       AND ($4::text IS NULL OR state = $4)
                       AND ($5::text IS NULL OR event::jsonb ->> 'order_id' = $5
                                             OR event::jsonb ->> 'merchant_ref' = $5)
                       AND ($6::bigint IS NULL OR received_at_ms >= $6)
                       AND ($7::bigint IS NULL OR received_at_ms < $7)
                       AND ($8::text IS NULL OR source = $8)
                       AND ($9::text IS NULL OR event::jsonb ->> 'id' = $9)
                     ORDER BY seq DESC LIMIT $3"
                ),
                &[
                    &tenant,
                    &before_seq.unwrap_or(i64::MAX),
                    &i64::from(limit),
                    &filter.state.map(|s| s.as_str()),
                    &filter.order,
                    &filter.since_ms.map(|v| v as i64),
                    &filter.until_ms.map(|v| v as i64),
                    &filter.source,
                    &filter.event_id,
                ],
            )
            .await?;
        rows.iter().map(summary).collect()
    }

    async fn event_counts(&self, tenant: &str) -> Result<BTreeMap<String, u64>> {
        let client = self.client().await?;
        let mut counts: BTreeMap<String, u64> = EventState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for row in client
            .query(
                &client
                    .prepare_cached(
                        "SELECT state, count(*) FROM events WHERE tenant = $1 GROUP BY state",
                    )
                    .await?,
                &[&tenant],
            )
            .await?
        {
            counts.insert(row.get(0), row.get::<_, i64>(1).max(0) as u64);
        }
        Ok(counts)
    }

    async fn event_detail(&self, seq: i64) -> Result<Option<EventDetail>> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                &format!("SELECT {SUMMARY_COLUMNS}, headers, body FROM events WHERE seq = $1"),
                &[&seq],
            )
            .await?
        else {
            return Ok(None);
        };
        let summary = summary(&row)?;
        let headers: String = row.try_get("headers")?;
        let body: Vec<u8> = row.try_get("body")?;
        let attempts = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT record FROM attempts WHERE event_seq = $1 ORDER BY attempt",
                    )
                    .await?,
                &[&seq],
            )
            .await?
            .iter()
            .map(|r| {
                serde_json::from_str::<AttemptRecord>(r.get(0))
                    .context("a stored attempt record is not valid JSON")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(EventDetail {
            summary,
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body: String::from_utf8_lossy(&body).into_owned(),
            attempts_detail: attempts,
        }))
    }

    async fn activity(&self, tenant: &str, since_ms: u64, limit: u32) -> Result<ActivityRows> {
        let client = self.client().await?;
        let since = since_ms as i64;
        let events = client
            .query(
                &client
                    .prepare_cached(
                        // As in SQLite: after the newest event received before the window,
                        // the unfinished ones, those finished in the window; by index each.
                        "SELECT seq, received_at_ms, finished_at_ms FROM events
                         WHERE tenant = $1 AND seq > COALESCE((SELECT seq FROM events
                             WHERE tenant = $1 AND received_at_ms < $2 ORDER BY seq DESC LIMIT 1), -1)
                         UNION
                         SELECT seq, received_at_ms, finished_at_ms FROM events
                         WHERE tenant = $1 AND state IN ('pending', 'running')
                         UNION
                         SELECT seq, received_at_ms, finished_at_ms FROM events
                         WHERE finished_at_ms >= $2 AND tenant = $1
                         ORDER BY seq DESC LIMIT $3",
                    )
                    .await?,
                &[&tenant, &since, &(i64::from(limit) + 1)],
            )
            .await?;
        let truncated = events.len() > limit as usize;
        let events = &events[..events.len().min(limit as usize)];
        let seqs: Vec<i64> = events.iter().map(|r| r.get(0)).collect();
        let attempts = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT (record::jsonb ->> 'started_at_ms')::bigint,
                                (record::jsonb ->> 'duration_us')::bigint,
                                record::jsonb ->> 'outcome'
                         FROM attempts WHERE event_seq = ANY($1)
                           AND (record::jsonb ->> 'started_at_ms')::bigint >= $2",
                    )
                    .await?,
                &[&seqs, &since],
            )
            .await?;
        Ok(ActivityRows {
            events: events
                .iter()
                .map(|r| EventSpan {
                    received_at_ms: r.get::<_, i64>(1) as u64,
                    finished_at_ms: r.get::<_, Option<i64>>(2).map(|v| v as u64),
                })
                .collect(),
            attempts: attempts
                .iter()
                .map(|r| AttemptSample {
                    started_at_ms: r.get::<_, i64>(0) as u64,
                    duration_us: r.get::<_, i64>(1) as u64,
                    kind: AttemptKind::of_tag(r.get(2)),
                })
                .collect(),
            truncated,
        })
    }
}

/// The columns [`deploy_record`] reads.
const DEPLOY_COLUMNS: &str =
    "tenant, number, kind, digest, size, deployed_by, at_ms, reactivates, message";

/// A `plugin_deploys` row.
fn deploy_record(r: &Row) -> DeployRecord {
    DeployRecord {
        tenant: r.get(0),
        number: r.get::<_, i32>(1).max(0) as u32,
        kind: DeployKind::parse(r.get(2)),
        digest: r.get(3),
        size: r.get::<_, i64>(4).max(0) as u64,
        by: r.get(5),
        at_ms: r.get::<_, i64>(6).max(0) as u64,
        reactivates: r.get::<_, Option<i32>>(7).map(|v| v.max(0) as u32),
        message: r.get(8),
    }
}

/// The columns [`token_info`] reads.
const TOKEN_COLUMNS: &str =
    "id, tenant, name, scopes, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms";

/// An `api_tokens` row (without its hash).
fn token_info(r: &Row) -> TokenInfo {
    let millis = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.max(0) as u64);
    TokenInfo {
        id: r.get(0),
        tenant: r.get(1),
        name: r.get(2),
        scopes: stored_scopes(r.get(3)),
        created_at_ms: millis(4).unwrap_or(0),
        expires_at_ms: millis(5),
        last_used_at_ms: millis(6),
        revoked_at_ms: millis(7),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::storage::conformance::{event_of, finished};
    use crate::storage::pg_test::fresh_database;
    use crate::storage::AttemptOutcome;

    /// Two replicas: two stores with pools of their own, on one database.
    async fn two_replicas(test: &str) -> Option<(Arc<dyn Storage>, Arc<dyn Storage>)> {
        let config = fresh_database(test).await?;
        let a = PostgresStorage::connect_with(config.clone()).await.unwrap();
        let b = PostgresStorage::connect_with(config).await.unwrap();
        Some((Arc::new(a), Arc::new(b)))
    }

    #[tokio::test]
    async fn a_duplicate_sent_to_two_replicas_at_once_is_accepted_once() {
        let Some((a, b)) = two_replicas("dupes").await else {
            return;
        };
        for i in 0..50 {
            let id = format!("e{i}");
            let (x, y) = tokio::join!(
                a.append(event_of(&id, Some("o1"))),
                b.append(event_of(&id, Some("o1")))
            );
            let mut outcomes = [x.unwrap(), y.unwrap()];
            outcomes.sort_by_key(|o| matches!(o, Appended::Duplicate(_)));
            match outcomes {
                [Appended::Accepted(s1), Appended::Duplicate(s2)] => assert_eq!(s1, s2),
                other => panic!("{id}: expected one accepted and one duplicate, got {other:?}"),
            }
        }
        let counts = a.event_counts("acme").await.unwrap();
        assert_eq!(counts["pending"], 50);
    }

    /// A publication on one replica reaches another's subscribers through LISTEN/NOTIFY; a
    /// replica whose notification connection is cut reconnects by itself and says to re-read.
    #[tokio::test]
    async fn publications_reach_other_replicas_and_a_lost_listener_resyncs() {
        let Some(config) = fresh_database("publications").await else {
            return;
        };
        let a = PostgresStorage::connect_with(config.clone()).await.unwrap();
        let b = PostgresStorage::connect_with(config.clone()).await.unwrap();
        let mut heard = b.changes();
        // Listening (its first words are a resync) before anything is published.
        assert_eq!(
            tokio::time::timeout(std::time::Duration::from_secs(10), heard.recv())
                .await
                .expect("b listens")
                .unwrap(),
            StoreChange::Resync
        );
        let a: Arc<dyn Storage> = Arc::new(a);
        crate::storage::conformance::activate(&a, "acme", b"v1").await;
        assert_eq!(
            crate::storage::conformance::next_published(&mut heard).await,
            StoreChange::PluginPublished {
                tenant: "acme".into()
            }
        );
        // Cut every listener's connection: each comes back and tells its subscribers to resync.
        let (admin, connection) = config.connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        admin
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = 'hookhost-listen' AND datname = current_database()",
            )
            .await
            .unwrap();
        let resynced = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            loop {
                if heard.recv().await.unwrap() == StoreChange::Resync {
                    return;
                }
            }
        })
        .await;
        assert!(resynced.is_ok(), "b's listener did not come back");
        let pointers = b.published_plugins().await.unwrap();
        assert_eq!(pointers.len(), 1);
    }

    /// Appends sent together share a transaction; one the database refuses (a NUL in its id,
    /// which PostgreSQL's text cannot hold) fails alone, and the others of its batch are journaled.
    #[tokio::test]
    async fn an_append_the_database_refuses_fails_alone_not_with_its_batch() {
        let Some(config) = fresh_database("refused_append").await else {
            return;
        };
        let store: Arc<dyn Storage> =
            Arc::new(PostgresStorage::connect_with(config).await.unwrap());
        let appends: Vec<_> = (0..40)
            .map(|i| {
                let id = if i == 17 {
                    "bad\0id".to_string()
                } else {
                    format!("e{i}")
                };
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append(event_of(&id, Some(&format!("o{}", i % 4))))
                        .await
                })
            })
            .collect();
        let mut accepted = 0;
        for (i, append) in appends.into_iter().enumerate() {
            match (i, append.await.unwrap()) {
                (17, outcome) => assert!(outcome.is_err(), "the NUL id was journaled: {outcome:?}"),
                (_, Ok(Appended::Accepted(_))) => accepted += 1,
                (i, other) => panic!("append {i}: {other:?}"),
            }
        }
        assert_eq!(accepted, 39);
        assert_eq!(store.event_counts("acme").await.unwrap()["pending"], 39);
    }

    /// Appends of one order on two replicas, while both claim and finish its head: the order's
    /// events run one at a time, in journal order, each once, none left behind.
    #[tokio::test]
    async fn one_orders_events_run_in_journal_order_while_two_replicas_append_and_run_them() {
        let Some((a, b)) = two_replicas("order").await else {
            return;
        };
        const EVENTS: usize = 60;
        let appenders: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(r, store)| {
                tokio::spawn(async move {
                    for i in (r..EVENTS).step_by(2) {
                        store
                            .append(event_of(&format!("e{i}"), Some("o1")))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut ran = Vec::new();
        let replicas = [a.clone(), b.clone()];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while ran.len() < EVENTS {
            assert!(std::time::Instant::now() < deadline, "stuck after {ran:?}");
            let store = &replicas[ran.len() % 2];
            let batch = store
                .claim("acme", "me", ClaimLimit::batch(10), 60_000)
                .await
                .unwrap();
            assert!(batch.claims.len() <= 1, "an order has one head: {batch:?}");
            let Some(claimed) = batch.claims.into_iter().next() else {
                tokio::task::yield_now().await;
                continue;
            };
            ran.push(claimed.event.seq);
            store
                .finish_attempt(finished(
                    claimed.claim.lease,
                    1,
                    AttemptOutcome::Done,
                    EventState::Done,
                ))
                .await
                .unwrap();
        }
        for appender in appenders {
            appender.await.unwrap();
        }
        let mut sorted = ran.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ran, sorted, "ran in journal order, each once");
        assert_eq!(ran.len(), EVENTS);
        assert!(a
            .claim("acme", "me", ClaimLimit::batch(10), 60_000)
            .await
            .unwrap()
            .claims
            .is_empty());
        assert_eq!(a.event_counts("acme").await.unwrap()["done"], EVENTS as u64);
    }

    #[tokio::test]
    async fn two_replicas_claiming_at_once_never_take_the_same_head() {
        let Some((a, b)) = two_replicas("claims").await else {
            return;
        };
        for i in 0..200 {
            a.append(event_of(&format!("e{i}"), None)).await.unwrap();
        }
        let mut seen = HashSet::new();
        loop {
            let (x, y) = tokio::join!(
                a.claim("acme", "a", ClaimLimit::batch(25), 60_000),
                b.claim("acme", "b", ClaimLimit::batch(25), 60_000)
            );
            let (x, y) = (x.unwrap().claims, y.unwrap().claims);
            if x.is_empty() && y.is_empty() {
                break;
            }
            for claimed in x.iter().chain(&y) {
                assert!(
                    seen.insert(claimed.event.seq),
                    "claimed twice: {}",
                    claimed.event.seq
                );
            }
        }
        assert_eq!(seen.len(), 200);
    }
}

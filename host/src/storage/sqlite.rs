//! The embedded default store: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread that takes whatever commands have queued up and runs
//! them in a single transaction, so concurrent webhooks share one fsync (group commit). One
//! failing command does not undo the others: the batch is then rolled back and its commands run
//! again one transaction each (see `run_batch`). Reads use a small pool of read-only connections,
//! which WAL lets run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{anyhow, Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};

use super::{
    component_digest, Appended, AttemptRecord, Claim, ClaimBatch, ClaimLimit, ClaimedEvent,
    EventDetail, EventFilter, EventState, EventSummary, ExpiredLease, FinishResult,
    FinishedAttempt, KvConflict, KvEntry, KvWrite, Lease, NewEvent, PublishedConfig,
    PublishedPlugin, Replay, Storage, StoreChange, StoredEvent,
};
use super::{ActivityRows, AttemptKind, AttemptSample, EventSpan};
use super::{
    DeployAction, DeployKind, DeployRecord, Deployed, JournaledEvent, NewDeploy, ShadowReport,
    ShadowRun, ShadowSetting,
};
use crate::access::{scopes_text, stored_scopes, StoredToken, TokenInfo};
use crate::config::Durability;
use crate::now_ms;

/// Prepared statements kept per connection: more than any connection uses.
const STATEMENT_CACHE: usize = 64;

/// Most commands folded into one transaction.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant              TEXT NOT NULL,
    source              TEXT NOT NULL,
    dedupe_key          TEXT NOT NULL,
    state               TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    attempt_base        INTEGER NOT NULL DEFAULT 0,
    running_since_ms    INTEGER,
    running_version     TEXT,
    next_attempt_at_ms  INTEGER NOT NULL,
    received_at_ms      INTEGER NOT NULL,
    finished_at_ms      INTEGER,
    last_error          TEXT,
    duplicates          INTEGER NOT NULL DEFAULT 0,
    headers             TEXT NOT NULL,
    body                BLOB NOT NULL,
    event               TEXT NOT NULL,
    UNIQUE (tenant, source, dedupe_key)
);
CREATE INDEX IF NOT EXISTS events_unfinished ON events (seq) WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS events_by_tenant ON events (tenant, seq);
CREATE INDEX IF NOT EXISTS events_by_tenant_state ON events (tenant, state, seq);
CREATE INDEX IF NOT EXISTS events_finished ON events (finished_at_ms) WHERE finished_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS attempts (
    event_seq       INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    record          TEXT NOT NULL,
    PRIMARY KEY (event_seq, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    tenant          TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           BLOB NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_counts (
    tenant          TEXT PRIMARY KEY,
    keys            INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// The stored key that serializes delivery (see `NormalizedEvent::delivery_key`), for existing
/// rows computed in SQL exactly as the host computes it for new ones.
const DELIVERY_KEY: &str = r#"
ALTER TABLE events ADD COLUMN delivery_key TEXT NOT NULL DEFAULT '';
UPDATE events SET delivery_key = CASE
    WHEN json_extract(event, '$.order_id') IS NOT NULL THEN 'order:' || json_extract(event, '$.order_id')
    WHEN json_extract(event, '$.merchant_ref') IS NOT NULL THEN 'ref:' || json_extract(event, '$.merchant_ref')
    ELSE 'event:' || json_extract(event, '$.id')
END;
CREATE INDEX IF NOT EXISTS events_unfinished_by_order
    ON events (tenant, delivery_key, seq) WHERE state IN ('pending', 'running');
"#;

/// The order heads (one row per order with unfinished events: the dispatcher's queue) and the
/// leases on running events. Existing unfinished events get their heads; events an older hookhost
/// left running get an expired lease, so the reaper counts their attempts as interrupted.
const HEADS_AND_LEASES: &str = r#"
CREATE TABLE order_heads (
    tenant          TEXT NOT NULL,
    delivery_key    TEXT NOT NULL,
    head_seq        INTEGER NOT NULL,
    due_at_ms       INTEGER NOT NULL,
    claimed         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, delivery_key)
) WITHOUT ROWID;
CREATE INDEX order_heads_due ON order_heads (tenant, due_at_ms, head_seq) WHERE claimed = 0;
-- What only the old in-memory queue's recovery read: every index costs each append and finish.
DROP INDEX IF EXISTS events_unfinished;
ALTER TABLE events ADD COLUMN lease_owner TEXT;
ALTER TABLE events ADD COLUMN lease_token INTEGER;
ALTER TABLE events ADD COLUMN lease_until_ms INTEGER;
UPDATE events SET lease_owner = '', lease_token = 0, lease_until_ms = 0 WHERE state = 'running';
CREATE INDEX events_leased ON events (lease_until_ms) WHERE lease_token IS NOT NULL;
INSERT INTO order_heads (tenant, delivery_key, head_seq, due_at_ms, claimed)
    SELECT e.tenant, e.delivery_key, e.seq, e.next_attempt_at_ms, e.state = 'running'
    FROM events e
    WHERE e.state IN ('pending', 'running')
      AND e.seq = (SELECT MIN(x.seq) FROM events x
                   WHERE x.tenant = e.tenant AND x.delivery_key = e.delivery_key
                     AND x.state IN ('pending', 'running'));
"#;

/// The schema's versions, in order. A database records how many it has had (`PRAGMA
/// user_version`); at open the missing ones run, each in one transaction with its version bump,
/// so a journal written by an older hookhost is brought up to date and a crash mid-way leaves it
/// at a whole version. (Databases from before versioning have version 0 and the tables of the
/// first step, which it creates only if they are missing.)
const MIGRATIONS: &[(&str, &str)] = &[
    ("the journal, attempts and kv", SCHEMA),
    (
        "events.delivery_key, stored for the order heads",
        DELIVERY_KEY,
    ),
    (
        "order heads and leases: the journal is the queue",
        HEADS_AND_LEASES,
    ),
    ("published plugins", PUBLISHED_PLUGINS),
    ("deploy history and merchant tokens", DEPLOYS_AND_TOKENS),
];

/// Each tenant's numbered deploy history (a published plugin from before it becomes entry 1),
/// merchant tokens (kept as hashes), shadows and what they found.
const DEPLOYS_AND_TOKENS: &str = r#"
CREATE TABLE plugin_deploys (
    tenant       TEXT NOT NULL,
    number       INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    digest       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    deployed_by  TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    reactivates  INTEGER,
    message      TEXT,
    PRIMARY KEY (tenant, number)
) WITHOUT ROWID;
INSERT INTO plugin_deploys (tenant, number, kind, digest, size, deployed_by, at_ms)
    SELECT tenant, 1, 'deploy', digest, size, 'operator', published_at_ms FROM plugin_pointers;
CREATE TABLE api_tokens (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    name             TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    hash             BLOB NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    expires_at_ms    INTEGER,
    last_used_at_ms  INTEGER,
    revoked_at_ms    INTEGER
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant, created_at_ms);
CREATE TABLE plugin_shadows (
    tenant     TEXT PRIMARY KEY,
    number     INTEGER NOT NULL,
    digest     TEXT NOT NULL,
    share      REAL NOT NULL,
    since_ms   INTEGER NOT NULL,
    set_by     TEXT NOT NULL
);
CREATE TABLE shadow_runs (
    tenant   TEXT NOT NULL,
    number   INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    verdict  TEXT NOT NULL,
    record   TEXT NOT NULL,
    PRIMARY KEY (tenant, number, seq, attempt)
) WITHOUT ROWID;
CREATE INDEX shadow_runs_by_verdict ON shadow_runs (tenant, number, verdict, seq);
"#;

/// Plugin components by content, and each tenant's published one.
const PUBLISHED_PLUGINS: &str = r#"
CREATE TABLE plugin_components (
    digest          TEXT PRIMARY KEY,
    component       BLOB NOT NULL,
    stored_at_ms    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE plugin_pointers (
    tenant          TEXT PRIMARY KEY,
    digest          TEXT NOT NULL REFERENCES plugin_components (digest),
    size            INTEGER NOT NULL,
    published_at_ms INTEGER NOT NULL
);
CREATE TABLE published_config (
    one             INTEGER PRIMARY KEY CHECK (one = 1),
    text            TEXT NOT NULL,
    digest          TEXT NOT NULL,
    published_at_ms INTEGER NOT NULL
);
"#;

/// Brings `conn`'s schema to the newest version this binary knows; refuses a database written
/// by a newer one (its schema may mean things this binary would get wrong).
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        anyhow::bail!(
            "the database {} has schema version {current}, newer than this hookhost knows ({}): run the newer hookhost, or restore a backup",
            path.display(),
            MIGRATIONS.len()
        );
    }
    for (version, (what, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql).with_context(|| {
            format!(
                "cannot bring {} to schema version {} ({what})",
                path.display(),
                version + 1
            )
        })?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
        tx.commit()?;
        tracing::debug!(path = %path.display(), version = version + 1, "database schema step applied: {what}");
    }
    if current < MIGRATIONS.len() {
        tracing::info!(path = %path.display(), from = current, to = MIGRATIONS.len(), "database schema brought up to date");
    }
    Ok(())
}

/// Plans that do not depend on bound values. Without this, SQLite marks a statement to be
/// planned again whenever some parameters are rebound (an equality it estimates with the value,
/// a `LIMIT ?`), and rusqlite's statement cache rebinds on every use: the writer spent an eighth
/// of its time parsing the order-head lookup again after each finish. Every partial index the
/// queries use is matched by literal terms, so the plans are the same.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// One caller's write: run inside the writer's next transaction, then completed (its caller told
/// the outcome) once that transaction has committed or failed to.
trait WriteJob: Send {
    /// Runs the job's statements and keeps its result; false if the job failed (part of its
    /// changes may then be in the transaction). A job may run twice: see [`run_batch`].
    fn run(&mut self, conn: &Connection) -> bool;
    /// Tells the caller the kept result, or `commit_error` if its changes were not committed.
    fn complete(self: Box<Self>, commit_error: Option<&str>);
}

type Job = Box<dyn WriteJob>;

/// Each tenant's committed kv key count (see [`SqliteStorage::kv_counts`]).
type KvCountCache = Arc<Mutex<std::collections::HashMap<String, u64>>>;

/// A [`WriteJob`] returning `T` to the caller waiting on `reply`.
struct Write<T, F> {
    work: F,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for Write<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn complete(self: Box<Self>, commit_error: Option<&str>) {
        let _ = self.reply.send(match (self.result, commit_error) {
            // The job's own failure is the caller's answer, committed or not.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Some(e)) => Err(anyhow!("database commit failed: {e}")),
            (Some(Ok(v)), None) => Ok(v),
            (None, _) => Err(anyhow!(
                "the database writer could not start a transaction: {}",
                commit_error.unwrap_or("unknown error")
            )),
        });
    }
}

/// The SQLite store.
pub struct SqliteStorage {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Each tenant's kv key count as committed, once read: one process owns the file and every
    /// change goes through `finish`, which keeps it exact, so an attempt that sets a key (and so
    /// needs the count for the tenant's limit) does not pay a read transaction for it.
    kv_counts: KvCountCache,
    /// Held while the store is open: one process per database file, so that at open every
    /// lease still in it belongs to a process that has stopped.
    _lock: std::fs::File,
    /// One process per file: its own changes are all there are to hear.
    changes: tokio::sync::broadcast::Sender<StoreChange>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and starts the writer thread. Refuses a
    /// database another process has open.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStorage> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
        if let Err(e) = lock.try_lock() {
            anyhow::bail!(
                "the database {} is in use by another hookhost process ({e}): the embedded store serves one process; for several, use PostgreSQL",
                path.display()
            );
        }
        let mut conn = Connection::open(path).with_context(|| {
            format!(
                "cannot open the database {}: check the path and its permissions",
                path.display()
            )
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match durability {
                Durability::Durable => "FULL",
                Durability::Fast => "NORMAL",
            },
        )?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The writer touches every index of every event it journals, claims and finishes: with
        // SQLite's default 2 MiB of cache it re-reads pages from the OS on most statements (more
        // than 8 MiB makes each commit's cache truncation slower than what it saves).
        conn.pragma_update(None, "cache_size", -8_192)?;
        // Every statement the writer runs stays prepared (rusqlite keeps 16 by default, fewer
        // than the writer uses: past that, statements are parsed and planned again and again).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Statement journals (a multi-row statement's undo) in memory, not in temporary files.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        stable_plans(&conn)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn, path)?;
        // This process holds the file lock, so whoever held these leases has stopped: expire
        // them now rather than wait out their term (the reaper then deals with them at once).
        let expired = conn.execute(
            "UPDATE events SET lease_until_ms = 0 WHERE lease_token IS NOT NULL AND lease_until_ms > 0",
            [],
        )?;
        if expired > 0 {
            tracing::info!(
                expired,
                "leases left by the last process expired: the reaper takes them back"
            );
        }
        let (tx, rx) = mpsc::channel(4096);
        let kv_counts = KvCountCache::default();
        let writer_counts = kv_counts.clone();
        thread::Builder::new()
            .name("hookhost-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, writer_counts))
            .context("cannot start the database writer thread")?;
        Ok(SqliteStorage {
            path: path.to_path_buf(),
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            kv_counts,
            _lock: lock,
            changes: tokio::sync::broadcast::channel(64).0,
        })
    }

    /// Runs `f` on a pooled read-only connection, on a blocking thread (WAL lets reads run beside
    /// the writer; no tokio worker waits on the disk).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().expect("reader pool poisoned").pop();
            let conn = match conn {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .with_context(|| format!("cannot open {} for reading", path.display()))?;
                    c.busy_timeout(std::time::Duration::from_secs(5))?;
                    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                    stable_plans(&c)?;
                    c
                }
            };
            let result = f(&conn);
            let mut pool = readers.lock().expect("reader pool poisoned");
            if pool.len() < 16 {
                pool.push(conn);
            }
            result.context("database read failed")
        })
        .await
        .context("database read task failed")?
    }

    /// Runs `f` in the writer's next transaction and waits for the commit. `f` may run twice (a
    /// batch with a failed job is rolled back and run again one job at a time), so it must only
    /// read its inputs.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(f, tx).await?;
        rx.await
            .map_err(|_| anyhow!("the database writer has stopped"))?
    }

    /// Queues `f` for the writer's next transaction and reports to `reply` after the commit.
    async fn enqueue<T: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
        reply: oneshot::Sender<Result<T>>,
    ) -> Result<()> {
        let job: Job = Box::new(Write {
            work: f,
            result: None,
            reply,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| anyhow!("the database writer has stopped"))
    }
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Job>, kv_counts: KvCountCache) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if !run_batch(&mut conn, &mut batch) {
            // Something the cache was told did not commit as told.
            kv_counts.lock().expect("kv count cache").clear();
        }
    }
}

/// Runs every queued job in one transaction (one fsync for all of them), then completes them.
///
/// Jobs run without savepoints: a savepoint copies every page a job touches to its undo journal,
/// a tenth of the writer's time when each job is a few rows. When a job fails (rare: a full
/// disk, a bug), the whole transaction is rolled back and the jobs run again one transaction
/// each, so the failed one's partial changes are undone without undoing the others. False if
/// anything run was rolled back or failed to commit.
fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>) -> bool {
    let together = match conn.transaction() {
        Ok(tx) => {
            if batch.iter_mut().all(|job| job.run(&tx)) {
                Some(tx.commit().map_err(|e| e.to_string()))
            } else {
                if let Err(e) = tx.rollback() {
                    tracing::error!("database rollback failed: {e}");
                }
                None
            }
        }
        Err(e) => Some(Err(format!("cannot start a database transaction: {e}"))),
    };
    match together {
        Some(result) => {
            let commit_error = result.err();
            if let Some(e) = &commit_error {
                tracing::error!("database commit failed: {e}");
            }
            for job in batch.drain(..) {
                job.complete(commit_error.as_deref());
            }
            commit_error.is_none()
        }
        None => {
            for job in batch.drain(..) {
                run_alone(conn, job);
            }
            false
        }
    }
}

/// Runs one job in a transaction of its own: committed if it succeeds, rolled back if it fails.
fn run_alone(conn: &mut Connection, mut job: Job) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            job.complete(Some(&format!("cannot start a database transaction: {e}")));
            return;
        }
    };
    if job.run(&tx) {
        let commit_error = tx.commit().err().map(|e| e.to_string());
        if let Some(e) = &commit_error {
            tracing::error!("database commit failed: {e}");
        }
        job.complete(commit_error.as_deref());
    } else {
        if let Err(e) = tx.rollback() {
            tracing::error!("database rollback failed: {e}");
        }
        job.complete(None);
    }
}

fn append(conn: &Connection, ev: &NewEvent) -> Result<Appended> {
    let delivery_key = ev.event.delivery_key();
    // No `RETURNING seq`: SQLite runs an INSERT with RETURNING like one with a trigger, keeping a
    // statement journal (a copy of each of the ~7 pages an append touches); the rowid and the
    // change count say the same.
    let changed = conn
        .prepare_cached(
            "INSERT INTO events (tenant, source, dedupe_key, state, next_attempt_at_ms, received_at_ms, headers, body, event, delivery_key)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (tenant, source, dedupe_key) DO NOTHING",
        )?
        .execute(params![
            ev.tenant,
            ev.source,
            ev.event.id,
            ev.received_at_ms as i64,
            serde_json::to_string(&ev.headers)?,
            ev.body,
            serde_json::to_string(&ev.event)?,
            delivery_key,
        ])?;
    let inserted = (changed == 1).then(|| conn.last_insert_rowid());
    if let Some(seq) = inserted {
        // One writer assigns sequence numbers in commit order, so an order that already has a
        // head keeps it: the head is older.
        conn.prepare_cached(
            "INSERT INTO order_heads (tenant, delivery_key, head_seq, due_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, delivery_key) DO NOTHING",
        )?
        .execute(params![ev.tenant, delivery_key, seq, ev.received_at_ms as i64])?;
        return Ok(Appended::Accepted(seq));
    }
    let seq = conn
        .prepare_cached(
            "UPDATE events SET duplicates = duplicates + 1
             WHERE tenant = ?1 AND source = ?2 AND dedupe_key = ?3 RETURNING seq",
        )?
        .query_row(params![ev.tenant, ev.source, ev.event.id], |r| r.get(0))?;
    Ok(Appended::Duplicate(seq))
}

fn claim(
    conn: &Connection,
    tenant: &str,
    owner: &str,
    limit: ClaimLimit,
    lease_ms: u64,
) -> Result<ClaimBatch> {
    let now = now_ms() as i64;
    // One process writes this store, so the bound is only ever asked for by tests and tools;
    // the count reads the tenant's heads (no index of claimed heads: each would cost every
    // claim and finish a write).
    let take = if limit.is_bounded() {
        let claimed: u32 = conn
            .prepare_cached("SELECT count(*) FROM order_heads WHERE tenant = ?1 AND claimed = 1")?
            .query_row(params![tenant], |r| r.get(0))?;
        limit
            .batch
            .min(limit.tenant_claimed.saturating_sub(claimed))
    } else {
        limit.batch
    };
    let heads: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT delivery_key, head_seq FROM order_heads
             WHERE tenant = ?1 AND claimed = 0 AND due_at_ms <= ?2
             ORDER BY due_at_ms, head_seq LIMIT ?3",
        )?
        .query_map(params![tenant, now, take], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut claims = Vec::with_capacity(heads.len());
    for (delivery_key, seq) in heads {
        conn.prepare_cached(
            "UPDATE order_heads SET claimed = 1 WHERE tenant = ?1 AND delivery_key = ?2",
        )?
        .execute(params![tenant, delivery_key])?;
        let token = lease_token();
        let claimed = conn
            .prepare_cached(
                "UPDATE events SET lease_owner = ?2, lease_token = ?3, lease_until_ms = ?4,
                     running_since_ms = NULL, running_version = NULL
                 WHERE seq = ?1 RETURNING seq, tenant, source, received_at_ms, body, event, attempts, attempt_base",
            )?
            .query_row(params![seq, owner, token, now + lease_ms as i64], |r| {
                Ok(ClaimedEvent {
                    claim: Claim {
                        lease: Lease { seq, token },
                        tenant: tenant.to_string(),
                        attempts: r.get(6)?,
                        attempt_base: r.get(7)?,
                    },
                    event: stored(r)?,
                })
            })?;
        claims.push(claimed);
    }
    let next_due_ms = conn
        .prepare_cached("SELECT MIN(due_at_ms) FROM order_heads WHERE tenant = ?1 AND claimed = 0")?
        .query_row(params![tenant], |r| r.get::<_, Option<i64>>(0))?
        .map(|v| v.max(0) as u64);
    Ok(ClaimBatch {
        capped: take < limit.batch && next_due_ms.is_some_and(|at| at <= now as u64),
        claims,
        next_due_ms,
    })
}

/// A fresh lease token: random, so that tokens of different processes never need coordinating.
fn lease_token() -> i64 {
    (rand::random::<u64>() >> 1) as i64
}

/// Marks the lease's event pending again (due at `due_at_ms`) and unclaims its order's head;
/// false if the lease is no longer the event's.
fn release(conn: &Connection, lease: Lease, due_at_ms: u64) -> Result<bool> {
    let order: Option<(String, String)> = conn
        .prepare_cached(
            "UPDATE events SET state = 'pending', next_attempt_at_ms = ?3, lease_owner = NULL, lease_token = NULL,
                 lease_until_ms = NULL, running_since_ms = NULL, running_version = NULL
             WHERE seq = ?1 AND lease_token = ?2 RETURNING tenant, delivery_key",
        )?
        .query_row(params![lease.seq, lease.token, due_at_ms as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((tenant, delivery_key)) = order else {
        return Ok(false);
    };
    conn.prepare_cached(
        "UPDATE order_heads SET claimed = 0, due_at_ms = ?3 WHERE tenant = ?1 AND delivery_key = ?2",
    )?
    .execute(params![tenant, delivery_key, due_at_ms as i64])?;
    Ok(true)
}

/// Checks every key the attempt read against the committed store. With one writer nothing can
/// change between this check and the commit; a backend with concurrent writers locks the keys
/// (read and written, in key order) before it checks.
fn first_stale_read(conn: &Connection, fin: &FinishedAttempt) -> Result<Option<KvConflict>> {
    if fin.kv_writes.is_empty() {
        return Ok(None);
    }
    for read in &fin.kv_reads {
        let current: Option<Vec<u8>> = conn
            .prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND key = ?2")?
            .query_row(params![fin.tenant, read.key], |r| r.get(0))
            .optional()?;
        if current.as_deref().map(super::kv_digest) != read.seen {
            return Ok(Some(KvConflict {
                key: read.key.clone(),
            }));
        }
    }
    Ok(None)
}

/// Records the attempt (see [`Storage::finish_attempt`]); with the tenant's new kv key count when
/// the attempt changed it (for the count cache).
fn finish(conn: &Connection, fin: &FinishedAttempt) -> Result<(FinishResult, Option<u64>)> {
    if let Some(conflict) = first_stale_read(conn, fin)? {
        let result = match release(conn, fin.lease, now_ms())? {
            true => FinishResult::KvConflict(conflict),
            false => FinishResult::LeaseLost,
        };
        return Ok((result, None));
    }
    let now = now_ms() as i64;
    let last_error = match &fin.record.outcome {
        super::AttemptOutcome::Error { message } => Some(message.clone()),
        super::AttemptOutcome::RetryAfter { seconds } => {
            Some(format!("plugin asked to retry after {seconds} s"))
        }
        _ => None,
    };
    let finished_at = (fin.next_state != EventState::Pending).then_some(now);
    // Fenced: only the lease's holder moves the event on.
    let delivery_key: Option<String> = conn
        .prepare_cached(
            "UPDATE events SET state = ?3, attempts = ?4, next_attempt_at_ms = ?5, finished_at_ms = ?6, last_error = ?7,
                 running_since_ms = NULL, running_version = NULL, lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL
             WHERE seq = ?1 AND lease_token = ?2 RETURNING delivery_key",
        )?
        .query_row(
            params![
                fin.lease.seq,
                fin.lease.token,
                fin.next_state.as_str(),
                fin.record.attempt,
                fin.next_attempt_at_ms as i64,
                finished_at,
                last_error,
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(delivery_key) = delivery_key else {
        return Ok((FinishResult::LeaseLost, None));
    };
    advance_head(
        conn,
        &fin.tenant,
        &delivery_key,
        fin.next_state,
        fin.next_attempt_at_ms,
    )?;
    conn.prepare_cached(
        // An upsert, not `OR REPLACE`: a replacing insert makes SQLite keep a statement journal
        // (a copy of every page it touches) in case it fails half-way.
        "INSERT INTO attempts (event_seq, attempt, record) VALUES (?1, ?2, ?3)
         ON CONFLICT (event_seq, attempt) DO UPDATE SET record = excluded.record",
    )?
    .execute(params![
        fin.lease.seq,
        fin.record.attempt,
        serde_json::to_string(&fin.record)?
    ])?;
    let mut added: i64 = 0;
    for write in &fin.kv_writes {
        match write {
            KvWrite::Set(key, value) => {
                let existed = conn
                    .prepare_cached("SELECT 1 FROM kv WHERE tenant = ?1 AND key = ?2")?
                    .exists(params![fin.tenant, key])?;
                conn.prepare_cached(
                    "INSERT INTO kv (tenant, key, value, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
                )?
                .execute(params![fin.tenant, key, value, now])?;
                if !existed {
                    added += 1;
                }
            }
            KvWrite::Delete(key) => {
                let n = conn
                    .prepare_cached("DELETE FROM kv WHERE tenant = ?1 AND key = ?2")?
                    .execute(params![fin.tenant, key])?;
                added -= n as i64;
            }
        }
    }
    if added == 0 {
        return Ok((FinishResult::Committed, None));
    }
    // Read back rather than `RETURNING`, which would cost a statement journal.
    conn.prepare_cached(
        "INSERT INTO kv_counts (tenant, keys) VALUES (?1, ?2)
         ON CONFLICT (tenant) DO UPDATE SET keys = keys + excluded.keys",
    )?
    .execute(params![fin.tenant, added])?;
    let keys: i64 = conn
        .prepare_cached("SELECT keys FROM kv_counts WHERE tenant = ?1")?
        .query_row(params![fin.tenant], |r| r.get(0))?;
    Ok((FinishResult::Committed, Some(keys.max(0) as u64)))
}

/// After an order's head ran: a retry keeps it the head, unclaimed and due later; an end makes
/// the order's oldest unfinished event its head, or removes the order from the heads.
fn advance_head(
    conn: &Connection,
    tenant: &str,
    delivery_key: &str,
    next_state: EventState,
    next_attempt_at_ms: u64,
) -> Result<()> {
    if next_state == EventState::Pending {
        conn.prepare_cached(
            "UPDATE order_heads SET claimed = 0, due_at_ms = ?3 WHERE tenant = ?1 AND delivery_key = ?2",
        )?
        .execute(params![tenant, delivery_key, next_attempt_at_ms as i64])?;
        return Ok(());
    }
    let next: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT seq, next_attempt_at_ms FROM events
             WHERE tenant = ?1 AND delivery_key = ?2 AND state IN ('pending', 'running')
             ORDER BY seq LIMIT 1",
        )?
        .query_row(params![tenant, delivery_key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match next {
        Some((seq, due)) => conn
            .prepare_cached(
                "UPDATE order_heads SET head_seq = ?3, due_at_ms = ?4, claimed = 0
                 WHERE tenant = ?1 AND delivery_key = ?2",
            )?
            .execute(params![tenant, delivery_key, seq, due])?,
        None => conn
            .prepare_cached("DELETE FROM order_heads WHERE tenant = ?1 AND delivery_key = ?2")?
            .execute(params![tenant, delivery_key])?,
    };
    Ok(())
}

/// Makes a replayed event its order's head if the order has none (otherwise it runs when its
/// turn comes: the head search takes the oldest unfinished event).
fn head_for_replayed(conn: &Connection, seq: i64, due_at_ms: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO order_heads (tenant, delivery_key, head_seq, due_at_ms)
             SELECT tenant, delivery_key, seq, ?2 FROM events WHERE seq = ?1
         ON CONFLICT (tenant, delivery_key) DO NOTHING",
    )?
    .execute(params![seq, due_at_ms])?;
    Ok(())
}

/// The state stored in column `index`; a name this version does not know is an error, never a
/// silent `pending`.
fn state_column(row: &Row<'_>, index: usize) -> rusqlite::Result<EventState> {
    row.get::<_, String>(index)?.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn stored(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let event: String = r.get(5)?;
    Ok(StoredEvent {
        seq: r.get(0)?,
        tenant: r.get(1)?,
        source: r.get(2)?,
        received_at_ms: r.get::<_, i64>(3)? as u64,
        body: r.get(4)?,
        event: serde_json::from_str(&event).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

const SUMMARY_COLUMNS: &str = "seq, tenant, source, state, attempts, received_at_ms, finished_at_ms, next_attempt_at_ms, last_error, duplicates, event";

fn summary(row: &Row<'_>) -> rusqlite::Result<EventSummary> {
    let state = state_column(row, 3)?;
    let event: String = row.get(10)?;
    Ok(EventSummary {
        seq: row.get(0)?,
        tenant: row.get(1)?,
        source: row.get(2)?,
        state,
        attempts: row.get(4)?,
        received_at_ms: row.get::<_, i64>(5)? as u64,
        finished_at_ms: row.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        next_attempt_at_ms: (state == EventState::Pending)
            .then(|| row.get::<_, i64>(7))
            .transpose()?
            .map(|v| v as u64),
        last_error: row.get(8)?,
        duplicates: row.get::<_, i64>(9)? as u64,
        event: serde_json::from_str(&event).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    async fn append(&self, event: Arc<NewEvent>) -> Result<Appended> {
        self.write(move |c| append(c, &event)).await
    }

    async fn claim(
        &self,
        tenant: &str,
        owner: &str,
        limit: ClaimLimit,
        lease_ms: u64,
    ) -> Result<ClaimBatch> {
        let (tenant, owner) = (tenant.to_string(), owner.to_string());
        self.write(move |c| claim(c, &tenant, &owner, limit, lease_ms))
            .await
    }

    async fn mark_started(
        &self,
        lease: Lease,
        started_at_ms: u64,
        plugin_version: &str,
    ) -> Result<()> {
        let version = plugin_version.to_string();
        let (reply, _ignored) = oneshot::channel();
        self.enqueue(
            move |c| {
                c.prepare_cached(
                    "UPDATE events SET state = 'running', running_since_ms = ?3, running_version = ?4
                     WHERE seq = ?1 AND lease_token = ?2",
                )?
                .execute(params![
                    lease.seq,
                    lease.token,
                    started_at_ms as i64,
                    version
                ])?;
                Ok(())
            },
            reply,
        )
        .await
    }

    async fn renew_leases(&self, leases: &[Lease], lease_ms: u64) -> Result<u64> {
        let leases = leases.to_vec();
        self.write(move |c| {
            let now = now_ms() as i64;
            let mut renew = c.prepare_cached(
                "UPDATE events SET lease_until_ms = ?3
                 WHERE seq = ?1 AND lease_token = ?2 AND lease_until_ms >= ?4",
            )?;
            let mut renewed = 0;
            for lease in &leases {
                renewed +=
                    renew.execute(params![lease.seq, lease.token, now + lease_ms as i64, now])?;
            }
            Ok(renewed as u64)
        })
        .await
    }

    async fn expired_leases(&self, limit: u32) -> Result<Vec<ExpiredLease>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, lease_token, tenant, attempts, attempt_base, running_since_ms, running_version
                 FROM events WHERE lease_token IS NOT NULL AND lease_until_ms < ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now_ms() as i64, limit], |r| {
                let since: Option<i64> = r.get(5)?;
                Ok(ExpiredLease {
                    claim: Claim {
                        lease: Lease {
                            seq: r.get(0)?,
                            token: r.get(1)?,
                        },
                        tenant: r.get(2)?,
                        attempts: r.get(3)?,
                        attempt_base: r.get(4)?,
                    },
                    started: match since {
                        Some(at) => Some((at.max(0) as u64, r.get::<_, Option<String>>(6)?.unwrap_or_default())),
                        None => None,
                    },
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn finish_attempt(&self, finished: FinishedAttempt) -> Result<FinishResult> {
        let counts = self.kv_counts.clone();
        self.write(move |c| {
            let (result, keys) = finish(c, &finished)?;
            // The count as this transaction leaves it. The cache may run ahead of a commit that
            // then fails, never behind one: a failed commit drops the whole cache below.
            if let Some(keys) = keys {
                counts
                    .lock()
                    .expect("kv count cache")
                    .insert(finished.tenant.clone(), keys);
            }
            Ok(result)
        })
        .await
        .inspect_err(|_| self.kv_counts.lock().expect("kv count cache").clear())
    }

    async fn release(&self, lease: Lease, due_at_ms: u64) -> Result<bool> {
        self.write(move |c| release(c, lease, due_at_ms)).await
    }

    async fn deploy(&self, deploy: NewDeploy) -> Result<Deployed> {
        let at_ms = now_ms();
        let outcome = self.write(move |c| deploy_in(c, &deploy, at_ms)).await?;
        if let Deployed::Recorded(record) = &outcome {
            if record.kind.activates() {
                let _ = self.changes.send(StoreChange::PluginPublished {
                    tenant: record.tenant.clone(),
                });
            }
        }
        Ok(outcome)
    }

    async fn deploys(&self, tenant: &str, limit: u32) -> Result<Vec<DeployRecord>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT tenant, number, kind, digest, size, deployed_by, at_ms, reactivates, message
                 FROM plugin_deploys WHERE tenant = ?1 ORDER BY number DESC LIMIT ?2",
            )?
            .query_map(params![tenant, limit], deploy_record)?
            .collect()
        })
        .await
    }

    async fn set_shadow(&self, tenant: &str, setting: Option<ShadowSetting>) -> Result<()> {
        let tenant = tenant.to_string();
        let name = tenant.clone();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM shadow_runs WHERE tenant = ?1")?
                .execute(params![tenant])?;
            c.prepare_cached("DELETE FROM plugin_shadows WHERE tenant = ?1")?
                .execute(params![tenant])?;
            if let Some(s) = &setting {
                c.prepare_cached(
                    "INSERT INTO plugin_shadows (tenant, number, digest, share, since_ms, set_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    s.tenant,
                    s.number,
                    s.digest,
                    s.share,
                    s.since_ms as i64,
                    s.by
                ])?;
            }
            Ok(())
        })
        .await?;
        let _ = self
            .changes
            .send(StoreChange::PluginPublished { tenant: name });
        Ok(())
    }

    async fn shadows(&self) -> Result<Vec<ShadowSetting>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT tenant, number, digest, share, since_ms, set_by FROM plugin_shadows
                 ORDER BY tenant",
            )?
            .query_map([], |r| {
                Ok(ShadowSetting {
                    tenant: r.get(0)?,
                    number: r.get(1)?,
                    digest: r.get(2)?,
                    share: r.get(3)?,
                    since_ms: r.get::<_, i64>(4)?.max(0) as u64,
                    by: r.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn record_shadow_run(&self, run: &ShadowRun) -> Result<()> {
        let record = serde_json::to_string(run)?;
        let run = run.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO shadow_runs (tenant, number, seq, attempt, verdict, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, number, seq, attempt)
                 DO UPDATE SET verdict = excluded.verdict, record = excluded.record",
            )?
            .execute(params![
                run.tenant,
                run.number,
                run.seq,
                run.attempt,
                run.verdict,
                record
            ])?;
            Ok(())
        })
        .await
    }

    async fn shadow_report(&self, tenant: &str, number: u32, limit: u32) -> Result<ShadowReport> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let counts = c
                .prepare_cached(
                    "SELECT verdict, COUNT(*) FROM shadow_runs WHERE tenant = ?1 AND number = ?2
                     GROUP BY verdict",
                )?
                .query_map(params![tenant, number], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let differing = c
                .prepare_cached(
                    "SELECT record FROM shadow_runs
                     WHERE tenant = ?1 AND number = ?2 AND verdict <> 'same'
                     ORDER BY seq DESC, attempt DESC LIMIT ?3",
                )?
                .query_map(params![tenant, number, limit], |r| {
                    let text: String = r.get(0)?;
                    serde_json::from_str::<ShadowRun>(&text).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ShadowReport { counts, differing })
        })
        .await
    }

    async fn create_token(&self, info: &TokenInfo, hash: &[u8; 32]) -> Result<()> {
        let (info, hash) = (info.clone(), *hash);
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO api_tokens (id, tenant, name, scopes, hash, created_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                info.id,
                info.tenant,
                info.name,
                scopes_text(&info.scopes),
                hash.as_slice(),
                info.created_at_ms as i64,
                info.expires_at_ms.map(|v| v as i64),
            ])?;
            Ok(())
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>> {
        let id = id.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS}, hash FROM api_tokens WHERE id = ?1"
            ))?
            .query_row(params![id], |r| {
                Ok(StoredToken {
                    info: token_info(r)?,
                    hash: r.get(8)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR tenant = ?1
                 ORDER BY created_at_ms, id"
            ))?
            .query_map(params![tenant], token_info)?
            .collect()
        })
        .await
    }

    async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>> {
        let (id, at_ms) = (id.to_string(), now_ms() as i64);
        self.write(move |c| {
            Ok(c.prepare_cached(&format!(
                "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE id = ?1
                 RETURNING {TOKEN_COLUMNS}"
            ))?
            .query_row(params![id, at_ms], token_info)
            .optional()?)
        })
        .await
    }

    async fn token_used(&self, id: &str, at_ms: u64) -> Result<()> {
        let id = id.to_string();
        self.write(move |c| {
            c.prepare_cached("UPDATE api_tokens SET last_used_at_ms = ?2 WHERE id = ?1")?
                .execute(params![id, at_ms as i64])?;
            Ok(())
        })
        .await
    }

    async fn journal_page(
        &self,
        tenant: &str,
        after_seq: i64,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<JournaledEvent>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT e.seq, e.tenant, e.source, e.received_at_ms, e.body, e.event, e.state,
                     (SELECT a.record FROM attempts a WHERE a.event_seq = e.seq
                      ORDER BY a.attempt DESC LIMIT 1)
                 FROM events e WHERE e.tenant = ?1 AND e.seq > ?2 AND e.received_at_ms >= ?3
                 ORDER BY e.seq LIMIT ?4",
            )?
            .query_map(params![tenant, after_seq, since_ms as i64, limit], |r| {
                let last_attempt = r
                    .get::<_, Option<String>>(7)?
                    .map(|text| serde_json::from_str::<AttemptRecord>(&text))
                    .transpose()
                    .map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            7,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?;
                Ok(JournaledEvent {
                    event: stored(r)?,
                    state: state_column(r, 6)?,
                    last_attempt,
                })
            })?
            .collect()
        })
        .await
    }

    async fn event_tenant(&self, seq: i64) -> Result<Option<String>> {
        self.read(move |c| {
            c.prepare_cached("SELECT tenant FROM events WHERE seq = ?1")?
                .query_row(params![seq], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn published_plugins(&self) -> Result<Vec<PublishedPlugin>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT tenant, digest, size, published_at_ms FROM plugin_pointers ORDER BY tenant",
            )?
            .query_map([], |r| {
                Ok(PublishedPlugin {
                    tenant: r.get(0)?,
                    digest: r.get(1)?,
                    size: r.get::<_, i64>(2)?.max(0) as u64,
                    published_at_ms: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })?
            .collect()
        })
        .await
    }

    async fn plugin_component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let digest = digest.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT component FROM plugin_components WHERE digest = ?1")?
                .query_row(params![digest], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn publish_config(&self, text: &str) -> Result<PublishedConfig> {
        let published = PublishedConfig {
            text: text.to_string(),
            digest: component_digest(text.as_bytes()),
            published_at_ms: now_ms(),
        };
        let row = published.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO published_config (one, text, digest, published_at_ms) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (one) DO UPDATE SET text = excluded.text, digest = excluded.digest,
                     published_at_ms = excluded.published_at_ms",
            )?
            .execute(params![row.text, row.digest, row.published_at_ms as i64])?;
            Ok(())
        })
        .await?;
        let _ = self.changes.send(StoreChange::ConfigPublished);
        Ok(published)
    }

    async fn published_config(&self) -> Result<Option<PublishedConfig>> {
        self.read(|c| {
            c.prepare_cached("SELECT text, digest, published_at_ms FROM published_config")?
                .query_row([], |r| {
                    Ok(PublishedConfig {
                        text: r.get(0)?,
                        digest: r.get(1)?,
                        published_at_ms: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })
                .optional()
        })
        .await
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<StoreChange> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        self.write(|c| {
            c.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn replay(&self, seq: i64) -> Result<Replay> {
        self.write(move |c| {
            let found: Option<(String, String)> = c
                .prepare_cached("SELECT state, tenant FROM events WHERE seq = ?1")?
                .query_row(params![seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((state, tenant)) = found else {
                return Ok(Replay::NotFound);
            };
            let state: EventState = state.parse()?;
            if matches!(state, EventState::Pending | EventState::Running) {
                return Ok(Replay::NotFinished(state));
            }
            let now = now_ms() as i64;
            c.prepare_cached(
                "UPDATE events SET state = 'pending', attempt_base = attempts, next_attempt_at_ms = ?2,
                     finished_at_ms = NULL, last_error = NULL
                 WHERE seq = ?1",
            )?
            .execute(params![seq, now])?;
            head_for_replayed(c, seq, now)?;
            Ok(Replay::Replayed { tenant })
        })
        .await
    }

    async fn replay_dead(&self, tenant: &str, since_ms: Option<u64>) -> Result<Vec<i64>> {
        let tenant = tenant.to_string();
        self.write(move |c| {
            let now = now_ms() as i64;
            let mut stmt = c.prepare_cached(
                "UPDATE events SET state = 'pending', attempt_base = attempts, next_attempt_at_ms = ?3,
                     finished_at_ms = NULL, last_error = NULL
                 WHERE tenant = ?1 AND state = 'dead' AND finished_at_ms >= ?2 RETURNING seq",
            )?;
            let mut seqs = stmt
                .query_map(params![tenant, since_ms.unwrap_or(0) as i64, now], |r| {
                    r.get::<_, i64>(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            seqs.sort_unstable();
            // Oldest first: the first of each order becomes its head.
            for &seq in &seqs {
                head_for_replayed(c, seq, now)?;
            }
            Ok(seqs)
        })
        .await
    }

    async fn prune(&self, before_ms: u64, limit: u32) -> Result<u64> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM events WHERE seq IN (
                         SELECT seq FROM events WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?1 LIMIT ?2)",
                )?
                .execute(params![before_ms as i64, limit])?;
            Ok(n as u64)
        })
        .await
    }

    async fn oldest_unfinished(&self, tenant: &str) -> Result<Option<u64>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            // Sequence numbers follow receipt: the first pending or running one, through the
            // (tenant, state, seq) index, two lookups.
            c.prepare_cached(
                "SELECT MIN(received_at_ms) FROM events WHERE seq IN (
                     SELECT MIN(seq) FROM events WHERE tenant = ?1 AND state = 'pending'
                     UNION ALL
                     SELECT MIN(seq) FROM events WHERE tenant = ?1 AND state = 'running')",
            )?
            .query_row(params![tenant], |r| r.get::<_, Option<i64>>(0))
            .map(|at| at.map(|v| v.max(0) as u64))
        })
        .await
    }

    async fn kv_get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.read(move |c| {
            c.prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND key = ?2")?
                .query_row(params![tenant, key], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn kv_list(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<String>> {
        let (tenant, prefix) = (tenant.to_string(), prefix.to_string());
        // Keys only: a plugin listing keys must not make the host read every value.
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT key FROM kv
                 WHERE tenant = ?1 AND key >= ?2 AND key < ?2 || char(1114111)
                 ORDER BY key LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![tenant, prefix, limit], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn kv_count(&self, tenant: &str) -> Result<u64> {
        if let Some(n) = self.kv_counts.lock().expect("kv count cache").get(tenant) {
            return Ok(*n);
        }
        let name = tenant.to_string();
        let n = self
            .read(move |c| {
                c.prepare_cached("SELECT keys FROM kv_counts WHERE tenant = ?1")?
                    .query_row(params![name], |r| r.get::<_, i64>(0))
                    .optional()
                    .map(|n| n.unwrap_or(0).max(0) as u64)
            })
            .await?;
        self.kv_counts
            .lock()
            .expect("kv count cache")
            .entry(tenant.to_string())
            .or_insert(n);
        Ok(n)
    }

    async fn kv_entries(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvEntry>> {
        let (tenant, prefix) = (tenant.to_string(), prefix.to_string());
        let after = after.map(str::to_string);
        self.read(move |c| {
            // A range scan on the primary key (BINARY collation is byte order); char(1114111) is
            // the largest code point, so the range covers every key that starts with the prefix.
            let mut stmt = c.prepare_cached(
                "SELECT key, value, updated_at_ms FROM kv
                 WHERE tenant = ?1 AND key >= ?2 AND key < ?2 || char(1114111)
                   AND (?4 IS NULL OR key > ?4)
                 ORDER BY key LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![tenant, prefix, limit, after], |r| {
                Ok(KvEntry {
                    key: r.get(0)?,
                    value: r.get(1)?,
                    updated_at_ms: r.get::<_, i64>(2)? as u64,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn events(
        &self,
        tenant: &str,
        limit: u32,
        before_seq: Option<i64>,
        filter: &EventFilter,
    ) -> Result<Vec<EventSummary>> {
        let tenant = tenant.to_string();
        let filter = filter.clone();
        self.read(move |c| {
            // One statement for every filter combination: an absent filter is NULL and matches
            // all. The state filter uses the (tenant, state, seq) index, the others scan the
            // tenant's events newest first and stop at `limit`.
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM events
                 WHERE tenant = ?1 AND seq < ?2
                   AND (?4 IS NULL OR state = ?4)
                   AND (?5 IS NULL OR json_extract(event, '$.order_id') = ?5
                                   OR json_extract(event, '$.merchant_ref') = ?5)
                   AND (?6 IS NULL OR received_at_ms >= ?6)
                   AND (?7 IS NULL OR received_at_ms < ?7)
                   AND (?8 IS NULL OR source = ?8)
                   AND (?9 IS NULL OR json_extract(event, '$.id') = ?9)
                 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    tenant,
                    before_seq.unwrap_or(i64::MAX),
                    limit,
                    filter.state.map(|s| s.as_str()),
                    filter.order,
                    filter.since_ms.map(|v| v as i64),
                    filter.until_ms.map(|v| v as i64),
                    filter.source,
                    filter.event_id,
                ],
                summary,
            )?;
            rows.collect()
        })
        .await
    }

    async fn event_counts(&self, tenant: &str) -> Result<std::collections::BTreeMap<String, u64>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let mut counts: std::collections::BTreeMap<String, u64> = EventState::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), 0))
                .collect();
            let mut stmt = c.prepare_cached(
                "SELECT state, COUNT(*) FROM events WHERE tenant = ?1 GROUP BY state",
            )?;
            let rows = stmt.query_map(params![tenant], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            for row in rows {
                let (state, n) = row?;
                counts.insert(state, n);
            }
            Ok(counts)
        })
        .await
    }

    async fn event_detail(&self, seq: i64) -> Result<Option<EventDetail>> {
        self.read(move |c| {
            let Some((summary, headers, body)) = c
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS}, headers, body FROM events WHERE seq = ?1"
                ))?
                .query_row(params![seq], |r| {
                    let headers: String = r.get(11)?;
                    let body: Vec<u8> = r.get(12)?;
                    Ok((summary(r)?, headers, body))
                })
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = c.prepare_cached(
                "SELECT record FROM attempts WHERE event_seq = ?1 ORDER BY attempt",
            )?;
            let attempts = stmt
                .query_map(params![seq], |r| r.get::<_, String>(0))?
                .map(|r| {
                    r.and_then(|text| {
                        serde_json::from_str::<AttemptRecord>(&text).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                0,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(EventDetail {
                summary,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                body: String::from_utf8_lossy(&body).into_owned(),
                attempts_detail: attempts,
            }))
        })
        .await
    }

    async fn activity(&self, tenant: &str, since_ms: u64, limit: u32) -> Result<ActivityRows> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            // The events alive in the window without reading the tenant's history: those after
            // the newest one received before the window (an index walk back through the
            // window), the unfinished ones (state index) and those finished in the window
            // (finish index).
            let mut stmt = c.prepare_cached(
                "SELECT seq, received_at_ms, finished_at_ms FROM events
                 WHERE tenant = ?1 AND seq > COALESCE((SELECT seq FROM events
                     WHERE tenant = ?1 AND received_at_ms < ?2 ORDER BY seq DESC LIMIT 1), -1)
                 UNION
                 SELECT seq, received_at_ms, finished_at_ms FROM events
                 WHERE tenant = ?1 AND state IN ('pending', 'running')
                 UNION
                 SELECT seq, received_at_ms, finished_at_ms FROM events
                 WHERE finished_at_ms >= ?2 AND tenant = ?1
                 ORDER BY seq DESC LIMIT ?3",
            )?;
            let mut rows = ActivityRows::default();
            let mut seqs = Vec::new();
            for row in stmt.query_map(params![tenant, since_ms as i64, i64::from(limit) + 1], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                ))
            })? {
                let (seq, received_at_ms, finished_at_ms) = row?;
                if seqs.len() == limit as usize {
                    rows.truncated = true;
                    break;
                }
                seqs.push(seq);
                rows.events.push(EventSpan {
                    received_at_ms,
                    finished_at_ms,
                });
            }
            let mut stmt = c.prepare_cached(
                "SELECT json_extract(record, '$.started_at_ms'), json_extract(record, '$.duration_us'),
                        json_extract(record, '$.outcome')
                 FROM attempts WHERE event_seq = ?1 AND json_extract(record, '$.started_at_ms') >= ?2",
            )?;
            for seq in seqs {
                for sample in stmt.query_map(params![seq, since_ms as i64], |r| {
                    Ok(AttemptSample {
                        started_at_ms: r.get::<_, i64>(0)? as u64,
                        duration_us: r.get::<_, i64>(1)? as u64,
                        kind: AttemptKind::of_tag(&r.get::<_, String>(2)?),
                    })
                })? {
                    rows.attempts.push(sample?);
                }
            }
            Ok(rows)
        })
        .await
    }
}

/// Records `deploy` as its tenant's next history entry (the writer runs one transaction at a
/// time, so numbers follow each other).
fn deploy_in(c: &Connection, deploy: &NewDeploy, at_ms: u64) -> Result<Deployed> {
    let number: u32 = c
        .prepare_cached(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM plugin_deploys WHERE tenant = ?1",
        )?
        .query_row(params![deploy.tenant], |r| r.get(0))?;
    let kind = deploy.action.kind();
    let (reactivates, message) = (deploy.action.target(), deploy.action.reason());
    let (digest, size) = match (&deploy.action, deploy.action.component()) {
        (_, Some(component)) => {
            let digest = component_digest(component);
            c.prepare_cached(
                "INSERT INTO plugin_components (digest, component, stored_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO NOTHING",
            )?
            .execute(params![digest, component, at_ms as i64])?;
            (digest, component.len() as u64)
        }
        (DeployAction::Refused { digest, size, .. }, None) => (digest.clone(), *size),
        (_, None) => {
            let target = c
                .prepare_cached(
                    "SELECT digest, size FROM plugin_deploys
                     WHERE tenant = ?1 AND number = ?2 AND kind <> 'refused'",
                )?
                .query_row(params![deploy.tenant, reactivates], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?;
            let Some((digest, size)) = target else {
                return Ok(Deployed::NoSuchEntry);
            };
            (digest, size.max(0) as u64)
        }
    };
    if kind.activates() {
        c.prepare_cached(
            "INSERT INTO plugin_pointers (tenant, digest, size, published_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant) DO UPDATE SET digest = excluded.digest, size = excluded.size,
                 published_at_ms = excluded.published_at_ms",
        )?
        .execute(params![deploy.tenant, digest, size as i64, at_ms as i64])?;
    }
    let record = DeployRecord {
        tenant: deploy.tenant.clone(),
        number,
        kind,
        digest,
        size,
        by: deploy.by.clone(),
        at_ms,
        reactivates,
        message,
    };
    c.prepare_cached(
        "INSERT INTO plugin_deploys
             (tenant, number, kind, digest, size, deployed_by, at_ms, reactivates, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        record.tenant,
        record.number,
        record.kind.as_str(),
        record.digest,
        record.size as i64,
        record.by,
        record.at_ms as i64,
        record.reactivates,
        record.message,
    ])?;
    Ok(Deployed::Recorded(record))
}

/// A `plugin_deploys` row.
fn deploy_record(r: &Row) -> rusqlite::Result<DeployRecord> {
    Ok(DeployRecord {
        tenant: r.get(0)?,
        number: r.get(1)?,
        kind: DeployKind::parse(&r.get::<_, String>(2)?),
        digest: r.get(3)?,
        size: r.get::<_, i64>(4)?.max(0) as u64,
        by: r.get(5)?,
        at_ms: r.get::<_, i64>(6)?.max(0) as u64,
        reactivates: r.get(7)?,
        message: r.get(8)?,
    })
}

/// The columns [`token_info`] reads.
const TOKEN_COLUMNS: &str =
    "id, tenant, name, scopes, created_at_ms, expires_at_ms, last_used_at_ms, revoked_at_ms";

/// An `api_tokens` row (without its hash).
fn token_info(r: &Row) -> rusqlite::Result<TokenInfo> {
    let millis = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
    };
    Ok(TokenInfo {
        id: r.get(0)?,
        tenant: r.get(1)?,
        name: r.get(2)?,
        scopes: stored_scopes(&r.get::<_, String>(3)?),
        created_at_ms: millis(4)?.unwrap_or(0),
        expires_at_ms: millis(5)?,
        last_used_at_ms: millis(6)?,
        revoked_at_ms: millis(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{event, event_of};

    /// A journal written before schema versions existed (version 0, the first step's tables,
    /// events without a delivery key) is brought up to date at open: the key is computed for
    /// every existing event as the host computes it, and nothing else changes.
    #[tokio::test]
    async fn an_older_journal_is_migrated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            let mut insert = conn
                .prepare(
                    "INSERT INTO events (tenant, source, dedupe_key, state, next_attempt_at_ms, received_at_ms, headers, body, event)
                     VALUES ('acme', 'fc', ?1, 'pending', 1, 1, '[]', x'7b7d', ?2)",
                )
                .unwrap();
            let mut by_ref = crate::event::NormalizedEvent::sample("r", None);
            by_ref.merchant_ref = Some("#7".into());
            for event in [
                crate::event::NormalizedEvent::sample("o", Some("o-1")),
                by_ref,
                crate::event::NormalizedEvent::sample("alone", None),
            ] {
                insert
                    .execute(params![event.id, serde_json::to_string(&event).unwrap()])
                    .unwrap();
            }
            let running = crate::event::NormalizedEvent::sample("run", Some("o-2"));
            conn.execute(
                "INSERT INTO events (tenant, source, dedupe_key, state, running_since_ms, running_version, next_attempt_at_ms, received_at_ms, headers, body, event)
                 VALUES ('acme', 'fc', 'run', 'running', 77, 'v1', 1, 1, '[]', x'7b7d', ?1)",
                params![serde_json::to_string(&running).unwrap()],
            )
            .unwrap();
        }
        let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
        store.append(event("new")).await.unwrap();
        // Every order got its head (the new event's order o1 is one of its own); the event the
        // old hookhost left running has an expired lease, for the reaper.
        let claims = store
            .claim("acme", "me", ClaimLimit::batch(10), 1000)
            .await
            .unwrap()
            .claims;
        assert_eq!(claims.len(), 4);
        let expired = store.expired_leases(10).await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].started, Some((77, "v1".to_string())));
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let keys: Vec<(String, String)> = conn
            .prepare("SELECT dedupe_key, delivery_key FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            keys,
            [
                ("o".to_string(), "order:o-1".to_string()),
                ("r".to_string(), "ref:#7".to_string()),
                ("alone".to_string(), "event:alone".to_string()),
                ("run".to_string(), "order:o-2".to_string()),
                ("new".to_string(), "order:o1".to_string()),
            ]
        );
        // Opening again changes nothing.
        SqliteStorage::open(&path, Durability::Durable).unwrap();
    }

    #[test]
    fn a_journal_from_a_newer_hookhost_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
            .unwrap();
        let err = SqliteStorage::open(&path, Durability::Durable)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("newer than this hookhost knows"), "{err}");
    }

    #[tokio::test]
    async fn leases_left_by_a_stopped_process_expire_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let (started, idle) = {
            let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
            store.append(event_of("e1", None)).await.unwrap();
            store.append(event_of("e2", None)).await.unwrap();
            store.append(event_of("e3", Some("o3"))).await.unwrap();
            let claims = store
                .claim("acme", "old", ClaimLimit::batch(2), 60_000)
                .await
                .unwrap()
                .claims;
            store
                .mark_started(claims[0].claim.lease, 1234, "v9")
                .await
                .unwrap();
            // A later write commits after the start mark (the writer is FIFO).
            store.ping().await.unwrap();
            assert!(store.expired_leases(10).await.unwrap().is_empty());
            (claims[0].claim.lease, claims[1].claim.lease)
        };
        let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
        let expired = store.expired_leases(10).await.unwrap();
        assert_eq!(
            expired
                .iter()
                .map(|e| (e.claim.lease, e.started.clone()))
                .collect::<Vec<_>>(),
            [(started, Some((1234, "v9".to_string()))), (idle, None)]
        );
        // Running means started: the claim that never started is still pending.
        assert_eq!(
            store
                .events("acme", 10, None, &EventFilter::state(EventState::Running))
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_second_process_cannot_open_a_database_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let _first = SqliteStorage::open(&path, Durability::Durable).unwrap();
        let err = SqliteStorage::open(&path, Durability::Durable)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("in use by another hookhost"), "{err}");
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        {
            let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
            store.append(event_of("e1", None)).await.unwrap();
            store.append(event_of("e2", None)).await.unwrap();
        }
        let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
        let claims = store
            .claim("acme", "me", ClaimLimit::batch(10), 1000)
            .await
            .unwrap()
            .claims;
        let ids: Vec<String> = claims.into_iter().map(|c| c.event.event.id).collect();
        assert_eq!(ids, vec!["e1", "e2"]);
        assert!(matches!(
            store.append(event_of("e1", None)).await.unwrap(),
            Appended::Duplicate(_)
        ));
    }

    /// Writes share a transaction without savepoints; when one fails part-way, its changes are
    /// undone and the others in its batch still commit, each caller getting its own result.
    #[tokio::test]
    async fn a_failing_write_is_undone_alone_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStorage::open(&dir.path().join("h.db"), Durability::Fast).unwrap();
        let set = |key: &'static str| {
            move |c: &Connection| -> Result<()> {
                c.execute(
                    "INSERT INTO kv (tenant, key, value, updated_at_ms) VALUES ('acme', ?1, x'01', 0)",
                    params![key],
                )?;
                Ok(())
            }
        };
        // Hold the writer so that the next writes queue up and run as one batch (a job may run
        // twice, so two releases).
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (hold_done, _hold) = oneshot::channel();
        store
            .enqueue(
                move |_: &Connection| {
                    let _ = held.recv();
                    Ok(())
                },
                hold_done,
            )
            .await
            .unwrap();
        let (a_tx, a) = oneshot::channel();
        store.enqueue(set("a"), a_tx).await.unwrap();
        let (b_tx, b) = oneshot::channel();
        let set_b = set("b");
        store
            .enqueue(
                move |c: &Connection| -> Result<()> {
                    set_b(c)?;
                    anyhow::bail!("the job failed after its first change")
                },
                b_tx,
            )
            .await
            .unwrap();
        let (c_tx, c) = oneshot::channel();
        store.enqueue(set("c"), c_tx).await.unwrap();
        // The second release finds nobody when the job ran once and was dropped: that is fine.
        release.send(()).unwrap();
        let _ = release.send(());

        a.await.unwrap().unwrap();
        let failed = b.await.unwrap().unwrap_err().to_string();
        assert!(failed.contains("failed after its first change"), "{failed}");
        c.await.unwrap().unwrap();
        assert!(store.kv_get("acme", "a").await.unwrap().is_some());
        assert_eq!(
            store.kv_get("acme", "b").await.unwrap(),
            None,
            "the failed job's change is undone"
        );
        assert!(store.kv_get("acme", "c").await.unwrap().is_some());
        // The writer goes on as before.
        store.append(event_of("e1", None)).await.unwrap();
        assert_eq!(
            store
                .claim("acme", "me", ClaimLimit::batch(10), 1000)
                .await
                .unwrap()
                .claims
                .len(),
            1
        );
    }
}

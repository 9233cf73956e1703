//! The embedded default store: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread that takes whatever commands have queued up and runs
//! them in a single transaction, so concurrent webhooks share one fsync (group commit). Each
//! command runs inside its own savepoint: one failing command does not undo the others. Reads use
//! a small pool of read-only connections, which WAL lets run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;

use anyhow::{anyhow, Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};

use super::{
    Appended, AttemptRecord, BoxFuture, EventDetail, EventFilter, EventState, EventSummary,
    FinishedAttempt, KvEntry, KvWrite, NewEvent, Replay, Storage, StoredEvent,
};
use crate::config::Durability;
use crate::now_ms;

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
];

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

/// A write run inside the writer's transaction (in its own savepoint); it returns what to do once
/// the transaction is committed (or failed to commit): reply to its caller.
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Option<&str>) + Send>;

/// The SQLite store.
pub struct SqliteStorage {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and starts the writer thread.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStorage> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
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
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn, path)?;
        let (tx, rx) = mpsc::channel(4096);
        thread::Builder::new()
            .name("hookhost-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .context("cannot start the database writer thread")?;
        Ok(SqliteStorage {
            path: path.to_path_buf(),
            writer: tx,
            readers: Mutex::new(Vec::new()),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.readers.lock().expect("reader pool poisoned").pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_context(|| format!("cannot open {} for reading", self.path.display()))?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().expect("reader pool poisoned");
        if pool.len() < 16 {
            pool.push(conn);
        }
        result.context("database read failed")
    }

    /// Runs `f` in the writer's next transaction (in a savepoint of its own) and waits for the
    /// commit.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_as(Undo::Savepoint, f).await
    }

    /// Like [`Self::write`], with the given way to undo a failed job.
    async fn write_as<T: Send + 'static>(
        &self,
        undo: Undo,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(undo, f, tx).await?;
        rx.await
            .map_err(|_| anyhow!("the database writer has stopped"))?
    }

    /// Queues `f` for the writer's next transaction and reports to `reply` after the commit.
    async fn enqueue<T: Send + 'static>(
        &self,
        undo: Undo,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
        reply: oneshot::Sender<Result<T>>,
    ) -> Result<()> {
        let job: Job = Box::new(move |conn| {
            let result = match undo {
                Undo::Savepoint => in_savepoint(conn, f),
                Undo::Statement => f(conn),
            };
            Box::new(move |commit_error: Option<&str>| {
                let _ = reply.send(match commit_error {
                    Some(e) => Err(anyhow!("database commit failed: {e}")),
                    None => result,
                });
            })
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| anyhow!("the database writer has stopped"))
    }
}

/// How a failed job's changes are undone without undoing the rest of its batch.
#[derive(Clone, Copy)]
enum Undo {
    /// The job runs in a savepoint of its own, rolled back if it fails part-way.
    Savepoint,
    /// The job makes at most one change, with one statement, which SQLite undoes by itself if it
    /// fails: no savepoint (two statements fewer on the hottest jobs, append and start mark).
    Statement,
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, &mut batch);
    }
}

/// Runs every queued job in one transaction (one fsync for all of them), then completes them.
fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let message = format!("cannot start a database transaction: {e}");
            tracing::error!("{message}");
            // Run nothing; every caller gets the error.
            for job in batch.drain(..) {
                drop(job);
            }
            return;
        }
    };
    let completions: Vec<Completion> = batch.drain(..).map(|job| job(&tx)).collect();
    let commit_error = tx.commit().err().map(|e| e.to_string());
    if let Some(e) = &commit_error {
        tracing::error!("database commit failed: {e}");
    }
    for complete in completions {
        complete(commit_error.as_deref());
    }
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    // Cached statements: the writer runs these for every job, so they are parsed once.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Err(e)
        }
    }
}

fn append(conn: &Connection, ev: &NewEvent) -> Result<Appended> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (tenant, source, dedupe_key, state, next_attempt_at_ms, received_at_ms, headers, body, event, delivery_key)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (tenant, source, dedupe_key) DO NOTHING
             RETURNING seq",
        )?
        .query_row(
            params![
                ev.tenant,
                ev.source,
                ev.event.id,
                ev.received_at_ms as i64,
                serde_json::to_string(&ev.headers)?,
                ev.body,
                serde_json::to_string(&ev.event)?,
                ev.event.delivery_key(),
            ],
            |r| r.get::<_, i64>(0),
        )
        .optional()?;
    if let Some(seq) = inserted {
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

fn finish(conn: &Connection, fin: &FinishedAttempt) -> Result<()> {
    if !fin.kv_writes.is_empty() {
        for read in &fin.kv_reads {
            let current: Option<Vec<u8>> = conn
                .prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND key = ?2")?
                .query_row(params![fin.tenant, read.key], |r| r.get(0))
                .optional()?;
            if current.as_deref().map(super::kv_digest) != read.seen {
                return Err(super::KvConflict {
                    key: read.key.clone(),
                }
                .into());
            }
        }
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
    let updated = conn.prepare_cached(
        "UPDATE events SET state = ?2, attempts = ?3, next_attempt_at_ms = ?4, finished_at_ms = ?5, last_error = ?6,
             running_since_ms = NULL, running_version = NULL
         WHERE seq = ?1",
    )?
    .execute(params![
        fin.seq,
        fin.next_state.as_str(),
        fin.record.attempt,
        fin.next_attempt_at_ms as i64,
        finished_at,
        last_error,
    ])?;
    if updated != 1 {
        anyhow::bail!(
            "event {} is not in the journal; its attempt is not recorded",
            fin.seq
        );
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO attempts (event_seq, attempt, record) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        fin.seq,
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
    if added != 0 {
        conn.prepare_cached(
            "INSERT INTO kv_counts (tenant, keys) VALUES (?1, ?2)
             ON CONFLICT (tenant) DO UPDATE SET keys = keys + excluded.keys",
        )?
        .execute(params![fin.tenant, added])?;
    }
    Ok(())
}

/// The state stored in column `index`; a name this version does not know is an error, never a
/// silent `pending`.
fn state_column(row: &Row<'_>, index: usize) -> rusqlite::Result<EventState> {
    row.get::<_, String>(index)?.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

const STORED_COLUMNS: &str =
    "seq, tenant, source, received_at_ms, attempts, next_attempt_at_ms, body, event, attempt_base, state, running_since_ms, running_version";

fn stored(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let event: String = r.get(7)?;
    let running = state_column(r, 9)? == EventState::Running;
    Ok(StoredEvent {
        seq: r.get(0)?,
        tenant: r.get(1)?,
        source: r.get(2)?,
        received_at_ms: r.get::<_, i64>(3)? as u64,
        attempts: r.get(4)?,
        next_attempt_at_ms: r.get::<_, i64>(5)? as u64,
        body: r.get(6)?,
        event: serde_json::from_str(&event).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e))
        })?,
        attempt_base: r.get(8)?,
        interrupted: match running {
            true => Some((
                r.get::<_, Option<i64>>(10)?.unwrap_or(0) as u64,
                r.get::<_, Option<String>>(11)?.unwrap_or_default(),
            )),
            false => None,
        },
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

impl Storage for SqliteStorage {
    fn append(&self, event: std::sync::Arc<NewEvent>) -> BoxFuture<'_, Result<Appended>> {
        // One change: the insert, or (a duplicate) the duplicate count's update.
        Box::pin(self.write_as(Undo::Statement, move |c| append(c, &event)))
    }

    fn finish_attempt(&self, finished: FinishedAttempt) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |c| finish(c, &finished)))
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(|c| {
            c.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?;
            Ok(())
        }))
    }

    fn release_attempt(&self, seq: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |c| {
            c.prepare_cached(
                "UPDATE events SET state = 'pending', running_since_ms = NULL, running_version = NULL
                 WHERE seq = ?1 AND state = 'running'",
            )?
            .execute(params![seq])?;
            Ok(())
        }))
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
            let (reply, _ignored) = oneshot::channel();
            self.enqueue(
                Undo::Statement,
                move |c| {
                    c.prepare_cached(
                        "UPDATE events SET state = 'running', running_since_ms = ?3, running_version = ?4
                         WHERE seq = ?1 AND attempts = ?2 - 1",
                    )?
                    .execute(params![seq, attempt, started_at_ms as i64, version])?;
                    Ok(())
                },
                reply,
            )
            .await
        })
    }

    fn unfinished(&self) -> Result<Vec<StoredEvent>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {STORED_COLUMNS} FROM events WHERE state IN ('pending', 'running') ORDER BY seq"
            ))?;
            let rows = stmt.query_map([], stored)?;
            rows.collect()
        })
    }

    fn replay(&self, seq: i64) -> BoxFuture<'_, Result<Replay>> {
        Box::pin(self.write(move |c| {
            let state: Option<String> = c
                .prepare_cached("SELECT state FROM events WHERE seq = ?1")?
                .query_row(params![seq], |r| r.get(0))
                .optional()?;
            let Some(state) = state else { return Ok(Replay::NotFound) };
            let state: EventState = state.parse()?;
            if matches!(state, EventState::Pending | EventState::Running) {
                return Ok(Replay::NotFinished(state));
            }
            let event = c
                .prepare_cached(&format!(
                    "UPDATE events SET state = 'pending', attempt_base = attempts, next_attempt_at_ms = ?2,
                         finished_at_ms = NULL, last_error = NULL
                     WHERE seq = ?1 RETURNING {STORED_COLUMNS}"
                ))?
                .query_row(params![seq, now_ms() as i64], stored)?;
            Ok(Replay::Replayed(Box::new(event)))
        }))
    }

    fn replay_dead(
        &self,
        tenant: &str,
        since_ms: Option<u64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>>> {
        let tenant = tenant.to_string();
        Box::pin(self.write(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "UPDATE events SET state = 'pending', attempt_base = attempts, next_attempt_at_ms = ?3,
                     finished_at_ms = NULL, last_error = NULL
                 WHERE tenant = ?1 AND state = 'dead' AND finished_at_ms >= ?2 RETURNING {STORED_COLUMNS}"
            ))?;
            let mut events = stmt
                .query_map(params![tenant, since_ms.unwrap_or(0) as i64, now_ms() as i64], stored)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            events.sort_by_key(|e| e.seq);
            Ok(events)
        }))
    }

    fn prune(&self, before_ms: u64, limit: u32) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM events WHERE seq IN (
                         SELECT seq FROM events WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?1 LIMIT ?2)",
                )?
                .execute(params![before_ms as i64, limit])?;
            Ok(n as u64)
        }))
    }

    fn kv_get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND key = ?2")?
                .query_row(params![tenant, key], |r| r.get(0))
                .optional()
        })
    }

    fn kv_list(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<String>> {
        // Keys only: a plugin listing keys must not make the host read every value.
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key FROM kv
                 WHERE tenant = ?1 AND key >= ?2 AND key < ?2 || char(1114111)
                 ORDER BY key LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![tenant, prefix, limit], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn kv_count(&self, tenant: &str) -> Result<u64> {
        self.read(|c| {
            c.prepare_cached("SELECT keys FROM kv_counts WHERE tenant = ?1")?
                .query_row(params![tenant], |r| r.get::<_, i64>(0))
                .optional()
                .map(|n| n.unwrap_or(0).max(0) as u64)
        })
    }

    fn kv_entries(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvEntry>> {
        self.read(|c| {
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
    }

    fn events(
        &self,
        tenant: &str,
        limit: u32,
        before_seq: Option<i64>,
        filter: &EventFilter,
    ) -> Result<Vec<EventSummary>> {
        self.read(|c| {
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
                ],
                summary,
            )?;
            rows.collect()
        })
    }

    fn event_counts(&self, tenant: &str) -> Result<std::collections::BTreeMap<String, u64>> {
        self.read(|c| {
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
    }

    fn event_detail(&self, seq: i64) -> Result<Option<EventDetail>> {
        self.read(|c| {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::event;

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
        }
        let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
        store.append(event("new")).await.unwrap();
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
    async fn a_started_attempt_is_seen_as_interrupted_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let seq = {
            let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
            let Appended::Accepted(seq) = store.append(event("e1")).await.unwrap() else {
                panic!()
            };
            store.start_attempt(seq, 1, 1234, "v9").await.unwrap();
            // A later write commits after the start mark (the writer is FIFO).
            store.append(event("e2")).await.unwrap();
            seq
        };
        let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
        let unfinished = store.unfinished().unwrap();
        assert_eq!(unfinished[0].seq, seq);
        assert_eq!(unfinished[0].interrupted, Some((1234, "v9".to_string())));
        assert_eq!(unfinished[1].interrupted, None);
        assert_eq!(
            store
                .events("acme", 10, None, &EventFilter::state(EventState::Running))
                .unwrap()
                .len(),
            1
        );
        // A stale start mark (wrong attempt number) changes nothing.
        store
            .start_attempt(unfinished[1].seq, 5, 1, "v9")
            .await
            .unwrap();
        store.append(event("e3")).await.unwrap();
        assert_eq!(store.unfinished().unwrap()[1].interrupted, None);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        {
            let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
            store.append(event("e1")).await.unwrap();
            store.append(event("e2")).await.unwrap();
        }
        let store = SqliteStorage::open(&path, Durability::Durable).unwrap();
        let ids: Vec<_> = store
            .unfinished()
            .unwrap()
            .into_iter()
            .map(|e| e.event.id)
            .collect();
        assert_eq!(ids, vec!["e1", "e2"]);
        assert!(matches!(
            store.append(event("e1")).await.unwrap(),
            Appended::Duplicate(_)
        ));
    }
}

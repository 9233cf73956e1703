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
    Appended, AttemptRecord, BoxFuture, EventDetail, EventState, EventSummary, FinishedAttempt,
    KvEntry, KvWrite, NewEvent, Storage, StoredEvent,
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
CREATE INDEX IF NOT EXISTS events_pending ON events (seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS events_by_tenant ON events (tenant, seq);
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

enum Command {
    Append(Box<NewEvent>, oneshot::Sender<Result<Appended>>),
    Finish(Box<FinishedAttempt>, oneshot::Sender<Result<()>>),
}

/// The SQLite store.
pub struct SqliteStorage {
    path: PathBuf,
    writer: mpsc::Sender<Command>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and starts the writer thread.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStorage> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| {
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
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("cannot create the schema in {}", path.display()))?;
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

    async fn send<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .await
            .map_err(|_| anyhow!("the database writer has stopped"))?;
        rx.await
            .map_err(|_| anyhow!("the database writer has stopped"))?
    }
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, &mut batch);
    }
}

enum Reply {
    Append(oneshot::Sender<Result<Appended>>, Result<Appended>),
    Finish(oneshot::Sender<Result<()>>, Result<()>),
}

fn run_batch(conn: &mut Connection, batch: &mut Vec<Command>) {
    let mut replies = Vec::with_capacity(batch.len());
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            for cmd in batch.drain(..) {
                fail(cmd, &e);
            }
            return;
        }
    };
    for cmd in batch.drain(..) {
        match cmd {
            Command::Append(ev, reply) => {
                let r = in_savepoint(&tx, |sp| append(sp, &ev));
                replies.push(Reply::Append(reply, r));
            }
            Command::Finish(fin, reply) => {
                let r = in_savepoint(&tx, |sp| finish(sp, &fin));
                replies.push(Reply::Finish(reply, r));
            }
        }
    }
    if let Err(e) = tx.commit() {
        let message = format!("database commit failed: {e}");
        tracing::error!("{message}");
        for reply in replies {
            match reply {
                Reply::Append(s, _) => drop(s.send(Err(anyhow!(message.clone())))),
                Reply::Finish(s, _) => drop(s.send(Err(anyhow!(message.clone())))),
            }
        }
        return;
    }
    for reply in replies {
        match reply {
            Reply::Append(s, r) => drop(s.send(r)),
            Reply::Finish(s, r) => drop(s.send(r)),
        }
    }
}

fn fail(cmd: Command, e: &rusqlite::Error) {
    let message = format!("cannot start a database transaction: {e}");
    match cmd {
        Command::Append(_, s) => drop(s.send(Err(anyhow!(message)))),
        Command::Finish(_, s) => drop(s.send(Err(anyhow!(message)))),
    }
}

fn in_savepoint<T>(
    tx: &rusqlite::Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    tx.execute_batch("SAVEPOINT cmd")?;
    match f(tx) {
        Ok(v) => {
            tx.execute_batch("RELEASE cmd")?;
            Ok(v)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO cmd; RELEASE cmd")?;
            Err(e)
        }
    }
}

fn append(conn: &Connection, ev: &NewEvent) -> Result<Appended> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (tenant, source, dedupe_key, state, next_attempt_at_ms, received_at_ms, headers, body, event)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?5, ?6, ?7)
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
        "UPDATE events SET state = ?2, attempts = ?3, next_attempt_at_ms = ?4, finished_at_ms = ?5, last_error = ?6
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

const SUMMARY_COLUMNS: &str = "seq, tenant, source, state, attempts, received_at_ms, finished_at_ms, next_attempt_at_ms, last_error, duplicates, event";

fn summary(row: &Row<'_>) -> rusqlite::Result<EventSummary> {
    let state = EventState::parse(&row.get::<_, String>(3)?);
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
    fn append(&self, event: NewEvent) -> BoxFuture<'_, Result<Appended>> {
        Box::pin(self.send(move |tx| Command::Append(Box::new(event), tx)))
    }

    fn finish_attempt(&self, finished: FinishedAttempt) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.send(move |tx| Command::Finish(Box::new(finished), tx)))
    }

    fn unfinished(&self) -> Result<Vec<StoredEvent>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT seq, tenant, source, received_at_ms, attempts, next_attempt_at_ms, body, event
                 FROM events WHERE state = 'pending' ORDER BY seq",
            )?;
            let rows = stmt.query_map([], |r| {
                let event: String = r.get(7)?;
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
                })
            })?;
            rows.collect()
        })
    }

    fn kv_get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND key = ?2")?
                .query_row(params![tenant, key], |r| r.get(0))
                .optional()
        })
    }

    fn kv_list(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<String>> {
        Ok(self
            .kv_entries(tenant, prefix, limit)?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }

    fn kv_count(&self, tenant: &str) -> Result<u64> {
        self.read(|c| {
            c.prepare_cached("SELECT keys FROM kv_counts WHERE tenant = ?1")?
                .query_row(params![tenant], |r| r.get::<_, i64>(0))
                .optional()
                .map(|n| n.unwrap_or(0).max(0) as u64)
        })
    }

    fn kv_entries(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<KvEntry>> {
        self.read(|c| {
            // A range scan on the primary key (BINARY collation is byte order); char(1114111) is
            // the largest code point, so the range covers every key that starts with the prefix.
            let mut stmt = c.prepare_cached(
                "SELECT key, value, updated_at_ms FROM kv
                 WHERE tenant = ?1 AND key >= ?2 AND key < ?2 || char(1114111)
                 ORDER BY key LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![tenant, prefix, limit], |r| {
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
    ) -> Result<Vec<EventSummary>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM events WHERE tenant = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![tenant, before_seq.unwrap_or(i64::MAX), limit], summary)?;
            rows.collect()
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
    use crate::event::{CanonicalStatus, EventKind, NormalizedEvent};
    use crate::storage::{AttemptOutcome, LogLine};

    fn event(id: &str) -> NewEvent {
        NewEvent {
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
        }
    }

    fn record(attempt: u32, outcome: AttemptOutcome) -> AttemptRecord {
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

    #[tokio::test]
    async fn append_dedupes_atomically_even_when_concurrent() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(
            SqliteStorage::open(&dir.path().join("h.db"), Durability::Durable).unwrap(),
        );
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
        assert_eq!(store.events("acme", 10, None).unwrap()[0].duplicates, 19);
    }

    #[tokio::test]
    async fn finish_commits_kv_with_the_outcome_and_counts_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStorage::open(&dir.path().join("h.db"), Durability::Fast).unwrap();
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
                next_state: EventState::Pending,
                next_attempt_at_ms: 5000,
            })
            .await
            .unwrap();
        let summary = &store.events("acme", 10, None).unwrap()[0];
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

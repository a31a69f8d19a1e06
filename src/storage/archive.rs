//! The Waku message archive: `<data_dir>/archive.sqlite3`, the messages of our
//! conversations as they travelled (encoded WakuMessages, MLS ciphertext inside), keyed
//! by the 14/WAKU2-MESSAGE deterministic hash. The relay archives what it receives and
//! publishes, serves it to peers over 13/WAKU2-STORE, and uses it to tell which
//! history it still lacks (see `docs/WAKU.md`).
//!
//! A file of its own, not a table of `demls.sqlite3`: the relay writes it from its own
//! task while the runtime holds transactions on the main database, and losing it loses
//! nothing but history others can serve again.
//!
//! Bounded by age and size (`[store] max_age`, `max_bytes`): messages older than
//! `max_age` (by their timestamp) go first, then the oldest until the encoded messages
//! fit in `max_bytes`. Pruning runs at open, then after every [`PRUNE_EVERY`] inserts,
//! after a minute of inserts, and at once when an insert takes the archive over its size.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use demls_transport::waku::store::{
    ArchiveError, ArchivedMessage, Filter, MessageArchive, MessageHash, Page, Query,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};

use super::{BUSY_TIMEOUT, StorageError, create_private_dir, create_private_file};

/// The archive file inside the data directory.
pub const ARCHIVE_FILE: &str = "archive.sqlite3";
/// `PRAGMA application_id` of an archive ("DMLA").
pub const ARCHIVE_APPLICATION_ID: i32 = 0x444D_4C41;
/// Pruning runs after this many inserts at the latest.
pub const PRUNE_EVERY: u32 = 256;
/// …or when the last pruning is this old and a message comes in.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Pruning by size goes down to this share of `max_bytes`, so that it does not run on
/// every insert once the archive is full.
const PRUNE_TO: f64 = 0.9;

struct Inner {
    conn: Connection,
    /// Encoded bytes held (kept up to date by inserts and pruning).
    bytes: u64,
    inserts: u32,
    pruned_at: Instant,
}

/// The SQLite archive.
pub struct SqliteArchive {
    inner: Mutex<Inner>,
    max_age: Duration,
    max_bytes: u64,
}

fn backend(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Backend(e.to_string())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl SqliteArchive {
    /// Opens (creating it, mode 0600, if missing) the archive in `data_dir`, and prunes
    /// it. A file that is another application's SQLite database is refused untouched.
    pub fn open(data_dir: &Path, max_age: Duration, max_bytes: u64) -> Result<Self, StorageError> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(ARCHIVE_FILE);
        if !path.exists() {
            create_private_file(&path)?;
        }
        let corrupt = |e: rusqlite::Error| StorageError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(corrupt)?;
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(corrupt)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(corrupt)?;
        if app_id != ARCHIVE_APPLICATION_ID && (app_id != 0 || tables > 0) {
            return Err(StorageError::Foreign {
                path,
                found: app_id,
            });
        }
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "application_id", ARCHIVE_APPLICATION_ID)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (
                 hash          BLOB PRIMARY KEY,
                 pubsub_topic  TEXT NOT NULL,
                 content_topic TEXT NOT NULL,
                 ts            INTEGER NOT NULL,
                 data          BLOB NOT NULL
             );
             CREATE INDEX IF NOT EXISTS messages_order ON messages (ts, hash);
             CREATE INDEX IF NOT EXISTS messages_topics
                 ON messages (pubsub_topic, content_topic, ts);",
        )?;
        let bytes: i64 = conn.query_row(
            "SELECT COALESCE(SUM(length(data)), 0) FROM messages",
            [],
            |r| r.get(0),
        )?;
        let a = Self {
            inner: Mutex::new(Inner {
                conn,
                bytes: bytes.max(0) as u64,
                inserts: 0,
                pruned_at: Instant::now(),
            }),
            max_age,
            max_bytes,
        };
        a.prune(now_ns()).map_err(|e| StorageError::Corrupt {
            path: data_dir.join(ARCHIVE_FILE),
            reason: e.to_string(),
        })?;
        Ok(a)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, ArchiveError> {
        self.inner
            .lock()
            .map_err(|_| backend("archive lock poisoned"))
    }

    /// (messages, encoded bytes) held.
    pub fn size(&self) -> Result<(u64, u64), ArchiveError> {
        let i = self.lock()?;
        let n: i64 = i
            .conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .map_err(backend)?;
        Ok((n.max(0) as u64, i.bytes))
    }

    /// Deletes messages older than `max_age` before `now_ns`, then the oldest until the
    /// rest fits in `max_bytes`. Returns how many were deleted.
    pub fn prune(&self, now_ns: i64) -> Result<u64, ArchiveError> {
        let mut i = self.lock()?;
        self.prune_locked(&mut i, now_ns)
    }

    fn prune_locked(&self, i: &mut Inner, now_ns: i64) -> Result<u64, ArchiveError> {
        i.inserts = 0;
        i.pruned_at = Instant::now();
        let age = i64::try_from(self.max_age.as_nanos()).unwrap_or(i64::MAX);
        let cutoff = now_ns.saturating_sub(age);
        let mut deleted = i
            .conn
            .execute("DELETE FROM messages WHERE ts < ?1", params![cutoff])
            .map_err(backend)? as u64;
        if deleted > 0 {
            let b: i64 = i
                .conn
                .query_row(
                    "SELECT COALESCE(SUM(length(data)), 0) FROM messages",
                    [],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            i.bytes = b.max(0) as u64;
        }
        if i.bytes > self.max_bytes {
            let target = (self.max_bytes as f64 * PRUNE_TO) as u64;
            while i.bytes > target {
                // The oldest in chunks: sizes first, then delete up to where it fits.
                let oldest: Vec<(Vec<u8>, i64)> = {
                    let mut st = i
                        .conn
                        .prepare(
                            "SELECT hash, length(data) FROM messages ORDER BY ts, hash LIMIT 500",
                        )
                        .map_err(backend)?;
                    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(backend)?
                        .collect::<Result<_, _>>()
                        .map_err(backend)?
                };
                if oldest.is_empty() {
                    i.bytes = 0;
                    break;
                }
                let tx = i.conn.unchecked_transaction().map_err(backend)?;
                let mut freed = 0u64;
                let mut n = 0u64;
                for (hash, len) in &oldest {
                    if i.bytes.saturating_sub(freed) <= target {
                        break;
                    }
                    tx.execute("DELETE FROM messages WHERE hash = ?1", params![hash])
                        .map_err(backend)?;
                    freed += (*len).max(0) as u64;
                    n += 1;
                }
                tx.commit().map_err(backend)?;
                i.bytes = i.bytes.saturating_sub(freed);
                deleted += n;
            }
        }
        if deleted > 0 {
            tracing::debug!(deleted, bytes = i.bytes, "archive pruned");
        }
        Ok(deleted)
    }
}

impl MessageArchive for SqliteArchive {
    fn insert(&self, m: &ArchivedMessage) -> Result<bool, ArchiveError> {
        let mut i = self.lock()?;
        let n = i
            .conn
            .execute(
                "INSERT OR IGNORE INTO messages (hash, pubsub_topic, content_topic, ts, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    m.hash.as_slice(),
                    m.pubsub_topic,
                    m.content_topic,
                    m.timestamp,
                    m.data
                ],
            )
            .map_err(backend)?;
        if n == 0 {
            return Ok(false);
        }
        i.bytes += m.data.len() as u64;
        i.inserts += 1;
        if i.bytes > self.max_bytes
            || i.inserts >= PRUNE_EVERY
            || i.pruned_at.elapsed() >= PRUNE_INTERVAL
        {
            self.prune_locked(&mut i, now_ns())?;
        }
        Ok(true)
    }

    fn query(&self, q: &Query) -> Result<Page, ArchiveError> {
        let i = self.lock()?;
        let mut sql = String::from(
            "SELECT hash, pubsub_topic, content_topic, ts, data FROM messages WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        let list = |n: usize| vec!["?"; n].join(",");
        match &q.filter {
            Filter::Content {
                pubsub_topic,
                content_topics,
                time_start,
                time_end,
            } => {
                if let Some(p) = pubsub_topic {
                    sql.push_str(" AND pubsub_topic = ?");
                    args.push(Value::Text(p.clone()));
                }
                if !content_topics.is_empty() {
                    sql.push_str(&format!(
                        " AND content_topic IN ({})",
                        list(content_topics.len())
                    ));
                    args.extend(content_topics.iter().map(|c| Value::Text(c.clone())));
                }
                if let Some(t) = time_start {
                    sql.push_str(" AND ts >= ?");
                    args.push(Value::Integer(*t));
                }
                if let Some(t) = time_end {
                    sql.push_str(" AND ts < ?");
                    args.push(Value::Integer(*t));
                }
            }
            Filter::Hashes(h) => {
                sql.push_str(&format!(" AND hash IN ({})", list(h.len())));
                args.extend(h.iter().map(|x| Value::Blob(x.to_vec())));
            }
        }
        if let Some(c) = q.cursor {
            let ts: i64 = i
                .conn
                .query_row(
                    "SELECT ts FROM messages WHERE hash = ?1",
                    params![c.as_slice()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?
                .ok_or(ArchiveError::UnknownCursor)?;
            let op = if q.forward { ">" } else { "<" };
            sql.push_str(&format!(" AND (ts {op} ? OR (ts = ? AND hash {op} ?))"));
            args.extend([
                Value::Integer(ts),
                Value::Integer(ts),
                Value::Blob(c.to_vec()),
            ]);
        }
        let dir = if q.forward { "ASC" } else { "DESC" };
        sql.push_str(&format!(" ORDER BY ts {dir}, hash {dir} LIMIT ?"));
        args.push(Value::Integer(q.limit as i64 + 1));
        let mut st = i.conn.prepare(&sql).map_err(backend)?;
        let rows = st
            .query_map(params_from_iter(args), |r| {
                let hash: Vec<u8> = r.get(0)?;
                Ok((hash, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(backend)?;
        let mut entries = Vec::new();
        for row in rows {
            let (hash, pubsub_topic, content_topic, timestamp, data) = row.map_err(backend)?;
            let Ok(hash) = <MessageHash>::try_from(hash.as_slice()) else {
                continue;
            };
            entries.push(ArchivedMessage {
                hash,
                pubsub_topic,
                content_topic,
                timestamp,
                data,
            });
        }
        let more = entries.len() > q.limit;
        entries.truncate(q.limit);
        Ok(Page { entries, more })
    }

    fn latest_timestamp(
        &self,
        pubsub_topic: &str,
        content_topics: &[String],
    ) -> Result<Option<i64>, ArchiveError> {
        if content_topics.is_empty() {
            return Ok(None);
        }
        let i = self.lock()?;
        let sql = format!(
            "SELECT MAX(ts) FROM messages WHERE pubsub_topic = ? AND content_topic IN ({})",
            vec!["?"; content_topics.len()].join(",")
        );
        let args = std::iter::once(Value::Text(pubsub_topic.to_string()))
            .chain(content_topics.iter().map(|c| Value::Text(c.clone())));
        i.conn
            .query_row(&sql, params_from_iter(args), |r| r.get(0))
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests;

//! The node's database: one SQLite file, `<data_dir>/demls.sqlite3`.
//!
//! It is marked as ours with `PRAGMA application_id` and a `meta` table holding the
//! schema version and the address of the key it was created for. [`Storage::open`]
//! refuses — without writing a byte — a file that is not SQLite or is corrupt, an SQLite
//! database that is not ours, one written by a newer schema, and one created for a
//! different identity. Next to our tables live OpenMLS's (see [`mls`]).
//!
//! **Durability.** OpenMLS writes through the same connection as our own tables
//! ([`Storage::provider`]), so the runtime can run a protocol call inside one transaction
//! ([`Storage::begin`] … [`Storage::commit`]): OpenMLS's changes, the conversation's state
//! row and the chat messages it received are committed together, or not at all
//! ([`Storage::rollback`]), and only then are its packets published.
//!
//! Conversations that crashed the node, or that cannot be restored, are recorded in the
//! `quarantine` table with the reason ([`Storage::quarantine`]); the node loads them
//! quarantined instead of running them again. The table was added without changing the
//! schema version: it is created when missing, and builds that predate it ignore it.

pub mod archive;
pub mod mls;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use demls_core::identity::MemberId;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub use mls::{JsonCodec, MlsStorage, NodeProvider};
pub use openmls_rust_crypto::RustCrypto;

/// The database file inside the data directory.
pub const DB_FILE: &str = "demls.sqlite3";
/// `PRAGMA application_id` of a demls-node database ("DMLS").
pub const APPLICATION_ID: i32 = 0x444D_4C53;
/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory or file could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not an SQLite file at all, or a damaged one.
    #[error("{path} is not a usable SQLite database ({reason}); it was left untouched")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An SQLite database of some other application.
    #[error(
        "{path} is not a demls-node database (application id {found:#010x}); it was left untouched"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its application id.
        found: i32,
    },
    /// Written by a newer demls-node.
    #[error(
        "{path} has schema version {found}, newer than this build's {SCHEMA_VERSION}; upgrade demls-node"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
    },
    /// Created for another key.
    #[error(
        "{path} belongs to identity {stored}, but this node's key is {ours}; use that key or another data_dir"
    )]
    IdentityMismatch {
        /// The file.
        path: PathBuf,
        /// The address recorded in the file.
        stored: String,
        /// The address of the key in use.
        ours: MemberId,
    },
    /// An SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// OpenMLS's table migrations failed.
    #[error("OpenMLS storage migration failed: {0}")]
    Migration(String),
}

/// A stored chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Position in its conversation, from 1.
    pub seq: u64,
    /// Sender address (EIP-55).
    pub sender: String,
    /// Text.
    pub text: String,
    /// MLS epoch it was sent in.
    pub epoch: u64,
    /// Sender's timestamp, ms since the Unix epoch.
    pub timestamp: u64,
    /// Its SDS message id (hex), when it came under SDS.
    pub sds_id: Option<String>,
    /// For our own messages: how far it got.
    pub delivery: Option<Delivery>,
}

/// How far one of our chat messages got (from the protocol's `ChatDelivery` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Members whose messages showed they have it.
    pub acked: u32,
    /// Members it was sent to.
    pub of: u32,
    /// Final: everyone has it, or the node stopped re-sending.
    pub done: bool,
}

/// A conversation recorded as quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    /// Conversation name.
    pub name: String,
    /// Why it was quarantined (one line).
    pub reason: String,
    /// When, ms since the Unix epoch.
    pub since: u64,
}

/// A conversation row as read at start-up: its state, or why it cannot be read.
pub type ConversationRow = (String, Result<Vec<u8>, String>);

/// The node's database.
#[derive(Debug)]
pub struct Storage {
    conn: Connection,
    path: PathBuf,
    address: MemberId,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|source| StorageError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn create_private_file(path: &Path) -> Result<(), StorageError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .map(drop)
        .map_err(|source| StorageError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Storage {
    /// Opens (creating on first use) the database in `data_dir` for the node whose key
    /// has address `address`.
    pub fn open(data_dir: &Path, address: MemberId) -> Result<Self, StorageError> {
        let path = data_dir.join(DB_FILE);
        let fresh = match fs::metadata(&path) {
            Ok(m) => m.len() == 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(StorageError::Io { path, source: e }),
        };
        if !fresh {
            Self::check_existing(&path, address)?;
        }
        create_private_dir(data_dir)?;
        if fresh {
            // The file holds MLS private keys: owner-only from the start (SQLite gives its
            // -wal and -shm files the same mode).
            create_private_file(&path)?;
        }
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Self::configure(&conn)?;
        if fresh {
            Self::create_schema(&mut conn, address)?;
        }
        mls::migrate(&mut conn).map_err(StorageError::Migration)?;
        Self::create_quarantine_table(&conn)?;
        Self::create_chat_ids_table(&conn)?;
        Ok(Self {
            conn,
            path,
            address,
        })
    }

    /// Read-only checks of an existing file; nothing is written.
    fn check_existing(path: &Path, address: MemberId) -> Result<(), StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let mut header = [0u8; 16];
        {
            use std::io::Read;
            let mut f = fs::File::open(path).map_err(|source| StorageError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            f.read_exact(&mut header)
                .map_err(|_| corrupt("file too short for an SQLite header".into()))?;
        }
        if &header != SQLITE_MAGIC {
            return Err(corrupt("no SQLite header".into()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| corrupt(e.to_string()))?;
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        if app_id != APPLICATION_ID {
            return Err(StorageError::Foreign {
                path: path.to_path_buf(),
                found: app_id,
            });
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        if check != "ok" {
            return Err(corrupt(format!("integrity check: {check}")));
        }
        let meta = |key: &str| -> Result<Option<String>, StorageError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| corrupt(format!("meta table: {e}")))
        };
        let version: i64 = meta("schema_version")?
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("no schema version recorded".into()))?;
        if version > SCHEMA_VERSION {
            return Err(StorageError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let stored = meta("address")?.ok_or_else(|| corrupt("no address recorded".into()))?;
        let matches = stored
            .parse::<MemberId>()
            .map(|m| m == address)
            .unwrap_or(false);
        if !matches {
            return Err(StorageError::IdentityMismatch {
                path: path.to_path_buf(),
                stored,
                ours: address,
            });
        }
        Ok(())
    }

    fn configure(conn: &Connection) -> Result<(), StorageError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(())
    }

    fn create_schema(conn: &mut Connection, address: MemberId) -> Result<(), StorageError> {
        let tx = conn.transaction()?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.execute_batch(
            "CREATE TABLE meta (
                 key   TEXT PRIMARY KEY,
                 value TEXT NOT NULL
             );
             CREATE TABLE conversations (
                 name       TEXT PRIMARY KEY,
                 state_blob BLOB NOT NULL,
                 updated_at INTEGER NOT NULL
             );
             CREATE TABLE messages (
                 conversation TEXT NOT NULL,
                 seq          INTEGER NOT NULL,
                 sender       TEXT NOT NULL,
                 text         TEXT NOT NULL,
                 epoch        INTEGER NOT NULL,
                 timestamp    INTEGER NOT NULL,
                 PRIMARY KEY (conversation, seq)
             );",
        )?;
        Self::create_quarantine_table(&tx)?;
        let mut ins = tx.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
        ins.execute(params!["schema_version", SCHEMA_VERSION.to_string()])?;
        ins.execute(params!["address", address.to_string()])?;
        ins.execute(params!["created_at", now_ms().to_string()])?;
        drop(ins);
        tx.commit()?;
        Ok(())
    }

    /// Added after schema version 1 without a version change: created when missing.
    /// SDS ids of chat messages and, for ours, how far each got.
    fn create_chat_ids_table(conn: &Connection) -> Result<(), StorageError> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS chat_ids (
                 conversation TEXT NOT NULL,
                 seq          INTEGER NOT NULL,
                 sds_id       TEXT NOT NULL,
                 acked        INTEGER,
                 recipients   INTEGER,
                 done         INTEGER,
                 PRIMARY KEY (conversation, seq)
             );
             CREATE INDEX IF NOT EXISTS chat_ids_by_id ON chat_ids (conversation, sds_id);",
        )?;
        Ok(())
    }

    /// Added after schema version 1 without a version change: created when missing.
    fn create_quarantine_table(conn: &Connection) -> Result<(), StorageError> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS quarantine (
                 name   TEXT PRIMARY KEY,
                 reason TEXT NOT NULL,
                 since  INTEGER NOT NULL
             );",
        )?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The identity the database belongs to.
    pub fn address(&self) -> MemberId {
        self.address
    }

    /// An OpenMLS provider over this storage's connection (see [`mls`]): what OpenMLS
    /// writes through it belongs to the transaction open on the storage, if any.
    pub fn provider<'a>(&'a self, crypto: &'a RustCrypto) -> NodeProvider<'a> {
        NodeProvider::new(crypto, &self.conn)
    }

    /// Opens a write transaction: every write from now on — ours and OpenMLS's through
    /// [`Storage::provider`] — is durable only once [`Storage::commit`] succeeds, and is
    /// undone by [`Storage::rollback`]. Transactions do not nest.
    pub fn begin(&self) -> Result<(), StorageError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits the open transaction. On error the transaction may still be open: call
    /// [`Storage::rollback`].
    pub fn commit(&self) -> Result<(), StorageError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Undoes the open transaction, if one is open (SQLite may already have rolled it
    /// back after an error). Never fails: if even the rollback fails, the connection is
    /// left for SQLite to roll back when it closes, and the error is logged.
    pub fn rollback(&self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "rollback failed");
        }
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Runs `f` atomically: in a savepoint, so it works inside an open transaction (and
    /// then commits with it) as well as on its own.
    fn atomically<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.conn.execute_batch("SAVEPOINT demls_atomic")?;
        match f(&self.conn) {
            Ok(r) => {
                self.conn.execute_batch("RELEASE demls_atomic")?;
                Ok(r)
            }
            Err(e) => {
                let _ = self
                    .conn
                    .execute_batch("ROLLBACK TO demls_atomic; RELEASE demls_atomic");
                Err(e)
            }
        }
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// The public part of the node's MLS signature key, once saved.
    pub fn mls_public_key(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .meta_get("mls_public_key")?
            .and_then(|h| hex::decode(h).ok()))
    }

    /// Records the public part of the node's MLS signature key (its private part lives
    /// in OpenMLS's tables).
    pub fn save_mls_public_key(&self, key: &[u8]) -> Result<(), StorageError> {
        self.meta_set("mls_public_key", &hex::encode(key))
    }

    /// Saves (inserts or replaces) a conversation's serialized state.
    pub fn save_conversation(&self, name: &str, state: &[u8]) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO conversations (name, state_blob, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET state_blob = excluded.state_blob,
                                             updated_at = excluded.updated_at",
            params![name, state, now_ms()],
        )?;
        Ok(())
    }

    /// One conversation's saved state.
    pub fn load_conversation(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .conn
            .query_row(
                "SELECT state_blob FROM conversations WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every saved conversation with its state, by name.
    pub fn load_conversations(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut st = self
            .conn
            .prepare("SELECT name, state_blob FROM conversations ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every saved conversation by name, each with its state or why it cannot be read
    /// (one bad row does not hide the others).
    pub fn conversation_rows(&self) -> Result<Vec<ConversationRow>, StorageError> {
        let mut st = self
            .conn
            .prepare("SELECT name, state_blob FROM conversations ORDER BY name")?;
        let rows = st.query_map([], |r| {
            let name: String = r.get(0)?;
            let state = match r.get_ref(1)? {
                rusqlite::types::ValueRef::Blob(b) => Ok(b.to_vec()),
                rusqlite::types::ValueRef::Text(t) => Ok(t.to_vec()),
                other => Err(format!("the state is {:?}, not bytes", other.data_type())),
            };
            Ok((name, state))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The names of the saved conversations.
    pub fn list_conversations(&self) -> Result<Vec<String>, StorageError> {
        let mut st = self
            .conn
            .prepare("SELECT name FROM conversations ORDER BY name")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a conversation's state, messages (with their SDS ids) and quarantine record, atomically (inside
    /// an open transaction, as part of it). Returns whether its state existed.
    pub fn delete_conversation(&self, name: &str) -> Result<bool, StorageError> {
        self.atomically(|c| {
            let n = c.execute("DELETE FROM conversations WHERE name = ?1", [name])?;
            c.execute("DELETE FROM messages WHERE conversation = ?1", [name])?;
            c.execute("DELETE FROM chat_ids WHERE conversation = ?1", [name])?;
            c.execute("DELETE FROM quarantine WHERE name = ?1", [name])?;
            Ok(n > 0)
        })
    }

    /// Records `name` as quarantined because of `reason` (replacing an earlier record).
    pub fn quarantine(&self, name: &str, reason: &str) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO quarantine (name, reason, since) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET reason = excluded.reason, since = excluded.since",
            params![name, reason, now_ms()],
        )?;
        Ok(())
    }

    /// Removes `name`'s quarantine record; returns whether there was one.
    pub fn unquarantine(&self, name: &str) -> Result<bool, StorageError> {
        Ok(self
            .conn
            .execute("DELETE FROM quarantine WHERE name = ?1", [name])?
            > 0)
    }

    /// The quarantined conversations, by name.
    pub fn quarantined(&self) -> Result<Vec<QuarantineRecord>, StorageError> {
        let mut st = self
            .conn
            .prepare("SELECT name, reason, since FROM quarantine ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(QuarantineRecord {
                name: r.get(0)?,
                reason: r.get(1)?,
                since: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends a chat message with its SDS id and, for ours, the members it went to;
    /// returns its sequence number in the conversation.
    #[allow(clippy::too_many_arguments)]
    pub fn append_chat(
        &self,
        conversation: &str,
        sender: &str,
        text: &str,
        epoch: u64,
        timestamp: u64,
        sds_id: Option<&str>,
        recipients: Option<u32>,
    ) -> Result<u64, StorageError> {
        let seq = self.append_message(conversation, sender, text, epoch, timestamp)?;
        if let Some(id) = sds_id {
            self.conn.execute(
                "INSERT OR REPLACE INTO chat_ids (conversation, seq, sds_id, acked, recipients, done)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    conversation,
                    to_i64(seq),
                    id,
                    recipients.map(|_| 0),
                    recipients,
                    recipients.map(|r| r == 0)
                ],
            )?;
        }
        Ok(seq)
    }

    /// Records how far one of our messages got.
    pub fn update_delivery(
        &self,
        conversation: &str,
        sds_id: &str,
        d: Delivery,
    ) -> Result<(), StorageError> {
        self.conn.execute(
            "UPDATE chat_ids SET acked = ?3, recipients = ?4, done = ?5
             WHERE conversation = ?1 AND sds_id = ?2 AND recipients IS NOT NULL",
            params![conversation, sds_id, d.acked, d.of, d.done],
        )?;
        Ok(())
    }

    /// Appends a chat message; returns its sequence number in the conversation.
    pub fn append_message(
        &self,
        conversation: &str,
        sender: &str,
        text: &str,
        epoch: u64,
        timestamp: u64,
    ) -> Result<u64, StorageError> {
        // One statement: atomic on its own, and usable inside an open transaction.
        let seq: i64 = self.conn.query_row(
            "INSERT INTO messages (conversation, seq, sender, text, epoch, timestamp)
             SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5
             FROM messages WHERE conversation = ?1
             RETURNING seq",
            params![conversation, sender, text, to_i64(epoch), to_i64(timestamp)],
            |r| r.get(0),
        )?;
        Ok(seq.max(0) as u64)
    }

    /// A conversation's messages, oldest first.
    pub fn messages(&self, conversation: &str) -> Result<Vec<StoredMessage>, StorageError> {
        self.messages_after(conversation, 0, u32::MAX)
    }

    /// Up to `limit` messages with `seq > after`, oldest first.
    pub fn messages_after(
        &self,
        conversation: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        let mut st = self.conn.prepare(
            "SELECT m.seq, m.sender, m.text, m.epoch, m.timestamp,
                    c.sds_id, c.acked, c.recipients, c.done
             FROM messages m LEFT JOIN chat_ids c
               ON c.conversation = m.conversation AND c.seq = m.seq
             WHERE m.conversation = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![conversation, to_i64(after), limit], |r| {
            let acked: Option<u32> = r.get(6)?;
            let of: Option<u32> = r.get(7)?;
            let done: Option<bool> = r.get(8)?;
            Ok(StoredMessage {
                seq: r.get::<_, i64>(0)?.max(0) as u64,
                sender: r.get(1)?,
                text: r.get(2)?,
                epoch: r.get::<_, i64>(3)?.max(0) as u64,
                timestamp: r.get::<_, i64>(4)?.max(0) as u64,
                sds_id: r.get(5)?,
                delivery: match (acked, of) {
                    (Some(acked), Some(of)) => Some(Delivery {
                        acked,
                        of,
                        done: done.unwrap_or(false),
                    }),
                    _ => None,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests;

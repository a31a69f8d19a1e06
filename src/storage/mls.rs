//! The OpenMLS provider over the node's database.
//!
//! OpenMLS keeps its group state through `openmls_sqlite_storage` in the **same file** as
//! our own tables (its tables are prefixed `openmls_`, its migrations are tracked in
//! `openmls_sqlite_storage_migrations`), so one file holds everything a restart needs and
//! the identity / schema checks of [`super::Storage::open`] protect it too. The provider
//! owns a **second connection** to that file: `rusqlite::Connection` is `Send` but not
//! `Sync`, so sharing one connection would make the provider non-`Send`. The file is in
//! WAL mode with a busy timeout, so the two connections do not trip over each other.

use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::Connection;

/// The serde codec OpenMLS values are stored with (JSON).
#[derive(Default, Debug, Clone, Copy)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

/// OpenMLS storage backed by the node's SQLite file.
pub type MlsStorage = SqliteStorageProvider<JsonCodec, Connection>;

/// An [`OpenMlsProvider`]: RustCrypto for crypto and randomness, SQLite for storage.
pub struct NodeProvider {
    crypto: RustCrypto,
    storage: MlsStorage,
}

impl std::fmt::Debug for NodeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeProvider")
    }
}

impl NodeProvider {
    /// Wraps an open connection whose OpenMLS migrations have been run.
    pub fn new(connection: Connection) -> Self {
        Self {
            crypto: RustCrypto::default(),
            storage: SqliteStorageProvider::new(connection),
        }
    }
}

impl OpenMlsProvider for NodeProvider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MlsStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

/// Creates or updates OpenMLS's tables on `conn`.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), String> {
    let mut s: SqliteStorageProvider<JsonCodec, &mut Connection> = SqliteStorageProvider::new(conn);
    s.run_migrations().map_err(|e| e.to_string())
}

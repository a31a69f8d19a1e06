//! The OpenMLS provider over the node's database.
//!
//! OpenMLS keeps its group state through `openmls_sqlite_storage` in the **same file** as
//! our own tables (its tables are prefixed `openmls_`, its migrations are tracked in
//! `openmls_sqlite_storage_migrations`), so one file holds everything a restart needs and
//! the identity / schema checks of [`super::Storage::open`] protect it too.
//!
//! The provider borrows the **same connection** as [`super::Storage`]
//! ([`super::Storage::provider`]): that is what lets the runtime write OpenMLS's changes
//! and the conversation's own state in one SQLite transaction, so a crash or a failed
//! write can never leave one without the other. It is cheap to make: one is built for
//! each protocol call.

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

/// OpenMLS storage over a borrowed connection to the node's SQLite file.
pub type MlsStorage<'a> = SqliteStorageProvider<JsonCodec, &'a Connection>;

/// An [`OpenMlsProvider`]: RustCrypto for crypto and randomness, SQLite for storage.
pub struct NodeProvider<'a> {
    crypto: &'a RustCrypto,
    storage: MlsStorage<'a>,
}

impl std::fmt::Debug for NodeProvider<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeProvider")
    }
}

impl<'a> NodeProvider<'a> {
    /// A provider over `connection`, whose OpenMLS migrations have been run.
    pub fn new(crypto: &'a RustCrypto, connection: &'a Connection) -> Self {
        Self {
            crypto,
            storage: SqliteStorageProvider::new(connection),
        }
    }
}

impl<'a> OpenMlsProvider for NodeProvider<'a> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MlsStorage<'a>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        self.crypto
    }
}

/// Creates or updates OpenMLS's tables on `conn`.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), String> {
    let mut s: SqliteStorageProvider<JsonCodec, &mut Connection> = SqliteStorageProvider::new(conn);
    s.run_migrations().map_err(|e| e.to_string())
}

//! Storage: fresh open, reopen, refusals that leave the file byte-identical.

use std::fs;
use std::path::Path;

use demls_core::identity::MemberId;
use rusqlite::Connection;

use super::*;

fn addr(b: u8) -> MemberId {
    MemberId([b; 20])
}

fn bytes(p: &Path) -> Vec<u8> {
    fs::read(p).expect("read db")
}

#[test]
fn fresh_open_creates_dir_and_marks_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/data");
    let s = Storage::open(&dir, addr(1)).unwrap();
    assert!(dir.join(DB_FILE).is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    assert_eq!(s.address(), addr(1));
    let app: i32 = s
        .conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    assert_eq!(s.meta_get("schema_version").unwrap().as_deref(), Some("1"));
    assert_eq!(s.meta_get("address").unwrap(), Some(addr(1).to_string()));
    // OpenMLS's tables are there too.
    let n: i64 = s
        .conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'openmls_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(n > 0);
}

#[test]
fn reopen_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(tmp.path(), addr(2)).unwrap();
        s.save_conversation("general", b"state-1").unwrap();
        s.save_conversation("general", b"state-2").unwrap();
        s.save_conversation("other", b"x").unwrap();
        assert_eq!(s.append_message("general", "0xA", "hi", 1, 10).unwrap(), 1);
        assert_eq!(s.append_message("general", "0xB", "yo", 2, 20).unwrap(), 2);
        assert_eq!(s.append_message("other", "0xA", "o", 1, 5).unwrap(), 1);
        s.save_mls_public_key(&[1, 2, 3]).unwrap();
    }
    let s = Storage::open(tmp.path(), addr(2)).unwrap();
    assert_eq!(
        s.load_conversation("general").unwrap(),
        Some(b"state-2".to_vec())
    );
    assert_eq!(s.load_conversation("nope").unwrap(), None);
    assert_eq!(s.list_conversations().unwrap(), vec!["general", "other"]);
    assert_eq!(s.load_conversations().unwrap().len(), 2);
    let m = s.messages("general").unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(
        (
            m[1].seq,
            m[1].sender.as_str(),
            m[1].text.as_str(),
            m[1].epoch,
            m[1].timestamp
        ),
        (2, "0xB", "yo", 2, 20)
    );
    assert_eq!(s.messages_after("general", 1, 10).unwrap().len(), 1);
    assert_eq!(s.mls_public_key().unwrap(), Some(vec![1, 2, 3]));
    assert!(s.delete_conversation("general").unwrap());
    assert!(!s.delete_conversation("general").unwrap());
    assert!(s.messages("general").unwrap().is_empty());
    assert_eq!(s.messages("other").unwrap().len(), 1);
}

#[test]
fn mls_provider_shares_the_file() {
    use openmls_traits::OpenMlsProvider;
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(tmp.path(), addr(3)).unwrap();
    let p = s.mls_provider().unwrap();
    let id = demls_core::mls::MlsIdentity::create(&p, addr(3)).unwrap();
    s.save_mls_public_key(id.public_key()).unwrap();
    let pk = id.public_key().to_vec();
    drop((p, s));
    let s = Storage::open(tmp.path(), addr(3)).unwrap();
    let p = s.mls_provider().unwrap();
    let _ = p.storage();
    let again =
        demls_core::mls::MlsIdentity::load(&p, addr(3), &s.mls_public_key().unwrap().unwrap())
            .unwrap();
    assert_eq!(again.public_key(), pk.as_slice());
}

#[test]
fn foreign_database_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(DB_FILE);
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = bytes(&path);
    let err = Storage::open(tmp.path(), addr(1)).unwrap_err();
    assert!(matches!(err, StorageError::Foreign { .. }), "{err}");
    assert!(
        err.to_string().contains("not a demls-node database"),
        "{err}"
    );
    assert_eq!(bytes(&path), before);
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no journal/wal files left"
    );
}

#[test]
fn corrupt_file_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(DB_FILE);
    fs::write(
        &path,
        b"this is not a database, just some text that is long enough",
    )
    .unwrap();
    let before = bytes(&path);
    let err = Storage::open(tmp.path(), addr(1)).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(bytes(&path), before);

    // A real demls database, damaged past its header.
    let tmp2 = tempfile::tempdir().unwrap();
    drop(Storage::open(tmp2.path(), addr(1)).unwrap());
    let path2 = tmp2.path().join(DB_FILE);
    {
        // Fold the WAL in so the main file holds everything.
        let c = Connection::open(&path2).unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let mut b = bytes(&path2);
    assert!(b.len() > 8192);
    for x in &mut b[4096..8192] {
        *x = 0xA5;
    }
    fs::write(&path2, &b).unwrap();
    let err = Storage::open(tmp2.path(), addr(1)).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(bytes(&path2), b);
}

#[test]
fn identity_mismatch_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Storage::open(tmp.path(), addr(1)).unwrap());
    let path = tmp.path().join(DB_FILE);
    let before = bytes(&path);
    let err = Storage::open(tmp.path(), addr(2)).unwrap_err();
    match &err {
        StorageError::IdentityMismatch { stored, ours, .. } => {
            assert_eq!(stored, &addr(1).to_string());
            assert_eq!(*ours, addr(2));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains(&addr(1).to_string()));
    assert_eq!(bytes(&path), before);
    // The right key still opens it.
    Storage::open(tmp.path(), addr(1)).unwrap();
}

#[test]
fn newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(tmp.path(), addr(1)).unwrap();
        s.meta_set("schema_version", "99").unwrap();
    }
    let path = tmp.path().join(DB_FILE);
    let before = bytes(&path);
    let err = Storage::open(tmp.path(), addr(1)).unwrap_err();
    assert!(
        matches!(err, StorageError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert_eq!(bytes(&path), before);
}

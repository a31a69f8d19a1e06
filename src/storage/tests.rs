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
fn chat_ids_and_delivery_are_kept_with_the_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(tmp.path(), addr(2)).unwrap();
    s.append_chat("g", "0xA", "theirs", 1, 10, Some("aa"), None)
        .unwrap();
    s.append_chat("g", "0xMe", "ours", 1, 11, Some("bb"), Some(3))
        .unwrap();
    s.append_message("g", "0xA", "no sds", 1, 12).unwrap();
    let d = |acked, done| Delivery { acked, of: 3, done };
    s.update_delivery("g", "bb", d(2, false)).unwrap();
    // An id that is not ours (no recipients) is never marked.
    s.update_delivery("g", "aa", d(1, true)).unwrap();
    let m = s.messages("g").unwrap();
    assert_eq!(
        m.iter()
            .map(|m| (m.sds_id.as_deref(), m.delivery))
            .collect::<Vec<_>>(),
        vec![
            (Some("aa"), None),
            (Some("bb"), Some(d(2, false))),
            (None, None)
        ]
    );
    drop(s);
    // Reopened: the table is there, the figures too; deleting the conversation takes them.
    let s = Storage::open(tmp.path(), addr(2)).unwrap();
    assert_eq!(s.messages("g").unwrap()[1].delivery, Some(d(2, false)));
    s.save_conversation("g", b"x").unwrap();
    s.delete_conversation("g").unwrap();
    s.append_chat("g", "0xMe", "again", 1, 13, Some("bb"), Some(1))
        .unwrap();
    assert_eq!(
        s.messages("g").unwrap()[0].delivery,
        Some(Delivery {
            acked: 0,
            of: 1,
            done: false
        })
    );
}

#[test]
fn mls_provider_shares_the_file() {
    use openmls_traits::OpenMlsProvider;
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(tmp.path(), addr(3)).unwrap();
    let crypto = RustCrypto::default();
    let p = s.provider(&crypto);
    let id = demls_core::mls::MlsIdentity::create(&p, addr(3)).unwrap();
    s.save_mls_public_key(id.public_key()).unwrap();
    let pk = id.public_key().to_vec();
    drop(s);
    let s = Storage::open(tmp.path(), addr(3)).unwrap();
    let p = s.provider(&crypto);
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

fn mls_key_stored(s: &Storage, crypto: &RustCrypto, pk: &[u8]) -> bool {
    demls_core::mls::MlsIdentity::load(&s.provider(crypto), addr(4), pk).is_ok()
}

#[test]
fn one_transaction_covers_openmls_and_our_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(tmp.path(), addr(4)).unwrap();
    let crypto = RustCrypto::default();

    // Rolled back: neither OpenMLS's write nor ours is there.
    s.begin().unwrap();
    assert!(s.in_transaction());
    let id = demls_core::mls::MlsIdentity::create(&s.provider(&crypto), addr(4)).unwrap();
    let pk = id.public_key().to_vec();
    s.save_conversation("c", b"state").unwrap();
    assert_eq!(s.append_message("c", "0xA", "hi", 1, 1).unwrap(), 1);
    assert!(
        mls_key_stored(&s, &crypto, &pk),
        "visible inside the transaction"
    );
    s.rollback();
    assert!(!s.in_transaction());
    assert!(
        !mls_key_stored(&s, &crypto, &pk),
        "OpenMLS's write was rolled back"
    );
    assert_eq!(s.load_conversation("c").unwrap(), None);
    assert!(s.messages("c").unwrap().is_empty());
    s.rollback(); // no transaction open: a no-op

    // Committed: both, and they survive a reopen.
    s.begin().unwrap();
    let id = demls_core::mls::MlsIdentity::create(&s.provider(&crypto), addr(4)).unwrap();
    let pk = id.public_key().to_vec();
    s.save_conversation("c", b"state").unwrap();
    s.commit().unwrap();
    drop(s);
    let s = Storage::open(tmp.path(), addr(4)).unwrap();
    assert!(mls_key_stored(&s, &crypto, &pk));
    assert_eq!(s.load_conversation("c").unwrap(), Some(b"state".to_vec()));
}

#[test]
fn a_failing_write_leaves_the_transaction_for_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(tmp.path(), addr(5)).unwrap();
    s.save_conversation("c", b"v1").unwrap();
    s.conn
        .execute_batch(
            "CREATE TRIGGER t BEFORE UPDATE ON conversations
               BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .unwrap();
    s.begin().unwrap();
    s.append_message("c", "0xA", "m", 1, 1).unwrap();
    let err = s.save_conversation("c", b"v2").unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    s.rollback();
    assert_eq!(s.load_conversation("c").unwrap(), Some(b"v1".to_vec()));
    assert!(
        s.messages("c").unwrap().is_empty(),
        "the message went with it"
    );
}

#[test]
fn delete_is_atomic_inside_and_outside_a_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(tmp.path(), addr(6)).unwrap();
    s.save_conversation("c", b"x").unwrap();
    s.append_message("c", "0xA", "m", 1, 1).unwrap();
    s.quarantine("c", "why").unwrap();
    // Inside a transaction that is rolled back: everything is still there.
    s.begin().unwrap();
    assert!(s.delete_conversation("c").unwrap());
    assert!(
        s.in_transaction(),
        "the savepoint does not end the transaction"
    );
    s.rollback();
    assert!(s.load_conversation("c").unwrap().is_some());
    assert_eq!(s.messages("c").unwrap().len(), 1);
    assert_eq!(s.quarantined().unwrap().len(), 1);
    // On its own: all of it goes.
    assert!(s.delete_conversation("c").unwrap());
    assert!(!s.in_transaction());
    assert!(s.load_conversation("c").unwrap().is_none());
    assert!(s.messages("c").unwrap().is_empty());
    assert!(s.quarantined().unwrap().is_empty());
}

#[test]
fn quarantine_records_survive_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(tmp.path(), addr(7)).unwrap();
        s.quarantine("b", "first").unwrap();
        s.quarantine("a", "panicked in packet: boom").unwrap();
        s.quarantine("b", "second").unwrap();
    }
    let s = Storage::open(tmp.path(), addr(7)).unwrap();
    let q = s.quarantined().unwrap();
    assert_eq!(
        q.iter()
            .map(|r| (r.name.as_str(), r.reason.as_str()))
            .collect::<Vec<_>>(),
        [("a", "panicked in packet: boom"), ("b", "second")]
    );
    assert!(q[0].since > 0);
    assert!(s.unquarantine("a").unwrap());
    assert!(!s.unquarantine("a").unwrap());
    assert_eq!(s.quarantined().unwrap().len(), 1);
}

#[test]
fn a_database_without_the_quarantine_table_gets_it() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Storage::open(tmp.path(), addr(8)).unwrap());
    {
        // As written by a build that predates the table.
        let c = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        c.execute_batch("DROP TABLE quarantine;").unwrap();
    }
    let s = Storage::open(tmp.path(), addr(8)).unwrap();
    s.quarantine("x", "y").unwrap();
    assert_eq!(s.meta_get("schema_version").unwrap().as_deref(), Some("1"));
}

#[test]
fn one_bad_row_does_not_hide_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(tmp.path(), addr(9)).unwrap();
    s.save_conversation("a", b"fine").unwrap();
    s.conn
        .execute(
            "INSERT INTO conversations (name, state_blob, updated_at) VALUES ('b', 42, 0)",
            [],
        )
        .unwrap();
    s.save_conversation("c", b"also fine").unwrap();
    let rows = s.conversation_rows().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], ("a".to_string(), Ok(b"fine".to_vec())));
    assert!(
        rows[1].1.as_ref().unwrap_err().contains("Integer"),
        "{rows:?}"
    );
    assert_eq!(rows[2].1, Ok(b"also fine".to_vec()));
}

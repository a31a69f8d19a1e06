//! The saved-state format: `Conversation::save` writes JSON that a node keeps on disk and
//! reads back after an upgrade, so its shape must not change by accident. The files in
//! `tests/data/` were saved by simulated members in busy states (proposals open with
//! votes, approved work waiting, an emergency open, an urgent removal, approvals
//! inherited from the conversation sync, a catch-up under way, a freeze round holding a
//! candidate, a reelection, a join waiting for its welcome and one given up); each must
//! read and save again to the same JSON.

use demls_core::conversation::Conversation;
use serde_json::Value;

/// The saved states, each named after what it holds.
const FILES: &[&str] = &[
    "voting.json",
    "approved_waiting.json",
    "emergency_open.json",
    "urgent_removal.json",
    "inherited_approvals.json",
    "catching_up.json",
    "freezing.json",
    "reelection.json",
    "pending_join.json",
    "join_expired.json",
];

/// Top-level keys a saved state may lack (state saved by an older build): each is read
/// as its default (`None` for an `Option`, or `#[serde(default)]`). Every other key is
/// required.
const OPTIONAL_KEYS: &[&str] = &[
    "anchor",
    "closed",
    "early_stash",
    "election_proof",
    "exhausted_since",
    "fork_watch",
    "freeze",
    "inherited_approvals",
    "last_announcement",
    "pending_join",
    "recent_adds",
    "recent_sizes",
    "reelection_since",
    "refused_candidates",
    "sds",
    "stewards",
    "trailing",
    "urgent_target",
    "used_key_packages",
];

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decode(bytes: &[u8]) -> serde_json::Result<Conversation> {
    serde_json::from_slice::<Conversation>(bytes)
}

#[test]
fn each_saved_state_reads_and_saves_again_unchanged() {
    for name in FILES {
        let bytes = read(name);
        let c = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = c.save().expect("save");
        let before: Value = serde_json::from_slice(&bytes).unwrap();
        let after: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(before, after, "{name} changed on a round trip");
    }
}

#[test]
fn only_the_optional_keys_may_be_missing() {
    for name in FILES {
        let full: Value = serde_json::from_slice(&read(name)).unwrap();
        let Value::Object(map) = &full else {
            panic!("{name} is not a JSON object")
        };
        let mut optional = Vec::new();
        for key in map.keys() {
            let mut less = map.clone();
            less.remove(key);
            let bytes = serde_json::to_vec(&Value::Object(less)).unwrap();
            if let Ok(c) = decode(&bytes) {
                optional.push(key.as_str());
                // Read as its default, and saved again.
                let again: Value = serde_json::from_slice(&c.save().unwrap()).unwrap();
                assert!(again.get(key).is_some(), "{name}: {key} not saved again");
            }
        }
        optional.sort_unstable();
        let mut want = OPTIONAL_KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(optional, want, "{name}: keys that may be missing");
    }
}

/// Each saved state, read back, asks to be woken when it did for the build that saved it
/// (fc979dd, before the phase carried its data: the freeze round, the pending join and
/// the start of a reelection were fields beside the state then). Read without its MLS
/// group, as `serde` gives it.
#[test]
fn each_saved_state_wakes_when_it_did_for_the_build_that_saved_it() {
    let want: &[(&str, Option<u64>)] = &[
        ("voting.json", Some(1_790_000_023_443)),
        ("approved_waiting.json", Some(1_790_000_030_473)),
        ("emergency_open.json", Some(1_790_000_024_526)),
        ("urgent_removal.json", None),
        ("inherited_approvals.json", None),
        ("catching_up.json", Some(1_790_000_032_216)),
        ("freezing.json", Some(1_790_000_046_603)),
        ("reelection.json", Some(1_790_000_046_953)),
        ("pending_join.json", Some(1_790_000_006_000)),
        ("join_expired.json", None),
    ];
    assert_eq!(want.len(), FILES.len());
    for (name, wake) in want {
        let c = decode(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.next_wakeup(), *wake, "{name} ({:?})", c.state());
    }
}

/// A damaged file with a key twice is refused, as it was before the governance fields
/// moved into their own type (read through `#[serde(flatten)]`, the last copy of a
/// governance key silently won).
#[test]
fn a_saved_state_with_a_key_twice_is_refused() {
    let bytes = read("voting.json");
    let text = std::str::from_utf8(&bytes).expect("utf-8");
    let body = text.trim_end().strip_suffix('}').expect("a JSON object");
    for key in ["proposals", "resolved", "approved", "anchor", "name"] {
        let full: Value = serde_json::from_slice(&bytes).unwrap();
        let value = full
            .get(key)
            .unwrap_or_else(|| panic!("voting.json has no {key}"));
        let twice = format!("{body},\"{key}\":{value}}}");
        let err = decode(twice.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("a second {key:?} was taken"));
        assert!(err.to_string().contains("duplicate field"), "{key}: {err}");
    }
}

//! Config loading: defaults, every key, environment overrides, and one-line errors that
//! name the key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use demls_node::config::{ConfigError, NodeConfig, Sharding};

fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn load(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml(text, "test.toml", Path::new("/base"), env(&[]))
}

fn load_env(text: &str, pairs: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml(text, "test.toml", Path::new("/base"), env(pairs))
}

#[test]
fn embedded_default_is_all_defaults() {
    let c = NodeConfig::load_with_env(None, env(&[])).unwrap();
    let d = NodeConfig::default();
    assert_eq!(c.storage.data_dir, Path::new("./data/node"));
    assert_eq!(c.key_file(), Path::new("./data/node/node.key"));
    assert_eq!(c.api, d.api);
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:8645");
    assert_eq!(c.waku, d.waku);
    assert_eq!(c.waku.max_timestamp_skew, Duration::from_secs(20));
    assert_eq!(c.protocol, d.protocol);
    assert_eq!(c.conversations, d.conversations);
    assert_eq!(c.log.level, "info");
    assert_eq!(
        c.conversation_config(),
        demls_core::config::ConversationConfig::default()
    );
    assert!(c.warnings().is_empty());
}

#[test]
fn defaults_match_the_reference() {
    let p = NodeConfig::default().protocol;
    assert_eq!(p.commit_inactivity, Duration::from_secs(60));
    assert_eq!(p.freeze, Duration::from_secs(30));
    assert_eq!(p.voting_delay, Duration::from_secs(10));
    assert_eq!(p.election_voting_delay, Duration::from_secs(5));
    assert_eq!(p.consensus_timeout, Duration::from_secs(30));
    assert_eq!(p.proposal_expiration, Duration::from_secs(600));
    assert_eq!(p.recovery_inactivity, Duration::from_secs(5));
    assert_eq!((p.sn_min, p.sn_max, p.max_reelection_attempts), (1, 2, 1));
    assert!(p.liveness_criteria_yes);
    assert_eq!((p.threshold_peer_score, p.default_peer_score), (0, 100));
}

const FULL: &str = r#"
[identity]
key_file = "keys/node.key"

[storage]
data_dir = "state"

[api]
listen = "127.0.0.1:9000"

[waku]
listen = ["/ip4/0.0.0.0/tcp/61000", "/ip4/0.0.0.0/tcp/61001/ws"]
bootstrap = ["/dns4/boot.example/tcp/60000", "/ip4/10.0.0.1/tcp/60000"]
cluster_id = 42
sharding = "static"
num_shards = 4
static_shard = 3
relay_shards = [1]
max_timestamp_skew = "1m"

[protocol]
commit_inactivity = "2m"
freeze = "1m 5s"
voting_delay = "250ms"
election_voting_delay = "100ms"
consensus_timeout = "40s"
proposal_expiration = "1h"
recovery_inactivity = "3s"
sn_min = 2
sn_max = 4
max_reelection_attempts = 0
liveness_criteria_yes = false
threshold_peer_score = -5
default_peer_score = 50
pending_update_max_epochs = 4
commit_batch_max = 10
catch_up_window = 8

[[conversations]]
name = "general"
create = true

[[conversations]]
name = "dev-ops_1"

[log]
level = "demls_node=debug,info"
"#;

#[test]
fn every_key_is_read() {
    let c = load(FULL).unwrap();
    assert_eq!(c.key_file(), Path::new("/base/keys/node.key"));
    assert_eq!(c.storage.data_dir, Path::new("/base/state"));
    assert_eq!(c.api.listen.port(), 9000);
    assert_eq!(c.waku.listen.len(), 2);
    assert_eq!(
        c.waku.bootstrap[0].to_string(),
        "/dns4/boot.example/tcp/60000"
    );
    assert_eq!(c.waku.cluster_id, 42);
    assert_eq!(c.waku.sharding, Sharding::Static);
    assert_eq!((c.waku.num_shards, c.waku.static_shard), (4, Some(3)));
    assert_eq!(c.waku.relay_shards, vec![1]);
    assert_eq!(c.waku.max_timestamp_skew, Duration::from_secs(60));
    let p = &c.protocol;
    assert_eq!(p.freeze, Duration::from_secs(65));
    assert_eq!(p.voting_delay, Duration::from_millis(250));
    assert_eq!(p.proposal_expiration, Duration::from_secs(3600));
    assert_eq!((p.sn_min, p.sn_max, p.max_reelection_attempts), (2, 4, 0));
    assert!(!p.liveness_criteria_yes);
    assert_eq!((p.threshold_peer_score, p.default_peer_score), (-5, 50));
    let cc = c.conversation_config();
    assert_eq!(cc.commit_inactivity, 120_000);
    assert_eq!(cc.voting_delay, 250);
    assert_eq!(
        (
            cc.pending_update_max_epochs,
            cc.commit_batch_max,
            cc.catch_up_window
        ),
        (4, 10, 8)
    );
    assert_eq!(c.conversations.len(), 2);
    assert!(c.conversations[0].create);
    assert!(!c.conversations[1].create);
    assert_eq!(c.log.level, "demls_node=debug,info");
}

#[test]
fn environment_overrides_the_file() {
    let c = load_env(
        FULL,
        &[
            ("DEMLS__PROTOCOL__FREEZE", "10s"),
            ("DEMLS__PROTOCOL__SN_MAX", "5"),
            ("DEMLS__API__LISTEN", "0.0.0.0:8645"),
            (
                "DEMLS__WAKU__BOOTSTRAP",
                "/dns4/a/tcp/1, /ip4/1.2.3.4/tcp/2",
            ),
            ("DEMLS__WAKU__RELAY_SHARDS", "0,2"),
            ("DEMLS__STORAGE__DATA_DIR", "/abs/data"),
            ("DEMLS__LOG__LEVEL", "debug"),
            ("DEMLS_API", "http://ignored"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.protocol.freeze, Duration::from_secs(10));
    assert_eq!(c.protocol.sn_max, 5);
    assert_eq!(c.waku.bootstrap.len(), 2);
    assert_eq!(c.waku.bootstrap[1].to_string(), "/ip4/1.2.3.4/tcp/2");
    assert_eq!(c.waku.relay_shards, vec![0, 2]);
    assert_eq!(c.storage.data_dir, Path::new("/abs/data"));
    assert_eq!(c.log.level, "debug");
    // Not loopback: allowed, but warned about.
    assert_eq!(c.warnings().len(), 1);
    assert!(c.warnings()[0].contains("api.listen"));

    // A single number and an empty string are lists too.
    let c = load_env(
        "",
        &[
            ("DEMLS__WAKU__RELAY_SHARDS", "3"),
            ("DEMLS__WAKU__BOOTSTRAP", ""),
        ],
    )
    .unwrap();
    assert_eq!(c.waku.relay_shards, vec![3]);
    assert!(c.waku.bootstrap.is_empty());

    // `static_shard` alone (file or environment) selects static sharding.
    let c = load("[waku]\nstatic_shard = 2").unwrap();
    assert_eq!(
        (c.waku.sharding, c.waku.static_shard),
        (Sharding::Static, Some(2))
    );
    let c = load_env(
        "",
        &[
            ("DEMLS__WAKU__STATIC_SHARD", "5"),
            ("DEMLS__WAKU__MAX_TIMESTAMP_SKEW", "30s"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.waku.sharding, c.waku.static_shard),
        (Sharding::Static, Some(5))
    );
    assert_eq!(c.waku.max_timestamp_skew, Duration::from_secs(30));
}

#[test]
fn testnet_config_loads_with_compose_env() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/testnet/node.toml");
    let c = NodeConfig::load_with_env(
        Some(&path),
        env(&[
            ("DEMLS__WAKU__RELAY_SHARDS", "0,1,2,3,4,5,6,7"),
            ("DEMLS__WAKU__BOOTSTRAP", ""),
        ]),
    )
    .unwrap();
    assert_eq!(c.waku.relay_shards.len(), 8);
    assert!(c.waku.bootstrap.is_empty());
    assert_eq!(c.storage.data_dir, Path::new("/data"));
}

/// A refusal: (config text, env, expected key, a fragment of the message).
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn bad_values_name_their_key() {
    let cases: &[Case] = &[
        (
            "[protocol]\nfreeze = \"3x\"",
            &[],
            "protocol.freeze",
            "invalid duration \"3x\"",
        ),
        (
            "[protocol]\nfreeze = 30",
            &[],
            "protocol.freeze",
            "give a unit",
        ),
        (
            "",
            &[("DEMLS__PROTOCOL__VOTING_DELAY", "soon")],
            "protocol.voting_delay",
            "invalid duration \"soon\"",
        ),
        (
            "[protocol]\nfreez = \"3s\"",
            &[],
            "protocol.freez",
            "unknown key",
        ),
        ("[protocl]\nfreeze = \"3s\"", &[], "protocl", "unknown key"),
        (
            "",
            &[("DEMLS__WAKU__LISTN", "/ip4/0.0.0.0/tcp/1")],
            "waku.listn",
            "unknown key",
        ),
        (
            "[[conversations]]\nname = \"a\"\ncreat = true",
            &[],
            "conversations[0].creat",
            "unknown key",
        ),
        (
            "[waku]\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\", \"/ip4/999.1.1.1/tcp/1\"]",
            &[],
            "waku.bootstrap",
            "/ip4/999.1.1.1/tcp/1",
        ),
        (
            "[waku]\nlisten = [\"localhost:60000\"]",
            &[],
            "waku.listen",
            "not a multiaddr",
        ),
        (
            "",
            &[("DEMLS__WAKU__BOOTSTRAP", "/dns4/ok/tcp/1,/bogus/1")],
            "waku.bootstrap",
            "/bogus/1",
        ),
        ("[waku]\nlisten = []", &[], "waku.listen", "at least one"),
        (
            "[waku]\nsharding = \"static\"",
            &[],
            "waku.static_shard",
            "required",
        ),
        (
            "[waku]\nsharding = \"auto\"\nstatic_shard = 2",
            &[],
            "waku.static_shard",
            "only used",
        ),
        (
            "",
            &[
                ("DEMLS__WAKU__SHARDING", "auto"),
                ("DEMLS__WAKU__STATIC_SHARD", "2"),
            ],
            "waku.static_shard",
            "only used",
        ),
        (
            "[waku]\nmax_timestamp_skew = \"500ms\"",
            &[],
            "waku.max_timestamp_skew",
            "whole seconds",
        ),
        (
            "[waku]\nmax_timestamp_skew = \"20\"",
            &[],
            "waku.max_timestamp_skew",
            "invalid duration",
        ),
        (
            "[waku]\nsharding = \"sometimes\"",
            &[],
            "waku.sharding",
            "unknown value",
        ),
        (
            "[waku]\nrelay_shards = [8]",
            &[],
            "waku.relay_shards",
            "out of range",
        ),
        (
            "[waku]\nnum_shards = 0",
            &[],
            "waku.num_shards",
            "between 1 and 1024",
        ),
        ("[waku]\ncluster_id = \"x\"", &[], "waku.cluster_id", ""),
        ("[protocol]\nsn_min = \"two\"", &[], "protocol.sn_min", ""),
        (
            "[protocol]\nvoting_delay = \"40s\"",
            &[],
            "protocol.voting_delay",
            "shorter than protocol.consensus_timeout",
        ),
        (
            "[protocol]\nconsensus_timeout = \"60s\"",
            &[],
            "protocol.consensus_timeout",
            "shorter than protocol.commit_inactivity",
        ),
        (
            "[protocol]\ncommit_inactivity = \"20s\"",
            &[],
            "protocol.consensus_timeout",
            "shorter than protocol.commit_inactivity",
        ),
        (
            "[protocol]\nelection_voting_delay = \"31s\"",
            &[],
            "protocol.election_voting_delay",
            "consensus_timeout",
        ),
        (
            "[protocol]\nsn_min = 0",
            &[],
            "protocol.sn_min",
            "at least 1",
        ),
        (
            "[protocol]\nsn_min = 3",
            &[],
            "protocol.sn_min",
            "must not exceed protocol.sn_max",
        ),
        (
            "[protocol]\ndefault_peer_score = 0",
            &[],
            "protocol.default_peer_score",
            "threshold",
        ),
        (
            "[[conversations]]\nname = \"a/b\"",
            &[],
            "conversations[0].name",
            "'/'",
        ),
        (
            "[[conversations]]\nname = \"ok\"\n[[conversations]]\nname = \"has space\"",
            &[],
            "conversations[1].name",
            "whitespace",
        ),
        (
            "[[conversations]]\nname = \"\"",
            &[],
            "conversations[0].name",
            "empty",
        ),
        (
            "[[conversations]]\nname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
            &[],
            "conversations[0].name",
            "at most 64",
        ),
        (
            "[[conversations]]\nname = \"x\"\n[[conversations]]\nname = \"x\"",
            &[],
            "conversations[1].name",
            "twice",
        ),
        (
            "[[conversations]]\ncreate = true",
            &[],
            "conversations[0].name",
            "missing",
        ),
        (
            "[api]\nlisten = \"localhost\"",
            &[],
            "api.listen",
            "expected IP:PORT",
        ),
        (
            "[log]\nlevel = \"[[[\"",
            &[],
            "log.level",
            "invalid log filter",
        ),
        (
            "[identity]\nkeystore = \"k.json\"",
            &[],
            "identity.keystore",
            "password",
        ),
        (
            "[identity]\nkeystore_password_env = \"PW\"",
            &[],
            "identity.keystore",
            "no keystore",
        ),
        (
            "[identity]\nkeystore = \"k.json\"\nkeystore_password_env = \"A\"\nkeystore_password_file = \"p\"",
            &[],
            "identity.keystore_password_env",
            "not both",
        ),
        (
            "[identity]\nkeystore = \"k.json\"\nkeystore_password_env = \"A\"\nkey_file = \"k\"",
            &[],
            "identity.key_file",
            "not both",
        ),
        ("[protocol\nfreeze = 1", &[], "test.toml", "invalid TOML"),
        ("x = = 1", &[], "test.toml", "invalid TOML"),
    ];
    for (text, pairs, key, fragment) in cases {
        let e = load_env(text, pairs).expect_err(&format!("should refuse {text:?} {pairs:?}"));
        assert_eq!(e.key, *key, "key for {text:?} {pairs:?}: {e}");
        assert!(e.message.contains(fragment), "message for {text:?}: {e}");
        let line = e.to_string();
        assert!(!line.contains('\n'), "one line: {line:?}");
        assert!(line.starts_with(&format!("{key}: ")), "{line}");
    }
}

#[test]
fn missing_file_is_reported() {
    let e = NodeConfig::load_with_env(Some(Path::new("/nonexistent/demls.toml")), env(&[]))
        .unwrap_err();
    assert_eq!(e.key, "/nonexistent/demls.toml");
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("node.toml");
    std::fs::write(
        &p,
        "[storage]\ndata_dir = \"d\"\n[identity]\nkey_file = \"/abs/k\"\n",
    )
    .unwrap();
    let c = NodeConfig::load_with_env(Some(&p), env(&[])).unwrap();
    assert_eq!(c.storage.data_dir, tmp.path().join("d"));
    assert_eq!(c.key_file(), Path::new("/abs/k"));
}

/// `[api] allowed_hosts` and `[metrics] listen`, from the file and the environment.
#[test]
fn api_hosts_and_metrics_listener() {
    let c = load("").unwrap();
    assert!(c.api.allowed_hosts.is_empty());
    assert_eq!(c.metrics.listen, None, "no metrics listener by default");
    assert_eq!(c.api_token_file(), Path::new("/base/data/node/api-token"));

    let c = load(
        "[api]\nallowed_hosts = [\"Node.Lan\", \"127.0.0.1:18646\"]\n[metrics]\nlisten = \"127.0.0.1:8008\"\n",
    )
    .unwrap();
    let hosts: Vec<String> = c.api.allowed_hosts.iter().map(|h| h.to_string()).collect();
    assert_eq!(hosts, ["node.lan", "127.0.0.1:18646"]);
    assert_eq!(c.metrics.listen, Some("127.0.0.1:8008".parse().unwrap()));

    let c = load_env(
        "[metrics]\nlisten = \"127.0.0.1:8008\"\n",
        &[
            ("DEMLS__API__ALLOWED_HOSTS", "a.lan,b.lan:9"),
            ("DEMLS__METRICS__LISTEN", ""),
        ],
    )
    .unwrap();
    assert_eq!(c.api.allowed_hosts.len(), 2);
    assert_eq!(c.metrics.listen, None, "an empty value turns it off");

    let c = load("[metrics]\nlisten = \"0.0.0.0:8008\"\n").unwrap();
    assert!(
        c.warnings().iter().any(|w| w.contains("metrics.listen")),
        "{:?}",
        c.warnings()
    );
    for (text, key) in [
        ("[metrics]\nlisten = \"127.0.0.1:8645\"\n", "metrics.listen"),
        (
            "[api]\nlisten = \"0.0.0.0:9\"\n[metrics]\nlisten = \"127.0.0.1:9\"\n",
            "metrics.listen",
        ),
        ("[metrics]\nlisten = \"nope\"\n", "metrics.listen"),
        ("[metrics]\nport = 1\n", "metrics.port"),
        (
            "[api]\nallowed_hosts = [\"http://x\"]\n",
            "api.allowed_hosts",
        ),
    ] {
        let e = load(text).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
    }
}

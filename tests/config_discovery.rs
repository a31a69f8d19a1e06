//! The discovery keys of `[waku]`: defaults, ENR bootstrap entries, and the one-line errors
//! naming the key for bad ENRs and values.

use std::collections::HashMap;
use std::path::Path;

use demls_node::config::{BootstrapPeer, NodeConfig};
use demls_transport::waku::enr::{LocalAddrs, build_local_enr, enr_key};

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<NodeConfig, String> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    NodeConfig::from_toml(text, "node.toml", Path::new("/base"), Some(env))
        .map_err(|e| e.to_string())
}

fn load(text: &str) -> Result<NodeConfig, String> {
    load_env(text, &[])
}

/// A real, signed Waku ENR.
fn an_enr() -> String {
    let kp = libp2p::identity::Keypair::generate_secp256k1();
    let addrs = LocalAddrs {
        tcp4: Some((std::net::Ipv4Addr::LOCALHOST, 60000)),
        ..Default::default()
    };
    build_local_enr(&enr_key(&kp).unwrap(), &addrs, 60000, 15, &[0], "rs")
        .unwrap()
        .to_base64()
}

#[test]
fn defaults() {
    let w = load("").unwrap().waku;
    assert!(w.discv5_discovery);
    assert_eq!(w.discv5_udp_port, None);
    assert!(w.discv5_bootstrap.is_empty());
    assert_eq!(w.peer_target, 10);
    assert_eq!(w.ext_ip, None);
}

#[test]
fn enr_and_multiaddr_bootstrap_entries_and_every_key_is_read() {
    let (e1, e2) = (an_enr(), an_enr());
    let text = format!(
        "[waku]\nbootstrap = [\"{e1}\", \"/ip4/10.0.0.1/tcp/60000\"]\n\
         discv5_bootstrap = [\"{e2}\"]\ndiscv5_udp_port = 9000\ndiscv5_discovery = false\n\
         peer_target = 4\next_ip = \"203.0.113.7\"\n"
    );
    let w = load(&text).unwrap().waku;
    assert!(matches!(&w.bootstrap[0], BootstrapPeer::Enr(e) if e.as_str() == e1));
    assert!(matches!(&w.bootstrap[1], BootstrapPeer::Addr(_)));
    assert_eq!(w.bootstrap[1].to_string(), "/ip4/10.0.0.1/tcp/60000");
    assert_eq!(w.discv5_bootstrap[0].as_str(), e2);
    assert_eq!(w.discv5_udp_port, Some(9000));
    assert!(!w.discv5_discovery);
    assert_eq!(w.peer_target, 4);
    assert_eq!(w.ext_ip, Some("203.0.113.7".parse().unwrap()));

    // The environment, comma-separated as every list.
    let w = load_env(
        "",
        &[
            (
                "DEMLS__WAKU__BOOTSTRAP",
                &format!("{e1},/dns4/boot/tcp/60000"),
            ),
            ("DEMLS__WAKU__DISCV5_UDP_PORT", "0"),
            ("DEMLS__WAKU__PEER_TARGET", "3"),
        ],
    )
    .unwrap()
    .waku;
    assert_eq!(w.bootstrap.len(), 2);
    assert_eq!(w.bootstrap[0].to_string(), e1);
    assert_eq!(w.discv5_udp_port, Some(0));
    assert_eq!(w.peer_target, 3);
}

#[test]
fn bad_values_name_their_key() {
    let good = an_enr();
    // One character of a signed record changed.
    let mut chars: Vec<char> = good.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "[waku]\nbootstrap = [\"enr:nonsense\"]".into(),
            "waku.bootstrap",
            "invalid ENR",
        ),
        (
            format!("[waku]\nbootstrap = [\"{tampered}\"]"),
            "waku.bootstrap",
            "invalid ENR",
        ),
        (
            "[waku]\nbootstrap = [\"boot:60000\"]".into(),
            "waku.bootstrap",
            "neither a multiaddr",
        ),
        (
            "[waku]\ndiscv5_bootstrap = [\"/ip4/1.2.3.4/tcp/1\"]".into(),
            "waku.discv5_bootstrap",
            "not an ENR",
        ),
        (
            "[waku]\ndiscv5_udp_port = 70000".into(),
            "waku.discv5_udp_port",
            "",
        ),
        (
            "[waku]\npeer_target = 0".into(),
            "waku.peer_target",
            "at least 1",
        ),
        (
            "[waku]\next_ip = \"nowhere\"".into(),
            "waku.ext_ip",
            "invalid IP address",
        ),
        (
            "[waku]\ndiscv5_discovery = \"maybe\"".into(),
            "waku.discv5_discovery",
            "",
        ),
    ];
    for (text, key, what) in cases {
        let e = load(&text).unwrap_err();
        assert!(
            e.starts_with(&format!("{key}: ")) && e.contains(what) && !e.contains('\n'),
            "{text:?} gave {e:?}"
        );
    }
}

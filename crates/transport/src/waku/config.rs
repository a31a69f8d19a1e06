//! Relay configuration.

use std::path::PathBuf;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use super::enr::parse_enr;
use crate::{TransportError, autoshard, pubsub_topic};

/// Default of [`WakuConfig::peer_target`].
pub const DEFAULT_PEER_TARGET: usize = 10;

/// How the relay is set up. Defaults: TCP 60000 on all interfaces, cluster 15 with
/// 8 autosharded shards (the reference de-MLS deployment's cluster), 20 s timestamp skew.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WakuConfig {
    /// Listen multiaddrs (`/ip4/…/tcp/…`, `…/tcp/…/ws`).
    pub listen: Vec<String>,
    /// Peers to dial: multiaddrs (`/ip4/…` or `/dns4/…`, with or without `/p2p/<id>`) or
    /// Waku ENRs (`enr:…`); an ENR is also a discv5 bootstrap node.
    pub bootstrap: Vec<String>,
    /// 33/WAKU2-DISCV5 on or off.
    pub discv5_discovery: bool,
    /// discv5 UDP port; None: the port of the first TCP listen address (UDP and TCP ports
    /// are separate, so nodes on one host with distinct TCP ports never clash); 0: any.
    pub discv5_udp_port: Option<u16>,
    /// Extra discv5 bootstrap records (`enr:…`), not dialed unless discovery finds them.
    pub discv5_bootstrap: Vec<String>,
    /// Keep dialing discovered Waku relay peers until this many peers are connected.
    pub peer_target: usize,
    /// The IP our ENR advertises (nwaku's `--nat=extip:`); None: the listen address, or
    /// the default route's source address when listening on all interfaces.
    pub ext_ip: Option<std::net::IpAddr>,
    /// Waku cluster id.
    pub cluster_id: u32,
    /// Shards in the network for autosharding.
    pub num_shards: u32,
    /// Put every conversation on this shard instead of autosharding.
    pub static_shard: Option<u32>,
    /// Shards relayed even without a conversation on them (a bootstrap node relays all).
    pub relay_shards: Vec<u32>,
    /// Where the libp2p node key is kept (created on first start, mode 0600). None:
    /// a fresh key each start.
    pub node_key_file: Option<PathBuf>,
    /// Messages whose timestamp is further than this from our clock are rejected.
    pub max_timestamp_skew_secs: u64,
    /// Longest wait between redials of a lost bootstrap peer.
    pub max_redial_secs: u64,
    /// How far back a history query (13/WAKU2-STORE) reaches at most; the node sets it to
    /// its archive's `max_age`.
    pub store_lookback_secs: u64,
}

impl Default for WakuConfig {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/0.0.0.0/tcp/60000".into()],
            bootstrap: Vec::new(),
            discv5_discovery: true,
            discv5_udp_port: None,
            discv5_bootstrap: Vec::new(),
            peer_target: DEFAULT_PEER_TARGET,
            ext_ip: None,
            cluster_id: 15,
            num_shards: 8,
            static_shard: None,
            relay_shards: Vec::new(),
            node_key_file: None,
            max_timestamp_skew_secs: 20,
            max_redial_secs: 30,
            store_lookback_secs: 7 * 24 * 3600,
        }
    }
}

impl WakuConfig {
    /// Checks every field, naming the offending one.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |k: &str, why: String| Err(TransportError::Config(format!("waku.{k}: {why}")));
        for a in &self.listen {
            if let Err(e) = a.parse::<Multiaddr>() {
                return bad("listen", format!("{a:?} is not a multiaddr: {e}"));
            }
        }
        for a in &self.bootstrap {
            if a.trim_start().starts_with("enr:") {
                if let Err(e) = parse_enr(a) {
                    return bad("bootstrap", e);
                }
            } else if let Err(e) = a.parse::<Multiaddr>() {
                return bad("bootstrap", format!("{a:?} is not a multiaddr: {e}"));
            }
        }
        for a in &self.discv5_bootstrap {
            if let Err(e) = parse_enr(a) {
                return bad("discv5_bootstrap", e);
            }
        }
        if self.num_shards == 0 || self.num_shards > 1024 {
            return bad("num_shards", "must be 1..=1024".into());
        }
        if self.static_shard.is_some_and(|s| s >= 1024)
            || self.relay_shards.iter().any(|s| *s >= 1024)
        {
            return bad("static_shard", "shards are 0..=1023".into());
        }
        if self.cluster_id > u16::MAX as u32 {
            return bad("cluster_id", "must fit 16 bits".into());
        }
        Ok(())
    }

    /// The shard of a conversation.
    pub fn shard_for(&self, conversation: &str) -> u32 {
        self.static_shard
            .unwrap_or_else(|| autoshard(conversation, "1", self.num_shards))
    }

    /// The pubsub topic of a conversation.
    pub fn topic_for(&self, conversation: &str) -> String {
        pubsub_topic(self.cluster_id, self.shard_for(conversation))
    }
}

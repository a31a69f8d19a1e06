//! Relay configuration.

use std::path::PathBuf;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::{TransportError, autoshard, pubsub_topic};

/// How the relay is set up. Defaults: TCP 60000 on all interfaces, cluster 15 with
/// 8 autosharded shards (the reference de-MLS deployment's cluster), 20 s timestamp skew.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WakuConfig {
    /// Listen multiaddrs (`/ip4/…/tcp/…`, `…/tcp/…/ws`).
    pub listen: Vec<String>,
    /// Peers to dial (`/ip4/…` or `/dns4/…`, with or without `/p2p/<id>`).
    pub bootstrap: Vec<String>,
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
}

impl Default for WakuConfig {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/0.0.0.0/tcp/60000".into()],
            bootstrap: Vec::new(),
            cluster_id: 15,
            num_shards: 8,
            static_shard: None,
            relay_shards: Vec::new(),
            node_key_file: None,
            max_timestamp_skew_secs: 20,
            max_redial_secs: 30,
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
            if let Err(e) = a.parse::<Multiaddr>() {
                return bad("bootstrap", format!("{a:?} is not a multiaddr: {e}"));
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

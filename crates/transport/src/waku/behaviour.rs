//! The libp2p behaviours a Waku relay peer runs.

use libp2p::swarm::NetworkBehaviour;
use libp2p::{gossipsub, identify, ping, request_response};

use super::metadata::MetadataCodec;
use super::peer_exchange::PeerExchangeCodec;
use super::store::StoreCodec;

/// Relay, identify, ping, metadata, peer exchange and store.
#[derive(NetworkBehaviour)]
pub struct WakuBehaviour {
    /// 11/WAKU2-RELAY.
    pub relay: gossipsub::Behaviour,
    /// libp2p identify.
    pub identify: identify::Behaviour,
    /// libp2p ping (keeps NATed connections alive, measures RTT).
    pub ping: ping::Behaviour,
    /// 66/WAKU2-METADATA.
    pub metadata: request_response::Behaviour<MetadataCodec>,
    /// 34/WAKU2-PEER-EXCHANGE.
    pub peer_exchange: request_response::Behaviour<PeerExchangeCodec>,
    /// 13/WAKU2-STORE v3 (served only with an archive).
    pub store: request_response::Behaviour<StoreCodec>,
}

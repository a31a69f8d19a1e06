//! 34/WAKU2-PEER-EXCHANGE: ask a connected peer for Waku ENRs it found through discovery,
//! and answer such questions from our discv5 routing table. This is what lets a node
//! bootstrapped from a plain multiaddr (no ENR) join discovery: the records it gets seed
//! its discv5 table and its dial list. Messages are varint-length-prefixed protobuf, as
//! in nwaku.

use super::metadata::ProtoCodec;

/// Generated from `proto/waku/peer_exchange.proto`.
#[allow(missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/waku.peer_exchange.v2alpha1.rs"));
}

/// Most records we put in one answer (the spec's suggested cache size).
pub const MAX_PEERS: usize = 60;

/// The request-response codec: both directions carry a `PeerExchangeRPC` of at most
/// 64 KiB.
pub type PeerExchangeCodec =
    ProtoCodec<pb::PeerExchangeRpc, pb::PeerExchangeRpc, { 64 * 1024 }, { 64 * 1024 }>;

/// A query for `n` peers.
pub fn query(n: usize) -> pb::PeerExchangeRpc {
    pb::PeerExchangeRpc {
        query: Some(pb::PeerExchangeQuery {
            num_peers: n as u64,
        }),
        response: None,
    }
}

/// An answer carrying these records (`enr:…` text is not what goes on the wire: the
/// records' RLP bytes do).
pub fn response(records: Vec<Vec<u8>>) -> pb::PeerExchangeRpc {
    pb::PeerExchangeRpc {
        query: None,
        response: Some(pb::PeerExchangeResponse {
            peer_infos: records
                .into_iter()
                .map(|enr| pb::PeerInfo { enr })
                .collect(),
        }),
    }
}

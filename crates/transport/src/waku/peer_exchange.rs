//! 34/WAKU2-PEER-EXCHANGE: ask a connected peer for Waku ENRs it found through discovery,
//! and answer such questions from our discv5 routing table. This is what lets a node
//! bootstrapped from a plain multiaddr (no ENR) join discovery: the records it gets seed
//! its discv5 table and its dial list. Messages are varint-length-prefixed protobuf, as
//! in nwaku.

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use prost::Message;

use super::metadata::{read_lp, write_lp};

/// Generated from `proto/waku/peer_exchange.proto`.
#[allow(missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/waku.peer_exchange.v2alpha1.rs"));
}

/// Most records we put in one answer (the spec's suggested cache size).
pub const MAX_PEERS: usize = 60;

/// The request-response codec: both directions carry a `PeerExchangeRPC`.
#[derive(Clone, Default)]
pub struct PeerExchangeCodec;

fn invalid(e: prost::DecodeError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl libp2p::request_response::Codec for PeerExchangeCodec {
    type Protocol = StreamProtocol;
    type Request = pb::PeerExchangeRpc;
    type Response = pb::PeerExchangeRpc;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Self::Request> {
        pb::PeerExchangeRpc::decode(read_lp(io).await?.as_slice()).map_err(invalid)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Self::Response> {
        pb::PeerExchangeRpc::decode(read_lp(io).await?.as_slice()).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Self::Request,
    ) -> std::io::Result<()> {
        write_lp(io, &req.encode_to_vec()).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Self::Response,
    ) -> std::io::Result<()> {
        write_lp(io, &res.encode_to_vec()).await
    }
}

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

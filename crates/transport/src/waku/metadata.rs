//! 66/WAKU2-METADATA: cluster id and shards, exchanged on connection. Messages are
//! varint-length-prefixed protobuf, as libp2p request-response protocols in nwaku are.

use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use prost::Message;

/// Generated from `proto/waku/metadata.proto`.
#[allow(missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/waku.metadata.v1.rs"));
}

const MAX_LEN: usize = 64 * 1024;

/// The request-response codec.
pub type MetadataCodec =
    ProtoCodec<pb::WakuMetadataRequest, pb::WakuMetadataResponse, MAX_LEN, MAX_LEN>;

/// Reads one varint-length-prefixed message of at most `max` bytes (and below 256 MiB,
/// the most a 4-byte varint holds): a longer announced length is an error before
/// anything is allocated.
pub(super) async fn read_lp_max<T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut len: usize = 0;
    for shift in (0..).step_by(7).take(4) {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        len |= ((b[0] & 0x7f) as usize) << shift;
        if b[0] & 0x80 == 0 {
            if len > max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "message too long",
                ));
            }
            let mut buf = vec![0u8; len];
            io.read_exact(&mut buf).await?;
            return Ok(buf);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "bad varint length",
    ))
}

/// Writes one varint-length-prefixed message and closes the stream.
pub(super) async fn write_lp<T: AsyncWrite + Unpin>(
    io: &mut T,
    data: &[u8],
) -> std::io::Result<()> {
    let mut prefix = Vec::new();
    prost::encoding::encode_varint(data.len() as u64, &mut prefix);
    io.write_all(&prefix).await?;
    io.write_all(data).await?;
    io.close().await
}

fn invalid(e: prost::DecodeError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// The request-response codec of Waku's libp2p protocols (metadata, peer exchange,
/// store): one varint-length-prefixed protobuf message each way, requests of at most
/// `MAX_REQ` bytes and responses of at most `MAX_RESP`, refused before they are read.
pub struct ProtoCodec<Req, Resp, const MAX_REQ: usize, const MAX_RESP: usize>(
    PhantomData<fn() -> (Req, Resp)>,
);

// By hand: derived impls would ask the message types to be `Clone` / `Default` too.
impl<Req, Resp, const MAX_REQ: usize, const MAX_RESP: usize> Clone
    for ProtoCodec<Req, Resp, MAX_REQ, MAX_RESP>
{
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp, const MAX_REQ: usize, const MAX_RESP: usize> Default
    for ProtoCodec<Req, Resp, MAX_REQ, MAX_RESP>
{
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp, const MAX_REQ: usize, const MAX_RESP: usize> libp2p::request_response::Codec
    for ProtoCodec<Req, Resp, MAX_REQ, MAX_RESP>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Default + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Req> {
        Req::decode(read_lp_max(io, MAX_REQ).await?.as_slice()).map_err(invalid)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Resp> {
        Resp::decode(read_lp_max(io, MAX_RESP).await?.as_slice()).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
    ) -> std::io::Result<()> {
        write_lp(io, &req.encode_to_vec()).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> std::io::Result<()> {
        write_lp(io, &res.encode_to_vec()).await
    }
}

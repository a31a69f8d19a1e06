//! Waku ENRs (31/WAKU2-ENR, WAKU2-RELAY-SHARDING): building our record and reading
//! others'. An ENR (EIP-778) is a signed key-value record; Waku adds `waku2` (protocol
//! flags, bit 0 = relay), `multiaddrs` (addresses the `ip`/`tcp` keys cannot express, such
//! as WebSocket) and `rs` / `rsv` (the relay shards of one cluster, as an index list or a
//! 1024-bit vector).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enr::{CombinedKey, EnrPublicKey};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// A Waku ENR (secp256k1 "v4" identity scheme).
pub type Enr = enr::Enr<CombinedKey>;

/// `waku2` flag: 11/WAKU2-RELAY.
pub const FLAG_RELAY: u8 = 0x01;
/// Nodes in this many shards or more advertise them as the `rsv` bit vector.
pub const RSV_FROM: usize = 64;

/// Parses an `enr:…` string, checking its signature; the message says what is wrong.
pub fn parse_enr(s: &str) -> Result<Enr, String> {
    let t = s.trim();
    if !t.starts_with("enr:") {
        return Err(format!("{t:?} is not an ENR (expected \"enr:…\")"));
    }
    t.parse::<Enr>()
        .map_err(|e| format!("invalid ENR {t:?}: {e}"))
        .and_then(|enr| {
            peer_id_of(&enr)?;
            Ok(enr)
        })
}

/// Decodes a record from its RLP bytes (as peer exchange carries it), checking its
/// signature and key type; None for anything else.
pub fn decode_rlp(bytes: &[u8]) -> Option<Enr> {
    let enr = <Enr as alloy_rlp::Decodable>::decode(&mut &bytes[..]).ok()?;
    peer_id_of(&enr).ok()?;
    Some(enr)
}

/// The libp2p peer id of an ENR's secp256k1 key (`16Uiu2…`).
pub fn peer_id_of(enr: &Enr) -> Result<PeerId, String> {
    let bytes = enr.public_key().encode();
    let pk = libp2p::identity::secp256k1::PublicKey::try_from_bytes(&bytes)
        .map_err(|_| "the ENR's key is not a secp256k1 key".to_string())?;
    Ok(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

/// The ENR signing key of a libp2p secp256k1 node key.
pub fn enr_key(key: &libp2p::identity::Keypair) -> Result<CombinedKey, String> {
    let kp = key
        .clone()
        .try_into_secp256k1()
        .map_err(|_| "the node key is not a secp256k1 key".to_string())?;
    let mut secret = kp.secret().to_bytes();
    CombinedKey::secp256k1_from_bytes(&mut secret).map_err(|e| e.to_string())
}

/// `rs`: cluster (2 bytes BE) ‖ count (1 byte) ‖ shard (2 bytes BE) each. At most 255.
pub fn encode_rs(cluster: u16, shards: &[u16]) -> Vec<u8> {
    let shards = &shards[..shards.len().min(255)];
    let mut v = cluster.to_be_bytes().to_vec();
    v.push(shards.len() as u8);
    for s in shards {
        v.extend_from_slice(&s.to_be_bytes());
    }
    v
}

/// `rsv`: cluster (2 bytes BE) ‖ 128-byte bit vector. Bit layout as nwaku writes and
/// reads it (`waku_enr/sharding.nim`): shard `s` is bit `s % 8` (least significant first)
/// of byte `s / 8`. The spec's prose ("right-most bit is shard 0") and js-waku (most
/// significant bit first) differ; nwaku is the network we interoperate with.
pub fn encode_rsv(cluster: u16, shards: &[u16]) -> Vec<u8> {
    let mut v = cluster.to_be_bytes().to_vec();
    let mut bits = [0u8; 128];
    for s in shards.iter().filter(|s| **s < 1024) {
        bits[*s as usize / 8] |= 1 << (s % 8);
    }
    v.extend_from_slice(&bits);
    v
}

/// Decodes `rs` or `rsv` bytes into (cluster, shards).
pub fn decode_rs(v: &[u8]) -> Option<(u16, Vec<u16>)> {
    let cluster = u16::from_be_bytes([*v.first()?, *v.get(1)?]);
    let n = *v.get(2)? as usize;
    let body = v.get(3..)?;
    if body.len() != 2 * n {
        return None;
    }
    Some((
        cluster,
        body.chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    ))
}

/// Decodes `rsv` bytes into (cluster, shards).
pub fn decode_rsv(v: &[u8]) -> Option<(u16, Vec<u16>)> {
    if v.len() != 130 {
        return None;
    }
    let cluster = u16::from_be_bytes([v[0], v[1]]);
    let bits = &v[2..];
    let shards = (0..1024u16)
        .filter(|s| bits[*s as usize / 8] & (1 << (s % 8)) != 0)
        .collect();
    Some((cluster, shards))
}

/// `multiaddrs`: each multiaddr's bytes prefixed with their length (2 bytes BE).
pub fn encode_multiaddrs(addrs: &[Multiaddr]) -> Vec<u8> {
    let mut v = Vec::new();
    for a in addrs {
        let b = a.to_vec();
        v.extend_from_slice(&(b.len() as u16).to_be_bytes());
        v.extend_from_slice(&b);
    }
    v
}

/// Decodes `multiaddrs`; None if the framing or a multiaddr is malformed.
pub fn decode_multiaddrs(mut v: &[u8]) -> Option<Vec<Multiaddr>> {
    let mut out = Vec::new();
    while !v.is_empty() {
        let n = u16::from_be_bytes([*v.first()?, *v.get(1)?]) as usize;
        let a = v.get(2..2 + n)?;
        out.push(Multiaddr::try_from(a.to_vec()).ok()?);
        v = &v[2 + n..];
    }
    Some(out)
}

/// The payload of an RLP byte string (ENR values are stored RLP-encoded).
fn rlp_string(raw: &[u8]) -> Option<&[u8]> {
    let b = *raw.first()?;
    match b {
        0x00..=0x7f => Some(&raw[..1]),
        0x80..=0xb7 => raw.get(1..1 + (b - 0x80) as usize),
        0xb8..=0xbf => {
            let ll = (b - 0xb7) as usize;
            let len = raw.get(1..1 + ll)?.iter().fold(0usize, |acc, x| {
                acc.saturating_mul(256).saturating_add(*x as usize)
            });
            raw.get(1 + ll..(1 + ll).checked_add(len)?)
        }
        _ => None,
    }
}

fn value<'a>(enr: &'a Enr, key: &str) -> Option<&'a [u8]> {
    enr.get_raw_rlp(key).and_then(rlp_string)
}

/// What a Waku node's ENR says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WakuPeer {
    /// Its libp2p peer id.
    pub peer_id: PeerId,
    /// Dialable addresses, each ending in `/p2p/<peer id>`.
    pub addrs: Vec<Multiaddr>,
    /// The `waku2` flags (0 when absent).
    pub flags: u8,
    /// `rs` / `rsv`: (cluster, shards), when present.
    pub shards: Option<(u16, Vec<u16>)>,
}

impl WakuPeer {
    /// Reads a Waku ENR. Fails if its key is not secp256k1.
    pub fn from_enr(enr: &Enr) -> Result<Self, String> {
        let peer_id = peer_id_of(enr)?;
        let mut addrs: Vec<Multiaddr> = Vec::new();
        if let (Some(ip), Some(port)) = (enr.ip4(), enr.tcp4()) {
            addrs.push(tcp_addr(IpAddr::V4(ip), port));
        }
        if let (Some(ip), Some(port)) = (enr.ip6(), enr.tcp6()) {
            addrs.push(tcp_addr(IpAddr::V6(ip), port));
        }
        if let Some(m) = value(enr, "multiaddrs").and_then(decode_multiaddrs) {
            addrs.extend(m.into_iter().filter(|a| {
                !a.iter()
                    .any(|p| matches!(p, Protocol::P2p(_) | Protocol::P2pCircuit))
            }));
        }
        let addrs = addrs
            .into_iter()
            .map(|a| a.with(Protocol::P2p(peer_id)))
            .collect();
        let flags = value(enr, "waku2")
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        // Both present: the spec says to read `rs` and ignore `rsv`.
        let shards = match value(enr, "rs") {
            Some(v) => decode_rs(v),
            None => value(enr, "rsv").and_then(decode_rsv),
        };
        Ok(Self {
            peer_id,
            addrs,
            flags,
            shards,
        })
    }

    /// A relay peer we may use: `waku2` relay flag set, and when it lists shards, in our
    /// cluster (a record without `rs`/`rsv` is accepted: older nodes have none).
    pub fn is_relay_in(&self, cluster: u16) -> bool {
        self.flags & FLAG_RELAY != 0
            && self.shards.as_ref().is_none_or(|(c, _)| *c == cluster)
            && !self.addrs.is_empty()
    }
}

fn tcp_addr(ip: IpAddr, port: u16) -> Multiaddr {
    Multiaddr::empty().with(ip.into()).with(Protocol::Tcp(port))
}

/// Our addresses for the record: the IP and TCP port of the first TCP listen address
/// (`ip`/`tcp`), WebSocket ones in `multiaddrs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    /// IPv4 address and TCP port.
    pub tcp4: Option<(Ipv4Addr, u16)>,
    /// IPv6 address and TCP port.
    pub tcp6: Option<(Ipv6Addr, u16)>,
    /// Addresses `ip`/`tcp` cannot express (WebSocket).
    pub other: Vec<Multiaddr>,
}

/// Builds and signs our ENR.
pub fn build_local_enr(
    key: &CombinedKey,
    addrs: &LocalAddrs,
    udp_port: u16,
    cluster: u16,
    shards: &[u16],
    shards_key: &str,
) -> Result<Enr, String> {
    let mut b = Enr::builder();
    if let Some((ip, tcp)) = addrs.tcp4 {
        b.ip4(ip).tcp4(tcp).udp4(udp_port);
    }
    if let Some((ip, tcp)) = addrs.tcp6 {
        b.ip6(ip).tcp6(tcp);
        if addrs.tcp4.is_none() {
            b.udp6(udp_port);
        }
    }
    b.add_value("waku2", &[FLAG_RELAY].as_slice());
    b.add_value(
        shards_key,
        &shards_value(shards_key, cluster, shards).as_slice(),
    );
    if !addrs.other.is_empty() {
        b.add_value("multiaddrs", &encode_multiaddrs(&addrs.other).as_slice());
    }
    b.build(key).map_err(|e| format!("building our ENR: {e}"))
}

/// The ENR key for our shards: `rs` for fewer than [`RSV_FROM`] shards, else `rsv`.
pub fn shards_key(count: usize) -> &'static str {
    if count < RSV_FROM { "rs" } else { "rsv" }
}

/// The value of `key` (`rs` or `rsv`) for these shards.
pub fn shards_value(key: &str, cluster: u16, shards: &[u16]) -> Vec<u8> {
    if key == "rsv" {
        encode_rsv(cluster, shards)
    } else {
        encode_rs(cluster, shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (libp2p::identity::Keypair, CombinedKey) {
        let kp = libp2p::identity::Keypair::generate_secp256k1();
        let ck = enr_key(&kp).unwrap();
        (kp, ck)
    }

    #[test]
    fn our_record_reads_back_as_a_waku_relay_peer() {
        let (kp, ck) = key();
        let ws: Multiaddr = "/ip4/10.0.0.1/tcp/8000/ws".parse().unwrap();
        let addrs = LocalAddrs {
            tcp4: Some((Ipv4Addr::new(10, 0, 0, 1), 60000)),
            tcp6: None,
            other: vec![ws.clone()],
        };
        let enr = build_local_enr(&ck, &addrs, 60000, 15, &[3, 5], "rs").unwrap();
        let text = enr.to_base64();
        assert!(text.starts_with("enr:"), "{text}");
        let back = parse_enr(&text).unwrap();
        let p = WakuPeer::from_enr(&back).unwrap();
        assert_eq!(p.peer_id, kp.public().to_peer_id());
        assert!(p.peer_id.to_string().starts_with("16Uiu2"), "{}", p.peer_id);
        assert_eq!(
            p.addrs,
            vec![
                format!("/ip4/10.0.0.1/tcp/60000/p2p/{}", p.peer_id)
                    .parse::<Multiaddr>()
                    .unwrap(),
                ws.with(Protocol::P2p(p.peer_id)),
            ]
        );
        assert_eq!(p.flags, FLAG_RELAY);
        assert_eq!(p.shards, Some((15, vec![3, 5])));
        assert!(p.is_relay_in(15));
        assert!(!p.is_relay_in(16));
        assert_eq!(back.udp4(), Some(60000));
    }

    /// The spec's `rs` example (16u16 | 3u8 | 13u16 | 14u16 | 45u16), and the same shards
    /// as `rsv` in nwaku's bit layout.
    #[test]
    fn shard_fields_match_the_spec_examples() {
        assert_eq!(
            encode_rs(16, &[13, 14, 45]),
            vec![0, 16, 3, 0, 13, 0, 14, 0, 45]
        );
        assert_eq!(
            decode_rs(&encode_rs(16, &[13, 14, 45])),
            Some((16, vec![13, 14, 45]))
        );
        let rsv = encode_rsv(16, &[13, 14, 45]);
        assert_eq!(rsv.len(), 130);
        assert_eq!(&rsv[..2], &[0, 16]);
        assert_eq!(hex::encode(&rsv[2..8]), "006000000020");
        assert!(rsv[8..].iter().all(|b| *b == 0));
        assert_eq!(decode_rsv(&rsv), Some((16, vec![13, 14, 45])));
        assert_eq!(shards_key(100), "rsv");
        assert_eq!(shards_key(1), "rs");
        assert_eq!(
            decode_rs(&[0, 1, 2, 0]),
            None,
            "count says 2, one byte follows"
        );
    }

    #[test]
    fn bad_enrs_are_refused_with_a_reason() {
        assert!(
            parse_enr("/ip4/1.2.3.4/tcp/1")
                .unwrap_err()
                .contains("not an ENR")
        );
        assert!(parse_enr("enr:abc").unwrap_err().contains("invalid ENR"));
        // A valid record with one character of its signature changed.
        let (_, ck) = key();
        let enr = build_local_enr(&ck, &LocalAddrs::default(), 9000, 15, &[], "rs").unwrap();
        let text = enr.to_base64();
        assert!(parse_enr(&text).is_ok());
        let mut chars: Vec<char> = text.chars().collect();
        chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(parse_enr(&tampered).is_err());
    }

    #[test]
    fn records_travel_as_rlp_bytes() {
        let (_, ck) = key();
        let enr = build_local_enr(&ck, &LocalAddrs::default(), 9000, 15, &[1], "rs").unwrap();
        let bytes = alloy_rlp::encode(&enr);
        assert_eq!(decode_rlp(&bytes), Some(enr));
        assert_eq!(decode_rlp(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_rlp(b"junk"), None);
    }

    #[test]
    fn multiaddrs_round_trip_and_junk_is_refused() {
        let a: Vec<Multiaddr> = vec![
            "/dns4/example.com/tcp/443/wss".parse().unwrap(),
            "/ip4/1.2.3.4/tcp/8000/ws".parse().unwrap(),
        ];
        assert_eq!(decode_multiaddrs(&encode_multiaddrs(&a)), Some(a));
        assert_eq!(decode_multiaddrs(&[0, 9, 1]), None);
        assert_eq!(rlp_string(&[0x83, 1, 2, 3]), Some(&[1u8, 2, 3][..]));
        assert_eq!(rlp_string(&[0x85, 1]), None);
    }
}

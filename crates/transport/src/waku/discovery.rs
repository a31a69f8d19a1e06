//! 33/WAKU2-DISCV5: discv5 under Waku's protocol id `d5waku`, with our Waku ENR. It feeds
//! the swarm task with relay peers to dial; the dialing itself (up to the peer target) is
//! in `node.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use discv5::{ConfigBuilder, Discv5, Event, ListenConfig, ProtocolIdentity};
use enr::{CombinedKey, NodeId};
use tokio::sync::mpsc;

use super::enr::{Enr, LocalAddrs, WakuPeer, build_local_enr, enr_key, shards_value};
use crate::TransportError;

/// The discv5 protocol id of the Waku discovery network (33/WAKU2-DISCV5), in place of
/// Ethereum's `discv5`: Waku nodes and Ethereum nodes do not share tables.
pub const PROTOCOL_ID: [u8; 6] = *b"d5waku";

/// Something discovery learned.
pub(super) enum Found {
    /// Records from a lookup, an incoming session, or the routing table.
    Records(Vec<Enr>),
    /// discv5 updated our record's address from what peers see (PONG votes).
    OurAddressChanged,
}

/// A running discv5 service.
pub(super) struct Discovery {
    discv5: Discv5,
    cluster: u16,
    shards_key: &'static str,
    events: mpsc::Receiver<Event>,
    found_tx: mpsc::Sender<Found>,
    found_rx: mpsc::Receiver<Found>,
    /// A lookup is under way.
    pub querying: bool,
}

/// The UDP port to bind: `port`, or, for 0, one the OS has free right now (the ENR must
/// carry the real port, and discv5 cannot report the one it bound).
fn pick_udp_port(ip: IpAddr, port: u16) -> Result<u16, TransportError> {
    if port != 0 {
        return Ok(port);
    }
    UdpSocket::bind(SocketAddr::new(ip, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| TransportError::Io(format!("discv5: no free UDP port on {ip}: {e}")))
}

/// The address other hosts reach us at when we listen on all interfaces: the source
/// address of the default route (a UDP `connect` sends nothing), else loopback.
pub(super) fn default_route_ip() -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

impl Discovery {
    /// Binds `udp_port` on `bind_ip`, signs our record and starts the service.
    pub(super) async fn start(
        key: &libp2p::identity::Keypair,
        bind_ip: IpAddr,
        udp_port: u16,
        addrs: &LocalAddrs,
        cluster: u16,
        shards: &[u16],
        many_shards: bool,
    ) -> Result<Self, TransportError> {
        let io = |e: String| TransportError::Io(format!("discv5: {e}"));
        let port = pick_udp_port(bind_ip, udp_port)?;
        let ck: CombinedKey = enr_key(key).map_err(io)?;
        let shards_key = if many_shards { "rsv" } else { "rs" };
        let local = build_local_enr(&ck, addrs, port, cluster, shards, shards_key).map_err(io)?;
        let cfg = ConfigBuilder::new(ListenConfig::from_ip(bind_ip, port))
            .protocol_identity(ProtocolIdentity {
                protocol_id: PROTOCOL_ID,
                protocol_version: 1u16.to_be_bytes(),
            })
            .query_timeout(Duration::from_secs(10))
            .build();
        let mut discv5 = Discv5::new(local, ck, cfg).map_err(|e| io(e.to_string()))?;
        discv5
            .start()
            .await
            .map_err(|e| io(format!("cannot bind UDP {bind_ip}:{port}: {e:?}")))?;
        let events = discv5
            .event_stream()
            .await
            .map_err(|e| io(format!("{e:?}")))?;
        let (found_tx, found_rx) = mpsc::channel(64);
        tracing::info!(udp = port, enr = %discv5.local_enr().to_base64(), "discv5 up");
        Ok(Self {
            discv5,
            cluster,
            shards_key,
            events,
            found_tx,
            found_rx,
            querying: false,
        })
    }

    /// Our current record, `enr:…`.
    pub(super) fn local_enr(&self) -> String {
        self.discv5.local_enr().to_base64()
    }

    /// Adds a bootstrap record to the routing table.
    pub(super) fn add_bootstrap(&self, enr: Enr) {
        let id = enr.node_id();
        if let Err(e) = self.discv5.add_enr(enr) {
            tracing::warn!(node = %id, error = e, "discv5: bootstrap record not added");
        }
    }

    /// Re-signs our record with the shards we relay now (its sequence number goes up).
    pub(super) fn set_shards(&self, shards: &[u16]) {
        let v = shards_value(self.shards_key, self.cluster, shards);
        if let Err(e) = self.discv5.enr_insert(self.shards_key, &v.as_slice()) {
            tracing::warn!(error = ?e, "discv5: cannot update the shards in our ENR");
        }
    }

    /// Starts a lookup of a random node id; its records arrive through [`Self::next`].
    pub(super) fn lookup(&mut self) {
        if self.querying {
            return;
        }
        self.querying = true;
        let q = self.discv5.find_node(NodeId::random());
        let tx = self.found_tx.clone();
        let table = self.discv5.table_entries_enr();
        tokio::spawn(async move {
            let mut found = q.await.unwrap_or_default();
            found.extend(table);
            let _ = tx.send(Found::Records(found)).await;
        });
    }

    /// The next thing discovery learned: lookup results, or records of nodes we just
    /// talked to or heard of.
    pub(super) async fn next(&mut self) -> Option<(Found, bool)> {
        tokio::select! {
            f = self.found_rx.recv() => f.map(|f| (f, true)),
            ev = self.events.recv() => match ev? {
                Event::Discovered(enr) | Event::SessionEstablished(enr, _) => {
                    Some((Found::Records(vec![enr]), false))
                }
                Event::SocketUpdated(addr) => {
                    tracing::info!(%addr, enr = %self.local_enr(), "discv5: our ENR address changed");
                    Some((Found::OurAddressChanged, false))
                }
                _ => Some((Found::Records(Vec::new()), false)),
            },
        }
    }

    /// The Waku relay peers in `records`, in our cluster, other than us.
    pub(super) fn relay_peers(&self, records: &[Enr]) -> Vec<WakuPeer> {
        let me = self.discv5.local_enr().node_id();
        records
            .iter()
            .filter(|r| r.node_id() != me)
            .filter_map(|r| WakuPeer::from_enr(r).ok())
            .filter(|p| p.is_relay_in(self.cluster))
            .collect()
    }

    /// Our own record, then up to `n − 1` relay records from our routing table, for a peer
    /// exchange answer to `asker` (its own record left out), RLP-encoded. Our own record
    /// is what lets a node that reached us by a plain multiaddr join discovery: with it,
    /// its discv5 contacts us, and we learn its record in turn.
    pub(super) fn records_for(&self, asker: libp2p::PeerId, n: usize) -> Vec<Vec<u8>> {
        if n == 0 {
            return Vec::new();
        }
        let local = self.discv5.local_enr();
        let me = local.node_id();
        let table = self.discv5.table_entries_enr();
        let others = table
            .iter()
            .filter(|r| r.node_id() != me)
            .filter(|r| {
                WakuPeer::from_enr(r)
                    .is_ok_and(|p| p.peer_id != asker && p.is_relay_in(self.cluster))
            })
            .take(n - 1)
            .map(alloy_rlp::encode);
        std::iter::once(alloy_rlp::encode(&local))
            .chain(others)
            .collect()
    }

    /// Stops the service.
    pub(super) fn shutdown(&mut self) {
        self.discv5.shutdown();
    }
}

//! The swarm task: owns the libp2p swarm, runs commands from the handle, validates and
//! delivers inbound messages, answers metadata, and redials bootstrap peers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, noise, ping, tcp, yamux};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::behaviour::{WakuBehaviour, WakuBehaviourEvent};
use super::metadata::pb as meta;
use super::{
    Command, GOSSIP_THRESHOLD, GRAYLIST_THRESHOLD, MAX_MESSAGE_SIZE, METADATA_PROTOCOL,
    PUBLISH_THRESHOLD, RELAY_PROTOCOL, Shared, WakuConfig, validate,
};
use crate::message::relay_message_id;
use crate::{InboundPacket, TransportError, parse_content_topic, pubsub_topic};

fn io(e: impl std::fmt::Display) -> TransportError {
    TransportError::Io(e.to_string())
}

/// Loads the node key, creating it (mode 0600) on first start.
fn node_key(path: Option<&Path>) -> Result<Keypair, TransportError> {
    let Some(path) = path else {
        return Ok(Keypair::generate_ed25519());
    };
    if path.exists() {
        let bytes = std::fs::read(path)
            .map_err(|e| io(format!("reading node key {}: {e}", path.display())))?;
        return Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| io(format!("node key {} is unreadable: {e}", path.display())));
    }
    let key = Keypair::generate_ed25519();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let bytes = key.to_protobuf_encoding().map_err(io)?;
    std::fs::write(path, bytes)
        .map_err(|e| io(format!("writing node key {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(key)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The gossipsub message id of a relay message: SHA-256 of its bytes (the encoded
/// WakuMessage), as nwaku and js-waku compute it. Not the deterministic message hash:
/// that one needs a decodable message, and gossipsub needs an id for every message,
/// including the undecodable ones it must remember as rejected.
fn message_id(m: &gossipsub::Message) -> gossipsub::MessageId {
    gossipsub::MessageId::from(relay_message_id(&m.data).to_vec())
}

fn relay_behaviour(key: &Keypair) -> Result<gossipsub::Behaviour, TransportError> {
    let cfg = gossipsub::ConfigBuilder::default()
        .protocol_id(RELAY_PROTOCOL, gossipsub::Version::V1_1)
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(MAX_MESSAGE_SIZE + 16 * 1024)
        .heartbeat_interval(Duration::from_millis(700))
        .message_id_fn(message_id)
        .build()
        .map_err(|e| TransportError::Config(format!("gossipsub: {e}")))?;
    let _ = key;
    let mut b = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, cfg)
        .map_err(|e| TransportError::Config(e.to_string()))?;
    b.with_peer_score(score_params(), score_thresholds())
        .map_err(|e| TransportError::Config(format!("peer score: {e}")))?;
    Ok(b)
}

/// nwaku's thresholds (gossip −100, publish −1000, graylist −10000), far below anything
/// an honest peer scores here; rust-libp2p's defaults for the rest (peer exchange, which
/// `accept_px` gates, is off; opportunistic grafting as usual).
fn score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..Default::default()
    }
}

/// Peer-wide scoring. The IP-colocation penalty (P6) is off: it punishes honest peers
/// that share an address (nodes on one host, users behind one NAT) quadratically, and
/// any negative score already keeps a peer out of the mesh. With rust-libp2p's default
/// (more than 10 peers per address, weight −5) 15 peers on one address were greylisted
/// at −80; with nwaku's (5, −50), 20 peers are greylisted at −10000 (see docs/WAKU.md).
/// No application-specific score (P5). Behaviour penalties (P7) and the 1 s decay
/// interval are rust-libp2p's defaults, which the topic parameters' decays assume.
fn score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        app_specific_weight: 0.0,
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    }
}

/// Scoring per relayed shard. Invalid messages dominate: the positive terms are capped
/// small (at most 0.1 for time in mesh and 10 for first deliveries, 10.1 per shard), so
/// one rejected message (−800 × count², the count halving each second) keeps a peer below
/// the gossip threshold (−100) for 1 to 2 s, even with full credit on all 8 default
/// shards: −800/4 + 8 × 10.1 < −100 after the first decay. Two at once (−3200) take it
/// below the publish threshold, four (−12800) below the graylist threshold. Mesh delivery
/// deficits are not penalized: de-MLS shards are quiet for minutes, and a silent honest
/// peer must not look like a bad one.
fn topic_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 10.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.5,
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: 0.5,
        ..Default::default()
    }
}

/// P4 weight per shard (nwaku: −100, which with its positive terms leaves a peer that sent
/// one invalid message above the gossip threshold of −100).
const INVALID_MESSAGE_WEIGHT: f64 = -800.0;

struct Bootstrap {
    addr: Multiaddr,
    peer: Option<PeerId>,
    next_dial: Instant,
    backoff: Duration,
}

struct Node {
    swarm: Swarm<WakuBehaviour>,
    cfg: WakuConfig,
    instance: Vec<u8>,
    shared: Arc<Mutex<Shared>>,
    inbound: mpsc::Sender<InboundPacket>,
    bootstrap: Vec<Bootstrap>,
}

pub(super) async fn spawn(
    cfg: WakuConfig,
    instance: Vec<u8>,
    shared: Arc<Mutex<Shared>>,
    cmds: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<InboundPacket>,
) -> Result<tokio::task::JoinHandle<()>, TransportError> {
    let key = node_key(cfg.node_key_file.as_deref())?;
    let relay = relay_behaviour(&key)?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(io)?
        .with_dns()
        .map_err(io)?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .map_err(io)?
        .with_behaviour(|key| {
            Ok(WakuBehaviour {
                relay,
                identify: identify::Behaviour::new(
                    identify::Config::new("/ipfs/id/1.0.0".into(), key.public())
                        .with_agent_version(format!("demls-node/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                metadata: request_response::Behaviour::new(
                    [(
                        StreamProtocol::new(METADATA_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default(),
                ),
            })
        })
        .map_err(io)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    let mut node = Node {
        swarm,
        bootstrap: cfg
            .bootstrap
            .iter()
            .filter_map(|a| a.parse().ok())
            .map(|addr| Bootstrap {
                addr,
                peer: None,
                next_dial: Instant::now(),
                backoff: Duration::from_millis(500),
            })
            .collect(),
        cfg,
        instance,
        shared,
        inbound,
    };
    let peer_id = *node.swarm.local_peer_id();
    if let Ok(mut s) = node.shared.lock() {
        s.stats.peer_id = peer_id.to_string();
    }
    for a in &node.cfg.listen {
        let addr: Multiaddr = a
            .parse()
            .map_err(|e| TransportError::Config(format!("waku.listen: {a:?}: {e}")))?;
        node.swarm
            .listen_on(addr.clone())
            .map_err(|e| io(format!("cannot listen on {addr}: {e}")))?;
    }
    for shard in node.cfg.relay_shards.clone() {
        node.subscribe(&pubsub_topic(node.cfg.cluster_id, shard));
    }
    // Wait until the listeners are bound, so the caller can report real addresses.
    let deadline = Instant::now() + Duration::from_secs(5);
    while node
        .shared
        .lock()
        .map(|s| s.stats.listen_addrs.len())
        .unwrap_or(0)
        < node.cfg.listen.len()
        && Instant::now() < deadline
    {
        tokio::select! {
            ev = node.swarm.select_next_some() => node.on_event(ev),
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    Ok(tokio::spawn(node.run(cmds)))
}

impl Node {
    fn subscribe(&mut self, topic: &str) {
        let t = IdentTopic::new(topic);
        let _ = self.swarm.behaviour_mut().relay.subscribe(&t);
        let _ = self
            .swarm
            .behaviour_mut()
            .relay
            .set_topic_params(t, topic_params());
        tracing::info!(pubsub_topic = topic, "relaying shard");
    }

    fn my_shards(&self) -> Vec<u32> {
        let s = self.shared.lock();
        let mut shards: Vec<u32> = self.cfg.relay_shards.clone();
        if let Ok(s) = s {
            for t in s.topic_refs.iter().filter(|(_, n)| **n > 0).map(|(t, _)| t) {
                if let Some(sh) = t.rsplit('/').next().and_then(|x| x.parse().ok()) {
                    shards.push(sh);
                }
            }
        }
        shards.sort();
        shards.dedup();
        shards
    }

    fn count(&self, topic: &str, f: impl FnOnce(&mut crate::TopicStats)) {
        if let Ok(mut s) = self.shared.lock() {
            f(s.stats.topics.entry(topic.to_string()).or_default());
        }
    }

    fn update_peers(&self) {
        let n = self.swarm.connected_peers().count();
        if let Ok(mut s) = self.shared.lock() {
            s.stats.connected_peers = n;
        }
    }

    /// Gossipsub scores of connected peers, so operators (and tests) can see that a peer
    /// sending invalid messages is being punished.
    fn update_scores(&self) {
        let relay = &self.swarm.behaviour().relay;
        let scores = self
            .swarm
            .connected_peers()
            .filter_map(|p| relay.peer_score(p).map(|s| (p.to_string(), s)))
            .collect();
        if let Ok(mut s) = self.shared.lock() {
            s.stats.peer_scores = scores;
        }
    }

    async fn run(mut self, mut cmds: mpsc::Receiver<Command>) {
        let mut redial = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_event(ev),
                cmd = cmds.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown(done)) => { let _ = done.send(()); break; }
                    Some(c) => self.on_command(c),
                },
                _ = redial.tick() => {
                    self.redial();
                    self.update_scores();
                }
            }
        }
        tracing::info!("waku relay stopped");
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Publish { topic, data, reply } => {
                // What gossipsub computes too, for the cases where it returns no id.
                let id = relay_message_id(&data).to_vec();
                let r = self
                    .swarm
                    .behaviour_mut()
                    .relay
                    .publish(IdentTopic::new(&topic), data);
                let r = match r {
                    Ok(id) => {
                        self.count(&topic, |s| s.published += 1);
                        Ok(id.0)
                    }
                    // Alone on the network: nothing to do, and not worth an error upstream.
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
                    | Err(gossipsub::PublishError::Duplicate) => {
                        self.count(&topic, |s| s.published += 1);
                        Ok(id)
                    }
                    Err(e) => Err(TransportError::Publish(e.to_string())),
                };
                let _ = reply.send(r);
            }
            Command::Subscribe(t) => self.subscribe(&t),
            Command::Unsubscribe(t) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .relay
                    .unsubscribe(&IdentTopic::new(t));
            }
            Command::Shutdown(_) => {}
        }
    }

    fn redial(&mut self) {
        let now = Instant::now();
        let max = Duration::from_secs(self.cfg.max_redial_secs.max(1));
        for i in 0..self.bootstrap.len() {
            let connected = self.bootstrap[i]
                .peer
                .is_some_and(|p| self.swarm.is_connected(&p));
            let b = &mut self.bootstrap[i];
            if connected || now < b.next_dial {
                continue;
            }
            b.next_dial = now + b.backoff;
            b.backoff = (b.backoff * 2).min(max);
            let addr = b.addr.clone();
            tracing::debug!(%addr, "dialing bootstrap peer");
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "dial failed");
            }
        }
    }

    fn on_event(&mut self, ev: SwarmEvent<WakuBehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = format!("{address}/p2p/{}", self.swarm.local_peer_id());
                tracing::info!(address = %full, "listening");
                if let Ok(mut s) = self.shared.lock() {
                    s.stats.listen_addrs.push(full);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    for b in self.bootstrap.iter_mut() {
                        if &b.addr == address
                            || address.to_string().starts_with(&b.addr.to_string())
                        {
                            b.peer = Some(peer_id);
                            b.backoff = Duration::from_millis(500);
                        }
                    }
                }
                self.update_peers();
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, "connected");
                    let req = meta::WakuMetadataRequest {
                        cluster_id: Some(self.cfg.cluster_id),
                        shards: self.my_shards(),
                    };
                    self.swarm
                        .behaviour_mut()
                        .metadata
                        .send_request(&peer_id, req);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                self.update_peers();
                if num_established == 0 {
                    tracing::info!(peer = %peer_id, "disconnected");
                }
            }
            SwarmEvent::Behaviour(WakuBehaviourEvent::Relay(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_message(propagation_source, message_id, message),
            SwarmEvent::Behaviour(WakuBehaviourEvent::Metadata(
                request_response::Event::Message { peer, message, .. },
            )) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let res = meta::WakuMetadataResponse {
                        cluster_id: Some(self.cfg.cluster_id),
                        shards: self.my_shards(),
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .metadata
                        .send_response(channel, res);
                    self.check_cluster(peer, request.cluster_id);
                }
                request_response::Message::Response { response, .. } => {
                    self.check_cluster(peer, response.cluster_id)
                }
            },
            _ => {}
        }
    }

    fn check_cluster(&mut self, peer: PeerId, cluster: Option<u32>) {
        if let Some(c) = cluster
            && c != self.cfg.cluster_id
        {
            tracing::warn!(%peer, their_cluster = c, our_cluster = self.cfg.cluster_id, "peer is in another cluster: disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_message(&mut self, source: PeerId, id: gossipsub::MessageId, m: gossipsub::Message) {
        let topic = m.topic.as_str().to_string();
        let verdict = validate(&m.data, now_ns(), self.cfg.max_timestamp_skew_secs);
        let relay = &mut self.swarm.behaviour_mut().relay;
        let msg = match verdict {
            Ok(w) => {
                let _ =
                    relay.report_message_validation_result(&id, &source, MessageAcceptance::Accept);
                w
            }
            Err(e) => {
                let _ =
                    relay.report_message_validation_result(&id, &source, MessageAcceptance::Reject);
                tracing::debug!(peer = %source, reason = %e, "rejected relay message");
                // Show the sender's penalty now, not at the next refresh.
                if let (Some(score), Ok(mut s)) = (relay.peer_score(&source), self.shared.lock()) {
                    s.stats.peer_scores.insert(source.to_string(), score);
                }
                self.count(&topic, |s| {
                    *s.rejected.entry(e.label().to_string()).or_default() += 1
                });
                return;
            }
        };
        self.count(&topic, |s| s.received += 1);
        if msg.meta.as_deref() == Some(self.instance.as_slice()) {
            return; // our own echo
        }
        let Ok((conversation, subtopic)) = parse_content_topic(&msg.content_topic) else {
            return; // another application's traffic on a shard we relay
        };
        let ours = self
            .shared
            .lock()
            .is_ok_and(|s| s.conversations.contains(&conversation));
        if !ours {
            return;
        }
        let pkt = InboundPacket {
            message_id: id.0,
            conversation,
            subtopic,
            payload: msg.payload,
            sender_instance: msg.meta.unwrap_or_default(),
            timestamp_ns: msg.timestamp.unwrap_or(0),
            pubsub_topic: topic,
        };
        if self.inbound.try_send(pkt).is_err() {
            tracing::warn!("inbound queue full: dropping a packet");
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::message::{WakuMessage, message_hash};

    /// The scoring arithmetic docs/WAKU.md states: the parameters are valid, one invalid
    /// message outweighs the most positive credit a peer can hold on the 8 default shards
    /// until after the next decay, and a peer's address costs it nothing.
    #[test]
    fn one_invalid_message_outweighs_all_credit_and_shared_addresses_cost_nothing() {
        let (p, t, topic) = (score_params(), score_thresholds(), topic_params());
        p.validate().unwrap();
        t.validate().unwrap();
        topic.validate().unwrap();
        let credit = topic.topic_weight
            * (topic.time_in_mesh_weight * topic.time_in_mesh_cap
                + topic.first_message_deliveries_weight * topic.first_message_deliveries_cap);
        let invalid_after = |decays: i32| {
            topic.topic_weight
                * topic.invalid_message_deliveries_weight
                * topic.invalid_message_deliveries_decay.powi(decays).powi(2)
        };
        assert!(invalid_after(1) + 8.0 * credit < t.gossip_threshold);
        assert!(
            invalid_after(0) > t.publish_threshold,
            "one is not a publish ban"
        );
        assert!(
            4.0 * 4.0 * invalid_after(0) < t.graylist_threshold,
            "four are a graylist"
        );
        assert_eq!(p.ip_colocation_factor_weight, 0.0);
    }

    /// The relay's gossipsub message id is SHA-256 of the message bytes, as nwaku's
    /// `defaultMessageIdProvider` and js-waku's `msgIdFnStrictNoSign` compute it; the
    /// 14/WAKU2-MESSAGE deterministic hash is another value.
    #[test]
    fn gossipsub_message_id_is_sha256_of_the_encoded_waku_message() {
        // The first 14/WAKU2-MESSAGE spec vector, encoded (as tests/interop's Python
        // encoder writes it too), and the SHA-256 of those bytes.
        let data = hex::decode(
            "0a0c010203045445535405060708121d2f77616b752f322f64656661756c742d636f6e74656e742f\
             70726f746f508090fca3f4efc4d72e5a0c73757065722d736563726574",
        )
        .unwrap();
        let want = "ce571a2092b1c046d6ed3c476b55d64db1d93bc76348d343e832399326adbea6";
        let pubsub = "/waku/2/default-waku/proto";
        let w = WakuMessage::decode(data.as_slice()).unwrap();
        assert_eq!(w.encode_to_vec(), data, "prost encodes the vector alike");
        let m = gossipsub::Message {
            source: None,
            data: data.clone(),
            sequence_number: None,
            topic: gossipsub::TopicHash::from_raw(pubsub),
        };
        let id = message_id(&m);
        assert_eq!(hex::encode(&id.0), want);
        let deterministic = message_hash(pubsub, &w);
        assert_eq!(
            hex::encode(deterministic),
            "64cce733fed134e83da02b02c6f689814872b1a0ac97ea56b76095c3c72bfe05"
        );
        assert_ne!(id.0, deterministic.to_vec());
    }
}

//! The baseline: bare rust-libp2p gossipsub swarms with the relay's gossipsub settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use demls_transport::message::relay_message;
use demls_transport::waku::{relay_gossipsub, relay_topic_score_params};
use demls_transport::{Subtopic, content_topic};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

use super::{CONV, Net, Settings, dial_targets, free_port, topic};

/// A publish request: the encoded message, and where to say it went out (when the
/// caller waits for that).
type Publish = (Vec<u8>, Option<oneshot::Sender<()>>);

/// One swarm task per peer.
pub struct PlainNet {
    publish: Vec<mpsc::Sender<Publish>>,
    /// Whether a publish waits until the swarm task has published (as
    /// `WakuRelay::publish` does, which answers with the message id) or returns once
    /// the request is queued.
    awaited: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    received: Vec<Arc<AtomicU64>>,
    warm: Vec<Arc<AtomicU64>>,
    instance: Vec<u8>,
}

/// What one swarm task shares with the bench.
struct Counters {
    received: Arc<AtomicU64>,
    warm: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    /// Messages at least this long are measured ones, shorter ones warm-up (the payload
    /// is not decoded: plain gossipsub does not know it is a WakuMessage).
    measured_len: usize,
}

fn swarm(addr: &Multiaddr) -> Result<libp2p::Swarm<gossipsub::Behaviour>, String> {
    let relay = relay_gossipsub().map_err(|e| e.to_string())?;
    // A secp256k1 identity, as the relay's node key.
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_secp256k1())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| e.to_string())?
        .with_behaviour(|_| relay)
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    let t = IdentTopic::new(topic());
    swarm
        .behaviour_mut()
        .subscribe(&t)
        .map_err(|e| e.to_string())?;
    swarm
        .behaviour_mut()
        .set_topic_params(t, relay_topic_score_params())
        .map_err(|e| e.to_string())?;
    swarm.listen_on(addr.clone()).map_err(|e| e.to_string())?;
    Ok(swarm)
}

async fn run(
    mut swarm: libp2p::Swarm<gossipsub::Behaviour>,
    mut publish: mpsc::Receiver<Publish>,
    c: Counters,
) {
    let topic = IdentTopic::new(topic());
    loop {
        tokio::select! {
            cmd = publish.recv() => match cmd {
                Some((data, done)) => {
                    let _ = swarm.behaviour_mut().publish(topic.clone(), data);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                None => return,
            },
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::Behaviour(gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                }) => {
                    let _ = swarm.behaviour_mut().report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Accept,
                    );
                    let counter = if message.data.len() >= c.measured_len {
                        &c.received
                    } else {
                        &c.warm
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                SwarmEvent::ConnectionEstablished { .. } => {
                    c.connections.fetch_add(1, Ordering::Relaxed);
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    c.connections.fetch_sub(1, Ordering::Relaxed);
                }
                _ => {}
            },
        }
    }
}

/// Starts the swarms, each dialing its [`dial_targets`], and waits for the connections.
/// `awaited`: see [`PlainNet`].
pub async fn start(s: Settings, awaited: bool) -> Result<PlainNet, String> {
    let addrs: Vec<Multiaddr> = (0..s.peers)
        .map(|_| {
            format!("/ip4/127.0.0.1/tcp/{}", free_port())
                .parse()
                .unwrap()
        })
        .collect();
    let mut net = PlainNet {
        publish: Vec::new(),
        awaited,
        tasks: Vec::new(),
        received: Vec::new(),
        warm: Vec::new(),
        instance: (0..16).map(|_| rand::random::<u8>()).collect(),
    };
    let mut conns = Vec::new();
    for i in 0..s.peers {
        let mut sw = swarm(&addrs[i])?;
        for j in dial_targets(i) {
            sw.dial(addrs[j].clone()).map_err(|e| e.to_string())?;
        }
        let (tx, rx) = mpsc::channel(1024);
        let c = Counters {
            received: Arc::new(AtomicU64::new(0)),
            warm: Arc::new(AtomicU64::new(0)),
            connections: Arc::new(AtomicUsize::new(0)),
            measured_len: s.size,
        };
        net.received.push(c.received.clone());
        net.warm.push(c.warm.clone());
        conns.push(c.connections.clone());
        net.publish.push(tx);
        net.tasks.push(tokio::spawn(run(sw, rx, c)));
        // Let the listener come up before the next peer dials it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = conns.iter().enumerate().all(|(i, c)| {
            let want = dial_targets(i).len()
                + (i + 1..s.peers)
                    .filter(|j| dial_targets(*j).contains(&i))
                    .count();
            c.load(Ordering::Relaxed) >= want
        });
        if ok {
            let degree: Vec<usize> = conns.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            eprintln!("plain gossipsub: connections per swarm {degree:?}");
            return Ok(net);
        }
        if Instant::now() > end {
            return Err("swarms did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Net for PlainNet {
    /// The same WakuMessage bytes as the relay's `publish` would send.
    async fn publish(&self, payload: Vec<u8>) {
        let topic = content_topic(CONV, Subtopic::AppMsg).expect("topic");
        let msg = relay_message(payload, topic, self.instance.clone());
        let data = prost::Message::encode_to_vec(&msg);
        if self.awaited {
            let (tx, rx) = oneshot::channel();
            if self.publish[0].send((data, Some(tx))).await.is_ok() {
                let _ = rx.await;
            }
        } else {
            let _ = self.publish[0].send((data, None)).await;
        }
    }

    fn received(&self) -> &[Arc<AtomicU64>] {
        &self.received
    }

    fn warm(&self) -> &[Arc<AtomicU64>] {
        &self.warm
    }

    async fn stop(self) {
        drop(self.publish);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

//! An in-process transport for protocol and node tests: every node sees every other
//! node's packets for the conversations it subscribed to, never its own.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{InboundPacket, Subtopic, Transport, TransportError, TransportStats, content_topic};

struct Peer {
    instance: Vec<u8>,
    subs: Arc<Mutex<BTreeSet<String>>>,
    tx: mpsc::Sender<InboundPacket>,
}

/// A shared in-memory "network".
#[derive(Default)]
pub struct MemoryNetwork {
    peers: Mutex<Vec<Peer>>,
}

impl MemoryNetwork {
    /// A new, empty network.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds a node; returns its transport and inbound stream.
    pub fn node(self: &Arc<Self>) -> (MemoryTransport, mpsc::Receiver<InboundPacket>) {
        let (tx, rx) = mpsc::channel(1024);
        let subs = Arc::new(Mutex::new(BTreeSet::new()));
        let instance: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
        if let Ok(mut p) = self.peers.lock() {
            p.push(Peer {
                instance: instance.clone(),
                subs: subs.clone(),
                tx,
            });
        }
        (
            MemoryTransport {
                net: self.clone(),
                instance,
                subs,
            },
            rx,
        )
    }
}

/// One node's view of a [`MemoryNetwork`].
pub struct MemoryTransport {
    net: Arc<MemoryNetwork>,
    instance: Vec<u8>,
    subs: Arc<Mutex<BTreeSet<String>>>,
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn publish(
        &self,
        conversation: &str,
        subtopic: Subtopic,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        content_topic(conversation, subtopic)?;
        let targets: Vec<mpsc::Sender<InboundPacket>> = match self.net.peers.lock() {
            Ok(p) => p
                .iter()
                .filter(|x| {
                    x.instance != self.instance
                        && x.subs.lock().is_ok_and(|s| s.contains(conversation))
                })
                .map(|x| x.tx.clone())
                .collect(),
            Err(_) => return Err(TransportError::Stopped),
        };
        for tx in targets {
            let _ = tx
                .send(InboundPacket {
                    conversation: conversation.to_string(),
                    subtopic,
                    payload: payload.clone(),
                    sender_instance: self.instance.clone(),
                    timestamp_ns: 0,
                    pubsub_topic: "memory".into(),
                    message_id: Vec::new(),
                })
                .await;
        }
        Ok(())
    }

    async fn subscribe(&self, conversation: &str) -> Result<(), TransportError> {
        content_topic(conversation, Subtopic::AppMsg)?;
        if let Ok(mut s) = self.subs.lock() {
            s.insert(conversation.to_string());
        }
        Ok(())
    }

    async fn unsubscribe(&self, conversation: &str) -> Result<(), TransportError> {
        if let Ok(mut s) = self.subs.lock() {
            s.remove(conversation);
        }
        Ok(())
    }

    fn instance_id(&self) -> &[u8] {
        &self.instance
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            peer_id: format!("memory-{}", hex::encode(&self.instance[..4])),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_to_subscribers_only_and_never_echoes() {
        let net = MemoryNetwork::new();
        let (a, mut ra) = net.node();
        let (b, mut rb) = net.node();
        let (_c, mut rc) = net.node();
        a.subscribe("x").await.unwrap();
        b.subscribe("x").await.unwrap();
        a.publish("x", Subtopic::AppMsg, vec![1]).await.unwrap();
        assert_eq!(rb.recv().await.unwrap().payload, vec![1]);
        assert!(ra.try_recv().is_err());
        assert!(rc.try_recv().is_err());
        assert!(
            a.publish("bad name", Subtopic::AppMsg, vec![])
                .await
                .is_err()
        );
    }
}

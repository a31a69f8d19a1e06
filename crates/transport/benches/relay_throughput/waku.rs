//! The network of our Waku relays, as the node runs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use demls_transport::waku::{WakuConfig, WakuRelay};
use demls_transport::{Subtopic, Transport};

use super::{CONV, MEASURED, Net, Settings, WARM_UP, dial_targets, free_port};

/// `Settings::peers` relays on loopback, subscribed to [`CONV`].
pub struct WakuNet {
    relays: Vec<WakuRelay>,
    received: Vec<Arc<AtomicU64>>,
    warm: Vec<Arc<AtomicU64>>,
}

/// Starts the relays, each dialing its [`dial_targets`], and waits until every one has
/// its connections.
pub async fn start(s: Settings) -> Result<WakuNet, String> {
    let ports: Vec<u16> = (0..s.peers).map(|_| free_port()).collect();
    let mut net = WakuNet {
        relays: Vec::new(),
        received: Vec::new(),
        warm: Vec::new(),
    };
    for i in 0..s.peers {
        let cfg = WakuConfig {
            listen: vec![format!("/ip4/127.0.0.1/tcp/{}", ports[i])],
            bootstrap: dial_targets(i)
                .map(|j| format!("/ip4/127.0.0.1/tcp/{}", ports[j]))
                .collect(),
            discv5_discovery: false,
            ..WakuConfig::default()
        };
        let (relay, mut inbound) = WakuRelay::start(cfg).await.map_err(|e| e.to_string())?;
        relay.subscribe(CONV).await.map_err(|e| e.to_string())?;
        let (got, warm) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (g, w) = (got.clone(), warm.clone());
        tokio::spawn(async move {
            while let Some(p) = inbound.recv().await {
                match p.payload.first() {
                    Some(&MEASURED) => g.fetch_add(1, Ordering::Relaxed),
                    Some(&WARM_UP) => w.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        });
        net.relays.push(relay);
        net.received.push(got);
        net.warm.push(warm);
    }
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = net.relays.iter().enumerate().all(|(i, r)| {
            let want = dial_targets(i).len()
                + (i + 1..s.peers)
                    .filter(|j| dial_targets(*j).contains(&i))
                    .count();
            r.stats().connected_peers >= want
        });
        if ok {
            let degree: Vec<usize> = net
                .relays
                .iter()
                .map(|r| r.stats().connected_peers)
                .collect();
            eprintln!("waku relay: connected peers per relay {degree:?}");
            return Ok(net);
        }
        if Instant::now() > end {
            return Err("relays did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Net for WakuNet {
    async fn publish(&self, payload: Vec<u8>) {
        if let Err(e) = self.relays[0]
            .publish(CONV, Subtopic::AppMsg, payload)
            .await
        {
            eprintln!("publish failed: {e}");
        }
    }

    fn received(&self) -> &[Arc<AtomicU64>] {
        &self.received
    }

    fn warm(&self) -> &[Arc<AtomicU64>] {
        &self.warm
    }

    async fn stop(self) {
        let degree: Vec<usize> = self
            .relays
            .iter()
            .map(|r| r.stats().connected_peers)
            .collect();
        eprintln!("waku relay: connected peers per relay at the end {degree:?}");
        for r in self.relays {
            r.shutdown().await;
        }
    }
}

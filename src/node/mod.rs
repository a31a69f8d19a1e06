//! The node runtime: wires configuration, identity, storage, the Waku relay and the HTTP
//! API around the sans-IO protocol core, and shuts down cleanly on SIGINT / SIGTERM.

mod error;
mod events;
mod handle;
mod metrics;
mod runtime;
mod views;

use std::sync::Arc;

use anyhow::Context;
use demls_core::conversation::LocalIdentity;
use demls_core::identity::EthSigner;
use demls_core::mls::MlsIdentity;
use tokio::sync::{broadcast, mpsc, watch};

pub use error::{NodeError, OpenError, StateError};
pub use handle::NodeHandle;

use crate::config::NodeConfig;
use crate::storage::Storage;

/// Maps the node's `[waku]` section onto the transport's configuration. The libp2p node
/// key lives in the data directory, so a restarted node keeps its peer id.
fn waku_config(config: &NodeConfig) -> demls_transport::waku::WakuConfig {
    let w = &config.waku;
    demls_transport::waku::WakuConfig {
        listen: w.listen.iter().map(|a| a.to_string()).collect(),
        bootstrap: w.bootstrap.iter().map(|a| a.to_string()).collect(),
        discv5_discovery: w.discv5_discovery,
        discv5_udp_port: w.discv5_udp_port,
        discv5_bootstrap: w.discv5_bootstrap.iter().map(|e| e.to_string()).collect(),
        peer_target: w.peer_target,
        ext_ip: w.ext_ip,
        cluster_id: w.cluster_id as u32,
        num_shards: w.num_shards as u32,
        static_shard: match w.sharding {
            crate::config::Sharding::Static => Some(w.static_shard.unwrap_or(0) as u32),
            crate::config::Sharding::Auto => None,
        },
        relay_shards: w.relay_shards.iter().map(|s| *s as u32).collect(),
        node_key_file: Some(config.storage.data_dir.join("node-key.bin")),
        max_timestamp_skew_secs: w.max_timestamp_skew.as_secs(),
        store_lookback_secs: config.store.max_age.as_secs(),
        ..Default::default()
    }
}

/// The message archive of `[store]` (`<data_dir>/archive.sqlite3`), or None when the
/// store is off.
fn open_archive(
    config: &NodeConfig,
) -> anyhow::Result<Option<Arc<dyn demls_transport::waku::store::MessageArchive>>> {
    if !config.store.enabled {
        tracing::info!("store off: no message archive, history is neither served nor fetched");
        return Ok(None);
    }
    let a = crate::storage::archive::SqliteArchive::open(
        &config.storage.data_dir,
        config.store.max_age,
        config.store.max_bytes,
    )
    .context("opening the message archive")?;
    if let Ok((n, bytes)) = a.size() {
        tracing::info!(
            messages = n,
            bytes,
            "message archive open (13/WAKU2-STORE served)"
        );
    }
    Ok(Some(Arc::new(a)))
}

/// Waits for SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}

/// The node's identity: its Ethereum key `eth` and its MLS signature key, created and
/// saved on first start.
pub(crate) fn local_identity(eth: EthSigner, storage: &Storage) -> anyhow::Result<LocalIdentity> {
    let crypto = crate::storage::RustCrypto::default();
    let provider = storage.provider(&crypto);
    let address = eth.member_id();
    let mls = match storage.mls_public_key().context("reading MLS identity")? {
        Some(pk) => MlsIdentity::load(&provider, address, &pk).context("loading MLS identity")?,
        None => {
            // The key pair (OpenMLS's table) and its public part (ours) in one transaction.
            storage.begin().context("saving MLS identity")?;
            let created = MlsIdentity::create(&provider, address)
                .context("creating MLS identity")
                .and_then(|id| {
                    storage
                        .save_mls_public_key(id.public_key())
                        .and_then(|()| storage.commit())
                        .context("saving MLS identity")?;
                    Ok(id)
                });
            if created.is_err() {
                storage.rollback();
            }
            created?
        }
    };
    Ok(LocalIdentity { eth, mls })
}

/// Starts the actor on its own thread and returns the handle the API uses. The actor owns
/// a SQLite connection (Send, not Sync) and borrows it across awaits, so it runs on a
/// single-threaded runtime of its own. It stops when `stop` turns true (or its sender is
/// dropped). However the thread ends — shutdown, error or panic — the reason is recorded
/// in the handle's liveness, so `/health` reports the node down instead of green.
pub(crate) fn spawn_runtime<T: demls_transport::Transport + 'static>(
    rt: runtime::Runtime<T>,
    inbound: mpsc::Receiver<demls_transport::InboundPacket>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(NodeHandle, std::thread::JoinHandle<anyhow::Result<()>>)> {
    let (req_tx, req_rx) = mpsc::channel(256);
    let liveness = Arc::new(handle::Liveness::default());
    let handle = NodeHandle {
        tx: req_tx,
        events: rt.events.clone(),
        liveness: liveness.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("demls-runtime".into())
        .spawn(move || -> anyhow::Result<()> {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let local = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let mut stop = stop;
                let stopped = async move {
                    let _ = stop.wait_for(|v| *v).await;
                };
                local.block_on(rt.run(req_rx, inbound, stopped))
            }));
            let (reason, result) = match ran {
                Ok(Ok(())) => ("the node is shutting down".to_string(), Ok(())),
                Ok(Err(e)) => {
                    let reason = format!("the runtime failed: {e:#}");
                    (reason.clone(), Err(anyhow::anyhow!(reason)))
                }
                Err(p) => {
                    let reason = format!("the runtime panicked: {}", runtime::panic_message(&*p));
                    (reason.clone(), Err(anyhow::anyhow!(reason)))
                }
            };
            if result.is_err() {
                tracing::error!(%reason, "the node runtime stopped; /health reports the node down");
            }
            liveness.stop(reason);
            result
        })
        .context("starting the runtime thread")?;
    Ok((handle, thread))
}

/// Runs the node in the foreground until SIGINT / SIGTERM.
pub async fn run(config: NodeConfig, identity: EthSigner, storage: Storage) -> anyhow::Result<()> {
    let address = identity.member_id();
    tracing::info!(%address, "starting demls-node");
    if cfg!(panic = "abort") {
        tracing::warn!(
            "built with panic = \"abort\": a panic in one conversation stops the node instead of quarantining it"
        );
    }
    let identity = local_identity(identity, &storage)?;

    let waku_cfg = waku_config(&config);
    let archive = open_archive(&config)?;
    let (relay, inbound) = demls_transport::waku::WakuRelay::start_with_archive(waku_cfg, archive)
        .await
        .context("starting the Waku relay")?;
    let relay = Arc::new(relay);
    let stats = demls_transport::Transport::stats(relay.as_ref());
    tracing::info!(peer_id = %stats.peer_id, listen = ?stats.listen_addrs, enr = %stats.enr, "Waku relay up");

    let (events_tx, _) = broadcast::channel(1024);
    let mut rt = runtime::Runtime::new(
        identity,
        storage,
        relay.clone(),
        config.conversation_config(),
        events_tx,
    );
    rt.expect_peers = !config.waku.bootstrap.is_empty() || !config.waku.discv5_bootstrap.is_empty();
    rt.expect_listen = !config.waku.listen.is_empty();
    rt.restore_all().await?;
    for c in &config.conversations {
        if rt.convs.contains_key(&c.name) {
            continue;
        }
        if let Some(q) = rt.quarantined.get(&c.name) {
            tracing::warn!(conversation = %c.name, reason = %q.reason, "conversation from config is quarantined: not created or joined again");
            continue;
        }
        match rt.open(&c.name, c.create).await {
            Ok(v) => {
                tracing::info!(conversation = %c.name, state = %v.state, "{} from config", if c.create { "created" } else { "joining" })
            }
            Err(e) => anyhow::bail!("conversation {:?} from config: {e}", c.name),
        }
    }

    let token_file = config.api_token_file();
    let (token, created) =
        crate::api::ApiToken::load_or_create(&token_file).context("the API token")?;
    if created {
        tracing::info!(token_file = %token_file.display(), "created the API token (mode 0600)");
    }
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding the API on {}", config.api.listen))?;
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics listener on {addr}"))?,
        ),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (handle, actor) = spawn_runtime(rt, inbound, stop_rx.clone())?;
    tracing::info!(listen = %config.api.listen, token_file = %token_file.display(), "HTTP API up");
    let stopped = |rx: watch::Receiver<bool>| {
        let mut rx = rx;
        async move {
            let _ = rx.changed().await;
        }
    };
    let control: Arc<dyn crate::api::NodeControl> = Arc::new(handle);
    let metrics = metrics_listener.map(|l| {
        tracing::info!(listen = ?l.local_addr().ok(), "metrics listener up (GET /metrics)");
        tokio::spawn(crate::api::serve_metrics(
            l,
            control.clone(),
            stopped(stop_rx.clone()),
        ))
    });
    let api_addr = listener.local_addr().unwrap_or(config.api.listen);
    let access = crate::api::ApiAccess::new(token, api_addr, config.api.allowed_hosts.clone());
    let api = tokio::spawn(crate::api::serve(
        listener,
        control,
        access,
        stopped(stop_rx),
    ));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    tokio::task::spawn_blocking(move || actor.join())
        .await
        .context("runtime thread")?
        .map_err(|_| anyhow::anyhow!("the runtime thread panicked"))??;
    let _ = api.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    if let Ok(relay) = Arc::try_unwrap(relay) {
        relay.shutdown().await;
    }
    tracing::info!("bye");
    Ok(())
}

#[cfg(test)]
mod tests;

//! The node runtime: ties the protocol core, the Waku transport, storage and the HTTP API
//! together and handles SIGINT / SIGTERM. Not wired yet; `demls-node run` stops here.

use demls_core::identity::EthSigner;

use crate::config::NodeConfig;
use crate::storage::Storage;

/// Runs the node in the foreground until SIGINT / SIGTERM.
pub async fn run(config: NodeConfig, identity: EthSigner, storage: Storage) -> anyhow::Result<()> {
    let _ = (config, identity, storage);
    anyhow::bail!("node runtime not yet wired")
}

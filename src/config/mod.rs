//! Node configuration: a TOML file (or the embedded default), then `DEMLS__SECTION__KEY`
//! environment overrides, deserialized with unknown keys refused and then validated.
//!
//! Every problem is reported as one [`ConfigError`] naming the key, e.g.
//! `protocol.freeze: invalid duration "3x": unknown time unit "x", …`.
//! See `docs/CONFIG.md` for every key.

mod de;
mod load;
mod store;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use demls_core::config::ConversationConfig;
use libp2p::Multiaddr;
use serde::Deserialize;

pub use load::{DEFAULT_CONFIG, ENV_PREFIX, ENV_SEPARATOR};
pub use store::{DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, StoreConfig, parse_byte_size};
pub use validate::{MAX_CONVERSATION_NAME_LEN, check_conversation_name};

/// Why the configuration cannot be used: the offending key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct ConfigError {
    /// Dotted key path (`protocol.freeze`, `conversations[2].name`), or the file name when
    /// the file itself cannot be read or parsed.
    pub key: String,
    /// What is wrong, on one line.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: one_line(&message.into()),
        }
    }
}

/// Collapses a multi-line message (TOML parse errors carry a source snippet).
fn one_line(s: &str) -> String {
    let lines: Vec<&str> = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.contains(" | "))
        .collect();
    match lines.as_slice() {
        [] => s.trim().to_string(),
        [one] => (*one).to_string(),
        [first, .., last] => format!("{first}: {last}"),
    }
}

/// The whole node configuration, with paths already resolved against the config file's
/// directory (or the working directory for the embedded default).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// `[identity]`: where the node's Ethereum key comes from.
    pub identity: IdentityConfig,
    /// `[storage]`: where the node keeps its database.
    pub storage: StorageConfig,
    /// `[api]`: the local HTTP API.
    pub api: ApiConfig,
    /// `[metrics]`: the Prometheus listener of its own (off by default).
    pub metrics: MetricsConfig,
    /// `[waku]`: the Waku relay.
    pub waku: WakuConfig,
    /// `[store]`: the message archive and 13/WAKU2-STORE.
    pub store: StoreConfig,
    /// `[protocol]`: de-MLS timings and parameters.
    pub protocol: ProtocolConfig,
    /// `[[conversations]]`: conversations created or joined at start-up.
    pub conversations: Vec<ConversationEntry>,
    /// `[log]`: logging.
    pub log: LogConfig,
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Hex secp256k1 key file, created (mode 0600) on first run if missing. Default
    /// `<storage.data_dir>/node.key`.
    pub key_file: Option<PathBuf>,
    /// An Ethereum V3 keystore JSON to take the key from instead of `key_file`.
    pub keystore: Option<PathBuf>,
    /// Name of the environment variable holding the keystore password.
    pub keystore_password_env: Option<String>,
    /// File holding the keystore password (first line).
    pub keystore_password_file: Option<PathBuf>,
}

impl IdentityConfig {
    /// The key file to use: `key_file`, or `node.key` in the data directory.
    pub fn key_file_path(&self, storage: &StorageConfig) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| storage.data_dir.join("node.key"))
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory of the SQLite database (created on first use). Default `./data/node`.
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data/node"),
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address (`IP:port`). Default `127.0.0.1:8645`; anything but loopback is
    /// warned about. Every route but `/health` needs the token of the data directory's
    /// `api-token` file.
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Host names (or addresses) the API answers to besides `localhost`, loopback and its
    /// listen address: `"name"` (at the listen port) or `"name:port"` (the port clients
    /// use, e.g. behind a port mapping or a proxy). Other `Host` headers are refused (DNS
    /// rebinding). Default empty.
    #[serde(deserialize_with = "de::list")]
    pub allowed_hosts: Vec<crate::api::AllowedHost>,
}

/// The API's default listen address.
pub const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8645,
));

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_API_LISTEN,
            allowed_hosts: Vec::new(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics` (Prometheus text) without a token, `IP:port` (nwaku
    /// uses port 8008). Unset or `""`: no metrics listener (the API's `/metrics` still
    /// answers, with the token). Default unset.
    #[serde(deserialize_with = "de::opt_socket_addr")]
    pub listen: Option<SocketAddr>,
}

/// How conversations map to Waku shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharding {
    /// Autosharding: the content topic's hash picks one of `num_shards` shards.
    #[default]
    Auto,
    /// Every conversation on the one shard `static_shard`.
    Static,
}

impl<'de> Deserialize<'de> for Sharding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "auto" => Ok(Sharding::Auto),
            "static" => Ok(Sharding::Static),
            _ => Err(serde::de::Error::custom(format!(
                "unknown value {s:?} (expected \"auto\" or \"static\")"
            ))),
        }
    }
}

/// `[waku]`: the node's own view of the relay settings (the runtime maps it onto the
/// transport crate's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WakuConfig {
    /// libp2p listen multiaddrs. Default `["/ip4/0.0.0.0/tcp/60000"]`.
    #[serde(deserialize_with = "de::multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start: multiaddrs (`/ip4/…/tcp/…`, `/dns4/host/tcp/…`, optionally
    /// `/p2p/…`) or Waku ENRs (`enr:…`, also discv5 bootstrap nodes).
    #[serde(deserialize_with = "de::list")]
    pub bootstrap: Vec<BootstrapPeer>,
    /// 33/WAKU2-DISCV5 peer discovery on or off. Default on.
    pub discv5_discovery: bool,
    /// discv5 UDP port. Default: the port of the first TCP listen address (60000 by
    /// default; nwaku's default is 9000); 0: any free port.
    pub discv5_udp_port: Option<u16>,
    /// More discv5 bootstrap nodes (`enr:…`), used for discovery only. Default empty.
    #[serde(deserialize_with = "de::list")]
    pub discv5_bootstrap: Vec<EnrRecord>,
    /// The node keeps dialing discovered Waku relay peers until it has this many
    /// connections. Default 10.
    pub peer_target: usize,
    /// The IP address our ENR advertises (nwaku's `--nat=extip:`). Default: the listen
    /// address, or the default route's source address when listening on all interfaces.
    #[serde(deserialize_with = "de::opt_ip")]
    pub ext_ip: Option<std::net::IpAddr>,
    /// Waku network cluster id. Default 15.
    pub cluster_id: u16,
    /// `"auto"` (autosharding over `num_shards`) or `"static"` (all on `static_shard`).
    /// When the key is absent, setting `static_shard` alone selects `"static"`.
    pub sharding: Sharding,
    /// Shards in the network, for autosharding. Default 8.
    pub num_shards: u16,
    /// The shard used when `sharding = "static"`.
    pub static_shard: Option<u16>,
    /// Extra shards to relay besides those of our conversations (a bootstrap node relays
    /// them all). Default empty.
    #[serde(deserialize_with = "de::list")]
    pub relay_shards: Vec<u16>,
    /// Relayed messages whose timestamp is further than this from our clock are
    /// rejected. Whole seconds, at least 1s. Default 20s.
    #[serde(deserialize_with = "de::duration")]
    pub max_timestamp_skew: Duration,
}

/// The default of `waku.max_timestamp_skew`.
pub const DEFAULT_MAX_TIMESTAMP_SKEW: Duration = Duration::from_secs(20);

impl Default for WakuConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/60000"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            bootstrap: Vec::new(),
            discv5_discovery: true,
            discv5_udp_port: None,
            discv5_bootstrap: Vec::new(),
            peer_target: demls_transport::waku::DEFAULT_PEER_TARGET,
            ext_ip: None,
            cluster_id: 15,
            sharding: Sharding::Auto,
            num_shards: 8,
            static_shard: None,
            relay_shards: Vec::new(),
            max_timestamp_skew: DEFAULT_MAX_TIMESTAMP_SKEW,
        }
    }
}

/// A `waku.bootstrap` entry: a multiaddr, or a Waku ENR (`enr:…`), which gives discv5
/// a bootstrap node and the relay a peer to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapPeer {
    /// `/ip4/…/tcp/…`, `/dns4/…`, optionally with `/p2p/<peer id>`.
    Addr(Multiaddr),
    /// An `enr:…` record (signature checked when the config is read).
    Enr(EnrRecord),
}

impl std::fmt::Display for BootstrapPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Addr(a) => a.fmt(f),
            Self::Enr(e) => e.fmt(f),
        }
    }
}

impl std::str::FromStr for BootstrapPeer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim_start().starts_with("enr:") {
            return s.parse().map(Self::Enr);
        }
        if !s.starts_with('/') {
            return Err(
                "neither a multiaddr (\"/ip4/127.0.0.1/tcp/60000\") nor an ENR (\"enr:…\")".into(),
            );
        }
        s.parse::<Multiaddr>()
            .map(Self::Addr)
            .map_err(|e| e.to_string())
    }
}

/// A Waku ENR (`enr:…`) whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrRecord(String);

impl EnrRecord {
    /// The `enr:…` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EnrRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for EnrRecord {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        demls_transport::waku::parse_enr(s).map(|_| Self(s.trim().to_string()))
    }
}

/// `[protocol]`: the RFC's timers and parameters (defaults are the reference's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// Inactivity timer #1: time the steward has to commit approved work. Default 60s.
    #[serde(deserialize_with = "de::duration")]
    pub commit_inactivity: Duration,
    /// Candidate collection window once frozen. Default 30s.
    #[serde(deserialize_with = "de::duration")]
    pub freeze: Duration,
    /// Auto-vote delay for membership and emergency proposals. Default 10s.
    #[serde(deserialize_with = "de::duration")]
    pub voting_delay: Duration,
    /// Auto-vote delay for steward elections. Default 5s.
    #[serde(deserialize_with = "de::duration")]
    pub election_voting_delay: Duration,
    /// Deadline after which a proposal is decided. Default 30s.
    #[serde(deserialize_with = "de::duration")]
    pub consensus_timeout: Duration,
    /// Lifetime of a proposal. Default 600s.
    #[serde(deserialize_with = "de::duration")]
    pub proposal_expiration: Duration,
    /// Inactivity timer #2, used while recovering. Default 5s.
    #[serde(deserialize_with = "de::duration")]
    pub recovery_inactivity: Duration,
    /// Minimum steward list size. Default 1.
    pub sn_min: u32,
    /// Maximum steward list size. Default 2.
    pub sn_max: u32,
    /// Rejected elections tolerated before a DEADLOCK emergency proposal. Default 1.
    pub max_reelection_attempts: u32,
    /// Silent voters count YES at timeout; ties go YES; auto-votes vote YES. Default true.
    pub liveness_criteria_yes: bool,
    /// Score at or below which a member may be voted out. Default 0.
    pub threshold_peer_score: i64,
    /// Starting score of every member. Default 100.
    pub default_peer_score: i64,
    /// Buffered membership requests older than this many epochs are dropped. Default 3.
    pub pending_update_max_epochs: u64,
    /// Most MLS proposals in one commit. Default 50.
    pub commit_batch_max: usize,
    /// Winning commits kept to re-send to members that missed them. Default 16.
    pub catch_up_window: usize,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        let c = ConversationConfig::default();
        let d = Duration::from_millis;
        Self {
            commit_inactivity: d(c.commit_inactivity),
            freeze: d(c.freeze),
            voting_delay: d(c.voting_delay),
            election_voting_delay: d(c.election_voting_delay),
            consensus_timeout: d(c.consensus_timeout),
            proposal_expiration: d(c.proposal_expiration),
            recovery_inactivity: d(c.recovery_inactivity),
            sn_min: c.sn_min,
            sn_max: c.sn_max,
            max_reelection_attempts: c.max_reelection_attempts,
            liveness_criteria_yes: c.liveness_criteria_yes,
            threshold_peer_score: c.threshold_peer_score,
            default_peer_score: c.default_peer_score,
            pending_update_max_epochs: c.pending_update_max_epochs,
            commit_batch_max: c.commit_batch_max,
            catch_up_window: c.catch_up_window,
        }
    }
}

impl ProtocolConfig {
    /// The protocol core's per-conversation configuration.
    pub fn conversation_config(&self) -> ConversationConfig {
        ConversationConfig {
            commit_inactivity: ms(self.commit_inactivity),
            freeze: ms(self.freeze),
            voting_delay: ms(self.voting_delay),
            election_voting_delay: ms(self.election_voting_delay),
            consensus_timeout: ms(self.consensus_timeout),
            proposal_expiration: ms(self.proposal_expiration),
            recovery_inactivity: ms(self.recovery_inactivity),
            sn_min: self.sn_min,
            sn_max: self.sn_max,
            max_reelection_attempts: self.max_reelection_attempts,
            liveness_criteria_yes: self.liveness_criteria_yes,
            threshold_peer_score: self.threshold_peer_score,
            default_peer_score: self.default_peer_score,
            pending_update_max_epochs: self.pending_update_max_epochs,
            commit_batch_max: self.commit_batch_max,
            catch_up_window: self.catch_up_window,
        }
    }
}

/// One `[[conversations]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationEntry {
    /// Conversation name (non-empty, ≤ 64 bytes, no `/`, no whitespace).
    pub name: String,
    /// Create it (true) or ask to join it (false, the default).
    #[serde(default)]
    pub create: bool,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// An `EnvFilter` directive (`info`, `demls_node=debug,info`). `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl NodeConfig {
    /// The protocol core's per-conversation configuration (from `[protocol]`).
    pub fn conversation_config(&self) -> ConversationConfig {
        self.protocol.conversation_config()
    }

    /// The key file path (see [`IdentityConfig::key_file_path`]).
    pub fn key_file(&self) -> PathBuf {
        self.identity.key_file_path(&self.storage)
    }

    /// The API token file: `api-token` in the data directory (created at first start).
    pub fn api_token_file(&self) -> PathBuf {
        crate::api::ApiToken::path_in(&self.storage.data_dir)
    }
}

//! One `demls-node run` process on 127.0.0.1, its API client and its event stream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demls_node::api::client::ApiClient;
use demls_node::api::types::EventView;

/// The protocol timers every node of the bench runs with (`[protocol]` TOML).
pub struct Timers {
    /// The `[protocol]` section.
    pub toml: String,
    /// `voting_delay`.
    pub voting_delay: Duration,
    /// `commit_inactivity`.
    pub commit_inactivity: Duration,
    /// `freeze`.
    pub freeze: Duration,
}

impl Timers {
    /// The shortest set the repository's process tests run with (`tests/proc_node`),
    /// every timer scaled by `scale`.
    pub fn fast(scale: f64) -> Self {
        let ms = |base: f64| Duration::from_millis((base * scale).round().max(1.0) as u64);
        let (vd, ct, ci, fr) = (ms(1000.0), ms(2000.0), ms(4000.0), ms(2000.0));
        let toml = format!(
            "[protocol]\ncommit_inactivity = \"{}ms\"\nfreeze = \"{}ms\"\nvoting_delay = \"{}ms\"\n\
             election_voting_delay = \"{}ms\"\nconsensus_timeout = \"{}ms\"\n\
             proposal_expiration = \"60s\"\nrecovery_inactivity = \"{}ms\"\n",
            ci.as_millis(),
            fr.as_millis(),
            vd.as_millis(),
            ms(500.0).as_millis(),
            ct.as_millis(),
            ms(1000.0).as_millis(),
        );
        Self {
            toml,
            voting_delay: vd,
            commit_inactivity: ci,
            freeze: fr,
        }
    }
}

/// One event as the bench received it, stamped with the bench's monotonic clock.
pub struct Rec {
    /// Index of the node that emitted it.
    pub node: usize,
    /// When the bench read it off the stream.
    pub at: Instant,
    /// The event.
    pub ev: EventView,
}

/// Every node's events, in arrival order.
pub type EventLog = Arc<Mutex<Vec<Rec>>>;

/// A running node process.
pub struct Node {
    /// Position in the bench's node list.
    pub index: usize,
    /// Its directory (`node.toml`, `node.log`, `data/`).
    pub dir: PathBuf,
    /// Waku TCP port.
    pub waku_port: u16,
    /// API client with the node's token (set once it is up).
    pub api: Option<ApiClient>,
    /// Lower-case member address (set once it is up).
    pub address: String,
    child: Child,
}

/// The next port to try: below the kernel's ephemeral range (32768–60999 by default), so
/// that no outbound connection of the nodes already running can take a port between the
/// bench choosing it and the node binding it (with 50 nodes dialing each other, picking
/// port 0 and releasing it collided). Where it starts depends on the bench's pid.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A port below the ephemeral range that TCP and UDP on 127.0.0.1 both accept right now.
fn free_port() -> u16 {
    let _ = NEXT_PORT.compare_exchange(
        0,
        20_000 + (std::process::id() % 40) as u16 * 250,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let p = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        assert!(p < 32_768, "no free port below the ephemeral range");
        let tcp = std::net::TcpListener::bind(("127.0.0.1", p));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", p));
        if tcp.is_ok() && udp.is_ok() {
            return p;
        }
    }
}

impl Node {
    /// Writes the node's config and starts the process (without waiting for it).
    pub fn spawn(
        bin: &Path,
        root: &Path,
        index: usize,
        boot: Option<u16>,
        timers: &Timers,
    ) -> Self {
        let dir = root.join(format!("n{index}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        let (waku_port, api_port, udp) = (free_port(), free_port(), free_port());
        let boot = boot
            .map(|p| format!("\"/ip4/127.0.0.1/tcp/{p}\""))
            .unwrap_or_default();
        let cfg = format!(
            "[storage]\ndata_dir = \"{dir}/data\"\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [waku]\nlisten = [\"/ip4/127.0.0.1/tcp/{waku_port}\"]\ndiscv5_udp_port = {udp}\n\
             bootstrap = [{boot}]\n{timers}[log]\nlevel = \"info\"\n",
            dir = dir.display(),
            timers = timers.toml,
        );
        std::fs::write(dir.join("node.toml"), cfg).expect("node.toml");
        let log = std::fs::File::create(dir.join("node.log")).expect("node.log");
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(dir.join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn demls-node");
        let mut n = Self {
            index,
            dir,
            waku_port,
            api: None,
            address: String::new(),
            child,
        };
        n.api = Some(ApiClient::new(&format!("http://127.0.0.1:{api_port}")).expect("api url"));
        n
    }

    /// The API client.
    pub fn api(&self) -> &ApiClient {
        self.api.as_ref().expect("api client")
    }

    /// Waits until the API answers, then reads the token and the address.
    pub async fn ready(&mut self) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(120);
        let token_file = self.dir.join("data/api-token");
        loop {
            if let Ok(t) = std::fs::read_to_string(&token_file) {
                let api = self.api().clone().with_token(Some(t.trim().to_string()));
                if let Ok(s) = api.status().await {
                    self.address = s.value.address.to_lowercase();
                    self.api = Some(api);
                    return Ok(());
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
                let last = log.lines().last().unwrap_or_default().to_string();
                return Err(format!("node {} exited ({st}): {last}", self.index));
            }
            if Instant::now() > end {
                return Err(format!("node {} never answered", self.index));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Streams the node's events into `log` until the stream ends.
    pub fn stream_events(&self, log: EventLog) {
        let (api, node) = (self.api().clone(), self.index);
        tokio::spawn(async move {
            let _ = api
                .events(None, |e| {
                    let at = Instant::now();
                    if let Ok(ev) = serde_json::from_str::<EventView>(&e.data)
                        && let Ok(mut l) = log.lock()
                    {
                        l.push(Rec { node, at, ev });
                    }
                    true
                })
                .await;
        });
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time (user + system) the process has used so far, in seconds (fields 14 and
    /// 15 of `/proc/PID/stat`, at Linux's 100 ticks a second).
    pub fn cpu_secs(&self) -> f64 {
        let s =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // After ')' comes field 3 (state) at index 0: utime (14) is index 11, stime 12.
        (tick(11) + tick(12)) as f64 / 100.0
    }
}

/// CPU seconds all `nodes` have used so far.
pub fn cpu_total(nodes: &[Node]) -> f64 {
    nodes.iter().map(Node::cpu_secs).sum()
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

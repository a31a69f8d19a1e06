//! One size: start the processes, grow the conversation, measure joins, chat and RSS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demls_node::api::client::ClientError;
use futures::future::join_all;

use super::Settings;
use super::node::{EventLog, Node, Rec, Timers, cpu_total};

const CONV: &str = "bench";

/// One measured join: offsets from the join request, by phase.
pub struct Join {
    /// Members before the join.
    pub members: usize,
    /// First `add_member` proposal seen by any node.
    pub proposal: Option<Duration>,
    /// First accepted decision seen by any node.
    pub decided: Option<Duration>,
    /// First node to enter Freezing.
    pub freezing: Option<Duration>,
    /// First node to apply the commit.
    pub commit: Option<Duration>,
    /// The joiner's `joined` event.
    pub joined: Duration,
    /// The joiner's first chat accepted by its API.
    pub sent: Duration,
    /// That chat received by every other member.
    pub all: Duration,
    /// CPU seconds all processes used from the join request to `all`.
    pub cpu: f64,
}

/// What one size measured.
pub struct SizeResult {
    /// Processes.
    pub n: usize,
    /// Batched growth to N − joins members, wall.
    pub grow: Duration,
    /// Measured joins.
    pub joins: Vec<Join>,
    /// Every (message, receiver) latency.
    pub deliveries: Vec<Duration>,
    /// Per message, the latency to its last receiver.
    pub to_all: Vec<Duration>,
    /// RSS of every process, KiB.
    pub rss: Vec<u64>,
    /// Why the size stopped early (what it measured until then is kept).
    pub error: Option<String>,
    /// Members that took part in the chat (0: no chat).
    pub chatters: usize,
}

/// A start point: the events the bench read at or after `t0`, all of them at index
/// `from` of the log or later (the length is taken before the clock).
#[derive(Clone, Copy)]
struct Mark {
    from: usize,
    t0: Instant,
}

fn mark(log: &EventLog) -> Mark {
    let from = log.lock().expect("event log").len();
    Mark {
        from,
        t0: Instant::now(),
    }
}

/// Offset from the mark of the first event of the conversation that `f` accepts.
fn first_after(log: &EventLog, m: Mark, mut f: impl FnMut(&Rec) -> bool) -> Option<Duration> {
    let l = log.lock().expect("event log");
    l[m.from.min(l.len())..]
        .iter()
        .filter(|r| r.at >= m.t0 && r.ev.conversation == CONV && f(r))
        .map(|r| r.at - m.t0)
        .min()
}

fn is_chat(r: &Rec, text: &str) -> bool {
    r.ev.kind == "chat" && r.ev.data["event"]["text"] == text
}

/// How often a wait on the bench's own event log looks again (no process is asked).
const LOCAL_POLL: Duration = Duration::from_millis(5);
/// How often a wait that asks every node's API looks again: 50 processes asked every
/// 20 ms would take a good part of the two cores the measurement shares.
const API_POLL: Duration = Duration::from_millis(250);

/// Polls `f` every `every` until it gives a value; fails after `secs`.
async fn wait<T>(
    what: &str,
    secs: u64,
    every: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Result<T, String> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > end {
            return Err(format!("timed out after {secs} s waiting for {what}"));
        }
        tokio::time::sleep(every).await;
    }
}

/// Every node in `nodes` working in the conversation at one epoch with `members` members.
async fn converged(nodes: &[Node], members: usize) -> bool {
    let views = join_all(nodes.iter().map(|n| n.api().show(CONV))).await;
    let mut epochs = std::collections::BTreeSet::new();
    for v in views {
        match v {
            Ok(v) if v.value.state == "working" && v.value.members.len() == members => {
                epochs.insert(v.value.epoch);
            }
            _ => return false,
        }
    }
    epochs.len() == 1
}

/// Every node in `nodes` working in the conversation at one epoch with no proposal being
/// voted on: a join request then meets a quiet group, not the steward election that a
/// commit exhausting the steward list sets off. Else what is not quiet.
async fn quiet(nodes: &[Node]) -> Result<(), String> {
    let views = join_all(
        nodes
            .iter()
            .map(|n| async move { (n.api().show(CONV).await, n.api().proposals(CONV).await) }),
    )
    .await;
    let mut epochs = std::collections::BTreeSet::new();
    for (i, (v, p)) in views.into_iter().enumerate() {
        let (v, p) = match (v, p) {
            (Ok(v), Ok(p)) => (v.value, p.value),
            (Err(e), _) | (_, Err(e)) => return Err(format!("node {i}: {e}")),
        };
        if v.state != "working" {
            return Err(format!("node {i} is {}", v.state));
        }
        if let Some(p) = p.iter().find(|p| p.status == "voting") {
            return Err(format!("node {i} votes on {} #{}", p.kind, p.id));
        }
        epochs.insert(v.epoch);
    }
    match epochs.len() {
        1 => Ok(()),
        _ => Err(format!("epochs {epochs:?}")),
    }
}

/// Waits until `nodes` are [`quiet`] and the conversation's protocol events (proposals,
/// decisions, state changes, commits) have stopped for `commit_inactivity + freeze` and
/// 1 s: no approved change (an election included) is then waiting for a commit window a
/// join could ride on.
async fn settle(nodes: &[Node], log: &EventLog, t: &Timers) -> Result<(), String> {
    let calm = t.commit_inactivity + t.freeze + Duration::from_secs(1);
    let last_protocol_event = || {
        let l = log.lock().expect("event log");
        l.iter()
            .rev()
            .find(|r| {
                r.ev.conversation == CONV
                    && matches!(
                        r.ev.kind.as_str(),
                        "proposal" | "vote_requested" | "decided" | "state" | "commit"
                    )
            })
            .map(|r| r.at)
    };
    let mut last = String::new();
    wait("a quiet group", 180, API_POLL, async || {
        if let Some(at) = last_protocol_event()
            && at.elapsed() < calm
        {
            last = format!("protocol event {:.1?} ago", at.elapsed());
            return None;
        }
        match quiet(nodes).await {
            Ok(()) => Some(()),
            Err(e) => {
                last = e;
                None
            }
        }
    })
    .await
    .map_err(|e| format!("{e} ({last})"))
}

/// Sends until the API accepts (409 while the conversation is not ready for chat).
async fn send(n: &Node, text: &str) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match n.api().send(CONV, text).await {
            Ok(_) => return Ok(()),
            Err(ClientError::Http { status, .. }) if status.as_u16() == 409 => {}
            Err(e) => return Err(format!("send from node {}: {e}", n.index)),
        }
        if Instant::now() > end {
            return Err(format!("node {} could not send for 60 s", n.index));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every node of `receivers` has the chat `text`; their receipt offsets.
async fn delivered(
    log: &EventLog,
    m: Mark,
    receivers: &[usize],
    text: &str,
) -> Result<Vec<Duration>, String> {
    wait(
        &format!("chat {text:?} everywhere"),
        60,
        LOCAL_POLL,
        async || {
            let l = log.lock().expect("event log");
            let mut at: Vec<Option<Duration>> = vec![None; receivers.len()];
            for r in &l[m.from.min(l.len())..] {
                if r.at < m.t0 || r.ev.conversation != CONV || !is_chat(r, text) {
                    continue;
                }
                if let Some(k) = receivers.iter().position(|i| *i == r.node) {
                    let d = r.at - m.t0;
                    at[k] = Some(at[k].map_or(d, |x| x.min(d)));
                }
            }
            at.into_iter().collect()
        },
    )
    .await
}

/// Per event kind (`state` by the state entered, `proposal` by its kind) in the
/// conversation since the mark: how many events, from how many nodes, first and last.
fn timeline(log: &EventLog, m: Mark) -> String {
    use std::collections::BTreeMap;
    let l = log.lock().expect("event log");
    let mut kinds: BTreeMap<
        String,
        (usize, std::collections::BTreeSet<usize>, Duration, Duration),
    > = BTreeMap::new();
    for r in &l[m.from.min(l.len())..] {
        if r.at < m.t0 || r.ev.conversation != CONV {
            continue;
        }
        let e = &r.ev.data["event"];
        let key = match r.ev.kind.as_str() {
            "state" => format!("state {}", e["state"].as_str().unwrap_or("?")),
            "proposal" => format!("proposal {}", e["kind"].as_str().unwrap_or("?")),
            "decided" => format!("decided {}", e["accepted"]),
            "rejected" => {
                let why: String = e["reason"]
                    .as_str()
                    .unwrap_or("?")
                    .chars()
                    .take(60)
                    .collect();
                format!("rejected {}: {why}", e["what"].as_str().unwrap_or("?"))
            }
            k => k.to_string(),
        };
        let d = r.at - m.t0;
        let k = kinds.entry(key).or_insert((0, Default::default(), d, d));
        k.0 += 1;
        k.1.insert(r.node);
        k.2 = k.2.min(d);
        k.3 = k.3.max(d);
    }
    let mut rows: Vec<_> = kinds.into_iter().collect();
    rows.sort_by_key(|(_, v)| v.2);
    rows.iter()
        .map(|(k, (n, nodes, a, b))| {
            format!(
                "  {k:<40} {n:>5} events from {:>3} nodes, {:>6.2} .. {:>6.2}",
                nodes.len(),
                a.as_secs_f64(),
                b.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Measures one join; on failure prints what the conversation did since the request.
async fn measure_join(nodes: &[Node], j: usize, log: &EventLog) -> Result<Join, String> {
    let m = mark(log);
    let r = join_at(nodes, j, log, m).await;
    if r.is_err() {
        eprintln!(
            "timeline of the failed join into {j} members (s from the join request):\n{}",
            timeline(log, m)
        );
    }
    r
}

async fn join_at(nodes: &[Node], j: usize, log: &EventLog, m: Mark) -> Result<Join, String> {
    let cpu0 = cpu_total(nodes);
    nodes[j]
        .api()
        .join(CONV)
        .await
        .map_err(|e| format!("join: {e}"))?;
    let joined = wait("joined", 120, LOCAL_POLL, async || {
        first_after(log, m, |r| r.node == j && r.ev.kind == "joined")
    })
    .await?;
    let text = format!("first chat of node {j}");
    send(&nodes[j], &text).await?;
    let sent = m.t0.elapsed();
    let members: Vec<usize> = (0..j).collect();
    let all = delivered(log, m, &members, &text)
        .await?
        .into_iter()
        .max()
        .unwrap_or_default();
    let cpu = cpu_total(nodes) - cpu0;
    let add = |r: &Rec| r.ev.kind == "proposal" && r.ev.data["event"]["kind"] == "add_member";
    let add_id = {
        let l = log.lock().expect("event log");
        l[m.from..]
            .iter()
            .find(|r| r.ev.conversation == CONV && add(r))
            .map(|r| r.ev.data["event"]["id"].clone())
    };
    let joiner = nodes[j].address.clone();
    let join = Join {
        members: j,
        proposal: first_after(log, m, add),
        decided: first_after(log, m, |r| {
            r.ev.kind == "decided"
                && r.ev.data["event"]["accepted"] == true
                && add_id.as_ref() == Some(&r.ev.data["event"]["id"])
        }),
        freezing: first_after(log, m, |r| {
            r.ev.kind == "state" && r.ev.data["event"]["state"] == "freezing"
        }),
        commit: first_after(log, m, |r| {
            r.ev.kind == "commit"
                && r.ev.data["event"]["added"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x.as_str().map(str::to_lowercase) == Some(joiner.clone()))
                })
        }),
        joined,
        sent,
        all,
        cpu,
    };
    eprintln!(
        "timeline of the join into {j} members (s from the join request):\n{}",
        timeline(log, m)
    );
    wait(
        "roster converged after the join",
        120,
        API_POLL,
        async || converged(&nodes[..=j], j + 1).await.then_some(()),
    )
    .await?;
    Ok(join)
}

async fn chat(
    nodes: &[Node],
    chats: usize,
    log: &EventLog,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let (mut each, mut to_all) = (Vec::new(), Vec::new());
    for k in 0..chats {
        let s = k % nodes.len();
        let text = format!("latency probe {k}");
        let m = mark(log);
        send(&nodes[s], &text).await?;
        let others: Vec<usize> = (0..nodes.len()).filter(|i| *i != s).collect();
        let at = delivered(log, m, &others, &text).await?;
        to_all.push(at.iter().copied().max().unwrap_or_default());
        each.extend(at);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((each, to_all))
}

/// Runs one size. Its directory (configs, logs, data) is removed afterwards, unless the
/// size stopped early: then it is kept and named for inspection.
pub async fn size(s: &Settings, n: usize, timers: &Timers) -> Result<SizeResult, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let r = size_in(s, n, timers, dir.path()).await;
    if let Some(e) = r
        .as_ref()
        .err()
        .or(r.as_ref().ok().and_then(|r| r.error.as_ref()))
    {
        eprintln!(
            "{n} processes: {e}; node logs kept in {}",
            dir.keep().display()
        );
    }
    r
}

async fn size_in(
    s: &Settings,
    n: usize,
    timers: &Timers,
    dir: &std::path::Path,
) -> Result<SizeResult, String> {
    let joins = s.joins.min(n.saturating_sub(2));
    let first = Node::spawn(&s.bin, dir, 0, None, timers);
    let boot = first.waku_port;
    let mut nodes = vec![first];
    nodes.extend((1..n).map(|i| Node::spawn(&s.bin, dir, i, Some(boot), timers)));
    for node in &mut nodes {
        node.ready().await?;
    }
    let log: EventLog = Arc::new(Mutex::new(Vec::new()));
    for node in &nodes {
        node.stream_events(log.clone());
    }
    wait(
        "every node to have a relay peer",
        60,
        API_POLL,
        async || {
            let st = join_all(nodes.iter().map(|x| x.api().status())).await;
            st.iter()
                .all(|x| x.as_ref().is_ok_and(|x| x.value.peers > 0))
                .then_some(())
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("{n} processes up");

    let base = n - joins;
    let t0 = Instant::now();
    nodes[0]
        .api()
        .create(CONV)
        .await
        .map_err(|e| format!("create: {e}"))?;
    for r in join_all(nodes[1..base].iter().map(|x| x.api().join(CONV))).await {
        r.map_err(|e| format!("join: {e}"))?;
    }
    wait("the batched joins", 300, API_POLL, async || {
        converged(&nodes[..base], base).await.then_some(())
    })
    .await?;
    let grow = t0.elapsed();
    eprintln!("{base} members after {grow:.1?}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut r = SizeResult {
        n,
        grow,
        joins: Vec::new(),
        deliveries: Vec::new(),
        to_all: Vec::new(),
        rss: Vec::new(),
        error: None,
        chatters: 0,
    };
    // The members that chat: everyone, or the members before a join that failed.
    let mut chatters = n;
    for j in base..n {
        if s.quiet {
            settle(&nodes[..j], &log, timers).await?;
        }
        match measure_join(&nodes, j, &log).await {
            Ok(m) => {
                eprintln!("join into {j} members: chat at all after {:.2?}", m.all);
                r.joins.push(m);
            }
            Err(e) => {
                r.error = Some(format!("join into {j} members: {e}"));
                chatters = j;
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // After a failed join the members before it still chat, once their group settled.
    let ready = match &r.error {
        None => Ok(()),
        Some(_) => settle(&nodes[..chatters], &log, timers).await,
    };
    match ready {
        Ok(()) => match chat(&nodes[..chatters], s.chats, &log).await {
            Ok((each, to_all)) => {
                eprintln!("{} chat deliveries measured", each.len());
                (r.deliveries, r.to_all) = (each, to_all);
                r.chatters = chatters;
            }
            Err(e) => eprintln!("{n} processes, chat: {e}"),
        },
        Err(e) => eprintln!("{n} processes, no chat: {e}"),
    }
    r.rss = nodes.iter().map(Node::rss_kib).collect();
    Ok(r)
}

fn pct(v: &[Duration], q: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// Prints the tables.
pub fn print(s: &Settings, t: &Timers, sizes: &[SizeResult], convs: &[(usize, u64)]) {
    let floor = t.voting_delay + t.commit_inactivity;
    println!(
        "Join request → joiner's first chat at every member (s from the join request; floor = voting_delay + commit_inactivity = {:.2} s)\n",
        floor.as_secs_f64()
    );
    println!(
        "| processes | members before | add proposed | decided | freezing | commit | joined | chat accepted | chat at all | total / floor | nodes' CPU s (cores busy) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in sizes {
        for j in &r.joins {
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.1} ({:.2}) |",
                r.n,
                j.members,
                secs(j.proposal),
                secs(j.decided),
                secs(j.freezing),
                secs(j.commit),
                j.joined.as_secs_f64(),
                j.sent.as_secs_f64(),
                j.all.as_secs_f64(),
                j.all.as_secs_f64() / floor.as_secs_f64(),
                j.cpu,
                j.cpu / j.all.as_secs_f64()
            );
        }
    }
    println!(
        "\nChat latency, send request → receipt (ms), {} messages per size, senders in turn\n",
        s.chats
    );
    println!(
        "| processes | members chatting | deliveries | p50 | p99 | max | to last member p50 | to last member p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in sizes {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.n,
            r.chatters,
            r.deliveries.len(),
            pct(&r.deliveries, 0.5),
            pct(&r.deliveries, 0.99),
            pct(&r.deliveries, 1.0),
            pct(&r.to_all, 0.5),
            pct(&r.to_all, 0.99)
        );
    }
    println!("\nRSS per process (MiB) after the joins and the chat; batched growth time\n");
    println!("| processes | grow to N − joins, s | mean | min | max | total |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in sizes {
        let mib = |k: u64| k as f64 / 1024.0;
        let total: u64 = r.rss.iter().sum();
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            r.n,
            r.grow.as_secs_f64(),
            mib(total) / r.rss.len() as f64,
            mib(*r.rss.iter().min().unwrap_or(&0)),
            mib(*r.rss.iter().max().unwrap_or(&0)),
            mib(total)
        );
    }
    println!("\nOne node alone: RSS by conversations created\n");
    println!("| conversations | RSS MiB | KiB per added conversation |");
    println!("|---:|---:|---:|");
    for (i, (c, k)) in convs.iter().enumerate() {
        let per = if i == 0 {
            "–".to_string()
        } else {
            let (pc, pk) = convs[i - 1];
            format!("{:.0}", (*k as f64 - pk as f64) / (c - pc) as f64)
        };
        println!("| {c} | {:.1} | {per} |", *k as f64 / 1024.0);
    }
    for r in sizes {
        if let Some(e) = &r.error {
            println!(
                "\n{} processes stopped early ({e}); the rows above are what it measured until then.",
                r.n
            );
        }
    }
}

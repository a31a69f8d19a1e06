//! Drives `demls-waku-peer` processes from tests: one OS process per relay, commands on
//! its stdin, its stdout lines read by a thread into a channel.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Spawns `cmd` with piped stdin and stdout; a thread forwards its stdout lines.
pub fn spawn_with_lines(cmd: &mut Command, what: &str) -> (Child, ChildStdin, Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, stdin, lines)
}

/// One running relay process; killed when dropped, so a failing test leaves nothing behind.
pub struct Peer {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// `recv` lines seen while waiting for something else.
    pub inbox: Vec<String>,
    /// Listen addresses with `/p2p/…`.
    pub addrs: Vec<String>,
}

impl Peer {
    /// Starts a peer with `args` and waits for `ready`.
    pub fn start(name: impl Into<String>, args: &[&str]) -> Peer {
        let (child, stdin, lines) = spawn_with_lines(
            Command::new(env!("CARGO_BIN_EXE_demls-waku-peer")).args(args),
            "demls-waku-peer",
        );
        let mut p = Peer {
            name: name.into(),
            child,
            stdin,
            lines,
            inbox: vec![],
            addrs: vec![],
        };
        loop {
            let l = p.next_line(Duration::from_secs(20), "ready");
            if let Some(a) = l.strip_prefix("listening ") {
                p.addrs.push(a.to_string());
            } else if l == "ready" {
                break;
            }
        }
        p
    }

    fn next_line(&mut self, within: Duration, waiting_for: &str) -> String {
        match self.lines.recv_timeout(within) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "{}: no line within {within:?} (waiting for {waiting_for})",
                    self.name
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: exited (waiting for {waiting_for})", self.name)
            }
        }
    }

    /// Sends a command and returns its reply line (`recv` lines on the way go to the inbox).
    pub fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").expect("write to peer");
        self.stdin.flush().unwrap();
        loop {
            let l = self.next_line(Duration::from_secs(10), cmd);
            if l.starts_with("recv ") {
                self.inbox.push(l);
            } else {
                return l;
            }
        }
    }

    /// Sends a command whose reply is several lines, ending with one that starts with
    /// `last`; returns them all (`recv` lines on the way go to the inbox).
    pub fn ask_lines(&mut self, cmd: &str, last: &str) -> Vec<String> {
        let mut out = vec![self.ask(cmd)];
        while !out
            .last()
            .is_some_and(|l| l.starts_with(last) || l.starts_with("error "))
        {
            let l = self.next_line(Duration::from_secs(30), cmd);
            if l.starts_with("recv ") {
                self.inbox.push(l);
            } else {
                out.push(l);
            }
        }
        out
    }

    /// A numeric reply such as `peers 2`.
    pub fn count(&mut self, cmd: &str) -> u64 {
        let r = self.ask(cmd);
        r.strip_prefix(&format!("{cmd} "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: unexpected reply to {cmd}: {r}", self.name))
    }

    /// Our libp2p peer id (the `/p2p/…` of our first listen address).
    pub fn peer_id(&self) -> String {
        let a = self.addrs.first().expect("a listen address");
        a.rsplit('/').next().unwrap_or_default().to_string()
    }

    /// `peer`'s gossipsub score at this relay, if it is connected.
    pub fn score_of(&mut self, peer: &str) -> Option<f64> {
        let r = self.ask(&format!("score {peer}"));
        match r.strip_prefix("score ") {
            Some("none") => None,
            Some(s) => Some(
                s.parse()
                    .unwrap_or_else(|_| panic!("{}: bad score {r}", self.name)),
            ),
            None => panic!("{}: unexpected reply to score: {r}", self.name),
        }
    }

    /// Collects `recv` lines already queued or arriving within `d` (zero: only queued).
    pub fn drain(&mut self, d: Duration) {
        while let Ok(l) = self.lines.try_recv() {
            if l.starts_with("recv ") {
                self.inbox.push(l);
            }
        }
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("recv ") => self.inbox.push(l),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    /// Waits until `f` holds, polling every 100 ms for up to 20 s.
    pub fn wait_until(&mut self, what: &str, mut f: impl FnMut(&mut Peer) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{}: timed out waiting for {what}", self.name);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The built binary's client subcommands against a served test double: `--json` prints the
//! API's body exactly, errors are one line, `events` streams.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

#[path = "api_fake.rs"]
mod api_fake;
use api_fake::{BOB, Fake, ME};

const BIN: &str = env!("CARGO_BIN_EXE_demls-node");

async fn cli(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("DEMLS_API")
            .output()
            .expect("run demls-node")
    })
    .await
    .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subcommands() {
    let fake = Fake::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(demls_node::api::serve(
        listener,
        fake.clone(),
        std::future::pending(),
    ));
    let run = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.push("--api".into());
        v.push(url.clone());
        cli(v)
    };

    // --json prints the body exactly as the API sent it.
    let api = demls_node::api::client::ApiClient::new(&url).unwrap();
    let raw = api.show("general").await.unwrap().raw;
    let o = run(&["show", "general", "--json"]).await;
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), format!("{raw}\n"));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["state"], "working");
    assert_eq!(v["members"][0]["role"], "epoch_steward");

    let o = run(&["vote", "general", "7", "no", "--json"]).await;
    assert_eq!(out(&o), "{\"proposal_id\":7,\"vote\":false}\n");
    let o = run(&["remove", "general", BOB, "--json"]).await;
    assert_eq!(out(&o), "{\"proposal_id\":7}\n");
    let o = run(&["status", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["address"], ME);
    assert_eq!(v["peers"], 2);

    // Human output.
    let o = run(&["status"]).await;
    assert!(
        out(&o).contains(&format!("address        {ME}")),
        "{}",
        out(&o)
    );
    let o = run(&["show", "general"]).await;
    assert!(out(&o).contains("ADDRESS"), "{}", out(&o));
    assert!(out(&o).contains(&format!("{BOB}  member")), "{}", out(&o));
    let o = run(&["conversations"]).await;
    assert!(out(&o).starts_with("NAME"), "{}", out(&o));
    let o = run(&["messages", "general"]).await;
    assert!(
        out(&o).contains(&format!("[epoch 3] {BOB}: hello")),
        "{}",
        out(&o)
    );
    let o = run(&["proposals", "general"]).await;
    assert!(out(&o).contains("remove"), "{}", out(&o));
    let o = run(&["vote", "general", "7", "yes"]).await;
    assert_eq!(out(&o), "voted yes on proposal 7\n");
    let o = run(&["send", "general", "hi all"]).await;
    assert_eq!(out(&o), "sent\n");
    let o = run(&["create", "fresh"]).await;
    assert!(o.status.success());
    let o = run(&["leave", "fresh"]).await;
    assert!(o.status.success());

    // API errors: one line, non-zero exit; `show` fails once we are out.
    let o = run(&["show", "fresh", "--json"]).await;
    assert!(!o.status.success());
    assert_eq!(err(&o), "error: not in conversation \"fresh\" (HTTP 404)\n");
    assert!(out(&o).is_empty());
    let o = run(&["send", "waiting", "x"]).await;
    assert!(!o.status.success());
    assert_eq!(
        err(&o),
        "error: not a member yet: the join is pending (HTTP 409)\n"
    );
    let o = run(&["vote", "general", "8", "yes"]).await;
    assert_eq!(err(&o), "error: no proposal 8 (HTTP 404)\n");

    // events: one line per event, until interrupted.
    let mut child = Command::new(BIN)
        .args(["events", "general", "--json", "--api", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for _ in 0..200 {
        if fake.events.receiver_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.send("general", "streamed").await.unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut l = String::new();
        BufReader::new(stdout).read_line(&mut l).map(|_| l)
    });
    let line = tokio::time::timeout(Duration::from_secs(10), line)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["conversation"], "general");
    assert_eq!(v["kind"], "chat");
    assert_eq!(v["data"]["text"], "streamed");
}

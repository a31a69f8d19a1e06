//! The built binary's client subcommands against a served test double: `--json` prints the
//! API's body exactly, errors are one line, `events` streams.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

#[path = "api_fake.rs"]
mod api_fake;
use api_fake::{BOB, Fake, ME};
use demls_node::api::{ApiAccess, ApiToken};

const BIN: &str = env!("CARGO_BIN_EXE_demls-node");

async fn cli(args: Vec<String>) -> Output {
    cli_env(args, vec![]).await
}

async fn cli_env(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("DEMLS_API")
            .env_remove("DEMLS_API_TOKEN")
            .envs(env)
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
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    // The node's side: its config file and the token in its data directory.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (token, _) = ApiToken::load_or_create(&ApiToken::path_in(&data)).unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        format!("[storage]\ndata_dir = \"data\"\n[api]\nlisten = \"{addr}\"\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    let access = ApiAccess::new(token.clone(), addr, Vec::new());
    tokio::spawn(demls_node::api::serve(
        listener,
        fake.clone(),
        access,
        std::future::pending(),
    ));
    // `--config` alone: the client finds the address and the token by itself.
    let run = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.push("--config".into());
        v.push(config.clone());
        cli(v)
    };

    // The other ways to give the token: --api-token, DEMLS_API_TOKEN; none or a wrong one
    // is refused with a hint.
    let o = cli(vec![
        "status".into(),
        "--api".into(),
        url.clone(),
        "--api-token".into(),
        token.as_str().into(),
    ])
    .await;
    assert!(o.status.success(), "{}", err(&o));
    let o = cli_env(
        vec!["status".into(), "--api".into(), url.clone()],
        vec![("DEMLS_API_TOKEN", token.as_str().into())],
    )
    .await;
    assert!(o.status.success(), "{}", err(&o));
    let o = cli(vec!["status".into(), "--api".into(), url.clone()]).await;
    assert!(!o.status.success());
    assert!(
        err(&o).starts_with("error: missing API token"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains("(HTTP 401); pass --api-token"),
        "{}",
        err(&o)
    );
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    let wrong = "x".repeat(64);
    let o = cli(vec![
        "status".into(),
        "--api".into(),
        url.clone(),
        "--api-token".into(),
        wrong,
    ])
    .await;
    assert!(err(&o).starts_with("error: wrong API token"), "{}", err(&o));
    // --config of another node (no token file there yet): the hint names the file.
    let other = tmp.path().join("other.toml");
    std::fs::write(
        &other,
        format!("[storage]\ndata_dir = \"nowhere\"\n[api]\nlisten = \"{addr}\"\n"),
    )
    .unwrap();
    let o = cli(vec![
        "status".into(),
        "--config".into(),
        other.display().to_string(),
    ])
    .await;
    assert!(err(&o).contains("no token file"), "{}", err(&o));
    assert!(err(&o).contains("nowhere/api-token"), "{}", err(&o));

    // --json prints the body exactly as the API sent it.
    let api = demls_node::api::client::ApiClient::new(&url)
        .unwrap()
        .with_token(Some(token.as_str().to_string()));
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

    // Remote-controlled text never reaches the terminal raw: no C0 (ESC, BEL, CR), DEL, C1
    // or bidi override; each is shown escaped. With --json too (still valid JSON, same text).
    for args in [
        &["messages", "weird"][..],
        &["messages", "weird", "--json"][..],
    ] {
        let o = run(args).await;
        assert!(o.status.success(), "{}", err(&o));
        let text = out(&o);
        let bad: Vec<char> = text
            .chars()
            .filter(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c))
            .collect();
        assert!(
            bad.is_empty(),
            "{args:?}: raw control characters {bad:?} in {text:?}"
        );
        if args.len() == 3 {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v[0]["text"], api_fake::HOSTILE_TEXT);
        } else {
            assert!(text.contains("hi\\u{1b}[2J"), "{text:?}");
        }
    }

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
        .args(["events", "general", "--json", "--config", &config])
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

//! Command-line parsing: global flags after any subcommand, argument validation.

use std::path::PathBuf;

use clap::Parser;
use demls_node::cli::{Cli, Command, DEFAULT_API_URL, Vote};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("demls-node").chain(args.iter().copied()))
}

fn ok(args: &[&str]) -> Cli {
    parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn global_flags_after_any_subcommand() {
    fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut v = args.to_vec();
        v.extend([
            "--api",
            "http://10.0.0.1:1",
            "--json",
            "--api-token",
            "t0k",
            "--config",
            "n.toml",
        ]);
        v
    }
    let subcommands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["conversations"],
        vec!["create", "general"],
        vec!["join", "general"],
        vec!["leave", "general"],
        vec!["show", "general"],
        vec!["send", "general", "hello world"],
        vec!["messages", "general"],
        vec![
            "remove",
            "general",
            "0x2222222222222222222222222222222222222222",
        ],
        vec!["proposals", "general"],
        vec!["vote", "general", "3", "yes"],
        vec!["events"],
        vec!["events", "general"],
        vec!["keygen", "--out", "k"],
        vec!["run"],
    ];
    for args in subcommands {
        let c = ok(&with(&args));
        assert_eq!(c.api.as_deref(), Some("http://10.0.0.1:1"), "{args:?}");
        assert!(c.json, "{args:?}");
        assert_eq!(c.api_token.as_deref(), Some("t0k"), "{args:?}");
        assert_eq!(c.config, Some(PathBuf::from("n.toml")), "{args:?}");
        // Before the subcommand works too.
        let mut before = vec!["--json", "--api", "http://h:2"];
        before.extend(&args);
        let c = ok(&before);
        assert_eq!(
            (c.api.as_deref(), c.json),
            (Some("http://h:2"), true),
            "{args:?}"
        );
        // And in the middle.
        let mut mid = vec![args[0], "--json"];
        mid.extend(&args[1..]);
        assert!(ok(&mid).json, "{mid:?}");
    }
}

#[test]
fn defaults() {
    let c = ok(&["status"]);
    // DEMLS_API / DEMLS_API_TOKEN may be set in the environment running the tests.
    if std::env::var_os("DEMLS_API").is_none() {
        assert_eq!(c.api, None, "the configuration's api.listen is used");
    }
    if std::env::var_os("DEMLS_API_TOKEN").is_none() {
        assert_eq!(
            c.api_token, None,
            "the configuration's api-token file is used"
        );
    }
    assert_eq!(DEFAULT_API_URL, "http://127.0.0.1:8645");
    assert!(!c.json);
    assert_eq!(c.config, None);
    assert_eq!(ok(&["run"]).command, Command::Run);
    assert_eq!(
        ok(&["run", "-c", "x.toml"]).config,
        Some(PathBuf::from("x.toml"))
    );
    assert_eq!(
        ok(&["-c", "x.toml", "status"]).config,
        Some(PathBuf::from("x.toml"))
    );
    assert_eq!(ok(&["events"]).command, Command::Events { name: None });
}

#[test]
fn vote_takes_yes_or_no() {
    for (word, want) in [("yes", Vote::Yes), ("no", Vote::No)] {
        match ok(&["vote", "general", "12", word]).command {
            Command::Vote {
                name,
                proposal_id,
                vote,
            } => {
                assert_eq!((name.as_str(), proposal_id, vote), ("general", 12, want));
            }
            other => panic!("{other:?}"),
        }
    }
    for bad in [
        vec!["vote", "general", "12", "maybe"],
        vec!["vote", "general", "12", "YESS"],
        vec!["vote", "general", "12"],
        vec!["vote", "general", "x", "yes"],
        vec!["vote", "general", "-1", "yes"],
        vec!["vote", "general", "4294967296", "yes"],
    ] {
        assert!(parse(&bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn names_and_addresses_are_checked() {
    assert!(parse(&["create", "a b"]).is_err());
    assert!(parse(&["join", "a/b"]).is_err());
    assert!(parse(&["show", ""]).is_err());
    assert!(parse(&["show", &"x".repeat(65)]).is_err());
    assert!(parse(&["show", &"x".repeat(64)]).is_ok());
    assert!(parse(&["remove", "general", "0x12"]).is_err());
    assert!(parse(&["remove", "general", "bob"]).is_err());
    match ok(&[
        "remove",
        "general",
        "0xabcdefabcdefabcdefabcdefabcdefabcdefabcd",
    ])
    .command
    {
        Command::Remove { address, .. } => {
            assert_eq!(
                address.to_string().to_lowercase(),
                "0xabcdefabcdefabcdefabcdefabcdefabcdefabcd"
            );
        }
        other => panic!("{other:?}"),
    }
    // EIP-55: all lower or all upper case is accepted; mixed case must be the checksum.
    let lower = "0xabcdefabcdefabcdefabcdefabcdefabcdefabcd";
    let good: String = lower
        .parse::<demls_core::identity::MemberId>()
        .unwrap()
        .to_string();
    assert_ne!(good, lower, "the checksum has upper-case letters");
    let upper = format!("0x{}", lower[2..].to_uppercase());
    let i = good[2..].find(|c: char| c.is_ascii_uppercase()).unwrap() + 2;
    let mut bad = good.clone();
    bad.replace_range(i..=i, &good[i..=i].to_lowercase());
    for ok_addr in [lower, upper.as_str(), good.as_str()] {
        assert!(parse(&["remove", "general", ok_addr]).is_ok(), "{ok_addr}");
    }
    let e = parse(&["remove", "general", &bad]).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{bad}: {e}");

    assert!(parse(&["send", "general"]).is_err());
    assert!(parse(&["keygen"]).is_err(), "--out is required");
    assert!(parse(&["frobnicate"]).is_err());
}

//! The per-node table of `scripts/testnet.sh status`, also printed after each scenario.

use crate::net::Testnet;

fn row(cells: [&str; 6]) -> String {
    let [node, epoch, state, role, members, peers] = cells;
    format!("{node:<10} {epoch:<6} {state:<13} {role:<15} {members:<8} {peers:<6}")
}

/// Prints, per member: its epoch, state and role in the conversation, the members it
/// sees and its relay peers; `(down)` when its API does not answer.
pub async fn print(net: &Testnet) {
    println!(
        "{}",
        row(["NODE", "EPOCH", "STATE", "ROLE", "MEMBERS", "PEERS"])
    );
    for node in Testnet::first(net.members) {
        let Ok(status) = net.status(&node).await else {
            println!("{node:<10} (down)");
            continue;
        };
        let peers = status.peers.to_string();
        let line = match net.show(&node).await {
            Ok(view) => {
                let role = view
                    .members
                    .iter()
                    .find(|m| m.address.eq_ignore_ascii_case(&status.address))
                    .map_or("-", |m| m.role.as_str());
                let (epoch, members) = (view.epoch.to_string(), view.members.len().to_string());
                row([&node, &epoch, &view.state, role, &members, &peers])
            }
            Err(_) => row([
                &node,
                "-",
                &format!("(not in {})", net.conv),
                "-",
                "-",
                &peers,
            ]),
        };
        println!("{line}");
    }
}

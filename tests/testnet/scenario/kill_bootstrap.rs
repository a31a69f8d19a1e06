//! The node everyone bootstraps from is killed mid-change, and it is the epoch steward.
//!
//! The relay node is stopped and every other member is recreated dialing only the epoch
//! steward (its ENR once the API shows one, else its address by name), so that without
//! discovery the rest would hear nothing once it is gone. Then a removal is proposed and
//! the steward killed at once: the removal must commit and the rest stay one group.

use std::time::{Duration, Instant};

use super::{failed, form_group, secs};
use crate::heal::{Roster, one_group, record};
use crate::net::Testnet;
use crate::wait::{Failed, log, wait_for, wait_or_note};

/// The `kill-bootstrap` scenario.
pub async fn kill_bootstrap(net: &Testnet) -> Result<(), Failed> {
    let n = net.members;
    if n < 5 {
        return Err(Failed(format!(
            "kill-bootstrap needs 5 members, the testnet has {n}"
        )));
    }
    let group = Testnet::first(n);
    form_group(net, n).await?;
    let steward = net
        .role_holder("epoch_steward", &group)
        .await
        .map_err(|e| Failed(format!("no epoch steward found: {e}")))?;
    let rest = dial_only(net, &steward, &group).await?;

    let (victim, proposer) = (&rest[0], &rest[1]);
    let live = &rest[1..];
    log(format!(
        "{proposer} proposes removing {victim}; \
         {steward} (bootstrap of everyone, epoch steward) is killed"
    ));
    let address = net.address(victim).await?;
    net.remove(proposer, &address)
        .await
        .map_err(failed(&format!("{proposer} proposes the removal")))?;
    net.kill(&steward).await?;
    let killed = Instant::now();
    tokio::time::sleep(secs(10)).await;
    log(format!(
        "peers 10s after the kill: {}",
        net.peer_table(live).await
    ));

    // The removal commits everywhere (the dead steward stays on the roster: never
    // removed), and the live members are one group.
    let what = format!("removal of {victim} committed, live members at one epoch");
    wait_for(secs(240), &what, async || {
        net.same_epoch_working(n - 1, live).await
    })
    .await?;
    let left = secs(240).saturating_sub(killed.elapsed()).max(secs(30));
    let what = "kill-bootstrap: committed -> chat checked";
    one_group(net, left, what, live, Roster::WithDead(&steward)).await?;
    let took: Duration = killed.elapsed();
    log(format!(
        "kill-bootstrap: {}s from the kill to one group",
        took.as_secs()
    ));
    record(net, "kill-bootstrap: kill -> one group", took, live);
    Ok(())
}

/// Stops the relay node and recreates every member of `group` but `steward` dialing only
/// `steward`; awaits the group back, `steward` still its epoch steward. Returns the
/// recreated members.
async fn dial_only(net: &Testnet, steward: &str, group: &[String]) -> Result<Vec<String>, Failed> {
    let enr = net.status(steward).await.map(|s| s.enr).unwrap_or_default();
    let dial = if enr.is_empty() {
        format!("/dns4/{steward}/tcp/60000")
    } else {
        enr
    };
    let rest: Vec<String> = group.iter().filter(|m| *m != steward).cloned().collect();
    log(format!(
        "epoch steward is {steward}; the relay node stops and {} restart \
         dialing only {steward} ({dial})",
        rest.join(" ")
    ));
    net.stop("bootstrap").await?;
    net.recreate(&format!("star:{steward}={dial}"), &rest)
        .await?;
    for m in &rest {
        let what = format!("{m} API answers");
        wait_for(secs(120), &what, async || net.answers(m).await).await?;
    }
    wait_for(secs(180), "group back after the restarts", async || {
        net.converged(group).await
    })
    .await?;
    let after = net
        .role_holder("epoch_steward", group)
        .await
        .unwrap_or_default();
    if after != steward {
        return Err(Failed(format!(
            "the epoch steward moved from {steward} to '{after}' during the restarts"
        )));
    }
    // With discovery the others find each other through the steward; without it each
    // one has the steward as its only peer. Either way the scenario goes on (logged).
    wait_or_note(
        secs(60),
        &format!("members found peers beyond {steward}"),
        async || net.peers_beyond(&rest).await,
    )
    .await;
    log(format!(
        "peers before the kill: {}",
        net.peer_table(group).await
    ));
    Ok(rest)
}

//! The group is cut in two (docker networks): member1-3 keep the relay, member4-5 get a
//! network of their own. The larger half adds a newcomer (member6), the smaller one
//! proposes removing member1; both chat; the network is joined again. Members dial the
//! relay and every other member (the script's `BOOT_MODE=mesh`), so each half stays
//! connected among itself with or without discovery. Whatever each half committed, the
//! end must be one group of all six: the smaller half cannot win, so member1 stays.

use std::time::Instant;

use super::{failed, form_group, secs};
use crate::api::CallError;
use crate::heal::{Roster, one_group};
use crate::net::Testnet;
use crate::wait::{Failed, log, wait_or_note};

/// The `split-brain` scenario.
pub async fn split_brain(net: &Testnet) -> Result<(), Failed> {
    if net.members < 6 {
        return Err(Failed(format!(
            "split-brain needs 6 members, the testnet has {}",
            net.members
        )));
    }
    form_group(net, 5).await?;
    let all = Testnet::first(6);
    let (half_a, half_b) = (&all[..3], &all[3..5]);
    let newcomer = &all[5];
    let steward = net
        .role_holder("epoch_steward", &all[..5])
        .await
        .unwrap_or_else(|_| "?".into());
    let before = net.epoch("member1").await?;
    log(format!(
        "epoch steward is {steward}; cutting {} off (member1-3 and {newcomer} keep the relay)",
        half_b.join(" ")
    ));
    let shared = net.shared_network().await?;
    let side = net.side_network("half_b").await?;
    let mut addresses = Vec::new();
    for m in half_b {
        addresses.push(net.disconnect(m, &shared).await?);
        net.connect(m, &side, None).await?;
    }
    tokio::time::sleep(secs(3)).await;

    log(format!(
        "{newcomer} asks to join half A; member4 proposes removing member1 in half B"
    ));
    net.join(newcomer)
        .await
        .map_err(failed(&format!("{newcomer} joins")))?;
    let member1 = net.address("member1").await?;
    if let Err(e) = net.remove("member4", &member1).await {
        log(format!("member4 could not propose the removal: {e}"));
    }
    let split = Instant::now();
    // Half A's roster still holds member4 and member5: six members.
    let mut half_a_now = half_a.to_vec();
    half_a_now.push(newcomer.clone());
    wait_or_note(secs(240), &format!("half A added {newcomer}"), async || {
        net.same_epoch_working(6, &half_a_now).await
    })
    .await;
    let _ = net.send("member1", "half A while split").await;
    let _ = net.send("member4", "half B while split").await;
    // Long enough for half B's proposal to expire (proposal_expiration = 120s in the
    // testnet config): a removal left open would otherwise still be voted on after the
    // heal.
    tokio::time::sleep(secs(150).saturating_sub(split.elapsed())).await;
    log(format!(
        "before the heal: epochs {} (member1 was at {before})",
        net.epoch_table(&all).await
    ));

    log("joining the network again");
    for (m, ip) in half_b.iter().zip(&addresses) {
        net.disconnect(m, &side).await?;
        net.connect(m, &shared, Some(ip)).await?;
    }
    // A newcomer whose join expired while its half could not commit it is not a member of
    // anything: it asks again, as its user would. Members get no such help.
    match net.show(newcomer).await {
        Ok(_) => {}
        Err(CallError::NotFound(_)) => {
            log(format!(
                "{newcomer}'s join expired during the split: {newcomer} joins again"
            ));
            net.join(newcomer)
                .await
                .map_err(failed(&format!("{newcomer} joins again")))?;
        }
        Err(e) => return Err(Failed(format!("{newcomer} after the heal: {e}"))),
    }
    one_group(
        net,
        secs(300),
        "split-brain: rejoin -> one group",
        &all,
        Roster::Exactly,
    )
    .await?;
    Ok(())
}

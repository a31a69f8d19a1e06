//! The epoch steward's node is killed (SIGKILL) in the middle of a join: the backup
//! steward commits it, and the survivors converge with the joiner in.

use super::{failed, form_group, secs};
use crate::net::Testnet;
use crate::wait::{Failed, log, wait_for, wait_or_note};

/// The `kill-steward` scenario.
pub async fn kill_steward(net: &Testnet) -> Result<(), Failed> {
    let n = net.members;
    form_group(net, n - 1).await?;
    let group = Testnet::first(n - 1);
    let joiner = format!("member{n}");
    let steward = net
        .role_holder("epoch_steward", &group)
        .await
        .map_err(|e| Failed(format!("no epoch steward found: {e}")))?;
    log(format!(
        "epoch steward is {steward}; {joiner} asks to join, then {steward} is killed mid-change"
    ));
    net.join(&joiner)
        .await
        .map_err(failed(&format!("{joiner} joins")))?;
    // The kill must land mid-change, so it waits for the proposal; if none shows up in
    // time the kill goes ahead anyway (the join is under way from the request on).
    wait_or_note(secs(60), "join proposal under way", async || {
        net.join_proposed("member1").await
    })
    .await;
    net.kill(&steward)
        .await
        .map_err(|e| Failed(format!("killing {steward}: {e}")))?;

    let survivors: Vec<String> = group
        .iter()
        .chain([&joiner])
        .filter(|m| **m != steward)
        .cloned()
        .collect();
    // The killed steward stays on the roster (nobody removed it): n members.
    let what = format!("backup committed; survivors at one epoch with {joiner} in");
    wait_for(secs(240), &what, async || {
        net.same_epoch_working(n, &survivors).await
    })
    .await?;
    // Back up for whatever looks at the testnet next; the scenario has passed already.
    if let Err(e) = net.start(&steward).await {
        log(format!("could not start {steward} again: {e}"));
    }
    Ok(())
}

//! Create, everyone joins by name, chat reaches every member, a member is removed by
//! vote, another leaves; all converge after each step.

use super::{failed, form_group, secs};
use crate::net::Testnet;
use crate::wait::{Failed, log, wait_for};

/// The `basic` scenario.
pub async fn basic(net: &Testnet) -> Result<(), Failed> {
    let n = net.members;
    let all = Testnet::first(n);
    form_group(net, n).await?;
    for m in &all {
        let text = format!("hello from {m}");
        net.send(m, &text)
            .await
            .map_err(failed(&format!("{m} sends {text:?}")))?;
    }
    for from in &all {
        for to in all.iter().filter(|to| *to != from) {
            let text = format!("hello from {from}");
            let what = format!("{to} got {from}'s message");
            wait_for(secs(60), &what, async || net.has_message(to, &text).await).await?;
        }
    }

    let victim = &all[n - 1];
    log(format!("member1 proposes removing {victim}"));
    let address = net.address(victim).await?;
    net.remove("member1", &address)
        .await
        .map_err(failed("member1 proposes the removal"))?;
    let rest = &all[..n - 1];
    let what = format!("{victim} removed, {} converged", rest.len());
    wait_for(secs(180), &what, async || net.converged(rest).await).await?;
    let what = format!("{victim} sees it left");
    wait_for(secs(60), &what, async || net.not_in(victim).await).await?;

    let leaver = &all[n - 2];
    log(format!("{leaver} leaves"));
    net.leave(leaver)
        .await
        .map_err(failed(&format!("{leaver} leaves")))?;
    let rest = &all[..n - 2];
    let what = format!("{leaver} gone, {} converged", rest.len());
    wait_for(secs(180), &what, async || net.converged(rest).await).await?;
    Ok(())
}

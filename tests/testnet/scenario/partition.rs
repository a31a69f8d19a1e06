//! A member is disconnected from the network, the group removes another member without
//! it, and once reconnected (same address) it catches up to the group's epoch.

use super::{failed, form_group, secs};
use crate::net::Testnet;
use crate::wait::{Failed, log, wait_for};

/// The `partition` scenario.
pub async fn partition(net: &Testnet) -> Result<(), Failed> {
    let n = net.members;
    let all = Testnet::first(n);
    form_group(net, n).await?;
    let cut = &all[n - 1];
    let before = net.epoch("member1").await?;
    let network = net.shared_network().await?;
    log(format!("cutting {cut} off the network"));
    let ip = net.disconnect(cut, &network).await?;

    let victim = &all[n - 2];
    let address = net.address(victim).await?;
    net.remove("member1", &address)
        .await
        .map_err(failed(&format!("member1 proposes removing {victim}")))?;
    let what = format!("membership changed while {cut} was cut off");
    wait_for(secs(180), &what, async || {
        net.epoch_above("member1", before).await
    })
    .await?;

    log(format!("reconnecting {cut}"));
    net.connect(cut, &network, Some(&ip)).await?;
    // By design (docs/PROTOCOL.md, catch-up) the cut-off member asks for the commit it
    // missed when it sees a message of the new epoch: keep the group talking.
    let mut group: Vec<String> = all[..n - 2].to_vec();
    group.push(cut.clone());
    let what = format!("{cut} caught up with the group");
    let start = std::time::Instant::now();
    wait_for(secs(180), &what, async || {
        let ping = format!("ping {}", start.elapsed().as_secs());
        let _ = net.send("member1", &ping).await;
        net.converged(&group).await
    })
    .await?;
    Ok(())
}

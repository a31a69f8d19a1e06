//! Turns protocol state, events and the runtime's records into the API's JSON views: the
//! only place that builds them, so the runtime and the handle only say what happened.

use std::collections::{BTreeMap, BTreeSet};

use demls_core::config::Millis;
use demls_core::conversation::{Action, Change, Conversation, Event, ProposalStatus, Tracked};
use demls_core::identity::MemberId;
use demls_transport::TransportStats;
use serde_json::json;

use super::runtime::Quarantine;
use crate::api::types::*;
use crate::storage::StoredMessage;

/// Members on their way out: they asked to leave (a self-removal not rejected), or
/// their removal was accepted, and no commit has removed them yet.
fn leaving(c: &Conversation) -> BTreeSet<MemberId> {
    let mut out: BTreeSet<MemberId> = c
        .approved()
        .iter()
        .filter_map(|a| match &a.change {
            Change::Remove { member } => Some(*member),
            Change::Add { .. } => None,
        })
        .collect();
    for p in c.proposals() {
        if let Action::Remove { member } = &p.action
            && (*member == p.owner || p.status == ProposalStatus::Accepted)
            && matches!(p.status, ProposalStatus::Voting | ProposalStatus::Accepted)
        {
            out.insert(*member);
        }
    }
    out
}

pub(crate) fn conversation_view(c: &Conversation) -> ConversationView {
    let leaving = leaving(c);
    let members = c
        .members()
        .into_iter()
        .map(|m| MemberView {
            address: m.to_string(),
            score: c.score(&m),
            role: c.role(&m).as_str().to_string(),
            pending_leave: leaving.contains(&m),
        })
        .collect();
    ConversationView {
        name: c.name().to_string(),
        state: c.state().as_str().to_string(),
        epoch: c.epoch(),
        members,
        freeze: c
            .freeze_progress()
            .map(|(candidates, expected, deadline)| FreezeView {
                candidates,
                expected,
                deadline,
            }),
    }
}

pub(crate) fn summary(c: &Conversation) -> ConversationSummary {
    ConversationSummary {
        name: c.name().to_string(),
        state: c.state().as_str().to_string(),
        epoch: c.epoch(),
        members: c.members().len(),
    }
}

fn yes_no(v: bool) -> String {
    if v { "yes" } else { "no" }.to_string()
}

fn proposal_view(c: &Conversation, p: &Tracked, decided_at: Option<u64>) -> ProposalView {
    let (yes, no, expected) = c.tally(p.id).unwrap_or((0, 0, 0));
    let our_vote = c.our_vote(p.id);
    let auto_vote_at = p
        .auto_vote_at
        .filter(|_| our_vote.is_none() && p.status == ProposalStatus::Voting);
    ProposalView {
        id: p.id,
        kind: p.action.kind_name().to_string(),
        status: p.status.as_str().to_string(),
        yes,
        no,
        expected,
        summary: p.action.summary(),
        owner: p.owner.to_string(),
        our_vote: our_vote.map(yes_no),
        auto_vote_at,
        auto_vote: auto_vote_at.map(|_| yes_no(p.auto_vote)),
        decided_at: decided_at.filter(|_| p.status != ProposalStatus::Voting),
    }
}

/// The proposals of `c`, with when this node saw each decided (`decided`, by id).
pub(crate) fn proposals(
    c: &Conversation,
    decided: Option<&BTreeMap<u32, u64>>,
) -> Vec<ProposalView> {
    c.proposals()
        .map(|p| proposal_view(c, p, decided.and_then(|d| d.get(&p.id).copied())))
        .collect()
}

pub(crate) fn event_view(conversation: &str, epoch: u64, e: &Event) -> EventView {
    let (kind, data) = match e {
        Event::StateChanged { state } => ("state", json!({ "state": state.as_str() })),
        Event::Joined { epoch } => ("joined", json!({ "epoch": epoch })),
        // Ours: the history has it; the stream says it went out and to how many.
        Event::Chat {
            id,
            sent_to: Some(recipients),
            ..
        } => ("chat_sent", json!({ "id": id, "recipients": recipients })),
        Event::Chat {
            sender,
            text,
            epoch,
            timestamp,
            id,
            sent_to: None,
        } => (
            "chat",
            json!({ "sender": sender.to_string(), "text": text, "epoch": epoch, "timestamp": timestamp, "id": id }),
        ),
        Event::ChatDelivery {
            id,
            acked,
            of,
            done,
        } => (
            "chat_delivery",
            json!({ "id": id, "acked": acked, "of": of, "done": done }),
        ),
        Event::ChatLost { id, sender } => (
            "chat_lost",
            json!({ "id": id, "sender": sender.map(|s| s.to_string()) }),
        ),
        Event::MessageExpired { epoch, our_epoch } => (
            "message_expired",
            json!({ "epoch": epoch, "our_epoch": our_epoch, "window": demls_core::mls::PAST_EPOCHS }),
        ),
        Event::ProposalCreated {
            id,
            kind_name,
            summary,
            owner,
            ..
        } => (
            "proposal",
            json!({ "id": id, "kind": kind_name, "summary": summary, "owner": owner.to_string() }),
        ),
        Event::VoteRequested { id, auto_vote_at } => (
            "vote_requested",
            json!({ "id": id, "auto_vote_at": auto_vote_at }),
        ),
        Event::ProposalDecided { id, accepted } => {
            ("decided", json!({ "id": id, "accepted": accepted }))
        }
        Event::CommitApplied {
            epoch,
            committer,
            added,
            removed,
        } => (
            "commit",
            json!({
                "epoch": epoch,
                "committer": committer.to_string(),
                "added": added.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                "removed": removed.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            }),
        ),
        Event::Left { reason } => ("left", json!({ "reason": format!("{reason:?}") })),
        Event::Rejected { what, reason, .. } => (
            "rejected",
            json!({ "what": what.as_str(), "reason": reason }),
        ),
        Event::ForkDetected {
            fork_epoch,
            our_support,
            their_support,
        } => (
            "fork_detected",
            json!({ "fork_epoch": fork_epoch, "our_support": our_support, "their_support": their_support }),
        ),
        Event::BranchAbandoned { fork_epoch, unseen } => (
            "branch_abandoned",
            json!({
                "fork_epoch": fork_epoch,
                "unseen": unseen.iter().map(|s| json!({
                    "epoch": s.epoch, "timestamp": s.timestamp, "text": s.text,
                })).collect::<Vec<_>>(),
            }),
        ),
        Event::Rejoining { reason } => ("rejoining", json!({ "reason": reason.as_str() })),
        Event::Error { operation, message } => (
            "error",
            json!({ "operation": operation, "message": message }),
        ),
    };
    EventView {
        // Given by the event log when published.
        id: 0,
        conversation: conversation.to_string(),
        kind: kind.to_string(),
        data: json!({ "epoch": epoch, "event": data }),
    }
}

/// A quarantined conversation, for `/health` and `/status`.
fn quarantine(name: &str, q: &Quarantine) -> QuarantineView {
    QuarantineView {
        name: name.to_string(),
        reason: q.reason.clone(),
        since: q.since,
    }
}

fn quarantines(quarantined: &BTreeMap<String, Quarantine>) -> Vec<QuarantineView> {
    quarantined.iter().map(|(n, q)| quarantine(n, q)).collect()
}

/// What `/health` is judged on.
pub(crate) struct Readiness<'a> {
    /// The relay's addresses and peers.
    pub stats: &'a TransportStats,
    /// The relay is configured to listen.
    pub expect_listen: bool,
    /// Bootstrap peers are configured.
    pub expect_peers: bool,
    /// Conversations out of `working` too long: name, state, since when.
    pub stuck: Vec<(&'a str, &'static str, Millis)>,
    /// Conversations not run.
    pub quarantined: &'a BTreeMap<String, Quarantine>,
    /// Now, ms since the Unix epoch.
    pub now: Millis,
}

/// The readiness report of `/health`: `degraded` with a quarantine, `not_ready` with any
/// other reason, else `ok`.
pub(crate) fn health(r: &Readiness<'_>) -> HealthView {
    let quarantined = quarantines(r.quarantined);
    let stuck: Vec<StuckView> = r
        .stuck
        .iter()
        .map(|(name, state, since)| StuckView {
            name: name.to_string(),
            state: state.to_string(),
            since: *since,
        })
        .collect();
    let relay_up = !r.expect_listen || !r.stats.listen_addrs.is_empty();
    let mut reasons = Vec::new();
    if !relay_up {
        reasons.push("the Waku relay has no listen address".to_string());
    }
    if r.expect_peers && r.stats.connected_peers == 0 {
        reasons.push("no relay peer connected (bootstrap peers configured)".to_string());
    }
    for s in &stuck {
        reasons.push(format!(
            "conversation {:?} has been {} for {} s",
            s.name,
            s.state,
            r.now.saturating_sub(s.since) / 1000
        ));
    }
    for q in &quarantined {
        reasons.push(format!("conversation {:?} is quarantined", q.name));
    }
    let status = if !quarantined.is_empty() {
        "degraded"
    } else if !reasons.is_empty() {
        "not_ready"
    } else {
        "ok"
    };
    HealthView {
        status: status.into(),
        error: None,
        quarantined,
        reasons,
        relay_up: Some(relay_up),
        peers: Some(r.stats.connected_peers),
        stuck,
    }
}

/// `GET /status`.
pub(crate) fn status<'a>(
    me: MemberId,
    stats: &TransportStats,
    conversations: impl Iterator<Item = &'a String>,
    quarantined: &BTreeMap<String, Quarantine>,
) -> StatusView {
    StatusView {
        address: me.to_string(),
        peer_id: stats.peer_id.clone(),
        enr: stats.enr.clone(),
        peers: stats.connected_peers,
        conversations: conversations.cloned().collect(),
        listen: stats.listen_addrs.clone(),
        quarantined: quarantines(quarantined),
    }
}

/// The connected relay peers, `GET /peers`.
pub(crate) fn peers(stats: &TransportStats) -> Vec<PeerView> {
    stats
        .peers
        .iter()
        .map(|(id, p)| PeerView {
            peer_id: id.clone(),
            direction: p.direction.clone(),
            address: p.address.clone(),
            shards: p.shards.clone(),
            cluster_id: p.cluster_id,
            score: stats.peer_scores.get(id).copied(),
        })
        .collect()
}

/// One stored chat message.
pub(crate) fn message(m: StoredMessage) -> MessageView {
    MessageView {
        sender: m.sender,
        text: m.text,
        epoch: m.epoch,
        timestamp: m.timestamp,
        seq: m.seq,
        id: m.sds_id,
        delivery: m.delivery.map(DeliveryView::from),
    }
}

/// A quarantined conversation deleted.
pub(crate) fn dropped(name: &str) -> DroppedView {
    DroppedView {
        name: name.to_string(),
        dropped: true,
    }
}

/// A leave under way.
pub(crate) fn leaving_view(name: &str) -> LeaveView {
    LeaveView {
        name: name.to_string(),
        leaving: true,
    }
}

/// A chat message sent.
pub(crate) fn sent() -> SentView {
    SentView { sent: true }
}

/// A proposal opened.
pub(crate) fn proposal_ref(proposal_id: u32) -> ProposalRef {
    ProposalRef { proposal_id }
}

/// Our vote cast.
pub(crate) fn vote(proposal_id: u32, yes: bool) -> VoteView {
    VoteView {
        proposal_id,
        vote: yes,
    }
}

#[cfg(test)]
mod tests {
    use demls_core::conversation::ProposalKind;
    use demls_core::identity::MemberId;

    use super::*;

    /// The `proposal` event names a kind as `/proposals` does (`remove_member`, …), never
    /// the core's priority class (`Commit`).
    #[test]
    fn the_proposal_event_names_the_kind_as_proposals_does() {
        let owner: MemberId = "0x1111111111111111111111111111111111111111"
            .parse()
            .unwrap();
        let e = Event::ProposalCreated {
            id: 7,
            kind: ProposalKind::Commit,
            kind_name: "remove_member",
            summary: "remove 0x2222222222222222222222222222222222222222".into(),
            owner,
        };
        let v = event_view("general", 3, &e);
        assert_eq!(v.kind, "proposal");
        assert_eq!(v.data["event"]["kind"], "remove_member", "{}", v.data);
    }
}

//! Turns protocol state and events into the API's JSON views.

use demls_core::conversation::{Conversation, Event};
use serde_json::json;

use crate::api::types::*;

pub(crate) fn conversation_view(c: &Conversation) -> ConversationView {
    let members = c
        .members()
        .into_iter()
        .map(|m| MemberView {
            address: m.to_string(),
            score: c.score(&m),
            role: c.role(&m).as_str().to_string(),
        })
        .collect();
    ConversationView {
        name: c.name().to_string(),
        state: c.state().as_str().to_string(),
        epoch: c.epoch(),
        members,
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

pub(crate) fn proposals(c: &Conversation) -> Vec<ProposalView> {
    c.proposals()
        .map(|p| {
            let (yes, no, expected) = c.tally(p.id).unwrap_or((0, 0, 0));
            ProposalView {
                id: p.id,
                kind: p.action.kind_name().to_string(),
                status: p.status.as_str().to_string(),
                yes,
                no,
                expected,
                summary: p.action.summary(),
            }
        })
        .collect()
}

pub(crate) fn event_view(conversation: &str, epoch: u64, e: &Event) -> EventView {
    let (kind, data) = match e {
        Event::StateChanged { state } => ("state", json!({ "state": state.as_str() })),
        Event::Joined { epoch } => ("joined", json!({ "epoch": epoch })),
        Event::Chat {
            sender,
            text,
            epoch,
            timestamp,
            id,
        } => (
            "chat",
            json!({ "sender": sender.to_string(), "text": text, "epoch": epoch, "timestamp": timestamp, "id": id }),
        ),
        Event::ChatSent { id, recipients } => {
            ("chat_sent", json!({ "id": id, "recipients": recipients }))
        }
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
        Event::Rejected { what, reason } => ("rejected", json!({ "what": what, "reason": reason })),
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
        conversation: conversation.to_string(),
        kind: kind.to_string(),
        data: json!({ "epoch": epoch, "event": data }),
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

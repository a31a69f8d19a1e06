//! Counters for `GET /metrics` (Prometheus text format).
//!
//! Label values are escaped as the text format says ([`label_value`]): a conversation may
//! be named `we"ird`, and one bad line would make the whole scrape unreadable.

use std::collections::BTreeMap;
use std::fmt::Write;

use demls_core::conversation::{Conversation, Event};
use demls_transport::TransportStats;

/// A label value escaped for the Prometheus text format: `\` → `\\`, `"` → `\"`,
/// newline → `\n` (the format's only escapes; everything else is taken as is).
pub fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Node-level counters, bumped by the runtime as events flow.
#[derive(Default, Debug)]
pub struct Metrics {
    pub packets_in: u64,
    pub packets_out: u64,
    pub publish_errors: u64,
    pub proposals: u64,
    pub decided_yes: u64,
    pub decided_no: u64,
    pub votes_requested: u64,
    pub commits: u64,
    pub chats_received: u64,
    /// Chat messages SDS knew we missed and gave up on.
    pub chats_lost: u64,
    /// Application messages of epochs whose keys were deleted (unreadable for good).
    pub messages_expired: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    /// Conversation state rows written.
    pub state_saves: u64,
    /// Steps whose state serialized to the bytes already stored: no row written.
    pub state_saves_skipped: u64,
    /// Conversations quarantined (a panic, or state that cannot be restored).
    pub quarantines: u64,
    /// Packets for quarantined conversations, not processed.
    pub quarantined_packets: u64,
}

impl Metrics {
    pub fn count_event(&mut self, e: &Event) {
        match e {
            Event::ProposalCreated { .. } => self.proposals += 1,
            Event::ProposalDecided { accepted: true, .. } => self.decided_yes += 1,
            Event::ProposalDecided {
                accepted: false, ..
            } => self.decided_no += 1,
            Event::VoteRequested { .. } => self.votes_requested += 1,
            Event::CommitApplied { .. } => self.commits += 1,
            Event::Chat { sent_to: None, .. } => self.chats_received += 1,
            Event::ChatLost { .. } => self.chats_lost += 1,
            Event::MessageExpired { .. } => self.messages_expired += 1,
            Event::Rejected { what, .. } => *self.rejected.entry(what.as_str()).or_default() += 1,
            _ => {}
        }
    }

    pub fn render(
        &self,
        convs: &BTreeMap<String, Conversation>,
        quarantined: usize,
        t: &TransportStats,
    ) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "demls_packets_received_total",
            "Packets delivered to conversations.",
            self.packets_in,
        );
        counter(
            "demls_packets_published_total",
            "Packets published by conversations.",
            self.packets_out,
        );
        counter(
            "demls_publish_errors_total",
            "Publish attempts that failed.",
            self.publish_errors,
        );
        counter(
            "demls_proposals_total",
            "Proposals seen or created.",
            self.proposals,
        );
        counter(
            "demls_proposals_accepted_total",
            "Proposals decided YES.",
            self.decided_yes,
        );
        counter(
            "demls_proposals_rejected_total",
            "Proposals decided NO or failed.",
            self.decided_no,
        );
        counter(
            "demls_votes_requested_total",
            "Proposals this node was asked to vote on.",
            self.votes_requested,
        );
        counter("demls_commits_total", "Commits applied.", self.commits);
        counter(
            "demls_chat_received_total",
            "Chat messages received.",
            self.chats_received,
        );
        counter(
            "demls_chat_lost_total",
            "Chat messages known missed and given up on (no member re-sent them in time).",
            self.chats_lost,
        );
        counter(
            "demls_messages_expired_total",
            "Application messages that arrived after their epoch's keys were deleted (past_epochs window).",
            self.messages_expired,
        );
        counter(
            "demls_state_saves_total",
            "Conversation state rows written.",
            self.state_saves,
        );
        counter(
            "demls_state_saves_skipped_total",
            "Steps that left the conversation state byte-identical: nothing written.",
            self.state_saves_skipped,
        );
        counter(
            "demls_quarantines_total",
            "Conversations quarantined (a panic, or state that cannot be restored).",
            self.quarantines,
        );
        counter(
            "demls_quarantined_packets_total",
            "Packets for quarantined conversations, not processed.",
            self.quarantined_packets,
        );
        let _ = writeln!(
            s,
            "# HELP demls_rejected_total Inbound items refused, by kind.\n# TYPE demls_rejected_total counter"
        );
        for (what, v) in &self.rejected {
            let what = label_value(what);
            let _ = writeln!(s, "demls_rejected_total{{what=\"{what}\"}} {v}");
        }
        let _ = writeln!(
            s,
            "# HELP demls_conversations Conversations this node is in.\n# TYPE demls_conversations gauge\ndemls_conversations {}",
            convs.len()
        );
        let _ = writeln!(
            s,
            "# HELP demls_quarantined_conversations Conversations quarantined now.\n# TYPE demls_quarantined_conversations gauge\ndemls_quarantined_conversations {quarantined}"
        );
        let _ = writeln!(
            s,
            "# HELP demls_epoch Current MLS epoch per conversation.\n# TYPE demls_epoch gauge"
        );
        for (n, c) in convs {
            let n = label_value(n);
            let _ = writeln!(s, "demls_epoch{{conversation=\"{n}\"}} {}", c.epoch());
        }
        let _ = writeln!(
            s,
            "# HELP demls_members Members per conversation.\n# TYPE demls_members gauge"
        );
        for (n, c) in convs {
            let n = label_value(n);
            let _ = writeln!(
                s,
                "demls_members{{conversation=\"{n}\"}} {}",
                c.members().len()
            );
        }
        let _ = writeln!(
            s,
            "# HELP waku_connected_peers Connected libp2p peers.\n# TYPE waku_connected_peers gauge\nwaku_connected_peers {}",
            t.connected_peers
        );
        s.push_str(&t.to_prometheus());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("plain-name_1"), "plain-name_1");
        assert_eq!(label_value("we\"ird"), "we\\\"ird");
        assert_eq!(label_value("a\\b"), "a\\\\b");
        assert_eq!(label_value("x\ny"), "x\\ny");
        assert_eq!(label_value("ünï"), "ünï");
    }
}

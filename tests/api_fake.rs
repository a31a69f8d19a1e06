//! A test double of `NodeControl`, only for exercising the HTTP layer and the CLI client.
//! Included with `#[path]` by the API and CLI tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use demls_core::identity::MemberId;
use demls_node::api::types::*;
use demls_node::api::{ApiError, NodeControl};
use tokio::sync::broadcast;

pub const ME: &str = "0x1111111111111111111111111111111111111111";
pub const BOB: &str = "0x2222222222222222222222222222222222222222";
/// Chat text a hostile member could send: terminal escapes (ESC, a C1 CSI, DEL, BEL), a
/// carriage return that would overwrite the line, and a bidi override.
pub const HOSTILE_TEXT: &str = "hi\u{1b}[2J\u{1b}]0;pwned\u{7}\rfake\u{9b}31m\u{7f}\u{202e}end";

/// Just enough behaviour to exercise the HTTP layer.
pub struct Fake {
    pub convs: Mutex<BTreeMap<String, ConversationView>>,
    pub events: broadcast::Sender<EventView>,
}

impl Fake {
    pub fn new() -> Arc<Self> {
        let f = Fake {
            convs: Mutex::new(BTreeMap::new()),
            events: broadcast::channel(64).0,
        };
        let member = |a: &str, role: &str| MemberView {
            address: a.into(),
            score: 100,
            role: role.into(),
            ..Default::default()
        };
        f.convs.lock().unwrap().insert(
            "general".into(),
            ConversationView {
                name: "general".into(),
                state: "working".into(),
                epoch: 3,
                members: vec![member(ME, "epoch_steward"), member(BOB, "member")],
                ..Default::default()
            },
        );
        f.convs.lock().unwrap().insert(
            "waiting".into(),
            ConversationView {
                name: "waiting".into(),
                state: "pending_join".into(),
                epoch: 0,
                members: vec![],
                ..Default::default()
            },
        );
        Arc::new(f)
    }

    fn get(&self, name: &str) -> Result<ConversationView, ApiError> {
        self.convs
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("not in conversation {name:?}")))
    }
}

#[async_trait]
impl NodeControl for Fake {
    async fn status(&self) -> Result<StatusView, ApiError> {
        Ok(StatusView {
            address: ME.into(),
            peer_id: "16Uiu2HAm".into(),
            enr: "enr:-fake".into(),
            peers: 2,
            conversations: self.convs.lock().unwrap().keys().cloned().collect(),
            listen: vec!["/ip4/127.0.0.1/tcp/60000".into()],
            quarantined: vec![],
        })
    }
    async fn conversations(&self) -> Result<Vec<ConversationSummary>, ApiError> {
        Ok(self
            .convs
            .lock()
            .unwrap()
            .values()
            .map(|c| ConversationSummary {
                name: c.name.clone(),
                state: c.state.clone(),
                epoch: c.epoch,
                members: c.members.len(),
            })
            .collect())
    }
    async fn create(&self, name: &str) -> Result<ConversationView, ApiError> {
        let mut m = self.convs.lock().unwrap();
        if m.contains_key(name) {
            return Err(ApiError::Conflict(format!(
                "already in conversation {name:?}"
            )));
        }
        let v = ConversationView {
            name: name.into(),
            state: "working".into(),
            epoch: 1,
            members: vec![MemberView {
                address: ME.into(),
                score: 100,
                role: "epoch_steward".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        m.insert(name.into(), v.clone());
        Ok(v)
    }
    async fn join(&self, name: &str) -> Result<ConversationView, ApiError> {
        let mut m = self.convs.lock().unwrap();
        if m.contains_key(name) {
            return Err(ApiError::Conflict(format!(
                "already in conversation {name:?}"
            )));
        }
        let v = ConversationView {
            name: name.into(),
            state: "pending_join".into(),
            epoch: 0,
            members: vec![],
            ..Default::default()
        };
        m.insert(name.into(), v.clone());
        Ok(v)
    }
    async fn leave(&self, name: &str) -> Result<LeaveView, ApiError> {
        self.get(name)?;
        self.convs.lock().unwrap().remove(name);
        Ok(LeaveView {
            name: name.into(),
            leaving: true,
        })
    }
    async fn show(&self, name: &str) -> Result<ConversationView, ApiError> {
        self.get(name)
    }
    async fn send(&self, name: &str, text: &str) -> Result<SentView, ApiError> {
        let c = self.get(name)?;
        if c.state == "pending_join" {
            return Err(ApiError::Conflict(
                "not a member yet: the join is pending".into(),
            ));
        }
        let _ = self.events.send(EventView {
            conversation: name.into(),
            kind: "chat".into(),
            data: serde_json::json!({ "sender": ME, "text": text }),
            ..Default::default()
        });
        Ok(SentView { sent: true })
    }
    async fn messages(&self, name: &str) -> Result<Vec<MessageView>, ApiError> {
        // Conversation "weird" (not listed anywhere else): a message whose text is built
        // to attack a terminal.
        if name != "weird" {
            self.get(name)?;
        }
        let text = if name == "weird" {
            HOSTILE_TEXT
        } else {
            "hello"
        };
        Ok(vec![MessageView {
            sender: BOB.into(),
            text: text.into(),
            epoch: 3,
            timestamp: 1_700_000_000_000,
            ..Default::default()
        }])
    }
    async fn remove(&self, name: &str, member: MemberId) -> Result<ProposalRef, ApiError> {
        let c = self.get(name)?;
        if !c.members.iter().any(|m| m.address == member.to_string()) {
            return Err(ApiError::BadRequest(format!("{member} is not a member")));
        }
        Ok(ProposalRef { proposal_id: 7 })
    }
    async fn proposals(&self, name: &str) -> Result<Vec<ProposalView>, ApiError> {
        self.get(name)?;
        Ok(vec![ProposalView {
            id: 7,
            kind: "remove_member".into(),
            status: "open".into(),
            yes: 1,
            no: 0,
            expected: 2,
            summary: format!("remove {BOB}"),
            ..Default::default()
        }])
    }
    async fn vote(&self, name: &str, proposal_id: u32, yes: bool) -> Result<VoteView, ApiError> {
        self.get(name)?;
        if proposal_id != 7 {
            return Err(ApiError::NotFound(format!("no proposal {proposal_id}")));
        }
        Ok(VoteView {
            proposal_id,
            vote: yes,
        })
    }
    fn events(&self) -> broadcast::Receiver<EventView> {
        self.events.subscribe()
    }
    fn metrics(&self) -> String {
        "# TYPE demls_up gauge\ndemls_up 1\n".into()
    }
}

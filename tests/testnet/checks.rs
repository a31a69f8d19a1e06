//! What the scenarios check on the nodes. Each check answers `Ok` or what it saw instead,
//! so that a wait that times out can say both what it expected and what it got.

use demls_node::api::types::ConversationView;

use crate::api::CallError;
use crate::net::Testnet;

/// One line about a node's view of the conversation.
fn describe(node: &str, v: &ConversationView) -> String {
    format!(
        "{node}: {} at epoch {}, {} members",
        v.state,
        v.epoch,
        v.members.len()
    )
}

fn lowercase_roster(v: &ConversationView) -> Vec<String> {
    let mut roster: Vec<String> = v.members.iter().map(|m| m.address.to_lowercase()).collect();
    roster.sort();
    roster
}

impl Testnet {
    /// `node`'s address (EIP-55, as the API gives it and takes it back).
    pub async fn address(&self, node: &str) -> Result<String, String> {
        Ok(self.status(node).await.map_err(|e| e.to_string())?.address)
    }

    /// `node`'s API answers (`GET /status`).
    pub async fn answers(&self, node: &str) -> Result<(), String> {
        self.status(node).await.map(drop).map_err(|e| e.to_string())
    }

    /// `node`'s epoch of the conversation.
    pub async fn epoch(&self, node: &str) -> Result<u64, String> {
        Ok(self.show(node).await.map_err(|e| e.to_string())?.epoch)
    }

    /// Every node of `nodes` is `working`, at one epoch, and its roster is exactly
    /// `nodes`.
    pub async fn converged(&self, nodes: &[String]) -> Result<(), String> {
        let mut expected = Vec::new();
        for n in nodes {
            expected.push(self.address(n).await?.to_lowercase());
        }
        expected.sort();
        let mut views = Vec::new();
        for n in nodes {
            views.push((n, self.show(n).await.map_err(|e| e.to_string())?));
        }
        let one_epoch = views.windows(2).all(|w| w[0].1.epoch == w[1].1.epoch);
        let ok = one_epoch
            && views
                .iter()
                .all(|(_, v)| v.state == "working" && lowercase_roster(v) == expected);
        if ok {
            return Ok(());
        }
        let seen: Vec<String> = views
            .iter()
            .map(|(n, v)| {
                let roster = if lowercase_roster(v) == expected {
                    ""
                } else {
                    " (not exactly the expected members)"
                };
                format!("{}{roster}", describe(n, v))
            })
            .collect();
        Err(format!(
            "expected all working at one epoch with exactly these {} members; saw {}",
            nodes.len(),
            seen.join("; ")
        ))
    }

    /// Every node of `nodes` is `working` at one epoch with `members` members (a killed
    /// node stays on the roster: nobody removed it).
    pub async fn same_epoch_working(&self, members: usize, nodes: &[String]) -> Result<(), String> {
        let mut seen = Vec::new();
        let mut ok = true;
        let mut epoch = None;
        for n in nodes {
            let v = self.show(n).await.map_err(|e| e.to_string())?;
            ok &= v.state == "working"
                && v.members.len() == members
                && *epoch.get_or_insert(v.epoch) == v.epoch;
            seen.push(describe(n, &v));
        }
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected all working at one epoch with {members} members; saw {}",
                seen.join("; ")
            ))
        }
    }

    /// `node` has a chat message reading `text`.
    pub async fn has_message(&self, node: &str, text: &str) -> Result<(), String> {
        let messages = self.messages(node).await.map_err(|e| e.to_string())?;
        if messages.iter().any(|m| m.text == text) {
            Ok(())
        } else {
            Err(format!(
                "{node} has {} messages, none reading {text:?}",
                messages.len()
            ))
        }
    }

    /// `node` is not in the conversation (any more): its API answers 404 for it.
    pub async fn not_in(&self, node: &str) -> Result<(), String> {
        match self.show(node).await {
            Err(CallError::NotFound(_)) => Ok(()),
            Ok(v) => Err(format!("{} (still in it)", describe(node, &v))),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Which of `nodes` holds `role` in the view of the first of them.
    pub async fn role_holder(&self, role: &str, nodes: &[String]) -> Result<String, String> {
        let first = nodes.first().ok_or("no nodes to look at")?;
        let view = self.show(first).await.map_err(|e| e.to_string())?;
        let holder = view
            .members
            .iter()
            .find(|m| m.role == role)
            .map(|m| m.address.to_lowercase())
            .ok_or_else(|| format!("nobody is {role} in {first}'s view"))?;
        for n in nodes {
            if self.address(n).await?.to_lowercase() == holder {
                return Ok(n.clone());
            }
        }
        Err(format!(
            "the {role} {holder} is none of {}",
            nodes.join(" ")
        ))
    }

    /// `node` lists a proposal to add a member.
    pub async fn join_proposed(&self, node: &str) -> Result<(), String> {
        let proposals = self.proposals(node).await.map_err(|e| e.to_string())?;
        if proposals.iter().any(|p| p.kind == "add_member") {
            Ok(())
        } else {
            let kinds: Vec<&str> = proposals.iter().map(|p| p.kind.as_str()).collect();
            Err(format!("{node}'s proposals: [{}]", kinds.join(", ")))
        }
    }

    /// `node`'s epoch is past `before`.
    pub async fn epoch_above(&self, node: &str, before: u64) -> Result<(), String> {
        let epoch = self.epoch(node).await?;
        if epoch > before {
            Ok(())
        } else {
            Err(format!("{node} at epoch {epoch}, was at {before}"))
        }
    }

    /// Every node of `nodes` has at least two relay peers: more than the one it dials.
    pub async fn peers_beyond(&self, nodes: &[String]) -> Result<(), String> {
        for n in nodes {
            let peers = self.status(n).await.map_err(|e| e.to_string())?.peers;
            if peers < 2 {
                return Err(format!("peers: {}", self.peer_table(nodes).await));
            }
        }
        Ok(())
    }

    /// `member1=3 member2=?`: each node's relay peer count, `?` where it does not answer.
    pub async fn peer_table(&self, nodes: &[String]) -> String {
        let mut out = Vec::new();
        for n in nodes {
            let peers = self.status(n).await.map(|s| s.peers.to_string());
            out.push(format!("{n}={}", peers.as_deref().unwrap_or("?")));
        }
        out.join(" ")
    }

    /// `member1=4 member2=-`: each node's epoch, `-` where it has none to give.
    pub async fn epoch_table(&self, nodes: &[String]) -> String {
        let mut out = Vec::new();
        for n in nodes {
            let epoch = self.epoch(n).await.map(|e| e.to_string());
            out.push(format!("{n}={}", epoch.as_deref().unwrap_or("-")));
        }
        out.join(" ")
    }
}

//! Consistency checks that serde cannot express. Each failure names its key.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{ConfigError, NodeConfig, Sharding};

/// Longest conversation name, in bytes.
pub const MAX_CONVERSATION_NAME_LEN: usize = demls_core::conversation::MAX_NAME_LEN;

/// Checks a conversation name (the core's rule: it becomes part of a Waku content topic);
/// the message says which rule failed.
pub fn check_conversation_name(name: &str) -> Result<(), String> {
    demls_core::conversation::validate_name(name).map_err(|e| e.to_string())
}

impl NodeConfig {
    /// Checks the values against each other. Called by the loaders; public so that a
    /// config built in code can be checked too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_identity()?;
        self.validate_api()?;
        self.validate_waku()?;
        self.store.validate()?;
        self.validate_protocol()?;
        self.validate_conversations()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::new(
                "log.level",
                format!("invalid log filter {:?}: {e}", self.log.level),
            ));
        }
        Ok(())
    }

    /// Things worth a loud warning at start-up that are not errors.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.api.listen.ip().is_loopback() {
            w.push(format!(
                "api.listen = {} is not a loopback address: anyone who can reach it and has \
                 the API token ({}) can control this node",
                self.api.listen,
                self.api_token_file().display()
            ));
        }
        if let Some(m) = self.metrics.listen
            && !m.ip().is_loopback()
        {
            w.push(format!(
                "metrics.listen = {m} is not a loopback address: anyone who can reach it reads \
                 the metrics, conversation names included (no token there)"
            ));
        }
        w
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        if let Some(m) = self.metrics.listen {
            let a = self.api.listen;
            let overlap = m.ip() == a.ip() || m.ip().is_unspecified() || a.ip().is_unspecified();
            if m.port() != 0 && m.port() == a.port() && overlap {
                return Err(ConfigError::new(
                    "metrics.listen",
                    format!(
                        "{m} is the API's address (api.listen = {a}): give metrics a port of its own"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_identity(&self) -> Result<(), ConfigError> {
        let id = &self.identity;
        let pw = (
            id.keystore_password_env.is_some(),
            id.keystore_password_file.is_some(),
        );
        match (&id.keystore, pw) {
            (None, (false, false)) => Ok(()),
            (None, _) => Err(ConfigError::new(
                "identity.keystore",
                "a keystore password is configured but no keystore file",
            )),
            (Some(_), (true, true)) => Err(ConfigError::new(
                "identity.keystore_password_env",
                "set either keystore_password_env or keystore_password_file, not both",
            )),
            (Some(_), (false, false)) => Err(ConfigError::new(
                "identity.keystore",
                "a keystore needs keystore_password_env or keystore_password_file",
            )),
            (Some(_), _) if id.key_file.is_some() => Err(ConfigError::new(
                "identity.key_file",
                "set either key_file or keystore, not both",
            )),
            (Some(_), _) => {
                if let Some(var) = &id.keystore_password_env
                    && var.trim().is_empty()
                {
                    return Err(ConfigError::new(
                        "identity.keystore_password_env",
                        "must name an environment variable",
                    ));
                }
                Ok(())
            }
        }
    }

    fn validate_waku(&self) -> Result<(), ConfigError> {
        let w = &self.waku;
        if w.listen.is_empty() {
            return Err(ConfigError::new(
                "waku.listen",
                "at least one listen multiaddr is needed",
            ));
        }
        if w.num_shards == 0 || w.num_shards > 1024 {
            return Err(ConfigError::new(
                "waku.num_shards",
                format!("must be between 1 and 1024, got {}", w.num_shards),
            ));
        }
        match (w.sharding, w.static_shard) {
            (Sharding::Static, None) => {
                return Err(ConfigError::new(
                    "waku.static_shard",
                    "required when waku.sharding = \"static\"",
                ));
            }
            (Sharding::Auto, Some(_)) => {
                return Err(ConfigError::new(
                    "waku.static_shard",
                    "only used with waku.sharding = \"static\" (set that, or remove static_shard; \
                     without a sharding key, static_shard alone selects static sharding)",
                ));
            }
            _ => {}
        }
        if w.peer_target == 0 {
            return Err(ConfigError::new(
                "waku.peer_target",
                "must be at least 1 (the number of relay peers to keep connected)",
            ));
        }
        let skew = w.max_timestamp_skew;
        if skew < Duration::from_secs(1) || skew.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                "waku.max_timestamp_skew",
                format!("must be whole seconds, at least 1s, got {skew:?}"),
            ));
        }
        if w.sharding == Sharding::Auto
            && let Some(s) = w.relay_shards.iter().find(|s| **s >= w.num_shards)
        {
            return Err(ConfigError::new(
                "waku.relay_shards",
                format!(
                    "shard {s} is out of range for num_shards = {}",
                    w.num_shards
                ),
            ));
        }
        Ok(())
    }

    fn validate_protocol(&self) -> Result<(), ConfigError> {
        let p = &self.protocol;
        // The orderings first, in the words of the docs.
        if p.voting_delay >= p.consensus_timeout {
            return Err(ConfigError::new(
                "protocol.voting_delay",
                format!(
                    "must be shorter than protocol.consensus_timeout ({:?} >= {:?})",
                    p.voting_delay, p.consensus_timeout
                ),
            ));
        }
        if p.consensus_timeout >= p.commit_inactivity {
            return Err(ConfigError::new(
                "protocol.consensus_timeout",
                format!(
                    "must be shorter than protocol.commit_inactivity ({:?} >= {:?})",
                    p.consensus_timeout, p.commit_inactivity
                ),
            ));
        }
        if p.sn_min < 1 {
            return Err(ConfigError::new("protocol.sn_min", "must be at least 1"));
        }
        if p.sn_min > p.sn_max {
            return Err(ConfigError::new(
                "protocol.sn_min",
                format!(
                    "must not exceed protocol.sn_max ({} > {})",
                    p.sn_min, p.sn_max
                ),
            ));
        }
        // Then everything else the protocol core insists on.
        p.conversation_config()
            .validate()
            .map_err(|e| ConfigError::new(format!("protocol.{}", e.field), e.reason))
    }

    fn validate_conversations(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for (i, c) in self.conversations.iter().enumerate() {
            let key = format!("conversations[{i}].name");
            check_conversation_name(&c.name).map_err(|m| ConfigError::new(&key, m))?;
            if !seen.insert(c.name.as_str()) {
                return Err(ConfigError::new(
                    key,
                    format!("conversation {:?} is listed twice", c.name),
                ));
            }
        }
        Ok(())
    }
}

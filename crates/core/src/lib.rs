//! # demls-core
//!
//! The sans-IO de-MLS protocol core. A [`conversation::Conversation`] is driven by inputs
//! (an inbound packet, a user command, the current time) and answers with outputs (packets
//! to publish, events for the user, the next instant it wants a tick). It never touches a
//! socket, a task or the wall clock; randomness is injected. See `docs/PROTOCOL.md`.
#![warn(missing_docs)]

pub mod config;
pub mod consensus;
pub mod conversation;
pub mod identity;
pub mod mls;
pub mod proto;
pub mod scoring;
pub mod sds;
pub mod steward;

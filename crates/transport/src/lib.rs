//! # demls-transport
//!
//! How de-MLS packets move between nodes. The node sees only the [`Transport`] trait:
//! publish bytes on a conversation's subtopic, subscribe and unsubscribe conversations,
//! and a stream of inbound packets. [`memory`] is an in-process implementation for tests;
//! `waku` is a native Waku v2 relay peer on rust-libp2p.
#![warn(missing_docs)]

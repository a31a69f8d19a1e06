//! # demls-node
//!
//! The node runtime around the sans-IO protocol core: configuration, identity files,
//! storage, the Waku transport, the HTTP API and the CLI client.
#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod keyfile;
pub mod logging;
pub mod node;
pub mod storage;

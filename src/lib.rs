//! # demls-node
//!
//! The node runtime around the sans-IO protocol core: configuration, identity files,
//! storage, the Waku transport, the HTTP API and the CLI client.
#![warn(missing_docs)]

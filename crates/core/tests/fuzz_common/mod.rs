//! Helpers of the `fuzz_*` targets: the seeded fuzz loop ([`runner`]), byte-level
//! generators and mutators ([`bytes`]) and structured generators of de-MLS protobuf
//! messages with hostile field values ([`messages`]). `docs/FUZZING.md` describes them.
#![allow(dead_code)]

pub mod bytes;
pub mod messages;
pub mod runner;

/// The RNG every core target uses.
pub type Rng = rand_chacha::ChaCha20Rng;

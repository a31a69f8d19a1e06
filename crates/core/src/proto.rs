//! Generated protobuf types (see `proto/` at the workspace root).

/// `consensus.v1`: the hashgraph-like consensus Proposal and Vote.
pub mod consensus {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/consensus.v1.rs"));
}

/// `demls.v1`: de-MLS application messages.
pub mod demls {
    #![allow(missing_docs, clippy::large_enum_variant)]
    include!(concat!(env!("OUT_DIR"), "/demls.v1.rs"));
}

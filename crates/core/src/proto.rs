//! Generated protobuf types (see `proto/` at the workspace root). Module paths mirror the
//! protobuf packages because the generated code refers across them (`super::super::…`).
#![allow(missing_docs)]

/// `consensus.*`
pub mod consensus {
    /// `consensus.v1`: the hashgraph-like consensus Proposal and Vote.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/consensus.v1.rs"));
    }
}

/// `demls.*`
pub mod demls {
    /// `demls.v1`: de-MLS application messages.
    pub mod v1 {
        #![allow(clippy::large_enum_variant)]
        include!(concat!(env!("OUT_DIR"), "/demls.v1.rs"));
    }
}

pub use consensus::v1 as cpb;
pub use demls::v1 as pb;

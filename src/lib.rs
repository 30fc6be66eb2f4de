//! ferry: carries software across an air gap as one verifiable bundle.

/// The version of ferry.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod bundle;
pub mod diff;
pub mod egress;
mod error_chain;
pub mod images;
pub mod load;
pub mod load_partial;
pub mod oci;
pub mod parallel;
pub mod progress;
pub mod provenance;
pub mod pull;
pub mod registry;
pub mod signing;
pub mod values;

//! ferry: carries software across an air gap as one verifiable bundle.

pub mod digest;
pub mod manifest;
pub mod safepath;
pub mod spec;
pub mod archive;

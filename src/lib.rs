//! ferry: carries software across an air gap as one verifiable bundle.

pub mod archive;
pub mod build;
pub mod cli;
pub mod digest;
pub mod egress;
pub mod extract;
pub mod head;
pub mod inspect;
pub mod layout;
pub mod load;
pub mod manifest;
pub mod parallel;
pub mod progress;
pub mod push;
pub mod reference;
pub mod registry;
pub mod rewrite;
pub mod safepath;
pub mod signing;
pub mod source;
pub mod spec;
pub mod verify;

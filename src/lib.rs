//! ferry: carries software across an air gap as one verifiable bundle.
pub mod egress;

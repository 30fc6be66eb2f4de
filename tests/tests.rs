//! The one integration-test binary: each module is an area of ferry.

// Helpers outside #[test] functions unwrap too: a failed unwrap fails the test.
#![allow(clippy::unwrap_used)]

mod build_pull;
mod bundle;
mod chart_sources;
mod charts;
mod charts_egress;
mod delta;
mod egress;
mod egress_cli;
mod harness;
mod hostile;
mod images;
mod load;
mod load_cli;
mod origins;
mod provenance;
mod pull;
mod rewrite;
mod serve;
mod sign_cli;
mod signing;
mod tidy;
mod util;

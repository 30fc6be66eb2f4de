//! The integration tests, one binary: each area is a module.

mod rewrite;

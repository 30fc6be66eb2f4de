//! The `ferry` command-line entry point.
fn main() {}

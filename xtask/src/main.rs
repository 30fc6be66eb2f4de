//! Developer chores for the ferry workspace: `cargo xtask <chore>`.
fn main() {}

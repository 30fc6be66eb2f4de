//! The integration-test binary: one module per area.

mod load;
mod util;

//! Progress reporting: indicatif bars on stderr when it is a terminal, nothing otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether progress bars are drawn. Library functions take this instead of a printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Draw bars on stderr if stderr is a terminal.
    #[default]
    Auto,
    /// Never draw.
    Hidden,
}

impl Progress {
    /// A byte-count bar with a message, hidden when not drawing.
    pub fn bytes(self, total: u64, message: &str) -> ProgressBar {
        if self == Progress::Hidden || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(message.to_string());
        bar
    }
}

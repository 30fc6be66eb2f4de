//! Progress reporting: indicatif bars on stderr when it is a terminal, nothing otherwise.
#![deny(clippy::unwrap_used)]

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::oci::digest::Digest;
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

/// Push progress: one overall bar in bytes plus a bar per blob in flight.
pub struct PushBars {
    multi: indicatif::MultiProgress,
    overall: ProgressBar,
    blobs: std::sync::Mutex<std::collections::HashMap<Digest, ProgressBar>>,
    visible: bool,
}

impl PushBars {
    pub fn new(progress: Progress) -> Self {
        let visible = progress == Progress::Auto && std::io::stderr().is_terminal();
        let multi = if visible {
            indicatif::MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
        } else {
            indicatif::MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let overall = multi.add(progress.bytes(0, "pushing"));
        PushBars {
            multi,
            overall,
            blobs: Default::default(),
            visible,
        }
    }

    /// Removes the bars from the terminal.
    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

impl crate::registry::push::PushProgress for PushBars {
    fn planned(&self, total_bytes: u64, _blobs: usize) {
        self.overall.set_length(total_bytes);
    }
    fn blob_started(&self, digest: &Digest, size: u64) {
        if !self.visible {
            return;
        }
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template("  {msg:>19} [{bar:20}] {bytes}/{total_bytes}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(digest.to_string().chars().take(19).collect::<String>());
        self.blobs.lock().expect("bars").insert(digest.clone(), bar);
    }
    fn blob_bytes(&self, digest: &Digest, n: u64) {
        self.overall.inc(n);
        if let Some(b) = self.blobs.lock().expect("bars").get(digest) {
            b.inc(n);
        }
    }
    fn blob_restarted(&self, digest: &Digest) {
        if let Some(b) = self.blobs.lock().expect("bars").get(digest) {
            self.overall
                .set_position(self.overall.position().saturating_sub(b.position()));
            b.set_position(0);
        }
    }
    fn blob_done(&self, digest: &Digest, size: u64, action: crate::registry::push::BlobAction) {
        if !matches!(action, crate::registry::push::BlobAction::Uploaded) {
            self.overall.inc(size);
        }
        if let Some(b) = self.blobs.lock().expect("bars").remove(digest) {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
    }
}

//! The one owner of standard output, standard error, progress and `--json`.
//!
//! Human output: report lines on stdout (hidden by `--quiet`), the command's product on
//! stdout (a values file, a diff, a policy, a report, a completion script), notes and errors on
//! stderr. With `--json`: exactly one JSON document on stdout per run, the error included,
//! and nothing else on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use ferry::progress::Progress;
use std::fmt::Display;
use std::io::{self, BufWriter, Stdout, Write};

/// Writing to stdout or stderr failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the output: {0}")]
pub struct OutputError(#[from] pub io::Error);

impl OutputError {
    /// Whether the reader went away (`ferry inspect | head`): not a failure of the run.
    pub fn is_closed(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

type Result<T = (), E = OutputError> = std::result::Result<T, E>;

/// Where a run's output goes.
pub struct Printer {
    json: bool,
    quiet: bool,
    out: BufWriter<Stdout>,
    /// Whether the run's JSON document has been written.
    documented: bool,
}

impl Printer {
    /// A printer for `--json` and `--quiet` as given.
    pub fn new(json: bool, quiet: bool) -> Printer {
        Printer {
            json,
            quiet,
            out: BufWriter::with_capacity(1 << 20, io::stdout()),
            documented: false,
        }
    }

    /// Progress bars: only for a human who did not ask for quiet.
    pub fn progress(&self) -> Progress {
        if self.quiet || self.json {
            Progress::Hidden
        } else {
            Progress::Auto
        }
    }

    /// One line of the human report on stdout; nothing with `--quiet` or `--json`.
    pub fn line(&mut self, text: impl Display) -> Result {
        if self.quiet || self.json {
            return Ok(());
        }
        Ok(writeln!(self.out, "{text}")?)
    }

    /// The command's product on stdout, also with `--quiet`; never with `--json` (the JSON
    /// document carries it instead).
    pub fn data(&mut self, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result {
        if self.json {
            return Ok(());
        }
        Ok(write(&mut self.out)?)
    }

    /// A note for a human on stderr; nothing with `--quiet` or `--json`.
    pub fn note(&mut self, text: impl Display) -> Result {
        if self.quiet || self.json {
            return Ok(());
        }
        self.out.flush()?;
        Ok(writeln!(io::stderr().lock(), "{text}")?)
    }

    /// The run's JSON document on stdout (only with `--json`). A run has one document: a
    /// second one is refused.
    pub fn document(&mut self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        if !self.json {
            return Ok(());
        }
        anyhow::ensure!(
            !self.documented,
            "internal error: a second JSON document in one run"
        );
        self.documented = true;
        let text = serde_json::to_string_pretty(value)?;
        writeln!(self.out, "{text}").map_err(OutputError)?;
        Ok(())
    }

    /// Ends a successful run: with `--json` and no document yet, writes `{"ok": true}`, so
    /// that every run gives one document.
    pub fn finish(&mut self) -> Result {
        if self.json && !self.documented {
            self.documented = true;
            writeln!(self.out, "{{\n  \"ok\": true\n}}")?;
        }
        Ok(self.out.flush()?)
    }

    /// Reports a finding that fails the run (exit 1) after its report was printed: on stderr
    /// for a human; with `--json` the document already says it.
    pub fn finding(&mut self, message: &str) {
        let _ = self.out.flush();
        if !self.json {
            let _ = writeln!(io::stderr().lock(), "error: {message}");
        }
    }

    /// Reports the error that ends the run: in the JSON document when there is none yet,
    /// otherwise on stderr.
    pub fn error(&mut self, message: &str, code: u8) {
        if self.json && !self.documented {
            self.documented = true;
            let doc = serde_json::json!({ "ok": false, "exitCode": code, "error": message });
            if serde_json::to_writer_pretty(&mut self.out, &doc).is_ok() {
                let _ = writeln!(self.out);
            }
            let _ = self.out.flush();
            return;
        }
        let _ = self.out.flush();
        let _ = writeln!(io::stderr().lock(), "error: {message}");
    }
}

/// Prints a command-line parse error (or `--help`, `--version`). With `--json` among the
/// arguments an error becomes the run's one JSON document.
pub fn parse_error(e: &clap::Error, json: bool, code: u8) {
    if json && e.use_stderr() {
        let mut p = Printer::new(true, false);
        let text = e.render().to_string();
        let message = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim_start_matches("error: ");
        p.error(message, code);
        return;
    }
    let _ = e.print();
}

/// A log line of a long-running command (`ferry serve`) on stderr, written whole.
pub fn log_line(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

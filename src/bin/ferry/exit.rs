//! The exit codes, in one place: 0 ok, 1 a finding (verification failed, a hostile archive,
//! a bad signature, an image missing from the bundle, an egress violation), 2 a usage or
//! environment error (bad flags, an unreadable file, an unreachable registry).

use crate::printer::OutputError;
use ferry::bundle::head::ResignError;
use ferry::bundle::verify::VerifyError;
use ferry::load::{LoadError, ValuesError};
use ferry::signing::SigningError;

/// How a command that ran to its end came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report.
    Ok,
    /// The command's report (already printed) holds findings that fail the run.
    Finding(String),
}

/// A usage error: the command line asks for something that cannot be done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The code for a command's result.
pub fn code(result: &anyhow::Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Ok) => 0,
        Ok(Outcome::Finding(_)) => 1,
        Err(e) => error_code(e),
    }
}

/// The code for the error a command failed with: findings the library reports as errors
/// exit 1, everything else (usage, files, network, keys and passwords) exits 2.
pub fn error_code(e: &anyhow::Error) -> u8 {
    let code = if e.downcast_ref::<Usage>().is_some() {
        2
    } else if let Some(v) = e.downcast_ref::<VerifyError>() {
        v.exit_code()
    } else if let Some(s) = e.downcast_ref::<SigningError>() {
        s.exit_code()
    } else if let Some(c) = e.downcast_ref::<ferry::registry::serve::CatalogError>() {
        c.exit_code()
    } else if let Some(l) = e.downcast_ref::<LoadError>() {
        l.exit_code()
    } else if let Some(v) = e.downcast_ref::<ValuesError>() {
        v.exit_code()
    } else if let Some(b) = e.downcast_ref::<ferry::images::BundleChartsError>() {
        b.exit_code()
    } else if let Some(b) = e.downcast_ref::<ferry::bundle::build::BuildError>() {
        b.exit_code()
    } else if let Some(ResignError::Head(v)) = e.downcast_ref::<ResignError>() {
        v.exit_code()
    } else if let Some(d) = e.downcast_ref::<ferry::bundle::delta::DeltaError>() {
        d.exit_code()
    } else if let Some(s) = e.downcast_ref::<ferry::bundle::split::SplitError>() {
        s.exit_code()
    } else if let Some(l) = e.downcast_ref::<ferry::load_partial::PartialLoadError>() {
        l.exit_code()
    } else if let Some(d) = e.downcast_ref::<ferry::diff::DiffError>() {
        d.exit_code()
    } else {
        2
    };
    u8::try_from(code).unwrap_or(2)
}

/// Whether the error is a closed stdout (`ferry inspect | head`), which is not a failure.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.downcast_ref::<OutputError>()
        .is_some_and(OutputError::is_closed)
}

/// The code for a command line clap could not parse: 2, or 0 for `--help` and `--version`.
pub fn parse_error_code(e: &clap::Error) -> u8 {
    if e.use_stderr() {
        2
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn unlisted() -> VerifyError {
        VerifyError::Unlisted { entry: "x".into() }
    }

    #[test]
    fn findings_exit_1_and_everything_else_2() {
        let open = VerifyError::Open {
            path: PathBuf::from("b.tar.gz"),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(error_code(&unlisted().into()), 1);
        assert_eq!(error_code(&open.into()), 2);
        assert_eq!(error_code(&ResignError::Head(unlisted()).into()), 1);
        assert_eq!(error_code(&ResignError::Sign("no".into()).into()), 2);
        let missing = SigningError::MissingSignature {
            which: "ferry.json".into(),
            why: "--key given",
        };
        assert_eq!(error_code(&missing.into()), 1);
        assert_eq!(error_code(&Usage("bad".into()).into()), 2);
        let io: anyhow::Error = std::io::Error::other("disk full").into();
        assert_eq!(error_code(&io), 2);
        // Context keeps the kind of the error it wraps.
        assert_eq!(
            error_code(&anyhow::Error::from(unlisted()).context("while x")),
            1
        );
    }

    #[test]
    fn outcomes() {
        assert_eq!(code(&Ok(Outcome::Ok)), 0);
        assert_eq!(code(&Ok(Outcome::Finding("denied".into()))), 1);
        assert_eq!(code(&Err(Usage("bad".into()).into())), 2);
    }
}

//! `ferry diff OLD NEW`: what changed between two releases.

use super::head_check;
use crate::cli::{DiffFormat, TrustArgs};
use crate::exit::Outcome;
use crate::printer::Printer;
use ferry::diff::{self, Side};
use std::path::Path;

pub fn diff(
    old: &Path,
    new: &Path,
    format: DiffFormat,
    trust: &TrustArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let keys = trust.load()?;
    let check = head_check(&keys, trust.require_signature);
    let d = diff::diff(
        &Side {
            path: old.to_path_buf(),
            check_head: Some(&check),
        },
        &Side {
            path: new.to_path_buf(),
            check_head: Some(&check),
        },
        p.progress(),
    )?;
    p.document(&d)?;
    match format {
        DiffFormat::Json => {
            let text = serde_json::to_string_pretty(&d)?;
            p.data(|out| writeln!(out, "{text}"))?;
        }
        DiffFormat::Table => p.data(|out| out.write_all(d.table().as_bytes()))?,
        DiffFormat::Markdown => p.data(|out| out.write_all(d.markdown().as_bytes()))?,
    }
    Ok(Outcome::Ok)
}

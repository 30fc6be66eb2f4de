//! `ferry egress check | policy | observe`.

use super::{head_check, verify_options};
use crate::cli::{EgressCommand, FailOn, Format, LimitArgs, TrustArgs};
use crate::exit::Outcome;
use crate::printer::Printer;
use ferry::bundle::extract::{self, ExtractOptions};
use ferry::bundle::inspect;
use ferry::egress::{self, AllowList, Report, Verdict};
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn run(command: &EgressCommand, p: &mut Printer) -> anyhow::Result<Outcome> {
    match command {
        EgressCommand::Check {
            input,
            allow,
            values,
            format,
            fail_on,
            trust,
            limits,
        } => {
            let fail_on = fail_on_of(fail_on);
            let report = check(input, allow.as_deref(), values, &fail_on, trust, limits, p)?;
            print_report(&report, *format, &fail_on, p)
        }
        EgressCommand::Policy { allow, namespace } => {
            let allow = AllowList::from_path(allow)?;
            let policy = egress::policy(&allow, namespace);
            p.document(&json!({ "ok": true, "policy": policy }))?;
            p.data(|out| out.write_all(policy.as_bytes()))?;
            Ok(Outcome::Ok)
        }
        EgressCommand::Observe {
            allow,
            logs,
            format,
            fail_on,
        } => {
            let fail_on = fail_on_of(fail_on);
            let allow = AllowList::from_path(allow)?;
            let report = egress::observe(&allow, logs)?;
            print_report(&report, *format, &fail_on, p)
        }
    }
}

/// Scans a bundle file (verified and extracted to a private temporary folder first), an
/// extracted bundle folder or a chart folder.
fn check(
    input: &Path,
    allow: Option<&Path>,
    values: &[PathBuf],
    fail_on: &egress::FailOn,
    trust: &TrustArgs,
    limits: &LimitArgs,
    p: &Printer,
) -> anyhow::Result<Report> {
    let allow = allow.map(AllowList::from_path).transpose()?;
    let (_tmp, root, declared) = if input.is_file() {
        let keys = trust.load()?;
        let check = head_check(&keys, trust.require_signature);
        let tmp = tempfile::Builder::new().prefix("ferry-egress-").tempdir()?;
        let done = extract::extract(&ExtractOptions {
            verify: verify_options(input, limits, p, &check),
            dir: tmp.path().join("x"),
        })?;
        let (m, _) = inspect::read_manifest(&done.path)?;
        (Some(tmp), done.path, m.egress)
    } else {
        let declared = inspect::read_manifest(input)
            .map(|(m, _)| m.egress)
            .unwrap_or_default();
        (None, input.to_path_buf(), declared)
    };
    Ok(egress::check(&egress::CheckOptions {
        root,
        allow,
        values: values.to_vec(),
        fail_on: fail_on.clone(),
        declared,
    })?)
}

/// The report in the chosen format (with `--json`: as the run's JSON document); exit 1 when
/// its findings fail under `--fail-on`.
fn print_report(
    report: &Report,
    format: Format,
    fail_on: &egress::FailOn,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    p.document(report)?;
    p.data(|out| egress::render(report, format_of(format), out))?;
    if report.exit_code(fail_on) != 0 {
        return Ok(Outcome::Finding(
            "egress findings fail the check (see above; --fail-on tunes which verdicts fail)"
                .into(),
        ));
    }
    Ok(Outcome::Ok)
}

fn format_of(f: Format) -> egress::Format {
    match f {
        Format::Table => egress::Format::Table,
        Format::Json => egress::Format::Json,
        Format::Sarif => egress::Format::Sarif,
        Format::Markdown => egress::Format::Markdown,
    }
}

/// The library's `FailOn` for the words of `--fail-on`.
fn fail_on_of(words: &[FailOn]) -> egress::FailOn {
    let mut out = egress::FailOn {
        verdicts: Vec::new(),
        commented: false,
        docs: false,
    };
    let mut add = |v: Verdict| {
        if !out.verdicts.contains(&v) {
            out.verdicts.push(v);
        }
    };
    for word in words {
        match word {
            FailOn::Loopback => add(Verdict::Loopback),
            FailOn::Denied => add(Verdict::Denied),
            FailOn::Allowed => add(Verdict::Allowed),
            FailOn::Inbound => add(Verdict::Inbound),
            FailOn::InCluster => add(Verdict::InCluster),
            FailOn::Placeholder => add(Verdict::Placeholder),
            FailOn::Unknown => add(Verdict::Unknown),
            FailOn::Unresolved => add(Verdict::Unresolved),
            FailOn::Default => egress::FailOn::default()
                .verdicts
                .into_iter()
                .for_each(&mut add),
            FailOn::None => {}
            FailOn::Commented | FailOn::Docs => {}
        }
    }
    out.commented = words.contains(&FailOn::Commented);
    out.docs = words.contains(&FailOn::Docs);
    out
}

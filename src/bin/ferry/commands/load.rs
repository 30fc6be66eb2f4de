//! `ferry load`: verify, push every image, then check and rewrite values files.

use super::{head_check, usage};
use crate::cli::{LimitArgs, RegistryArgs, TrustArgs};
use crate::exit::Outcome;
use crate::printer::Printer;
use ferry::bundle::manifest::Manifest;
use ferry::load::{self, LoadInput, ValuesOutcome};
use ferry::oci::reference::Target;
use ferry::registry::push::{PushOptions, PushReport, Pushed};
use ferry::registry::referrers::{push_referrers, Indexed, ReferrersReport};
use ferry::registry::{CredentialSource, RegistryOptions};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The arguments of `ferry load`.
pub struct Args<'a> {
    pub input: &'a Path,
    pub registry: &'a RegistryArgs,
    pub dry_run: bool,
    pub values: &'a [PathBuf],
    pub output: Option<&'a Path>,
    pub pin_digests: bool,
    pub have_list: Option<&'a Path>,
    /// Push the artifacts attached to the images too.
    pub referrers: bool,
    pub trust: &'a TrustArgs,
    pub limits: &'a LimitArgs,
}

/// What was pushed (or found already there), from which manifest, with which evidence.
struct Pushing {
    manifest: Option<Manifest>,
    evidence: serde_json::Value,
    report: PushReport,
    /// What pushing the attached artifacts did.
    referrers: ReferrersReport,
    warm: bool,
}

pub fn load(a: &Args, p: &mut Printer) -> anyhow::Result<Outcome> {
    if a.output.is_some() && a.values.len() != 1 {
        return Err(usage("-o/--output takes exactly one --values file"));
    }
    let (mut push_opts, target) = a.registry.options()?;
    push_opts.dry_run = a.dry_run;
    let keys = a.trust.load()?;
    let check = head_check(&keys, a.trust.require_signature);
    let input = LoadInput {
        input: a.input.to_path_buf(),
        target: target.clone(),
        limits: a.limits.limits(),
        progress: p.progress(),
        check_head: Some(&check),
        referrers: a.referrers,
    };
    if ferry::bundle::partial::peek(a.input)?.is_some() {
        return super::pieces::load(a, &input, &push_opts, p);
    }
    // A re-run against a registry that already has everything reads only the head.
    // A have-list lists the blobs of the push plan, so it needs a plan.
    let warm = if a.dry_run || a.have_list.is_some() {
        None
    } else {
        load::already_loaded(&input, &push_opts)?
    };
    let pushing = match warm {
        Some(done) => already_there(done, &push_opts),
        None => push(&input, &push_opts, a.values)?,
    };
    let rewritten = rewrite_values(a, &target, pushing.manifest.as_ref())?;
    if let Some(out) = a.have_list {
        super::pieces::write_have_list(out, &push_opts, &pushing.report, a.dry_run, p)?;
    }
    if !a.dry_run {
        for v in &rewritten {
            load::write_atomically(&destination(a, v), &v.after)?;
        }
    }
    p.document(&json!({
        "ok": true,
        "dryRun": a.dry_run,
        "report": pushing.report,
        "referrers": pushing.referrers,
        "values": rewritten,
        "evidence": pushing.evidence,
    }))?;
    print_human(a, &pushing, &rewritten, p)?;
    Ok(Outcome::Ok)
}

/// The report of a load that found every image already in the registry.
fn already_there(done: load::AlreadyLoaded, opts: &PushOptions) -> Pushing {
    let registry = &opts.registry.registry;
    let pushed = done
        .images
        .iter()
        .map(|i| Pushed {
            reference: if i.tag.is_empty() {
                format!("{registry}/{}@{}", i.target_repo, i.digest)
            } else {
                format!("{registry}/{}:{}", i.target_repo, i.tag)
            },
            digest: i.digest.clone(),
        })
        .collect();
    Pushing {
        manifest: Some(done.manifest),
        evidence: json!({ "alreadyLoaded": true, "headCheck": done.head_check }),
        report: PushReport {
            pushed,
            ..Default::default()
        },
        referrers: ReferrersReport::default(),
        warm: true,
    }
}

/// Verifies and pushes; values are checked first, so a missing image fails before any push.
fn push(input: &LoadInput, opts: &PushOptions, values: &[PathBuf]) -> anyhow::Result<Pushing> {
    let prepared = load::prepare(input)?;
    if !values.is_empty() {
        if let Some(m) = &prepared.manifest {
            load::check_images(values, &m.images)?;
        }
    }
    let bars = Arc::new(ferry::progress::PushBars::new(input.progress));
    let report = ferry::registry::push::push(
        opts,
        prepared.source.clone(),
        &prepared.images,
        bars.clone(),
    )?;
    let referrers = push_referrers(
        opts,
        prepared.source.clone(),
        &prepared.referrers,
        bars.clone(),
    )?;
    bars.finish();
    Ok(Pushing {
        manifest: prepared.manifest,
        evidence: serde_json::to_value(&prepared.evidence)?,
        report,
        referrers,
        warm: false,
    })
}

pub(super) fn rewrite_values(
    a: &Args,
    target: &Target,
    manifest: Option<&Manifest>,
) -> anyhow::Result<Vec<ValuesOutcome>> {
    if a.values.is_empty() {
        return Ok(Vec::new());
    }
    let images = manifest.map(|m| m.images.clone()).unwrap_or_default();
    if manifest.is_some() {
        load::check_images(a.values, &images)?;
    }
    Ok(load::rewrite_values(
        a.values,
        &ferry::values::RewriteOptions {
            target: target.clone(),
            images,
            pin_digests: a.pin_digests,
        },
    )?)
}

pub(super) fn destination(a: &Args, v: &ValuesOutcome) -> PathBuf {
    a.output.map_or_else(|| v.file.clone(), Path::to_path_buf)
}

fn print_human(
    a: &Args,
    pushing: &Pushing,
    rewritten: &[ValuesOutcome],
    p: &mut Printer,
) -> anyhow::Result<()> {
    let report = &pushing.report;
    if a.dry_run {
        for img in &report.plan.images {
            p.line(format_args!("would push {}", serde_json::to_string(img)?))?;
        }
        return Ok(());
    }
    let verb = if pushing.warm { "present" } else { "pushed" };
    for pushed in &report.pushed {
        p.line(format_args!(
            "{verb} {}@{}",
            pushed.reference, pushed.digest
        ))?;
    }
    for pushed in &pushing.referrers.push.pushed {
        p.line(format_args!(
            "{verb} {}@{} (attached artifact)",
            pushed.reference, pushed.digest
        ))?;
    }
    for (digest, how) in &pushing.referrers.indexed {
        let how = match how {
            Indexed::ReferrersApi => "listed by the registry's referrers API",
            Indexed::TagSchema => "listed in the referrers tag schema's sha256-HEX index",
            Indexed::AlreadyListed => "already listed in the sha256-HEX index",
        };
        p.line(format_args!("referrer {digest}: {how}"))?;
    }
    if pushing.warm {
        p.line("every image is already in the registry with the bundle's digests: nothing sent, only the bundle's head was read")?;
    } else {
        p.line(format_args!(
            "{} blobs uploaded ({} bytes), {} already present, {} mounted, {} retries",
            report.blobs_uploaded,
            report.bytes_uploaded,
            report.blobs_skipped,
            report.blobs_mounted,
            report.retries
        ))?;
    }
    for v in rewritten {
        p.line(format_args!(
            "rewrote {} image references into {}",
            v.edits.len(),
            destination(a, v).display()
        ))?;
        super::values::edit_notes(&v.file, &v.edits, p)?;
        super::values::unmoved_notes(&v.file, &v.unmoved, p)?;
        for note in &v.stays {
            p.note(format_args!("{}: {note}", v.file.display()))?;
        }
    }
    Ok(())
}

impl RegistryArgs {
    /// The push options and the target, parsed once: the same target is used for pushing and
    /// for rewriting values, so a value it refuses fails before anything is sent.
    fn options(&self) -> anyhow::Result<(PushOptions, Target)> {
        let target = Target::parse(&self.registry)?;
        let mut r = RegistryOptions::new(target.host.clone());
        r.plain_http = self.plain_http;
        r.ca_file = self.ca_file.clone();
        r.credentials = match (&self.username, &self.authfile) {
            (Some(user), _) => {
                let mut password = String::new();
                std::io::stdin().read_line(&mut password)?;
                CredentialSource::Explicit {
                    username: user.clone(),
                    password: password.trim_end_matches(['\r', '\n']).to_string(),
                }
            }
            (None, Some(f)) => CredentialSource::AuthFile(f.clone()),
            (None, None) => CredentialSource::Default,
        };
        let mut opts = PushOptions::new(r);
        opts.concurrency = self.concurrency.max(1);
        Ok((opts, target))
    }
}

//! Deltas and split parts: `ferry build --base / --max-part-size`, `merge`, `split`, `join`,
//! and `verify`, `inspect` and `load` of a delta or a part.

use super::{head_check, usage, verify_options};
use crate::cli::{LimitArgs, PieceArgs, TrustArgs};
use crate::exit::Outcome;
use crate::printer::Printer;
use anyhow::Context;
use ferry::bundle::build::folder_of;
use ferry::bundle::delta::{self, DeltaReport};
use ferry::bundle::partial::{self, Kind, PartialEvidence, PartialHead};
use ferry::bundle::split;
use ferry::bundle::verify::{self, VerifyOptions};
use ferry::load::LoadInput;
use ferry::registry::push::{PushOptions, PushReport};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The temporary file a complete bundle is built into when parts are wanted.
pub fn full_beside(
    output: &Path,
    pieces: &PieceArgs,
) -> anyhow::Result<Option<tempfile::NamedTempFile>> {
    if pieces.max_part_size.is_none() {
        return Ok(None);
    }
    let dir = folder_of(output);
    let tmp = tempfile::Builder::new()
        .prefix(".ferry-full-")
        .suffix(".tar.gz")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    Ok(Some(tmp))
}

/// Cuts the parts from the complete bundle just built into `full`.
pub fn after_build(
    full: tempfile::NamedTempFile,
    output: &Path,
    pieces: &PieceArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    // The build's own output: its members are walked, not verified again.
    let scanned = partial::walk(full.path())?;
    let max = pieces.max_part_size.expect("parts were asked for");
    let done = split::split(&scanned, max, folder_of(output))?;
    drop(full);
    print_split(&done, p)
}

/// Prints what `ferry build --base` wrote.
pub fn print_delta(d: &DeltaReport, signed: bool, p: &mut Printer) -> anyhow::Result<Outcome> {
    p.document(&json!({ "ok": true, "delta": d, "signed": signed }))?;
    p.line(format_args!(
        "built delta {} ({} bytes; the release is {} bytes)",
        d.output.display(),
        d.bytes,
        d.release_bytes
    ))?;
    p.line(format_args!(
        "  {} files carried, {} blobs ({} bytes) left out: the base holds them",
        d.files, d.omitted, d.omitted_bytes
    ))?;
    p.line(format_args!(
        "  release manifest {}{}",
        d.manifest_digest,
        if signed { " (signed)" } else { "" }
    ))?;
    Ok(Outcome::Ok)
}

fn print_split(s: &split::SplitReport, p: &mut Printer) -> anyhow::Result<Outcome> {
    p.document(&json!({ "ok": true, "split": s }))?;
    for n in &s.notes {
        p.note(format_args!("note: {n}"))?;
    }
    for part in &s.parts {
        p.line(format_args!(
            "wrote {} ({} bytes, {} files)",
            part.path.display(),
            part.bytes,
            part.files
        ))?;
    }
    p.line(format_args!(
        "  {} parts of release manifest {}",
        s.parts.len(),
        s.manifest_digest
    ))?;
    Ok(Outcome::Ok)
}

/// `ferry verify` of a delta or a part.
pub fn verify(
    bundle: &Path,
    trust: &TrustArgs,
    base: Option<&Path>,
    limits: &LimitArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let keys = trust.load()?;
    let check = head_check(&keys, trust.require_signature);
    let (head, evidence) = partial::verify(&verify_options(bundle, limits, p, &check))?;
    let base_checked = match base {
        Some(b) => Some(check_base(&head, b, limits, p)?),
        None => None,
    };
    p.document(&json!({
        "ok": true,
        "evidence": evidence,
        "baseChecked": base_checked,
    }))?;
    let what = match &evidence.part {
        Some(part) => format!("part {} of {}", part.index, part.count),
        None => format!(
            "delta ({} blobs, {} bytes left out)",
            evidence.omitted, evidence.omitted_bytes
        ),
    };
    p.line(format_args!(
        "OK {} {} {what}: {} files and {} bytes match the release manifest {}; {} images resolve",
        evidence.name,
        evidence.version,
        evidence.files_checked,
        evidence.bytes_checked,
        evidence.manifest_digest,
        evidence.layout.images
    ))?;
    if let Some(b) = base {
        p.line(format_args!(
            "OK every blob the delta leaves out is in {} with its digest",
            b.display()
        ))?;
    }
    p.line(authenticity(&evidence))?;
    Ok(Outcome::Ok)
}

/// Checks that `base` (verified whole) holds every blob the delta omits.
fn check_base(
    head: &PartialHead,
    base: &Path,
    limits: &LimitArgs,
    p: &Printer,
) -> anyhow::Result<String> {
    let Some(info) = &head.manifest.delta else {
        return Err(usage("--base is for a delta bundle; this is a part"));
    };
    let none = |_: &[u8], _: Option<&[u8]>| Ok(serde_json::Value::Null);
    let evidence = verify::verify(&verify_options(base, limits, p, &none))?;
    let (m, _) = ferry::bundle::inspect::read_manifest(base)?;
    let missing: Vec<delta::HaveBlob> = info
        .omitted
        .iter()
        .filter(|o| {
            !m.files.iter().any(|f| {
                f.digest == o.digest && f.size == o.size && f.path.as_str().starts_with("images/")
            })
        })
        .map(|o| delta::HaveBlob {
            digest: o.digest.clone(),
            size: o.size,
        })
        .collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|b| format!("  {} ({} bytes)", b.digest, b.size))
            .collect();
        return Err(ferry::bundle::verify::VerifyError::Head(format!(
            "{} lacks {} blob(s) the delta leaves out:\n{}",
            base.display(),
            missing.len(),
            list.join("\n")
        ))
        .into());
    }
    Ok(evidence.manifest_digest.to_string())
}

fn authenticity(e: &PartialEvidence) -> String {
    match e.head_check.as_ref().and_then(|v| v.get("key")) {
        Some(key) => format!(
            "AUTHENTIC: the release manifest is signed by the key {} ({})",
            key.get("path").and_then(|p| p.as_str()).unwrap_or("?"),
            key.get("fingerprint").and_then(|p| p.as_str()).unwrap_or("?")
        ),
        None => "WARNING: authenticity NOT checked: no --key was given, so this proves integrity only, not who built the release.".into(),
    }
}

/// `ferry inspect` of a delta or a part: the release it belongs to, and what is missing.
pub fn inspect(bundle: &Path, head: &PartialHead, p: &mut Printer) -> anyhow::Result<Outcome> {
    let m = &head.manifest;
    let (found, missing) = split::siblings(bundle, head);
    let summary = ferry::bundle::inspect::Summary::of(&head.release);
    p.document(&json!({
        "kind": m.kind,
        "release": summary,
        "releaseManifestDigest": m.release.manifest_digest,
        "signed": m.release.signature.is_some(),
        "filesHeld": m.files.len(),
        "part": m.part,
        "partsFound": found,
        "partsMissing": missing,
        "base": m.delta.as_ref().map(|d| &d.base),
        "omitted": m.delta.as_ref().map(|d| &d.omitted),
    }))?;
    let r = &head.release;
    p.data(|out| {
        writeln!(out, "{} {} ({})", r.name, r.version, m.kind.noun())?;
        writeln!(
            out,
            "  release manifest {}{}",
            m.release.manifest_digest,
            if m.release.signature.is_some() {
                " (signed)"
            } else {
                ""
            }
        )?;
        writeln!(
            out,
            "  holds {} of the release's {} files",
            m.files.len(),
            r.files.len()
        )?;
        if let Some(part) = &m.part {
            writeln!(out, "  part {} of {}", part.index, part.count)?;
            if missing.is_empty() {
                writeln!(out, "  every part is in this folder: `ferry join` them")?;
            } else {
                let names: Vec<String> = missing
                    .iter()
                    .map(|i| split::part_name(&r.root(), *i, part.count))
                    .collect();
                writeln!(out, "  missing here: {}", names.join(", "))?;
            }
        }
        if let Some(d) = &m.delta {
            let base = match (&d.base.name, &d.base.version) {
                (Some(n), Some(v)) => format!("{n} {v} (manifest {})", d.base.digest),
                _ => format!(
                    "have-list {} of {}",
                    d.base.digest,
                    d.base.registry.as_deref().unwrap_or("?")
                ),
            };
            writeln!(out, "  built against {base}")?;
            let bytes: u64 = d.omitted.iter().map(|o| o.size).sum();
            writeln!(
                out,
                "  leaves out {} blobs ({bytes} bytes) the base holds",
                d.omitted.len()
            )?;
        }
        Ok(())
    })?;
    Ok(Outcome::Ok)
}

/// `ferry merge OLD DELTA -o NEW`.
pub fn merge(
    old: &Path,
    delta: &Path,
    output: &Path,
    trust: &TrustArgs,
    limits: &LimitArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let keys = trust.load()?;
    let check = head_check(&keys, trust.require_signature);
    let none = |_: &[u8], _: Option<&[u8]>| Ok(serde_json::Value::Null);
    let done = delta::merge(
        &verify_options(delta, limits, p, &check),
        &verify_options(old, limits, p, &none),
        output,
    )?;
    p.document(&json!({ "ok": true, "merge": done }))?;
    p.line(format_args!(
        "merged {} ({} bytes, {} blobs from {}); release manifest {}",
        done.output.display(),
        done.bytes,
        done.from_base,
        old.display(),
        done.manifest_digest
    ))?;
    Ok(Outcome::Ok)
}

/// `ferry split BUNDLE --max-part-size SIZE`.
pub fn split(
    bundle: &Path,
    max: u64,
    dir: Option<&Path>,
    trust: &TrustArgs,
    limits: &LimitArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let keys = trust.load()?;
    let check = head_check(&keys, trust.require_signature);
    let scanned = partial::scan(&verify_options(bundle, limits, p, &check))?;
    let dir = dir.unwrap_or_else(|| folder_of(bundle));
    let done = split::split(&scanned, max, dir)?;
    print_split(&done, p)
}

/// `ferry join PARTS... -o BUNDLE`.
pub fn join(
    parts: &[PathBuf],
    output: &Path,
    trust: &TrustArgs,
    limits: &LimitArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let keys = trust.load()?;
    let check = head_check(&keys, trust.require_signature);
    let opts: Vec<VerifyOptions> = parts
        .iter()
        .map(|part| verify_options(part, limits, p, &check))
        .collect();
    let done = split::join(&opts, output)?;
    p.document(&json!({ "ok": true, "join": done }))?;
    p.line(format_args!(
        "joined {} parts into {} ({} bytes); release manifest {}",
        done.parts,
        done.output.display(),
        done.bytes,
        done.manifest_digest
    ))?;
    Ok(Outcome::Ok)
}

/// `ferry load` of a delta or a part.
pub fn load(
    a: &super::load::Args,
    input: &LoadInput,
    opts: &PushOptions,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let done = ferry::load_partial::load(input, opts)?;
    let complete = done.waiting.is_empty();
    let rewritten = if complete {
        super::load::rewrite_values(a, &input.target, Some(&done.head.release))?
    } else {
        Vec::new()
    };
    if !a.dry_run {
        for v in &rewritten {
            ferry::load::write_atomically(&super::load::destination(a, v), &v.after)?;
        }
        if let Some(out) = a.have_list {
            write_have_list(out, opts, &done.report, false, p)?;
        }
    }
    p.document(&json!({
        "ok": true,
        "dryRun": a.dry_run,
        "kind": done.head.manifest.kind,
        "report": done.report,
        "referrers": done.referrers,
        "blobsUploadedAhead": done.blobs_uploaded_ahead,
        "waiting": done.waiting,
        "values": rewritten,
        "evidence": done.evidence,
    }))?;
    for pushed in &done.report.pushed {
        p.line(format_args!(
            "pushed {}@{}",
            pushed.reference, pushed.digest
        ))?;
    }
    let r = &done.report;
    p.line(format_args!(
        "{} blobs uploaded ({} bytes), {} already present, {} mounted",
        r.blobs_uploaded + done.blobs_uploaded_ahead,
        r.bytes_uploaded,
        r.blobs_skipped,
        r.blobs_mounted
    ))?;
    for (image, lacking) in &done.waiting {
        p.line(format_args!(
            "waiting {image}: {lacking} blob(s) come with other parts; its blobs here are uploaded"
        ))?;
    }
    if done.head.manifest.kind == Kind::Part && complete {
        p.line("every image of the release is in the registry")?;
    }
    if !complete && !a.values.is_empty() {
        p.note("note: values files are rewritten once every image is in the registry (after the last part)")?;
    }
    Ok(Outcome::Ok)
}

/// Writes the have-list of a load: the blobs of every image it made present, or with
/// `--dry-run`, the blobs of the bundle's images the registry answers a `HEAD` for.
pub fn write_have_list(
    out: &Path,
    opts: &PushOptions,
    report: &PushReport,
    dry_run: bool,
    p: &mut Printer,
) -> anyhow::Result<()> {
    let list = if dry_run {
        ferry::load_partial::ask_have_list(opts, &report.plan)?
    } else {
        ferry::load_partial::have_list(&opts.registry.registry, report)
    };
    std::fs::write(out, list.to_bytes())
        .with_context(|| format!("writing the have-list {}", out.display()))?;
    p.note(format_args!(
        "wrote {} ({} blobs the registry holds)",
        out.display(),
        list.blobs.len()
    ))?;
    Ok(())
}

//! `ferry build`, `inspect`, `verify` and `extract`.

use super::{authenticity_json, authenticity_line, head_check, signing_key, usage, verify_options};
use crate::cli::{ImageTrustArgs, InspectFormat, LimitArgs, PieceArgs, PullArgs, TrustArgs};
use crate::exit::Outcome;
use crate::printer::Printer;
use anyhow::Context;
use ferry::bundle::build::{self, BuildOptions, ContentsCheck, PlannedContents};
use ferry::bundle::extract::{self, ExtractOptions};
use ferry::bundle::inspect::{self, Summary};
use ferry::bundle::lock::Lock;
use ferry::bundle::verify;
use ferry::pull::{PullOptions, Puller};
use ferry::registry::CredentialSource;
use ferry::signing;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn build(
    spec: &Path,
    output: Option<&Path>,
    key: Option<&Path>,
    pull: &PullArgs,
    pieces: &PieceArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let epoch = build::source_date_epoch_from_env().map_err(anyhow::Error::msg)?;
    let output = match output {
        Some(o) => o.to_path_buf(),
        None => {
            let s = ferry::bundle::spec::Spec::load(spec)?;
            let kind = if pieces.base.is_some() { ".delta" } else { "" };
            PathBuf::from(format!("{}-{}{kind}.tar.gz", s.name.value, s.version.value))
        }
    };
    // Parts are cut from the complete bundle, built beside them first; a delta is written
    // directly, the base's blobs never read.
    let full = super::pieces::full_beside(&output, pieces)?;
    let base = pieces
        .base
        .as_deref()
        .map(ferry::bundle::delta::read_base)
        .transpose()?
        .map(Arc::new);
    let written = full
        .as_ref()
        .map_or(output.clone(), |t| t.path().to_path_buf());
    let key = key.map(signing_key).transpose()?;
    let locked = match pull.locked {
        true => Some(Lock::read(&Lock::path_for(spec))?),
        false => None,
    };
    let signer = key.as_ref().map(|key| {
        move |m: &[u8]| -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
            Ok(key.sign(m)?)
        }
    });
    let report = build::build(
        &BuildOptions {
            spec: spec.to_path_buf(),
            output: written,
            source_date_epoch: epoch,
            progress: p.progress(),
            remote: Some(Arc::new(Puller::new(pull_options(pull)?)?)),
            jobs: pull.concurrency.max(1),
            locked,
            check: Some(images_check(pull.allow_missing_images)),
            referrers: !pull.no_referrers,
            signature_check: Some(ferry::provenance::build_signature_check()),
            base,
        },
        signer.as_ref().map(|s| s as build::ManifestSigner),
    )?;
    let lock_path = Lock::path_for(spec);
    if !pull.locked && !report.lock.is_empty() {
        ferry::load::write_atomically(&lock_path, &report.lock.to_text())
            .with_context(|| format!("writing {}", lock_path.display()))?;
    }
    if let Some(delta) = &report.delta {
        return super::pieces::print_delta(delta, report.signed, p);
    }
    if let Some(full) = full {
        return super::pieces::after_build(full, &output, pieces, p);
    }
    let m = &report.manifest;
    p.document(&json!({
        "ok": true,
        "bundle": report.output,
        "bytes": report.bundle_bytes,
        "manifestDigest": report.manifest_digest,
        "signed": report.signed,
        "files": m.files.len(),
        "images": m.images.iter().map(|i| json!({"reference": i.reference, "digest": i.digest, "sourceDigest": i.source_digest, "nonDistributable": i.non_distributable, "referrers": i.referrers})).collect::<Vec<_>>(),
        "lock": (!report.lock.is_empty()).then(|| lock_path.clone()),
    }))?;
    for n in &report.notes {
        p.note(format_args!("note: {n}"))?;
    }
    for i in m.images.iter().filter(|i| !i.non_distributable.is_empty()) {
        p.note(format_args!(
            "warning: {} has {} non-distributable layer(s) left out: nodes fetch them from their URLs, so it will not pull inside an air gap (--include-non-distributable carries them)",
            i.reference,
            i.non_distributable.len()
        ))?;
    }
    for i in m
        .images
        .iter()
        .filter_map(|i| Some((i, i.source_digest.as_ref()?)))
    {
        p.note(format_args!(
            "note: {} is a new index with {} of the platforms of {} (per-platform digests unchanged; a signature over the upstream index does not apply to it)",
            i.0.reference,
            i.0.platforms.join(", "),
            i.1
        ))?;
    }
    p.line(format_args!(
        "built {} ({} bytes)",
        report.output.display(),
        report.bundle_bytes
    ))?;
    p.line(format_args!(
        "  {} {}: {} files, {} bytes of content, {} images, {} charts",
        m.name,
        m.version,
        m.files.len(),
        m.total_size(),
        m.images.len(),
        m.charts.len()
    ))?;
    p.line(format_args!(
        "  manifest {}{}",
        report.manifest_digest,
        if report.signed { " (signed)" } else { "" }
    ))?;
    Ok(Outcome::Ok)
}

/// The check that the charts deploy no image the bundle lacks (under the spec's values):
/// a required image missing refuses the build, unless `allow_missing`; an image only in
/// switched-off or undecidable branches is a note.
fn images_check(allow_missing: bool) -> ContentsCheck {
    Arc::new(move |planned: &PlannedContents| {
        if planned.charts.is_empty() {
            return Ok(Vec::new());
        }
        let found = ferry::images::chart_images(&planned.charts, &planned.values)
            .map_err(|e| format!("reading the charts' images: {e}"))?;
        let (required, optional) = ferry::images::missing_from(&found.images, planned.images);
        let line = |i: &ferry::images::ChartImage| {
            let at = i
                .locations
                .first()
                .map(|l| format!("{}:{}", l.file, l.line))
                .unwrap_or_default();
            format!("{} ({at})", i.reference)
        };
        let mut notes: Vec<String> = optional
            .iter()
            .map(|i| {
                format!(
                    "the charts may also deploy {} ({}), which the bundle does not carry",
                    line(i),
                    i.reason
                )
            })
            .collect();
        if !required.is_empty() {
            let list: Vec<String> = required.iter().map(|i| format!("  {}", line(i))).collect();
            let message = format!(
                "the charts deploy {} image(s) the bundle does not carry:\n{}\nadd them to `images:` (`ferry images list CHART --values VALUES --format spec` prints the block), or build with --allow-missing-images",
                required.len(),
                list.join("\n")
            );
            if !allow_missing {
                return Err(message);
            }
            notes.push(format!("--allow-missing-images: {message}"));
        }
        Ok(notes)
    })
}

/// The pull settings of the command line.
fn pull_options(a: &PullArgs) -> anyhow::Result<PullOptions> {
    let ca_files = a
        .ca_files
        .iter()
        .map(|v| match v.split_once('=') {
            Some((host, file)) if !host.is_empty() && !file.is_empty() => {
                Ok((Some(host.to_string()), PathBuf::from(file)))
            }
            Some(_) => Err(usage(format!(
                "--ca-file `{v}`: expected FILE or HOST[:PORT]=FILE"
            ))),
            None => Ok((None, PathBuf::from(v))),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(PullOptions {
        credentials: match &a.authfile {
            Some(f) => CredentialSource::AuthFile(f.clone()),
            None => CredentialSource::Default,
        },
        ca_files,
        plain_http: a.plain_http,
        plain_http_hosts: a.plain_http_hosts.clone(),
        cache: a.cache.clone(),
        include_non_distributable: a.include_non_distributable,
    })
}

pub fn inspect(bundle: &Path, format: InspectFormat, p: &mut Printer) -> anyhow::Result<Outcome> {
    if let Some(head) = ferry::bundle::partial::peek(bundle)? {
        return super::pieces::inspect(bundle, &head, p);
    }
    let (m, bytes) = inspect::read_manifest(bundle)?;
    let digest = ferry::oci::digest::Digest::of(&bytes);
    let sbom = match format {
        InspectFormat::Summary => None,
        InspectFormat::Cyclonedx => Some(ferry::bundle::sbom::cyclonedx(&m, &digest)),
        InspectFormat::Spdx => Some(ferry::bundle::sbom::spdx(&m, &digest)),
    };
    if let Some(doc) = sbom {
        // The document is the command's product: on stdout with or without --json.
        p.document(&doc)?;
        p.data(|out| {
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        })?;
        return Ok(Outcome::Ok);
    }
    let summary = Summary::of(&m);
    p.document(&summary)?;
    // The summary is what `inspect` is for: printed with --quiet too.
    p.data(|out| write_summary(&summary, out))?;
    Ok(Outcome::Ok)
}

pub fn verify(
    bundle: &Path,
    trust: &TrustArgs,
    image_trust: &ImageTrustArgs,
    signature: Option<&Path>,
    base: Option<&Path>,
    limits: &LimitArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    if ferry::bundle::partial::peek(bundle)?.is_some() {
        return super::pieces::verify(bundle, trust, base, limits, p);
    }
    if base.is_some() {
        return Err(usage(format!(
            "--base checks the blobs a delta omits, but {} is a complete bundle",
            bundle.display()
        )));
    }
    let keys = trust.load()?;
    let check = head_check(&keys, trust.require_signature);
    let detached = match signature {
        Some(sig) => {
            if bundle.is_dir() {
                return Err(usage(format!(
                    "--signature checks a whole bundle file, but {} is a folder; pass the .tar.gz",
                    bundle.display()
                )));
            }
            let text = std::fs::read(sig)
                .with_context(|| format!("cannot read the detached signature {}", sig.display()))?;
            let key = signing::verify_file(&keys, bundle, &text)?;
            Some(json!({ "signature": sig, "key": key }))
        }
        None => None,
    };
    let image_keys = image_trust
        .image_keys
        .iter()
        .map(|k| signing::VerifyingKey::load(k))
        .collect::<Result<Vec<_>, _>>()?;
    let require = image_trust.require_image_signatures;
    let images = |m: &ferry::bundle::manifest::Manifest,
                  json: &dyn Fn(&str) -> Option<Vec<u8>>|
     -> Result<serde_json::Value, String> {
        let found = ferry::provenance::check_images(&image_keys, require, m, json)?;
        serde_json::to_value(found).map_err(|e| e.to_string())
    };
    let images_check: Option<&verify::ImagesCheck> = match image_keys.is_empty() {
        true => None,
        false => Some(&images),
    };
    let evidence = verify::verify_images(&verify_options(bundle, limits, p, &check), images_check)?;
    p.document(&json!({
        "ok": true,
        "evidence": evidence,
        "authenticity": authenticity_json(&evidence),
        "detachedSignature": detached,
    }))?;
    p.line(format_args!(
        "OK {} {}: {} files and {} bytes match ferry.json; {} images, {} manifests and {} blobs resolve",
        evidence.name,
        evidence.version,
        evidence.files_checked,
        evidence.bytes_checked,
        evidence.layout.images,
        evidence.layout.manifests,
        evidence.blobs_checked
    ))?;
    p.line(authenticity_line(&evidence))?;
    for v in evidence
        .images_check
        .as_ref()
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_string();
        match text("verdict").as_str() {
            "verified" => p.line(format_args!(
                "SIGNED: {} is signed by the image key {} (signature {})",
                text("reference"),
                text("key"),
                text("signature")
            ))?,
            _ => p.line(format_args!(
                "UNSIGNED: {} carries no image signature",
                text("reference")
            ))?,
        }
    }
    if let Some(sig) = signature {
        p.line(format_args!(
            "AUTHENTIC: the whole file matches the detached signature {}",
            sig.display()
        ))?;
    }
    Ok(Outcome::Ok)
}

pub fn extract(
    bundle: &Path,
    dir: &Path,
    trust: &TrustArgs,
    limits: &LimitArgs,
    p: &mut Printer,
) -> anyhow::Result<Outcome> {
    let keys = trust.load()?;
    let check = head_check(&keys, trust.require_signature);
    let done = extract::extract(&ExtractOptions {
        verify: verify_options(bundle, limits, p, &check),
        dir: dir.to_path_buf(),
    })?;
    p.document(&json!({
        "ok": true,
        "path": done.path,
        "evidence": done.evidence,
        "authenticity": authenticity_json(&done.evidence),
    }))?;
    p.line(format_args!(
        "extracted {} ({} files verified)",
        done.path.display(),
        done.evidence.files_checked
    ))?;
    p.line(authenticity_line(&done.evidence))?;
    Ok(Outcome::Ok)
}

/// One attached artifact, as `inspect` shows it.
fn referrer_line(r: &ferry::bundle::manifest::Referrer) -> String {
    use ferry::oci::referrers::{sbom_format_name, ReferrerKind};
    let how = match &r.tag {
        Some(t) => format!("tag {t}"),
        None => "referrer".to_string(),
    };
    let what = match r.kind {
        ReferrerKind::Signature => {
            let key = match (r.verified_keys.as_slice(), r.keyless) {
                ([], true) => "keyless (certificate carried, not checked)".to_string(),
                ([], false) => "key not checked at build".to_string(),
                (keys, _) => format!("key {} (checked at build)", keys.join(", ")),
            };
            format!("signature: {key}")
        }
        ReferrerKind::Attestation => match r.predicate_types.is_empty() {
            true => "attestation: predicate type not stated".to_string(),
            false => format!("attestation: {}", r.predicate_types.join(", ")),
        },
        ReferrerKind::Sbom => format!(
            "sbom: {}",
            r.sbom_format
                .as_deref()
                .map_or("format not stated".to_string(), sbom_format_name)
        ),
        ReferrerKind::Other => format!(
            "artifact: {}",
            r.artifact_type.as_deref().unwrap_or(&r.media_type)
        ),
    };
    format!("{what}  ({how}, {})", r.digest)
}

fn write_summary(s: &Summary, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(out, "{} {}", s.name, s.version)?;
    writeln!(out, "  created        {}", s.created)?;
    writeln!(out, "  built by       ferry {}", s.ferry_version)?;
    writeln!(
        out,
        "  files          {} ({} bytes)",
        s.file_count, s.total_size
    )?;
    writeln!(out, "  charts         {}", s.charts.len())?;
    for c in s.charts {
        writeln!(out, "    {} {} ({})", c.name, c.version, c.path)?;
    }
    writeln!(out, "  images         {}", s.images.len())?;
    for i in s.images {
        writeln!(out, "    {}", i.reference)?;
        writeln!(
            out,
            "      {}  {}  {} bytes",
            i.digest,
            i.platforms.join(","),
            i.size
        )?;
        if let Some(source) = &i.source_digest {
            writeln!(
                out,
                "      filtered from index {source}: a new index; a signature over that one does not apply"
            )?;
        }
        if !i.non_distributable.is_empty() {
            writeln!(
                out,
                "      {} non-distributable layer(s) not carried: nodes fetch them from their URLs",
                i.non_distributable.len()
            )?;
        }
        for r in &i.referrers {
            writeln!(out, "      {}", referrer_line(r))?;
        }
    }
    if !s.egress.is_empty() {
        writeln!(out, "  egress declared by the vendor")?;
        for d in s.egress {
            let ports = d
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            writeln!(
                out,
                "    {} {}{}{}",
                d.name,
                d.hosts.join(","),
                if ports.is_empty() {
                    String::new()
                } else {
                    format!(":{ports}")
                },
                if d.required { " (required)" } else { "" }
            )?;
        }
    }
    Ok(())
}

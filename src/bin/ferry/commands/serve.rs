//! `ferry serve`: verify the bundles, then answer as a read-only registry until stopped; or,
//! with `--mirror-config`, print the node configuration that pulls through it.

use super::{authenticity_json, head_check, usage};
use crate::cli::{MirrorConfig, ServeArgs};
use crate::exit::Outcome;
use crate::printer::{self, Printer};
use ferry::bundle::manifest::Manifest;
use ferry::registry::serve::mirror::{self, MirrorKind, MirrorTarget};
use ferry::registry::serve::{self, Catalog, CatalogOptions, Events, ServeOptions, TlsFiles};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::SocketAddr;

pub fn serve(a: &ServeArgs, p: &mut Printer) -> anyhow::Result<Outcome> {
    if let Some(prefix) = &a.prefix {
        if !serve::valid_name(prefix) {
            return Err(usage(format!(
                "--prefix {prefix}: expected a repository path such as `mirror` or `team/images` \
                 (lower-case letters, digits, . _ - and /)"
            )));
        }
    }
    if let Some(kind) = a.mirror_config {
        return mirror_config(a, kind, p);
    }
    let opts = ServeOptions {
        listen: a.listen,
        tls: a
            .tls_cert
            .as_ref()
            .zip(a.tls_key.as_ref())
            .map(|(c, k)| TlsFiles {
                cert: c.clone(),
                key: k.clone(),
            }),
        htpasswd: a.htpasswd.clone(),
        allow_insecure: a.allow_insecure_listen,
        header_timeout: std::time::Duration::from_secs(a.header_timeout),
    };
    // Usage and posture errors come before the verification pass, which can take a while.
    let prepared = serve::prepare(&opts)?;
    let keys = a.trust.load()?;
    let check = head_check(&keys, a.trust.require_signature);
    let catalog = Catalog::open(
        &a.inputs,
        &CatalogOptions {
            limits: a.limits.limits(),
            progress: p.progress(),
            check_head: Some(&check),
            prefix: a.prefix.clone(),
        },
    )?;
    let access: Option<serve::LogFn> = if a.access_log {
        Some(Box::new(printer::log_line))
    } else {
        None
    };
    let events = Events::new(printer::log_line, access);
    let tls = prepared.tls();
    let mut announced = Ok(());
    let summary = summary(&catalog, a, tls);
    serve::serve(catalog, &opts, prepared, events, |addr| {
        announced = announce(p, &summary, addr, tls);
    })?;
    announced?;
    Ok(Outcome::Ok)
}

/// What is served, for the start-up report: bundles with their verdicts, and every image with
/// the names it answers under.
fn summary(catalog: &Catalog, a: &ServeArgs, tls: bool) -> serde_json::Value {
    let bundles: Vec<_> = catalog
        .bundles
        .iter()
        .map(|b| {
            json!({
                "path": b.path,
                "name": b.manifest.name,
                "version": b.manifest.version,
                "manifestDigest": b.evidence.manifest_digest,
                "authenticity": authenticity_json(&b.evidence),
            })
        })
        .collect();
    let mut images = Vec::new();
    for b in &catalog.bundles {
        for i in &b.manifest.images {
            let Ok(r) = i.image_ref() else { continue };
            let mut names = vec![r.repository.clone()];
            if let Some(prefix) = &a.prefix {
                names.push(format!("{prefix}/{}", r.repository));
            }
            if serve::valid_name(r.host()) {
                names.push(format!("{}/{}", r.host(), r.repository));
            }
            images.push(json!({
                "reference": i.reference,
                "registry": r.host(),
                "names": names,
                "tag": i.tag,
                "digest": i.digest,
            }));
        }
    }
    json!({
        "tls": tls,
        "auth": a.htpasswd.is_some(),
        "prefix": a.prefix,
        "bundles": bundles,
        "images": images,
    })
}

fn announce(
    p: &mut Printer,
    summary: &serde_json::Value,
    addr: SocketAddr,
    tls: bool,
) -> anyhow::Result<()> {
    let url = format!("{}://{addr}", if tls { "https" } else { "http" });
    let mut doc = json!({ "ok": true, "listening": addr.to_string(), "url": url });
    if let (Some(d), Some(s)) = (doc.as_object_mut(), summary.as_object()) {
        d.extend(s.clone());
    }
    p.document(&doc)?;
    for b in summary["bundles"].as_array().into_iter().flatten() {
        p.line(format!(
            "verified {} ({} {}): {}",
            b["path"].as_str().unwrap_or("?"),
            b["name"].as_str().unwrap_or("?"),
            b["version"].as_str().unwrap_or("?"),
            b["authenticity"].as_str().unwrap_or("?"),
        ))?;
    }
    for i in summary["images"].as_array().into_iter().flatten() {
        let names: Vec<&str> = i["names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
            .collect();
        p.line(format!(
            "  {} → {addr}/{}",
            i["reference"].as_str().unwrap_or("?"),
            names.join(", ")
        ))?;
    }
    p.line(format!(
        "serving at {url}, read-only; stop with Ctrl-C or SIGTERM"
    ))?;
    // The report must reach a script before the server blocks.
    p.finish()?;
    Ok(())
}

/// The registries of every image, read from the heads only.
fn registries(a: &ServeArgs) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for input in &a.inputs {
        let (manifest, _): (Manifest, _) = ferry::bundle::inspect::read_manifest(input)?;
        for i in &manifest.images {
            if let Ok(r) = i.image_ref() {
                out.insert(r.host().to_string());
            }
        }
    }
    Ok(out)
}

fn mirror_config(a: &ServeArgs, kind: MirrorConfig, p: &mut Printer) -> anyhow::Result<Outcome> {
    let kind = match kind {
        MirrorConfig::Containerd => MirrorKind::Containerd,
        MirrorConfig::K3s => MirrorKind::K3s,
        MirrorConfig::CriO => MirrorKind::CriO,
    };
    if a.listen.ip().is_unspecified() && a.mirror_endpoint.is_none() {
        return Err(usage(format!(
            "--listen {} names no address nodes can reach: give --mirror-endpoint HOST:PORT",
            a.listen
        )));
    }
    let endpoint = a
        .mirror_endpoint
        .clone()
        .unwrap_or_else(|| a.listen.to_string());
    let ca_file = a.mirror_ca.as_ref().or(a.tls_cert.as_ref());
    let ca_pem = match ca_file {
        Some(path) => Some(last_certificate(path)?),
        None => None,
    };
    let registries = registries(a)?;
    let files = mirror::config(
        kind,
        registries.iter().map(String::as_str),
        &MirrorTarget { endpoint, ca_pem },
    );
    if let Some(dir) = &a.mirror_dir {
        for f in &files {
            let path = dir.join(&f.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &f.text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            p.line(format!(
                "wrote {} (for {}/{})",
                path.display(),
                f.base,
                f.path
            ))?;
        }
    } else {
        p.data(|out| {
            for f in &files {
                writeln!(out, "# ==> {}/{} <==", f.base, f.path)?;
                out.write_all(f.text.as_bytes())?;
                writeln!(out)?;
            }
            Ok(())
        })?;
    }
    p.document(&json!({ "ok": true, "files": files }))?;
    Ok(Outcome::Ok)
}

/// The last PEM certificate of a file: the CA when the file is a chain.
fn last_certificate(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let start = text
        .rfind(BEGIN)
        .ok_or_else(|| usage(format!("{}: holds no PEM certificate", path.display())))?;
    Ok(text[start..].trim_end().to_string() + "\n")
}

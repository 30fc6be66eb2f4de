//! `ferry keygen` and `ferry sign`.

use super::{signing_key, usage};
use crate::exit::Outcome;
use crate::printer::Printer;
use anyhow::Context;
use ferry::bundle::archive::Limits;
use ferry::bundle::verify::VerifyOptions;
use ferry::signing::{self, PasswordSource};
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn keygen(prefix: &Path, p: &mut Printer) -> anyhow::Result<Outcome> {
    let (key_path, _) = signing::keygen_paths(prefix)?;
    let password = PasswordSource::from_environment().password_for_keygen(&key_path)?;
    let (key, public) = signing::keygen(prefix, &password)?;
    p.document(&json!({ "ok": true, "privateKey": key, "publicKey": public }))?;
    p.line(format_args!("Private key written to {}", key.display()))?;
    p.line(format_args!("Public key written to {}", public.display()))?;
    Ok(Outcome::Ok)
}

pub fn sign(bundle: &Path, key: &Path, detached: bool, p: &mut Printer) -> anyhow::Result<Outcome> {
    if bundle.is_dir() {
        return Err(usage(format!(
            "{} is a folder; `ferry sign` signs a bundle file: sign the .tar.gz, then extract it again",
            bundle.display()
        )));
    }
    let key = signing_key(key)?;
    // Only a bundle whose every byte matches its manifest gets a signature.
    ferry::bundle::verify::verify(&VerifyOptions {
        input: bundle.to_path_buf(),
        limits: Limits::default(),
        progress: p.progress(),
        check_head: None,
    })
    .context("the bundle does not verify, so it is not signed")?;
    let head = ferry::bundle::head::resign(bundle, &|m| key.sign(m).map_err(|e| e.to_string()))?;
    let mut path = bundle.as_os_str().to_owned();
    path.push(".sig");
    let path = PathBuf::from(path);
    let mut removed = None;
    let sig_path = if detached {
        let sig = key.sign_file(bundle)?;
        ferry::load::write_atomically(&path, &sig)?;
        Some(path)
    } else {
        // The new head changed the file: a detached signature of the old one would fail.
        match std::fs::remove_file(&path) {
            Ok(()) => {
                p.note(format_args!(
                    "removed {}: it signed the file before this signature; `ferry sign --detached` writes a new one",
                    path.display()
                ))?;
                removed = Some(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "{} no longer matches the bundle and cannot be removed",
                    path.display()
                )))
            }
        }
        None
    };
    p.document(&json!({
        "ok": true,
        "bundle": bundle,
        "key": key.verifying_key(),
        "detachedSignature": sig_path,
        "removedStaleSignature": removed,
    }))?;
    p.line(format_args!(
        "signed {} {} in {} with key sha256:{}",
        head.manifest.name,
        head.manifest.version,
        bundle.display(),
        key.fingerprint()
    ))?;
    if let Some(path) = sig_path {
        p.line(format_args!(
            "detached signature of the whole file: {}",
            path.display()
        ))?;
    }
    Ok(Outcome::Ok)
}

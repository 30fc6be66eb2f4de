//! Image provenance checks that join the bundle and the trust layer: the build-time
//! `verify:` check of an image's cosign signature, and the offline `ferry verify
//! --image-key` check of every image's signatures once the bundle itself has verified.

use crate::bundle::build::SignatureCheck;
use crate::bundle::manifest::{ImageEntry, Manifest};
use crate::oci::digest::Digest;
use crate::oci::referrers::ReferrerKind;
use crate::signing::{self, VerifyingKey};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// The build's check of a signature artifact under the key `verify:` names.
pub fn build_signature_check() -> SignatureCheck {
    Arc::new(
        |key: &Path, image: &Digest, manifest: &[u8], blob: &dyn Fn(&Digest) -> Option<Vec<u8>>| {
            let keys = [VerifyingKey::load(key).map_err(|e| e.to_string())?];
            let k = signing::verify_image_signature(&keys, image, manifest, blob)
                .map_err(|e| e.to_string())?;
            Ok(format!("sha256:{}", k.fingerprint()))
        },
    )
}

/// What the image check found for one image.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVerdict {
    pub reference: String,
    pub digest: Digest,
    /// `verified` (a signature holds under a trusted key) or `unsigned`.
    pub verdict: &'static str,
    /// The signature manifest that verified, and the key's fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The check `ferry verify --image-key` runs on a verified bundle: every image that carries
/// signatures must have one that holds under `keys` (its payload names the image's digest
/// and its signature verifies); with `require`, an image without any fails too. Images are
/// checked in order and the first failure names its image.
pub fn check_images(
    keys: &[VerifyingKey],
    require: bool,
    manifest: &Manifest,
    json: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Vec<ImageVerdict>, String> {
    let mut out = Vec::new();
    for image in &manifest.images {
        out.push(check_image(keys, require, image, json)?);
    }
    Ok(out)
}

fn check_image(
    keys: &[VerifyingKey],
    require: bool,
    image: &ImageEntry,
    json: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<ImageVerdict, String> {
    let blob = |d: &Digest| json(d.hex());
    let mut why = Vec::new();
    let signatures = image
        .referrers
        .iter()
        .filter(|r| r.kind == ReferrerKind::Signature);
    for r in signatures.clone() {
        let Some(bytes) = blob(&r.digest) else {
            why.push(format!(
                "signature manifest {} is not in the bundle",
                r.digest
            ));
            continue;
        };
        match signing::verify_image_signature(keys, &image.digest, &bytes, &blob) {
            Ok(key) => {
                return Ok(ImageVerdict {
                    reference: image.reference.clone(),
                    digest: image.digest.clone(),
                    verdict: "verified",
                    signature: Some(r.digest.clone()),
                    key: Some(format!("sha256:{}", key.fingerprint())),
                })
            }
            Err(e) if r.keyless => why.push(format!(
                "{e} (signature manifest {} is keyless: its certificate travels unchanged, but ferry does not check keyless signatures yet)",
                r.digest
            )),
            Err(e) => why.push(e.to_string()),
        }
    }
    if !why.is_empty() {
        return Err(format!(
            "image `{}` ({}): no signature verifies: {}",
            image.reference,
            image.digest,
            why.join("; ")
        ));
    }
    if require {
        return Err(format!(
            "image `{}` ({}) is not signed (no cosign signature travels with it), and --require-image-signatures was given",
            image.reference, image.digest
        ));
    }
    debug_assert_eq!(signatures.count(), 0);
    Ok(ImageVerdict {
        reference: image.reference.clone(),
        digest: image.digest.clone(),
        verdict: "unsigned",
        signature: None,
        key: None,
    })
}

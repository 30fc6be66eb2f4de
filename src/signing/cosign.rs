//! cosign image signatures: a signature manifest (under `sha256-HEX.sig`, or a referrer)
//! whose layers are simple-signing payloads, each with its base64 ECDSA signature in the
//! `dev.cosignproject.cosign/signature` annotation. A signature holds for an image when the
//! payload's `critical.image.docker-manifest-digest` is the image's digest and the signature
//! over the payload's exact bytes verifies under a trusted key.

use super::{verify, SigningError, VerifyingKey};
use crate::oci::digest::Digest;
use crate::oci::referrers::SIGNATURE_ANNOTATION;

/// Why no signature of a signature manifest holds for an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageSignatureError {
    #[error("signature manifest {manifest} is not a manifest: {detail}")]
    BadManifest { manifest: Digest, detail: String },
    #[error("signature manifest {manifest} holds no cosign signature")]
    NoSignature { manifest: Digest },
    #[error("the payload {payload} of signature manifest {manifest} is not in the bundle")]
    MissingPayload { manifest: Digest, payload: String },
    #[error("the payload {payload} is not a simple-signing payload: {detail}")]
    BadPayload { payload: Digest, detail: String },
    #[error("the payload {payload} signs {found}, not the image's digest {expected}")]
    OtherDigest {
        payload: Digest,
        expected: Digest,
        found: String,
    },
    #[error("payload {payload}: {source}")]
    Signature {
        payload: Digest,
        #[source]
        source: SigningError,
    },
}

/// Checks a cosign signature manifest (`manifest`, its bytes) for the image `image` under
/// `keys`: the first signature layer that holds gives the key it verified under. `blob`
/// returns a payload's bytes by digest. Every failing layer's reason is kept; the last is
/// returned when none holds.
pub fn verify_image_signature<'k>(
    keys: &'k [VerifyingKey],
    image: &Digest,
    manifest: &[u8],
    blob: &dyn Fn(&Digest) -> Option<Vec<u8>>,
) -> Result<&'k VerifyingKey, ImageSignatureError> {
    let manifest_digest = Digest::of(manifest);
    let bad = |detail: String| ImageSignatureError::BadManifest {
        manifest: manifest_digest.clone(),
        detail,
    };
    let v: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| bad(e.to_string()))?;
    let layers = v
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| bad("no `layers`".into()))?;
    let key = format!("/annotations/{}", SIGNATURE_ANNOTATION.replace('/', "~1"));
    let mut last = ImageSignatureError::NoSignature {
        manifest: manifest_digest.clone(),
    };
    for layer in layers {
        let Some(sig) = layer.pointer(&key).and_then(|s| s.as_str()) else {
            continue;
        };
        let digest = layer.get("digest").and_then(|d| d.as_str()).unwrap_or("");
        let outcome = match digest
            .parse::<Digest>()
            .ok()
            .and_then(|d| Some((blob(&d)?, d)))
        {
            None => Err(ImageSignatureError::MissingPayload {
                manifest: manifest_digest.clone(),
                payload: digest.to_string(),
            }),
            Some((payload, d)) => check_payload(keys, image, &d, &payload, sig),
        };
        match outcome {
            Ok(k) => return Ok(k),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Checks one simple-signing payload and its signature.
fn check_payload<'k>(
    keys: &'k [VerifyingKey],
    image: &Digest,
    digest: &Digest,
    payload: &[u8],
    signature_b64: &str,
) -> Result<&'k VerifyingKey, ImageSignatureError> {
    if Digest::of(payload) != *digest {
        return Err(ImageSignatureError::BadPayload {
            payload: digest.clone(),
            detail: "its bytes do not match its digest".into(),
        });
    }
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ImageSignatureError::BadPayload {
            payload: digest.clone(),
            detail: e.to_string(),
        })?;
    let signed = v
        .pointer("/critical/image/docker-manifest-digest")
        .and_then(|d| d.as_str())
        .ok_or_else(|| ImageSignatureError::BadPayload {
            payload: digest.clone(),
            detail: "no `critical.image.docker-manifest-digest`".into(),
        })?;
    if signed != image.to_string() {
        return Err(ImageSignatureError::OtherDigest {
            payload: digest.clone(),
            expected: image.clone(),
            found: signed.to_string(),
        });
    }
    verify(
        keys,
        "the image signature",
        payload,
        signature_b64.as_bytes(),
    )
    .map_err(|source| ImageSignatureError::Signature {
        payload: digest.clone(),
        source,
    })
}

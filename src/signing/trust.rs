//! The fail-closed trust rules for a bundle's head signature: which combinations of trusted
//! keys, `--require-signature` and a present or absent signature pass, and how each fails.

use super::{verify, Result, SigningError, VerifyingKey};

/// What the signature check of a bundle's head concluded (when it did not fail).
#[derive(Debug, serde::Serialize)]
#[serde(tag = "authenticity", rename_all = "snake_case")]
pub enum HeadSignature<'k> {
    /// The signature verified with `key`.
    Verified {
        /// The trusted key that matched.
        key: &'k VerifyingKey,
    },
    /// No key was given and no signature was required: integrity only. Say so in plain words.
    NotChecked {
        /// Whether the bundle carries a signature that was left unchecked.
        signature_present: bool,
    },
}

/// The trust rules for a bundle's manifest signature (`bundle-spec/signing.md`):
///
/// | keys | `require` | signature | result |
/// |---|---|---|---|
/// | ≥ 1 | any | present | [`verify`]: `Verified` or `BadSignature`/`MalformedSignature` (exit 1) |
/// | ≥ 1 | any | absent | `MissingSignature` (exit 1) |
/// | none | yes | absent | `MissingSignature` (exit 1) |
/// | none | yes | present | `RequireSignatureWithoutKey` (exit 2) |
/// | none | no | any | `NotChecked` |
pub fn check_head_signature<'k>(
    keys: &'k [VerifyingKey],
    require_signature: bool,
    which: &str,
    data: &[u8],
    signature_b64: Option<&[u8]>,
) -> Result<HeadSignature<'k>> {
    match (keys.is_empty(), signature_b64) {
        (false, Some(sig)) => {
            verify(keys, which, data, sig).map(|key| HeadSignature::Verified { key })
        }
        (false, None) => Err(SigningError::MissingSignature {
            which: which.to_owned(),
            why: "--key given",
        }),
        (true, None) if require_signature => Err(SigningError::MissingSignature {
            which: which.to_owned(),
            why: "--require-signature",
        }),
        (true, Some(_)) if require_signature => Err(SigningError::RequireSignatureWithoutKey {
            which: which.to_owned(),
        }),
        (true, sig) => Ok(HeadSignature::NotChecked {
            signature_present: sig.is_some(),
        }),
    }
}

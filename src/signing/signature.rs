//! `cosign sign-blob` signatures: base64 DER ECDSA P-256 over the SHA-256 of bytes, streams
//! or files (hashed as they stream), made with a [`SigningKey`] and verified against a set of
//! trusted [`VerifyingKey`]s, failing closed.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{io_error, Result, SigningError, SigningKey, VerifyingKey};
use crate::oci::digest::{hash_reader, Digest};

/// A DER ECDSA P-256 signature is at most 72 bytes; its base64 text at most 96 characters.
/// Anything much larger is refused before decoding.
const MAX_SIGNATURE_TEXT_BYTES: usize = 1024;

/// The digest in the form aws-lc signs and verifies.
fn to_aws(d: &Digest) -> digest::Digest {
    let bytes = hex::decode(d.hex()).expect("a Digest is 64 hex characters");
    digest::Digest::import_less_safe(&bytes, &digest::SHA256).expect("a SHA-256 digest is 32 bytes")
}

impl SigningKey {
    /// Signs `data`: base64 of the DER ECDSA P-256 signature over SHA-256(`data`).
    pub fn sign(&self, data: &[u8]) -> Result<String> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), data)
            .map_err(|_| SigningError::Crypto {
                operation: "signing",
            })?;
        Ok(BASE64.encode(sig.as_ref()))
    }

    /// Signs content whose SHA-256 the caller already has; the same signature [`Self::sign`]
    /// would give for that content.
    pub fn sign_digest(&self, digest: &Digest) -> Result<String> {
        let sig = self
            .pair
            .sign_digest(&to_aws(digest))
            .map_err(|_| SigningError::Crypto {
                operation: "signing",
            })?;
        Ok(BASE64.encode(sig.as_ref()))
    }

    /// Signs everything `reader` yields, hashing it as it streams (constant memory).
    pub fn sign_reader(&self, reader: impl Read) -> Result<String> {
        let (digest, _) =
            hash_reader(reader).map_err(|e| io_error("hashing", Path::new("<stream>"), e))?;
        self.sign_digest(&digest)
    }

    /// Signs a whole file (the detached `BUNDLE.sig`), streaming it.
    pub fn sign_file(&self, path: &Path) -> Result<String> {
        let f = File::open(path).map_err(|e| io_error("opening", path, e))?;
        let (digest, _) = hash_reader(f).map_err(|e| io_error("hashing", path, e))?;
        self.sign_digest(&digest)
    }
}

/// Verifies `signature_b64` over `data` against every key in `keys`; returns the first key that
/// matches. Fails closed: no keys, an empty or malformed signature, or no match is an error.
/// `which` names the signed thing in messages (`ferry.json`, the bundle file name).
pub fn verify<'k>(
    keys: &'k [VerifyingKey],
    which: &str,
    data: &[u8],
    signature_b64: &[u8],
) -> Result<&'k VerifyingKey> {
    verify_digest(keys, which, &Digest::of(data), signature_b64)
}

/// [`verify`] for content whose SHA-256 the caller already computed.
pub fn verify_digest<'k>(
    keys: &'k [VerifyingKey],
    which: &str,
    digest: &Digest,
    signature_b64: &[u8],
) -> Result<&'k VerifyingKey> {
    if keys.is_empty() {
        return Err(SigningError::NoKeys {
            which: which.to_owned(),
        });
    }
    let der = decode_signature(which, signature_b64)?;
    let digest = to_aws(digest);
    keys.iter()
        .find(|k| k.key.verify_digest_sig(&digest, &der).is_ok())
        .ok_or_else(|| SigningError::BadSignature {
            which: which.to_owned(),
            tried: keys.len(),
            fingerprints: keys
                .iter()
                .map(|k| format!("{} (sha256:{})", k.path().display(), k.fingerprint()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// [`verify`] for everything `reader` yields, hashed as it streams.
pub fn verify_reader<'k>(
    keys: &'k [VerifyingKey],
    which: &str,
    reader: impl Read,
    signature_b64: &[u8],
) -> Result<&'k VerifyingKey> {
    // Check the cheap things first so a bad signature fails before a long read.
    if keys.is_empty() {
        return Err(SigningError::NoKeys {
            which: which.to_owned(),
        });
    }
    decode_signature(which, signature_b64)?;
    let (digest, _) = hash_reader(reader).map_err(|e| io_error("hashing", Path::new(which), e))?;
    verify_digest(keys, which, &digest, signature_b64)
}

/// [`verify`] for a whole file (the detached `BUNDLE.sig` case), streamed.
pub fn verify_file<'k>(
    keys: &'k [VerifyingKey],
    path: &Path,
    signature_b64: &[u8],
) -> Result<&'k VerifyingKey> {
    let f = File::open(path).map_err(|e| io_error("opening", path, e))?;
    verify_reader(keys, &path.display().to_string(), f, signature_b64)
}

/// Decodes signature text to DER and checks it is one DER `SEQUENCE { INTEGER r, INTEGER s }`
/// of P-256 size. Surrounding ASCII whitespace (a trailing newline) is ignored.
fn decode_signature(which: &str, text: &[u8]) -> Result<Vec<u8>> {
    let malformed = |reason: String| SigningError::MalformedSignature {
        which: which.to_owned(),
        reason,
    };
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(malformed("the signature is empty".to_owned()));
    }
    if text.len() > MAX_SIGNATURE_TEXT_BYTES {
        return Err(malformed(format!(
            "{} bytes is far longer than a P-256 signature (about 96 characters)",
            text.len()
        )));
    }
    let der = BASE64
        .decode(text)
        .map_err(|e| malformed(format!("not valid base64 ({e})")))?;
    check_der_ecdsa_signature(&der)
        .map_err(|why| malformed(format!("not a DER ECDSA signature: {why}")))?;
    Ok(der)
}

/// Strict structural check of a DER ECDSA-Sig-Value for P-256: short-form lengths only,
/// two positive minimally-encoded INTEGERs of at most 33 bytes, nothing trailing.
fn check_der_ecdsa_signature(der: &[u8]) -> std::result::Result<(), &'static str> {
    let body = match der {
        [0x30, len, body @ ..] if usize::from(*len) == body.len() && *len < 0x80 => body,
        [0x30, ..] => return Err("truncated, or its length does not match"),
        _ => return Err("does not start with a DER SEQUENCE"),
    };
    let rest = der_integer(body)?;
    let rest = der_integer(rest)?;
    if !rest.is_empty() {
        return Err("trailing bytes after the two integers");
    }
    Ok(())
}

fn der_integer(input: &[u8]) -> std::result::Result<&[u8], &'static str> {
    let (len, rest) = match input {
        [0x02, len, rest @ ..] if *len < 0x80 => (usize::from(*len), rest),
        [0x02, ..] => return Err("bad INTEGER length"),
        _ => return Err("expected two INTEGERs (r, s)"),
    };
    if len == 0 || len > 33 || rest.len() < len {
        return Err("truncated or oversized INTEGER");
    }
    let int = &rest[..len];
    if int[0] & 0x80 != 0 {
        return Err("negative INTEGER");
    }
    if len > 1 && int[0] == 0 && int[1] & 0x80 == 0 {
        return Err("INTEGER not minimally encoded");
    }
    Ok(&rest[len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_check_table() {
        // (input, ok)
        let good = {
            let mut v = vec![0x30, 0x44, 0x02, 0x20];
            v.extend([0x11; 32]);
            v.extend([0x02, 0x20]);
            v.extend([0x22; 32]);
            v
        };
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (good.clone(), true),
            (good[..good.len() - 1].to_vec(), false),
            (vec![], false),
            (vec![0x31, 0x00], false),
            ([good.clone(), vec![0]].concat(), false),
            (vec![0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01], false),
            (
                vec![0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01],
                false,
            ),
            (
                vec![0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x01],
                true,
            ),
        ];
        for (input, ok) in cases {
            assert_eq!(
                check_der_ecdsa_signature(&input).is_ok(),
                ok,
                "{input:02x?}"
            );
        }
    }
}

//! Keys and signatures: cosign-compatible key files, ECDSA P-256 / SHA-256 signatures over
//! bytes or streamed files, and fail-closed verification against a set of trusted keys.
//!
//! A signature is the `cosign sign-blob --key` format: the standard base64 text (no line
//! breaks, no trailing newline) of the ASN.1 DER ECDSA P-256 signature over the SHA-256 of the
//! exact bytes signed. `bundle-spec/signing.md` is the normative description.
//!
//! - `password` — key passwords (`COSIGN_PASSWORD` or a terminal prompt), zeroised on drop.
//! - `keys` — key files: `keygen`, private keys in cosign's encrypted format
//!   (`ENCRYPTED SIGSTORE PRIVATE KEY` and the older `ENCRYPTED COSIGN PRIVATE KEY`, scrypt +
//!   NaCl secretbox, decrypted by the `sigstore` crate) or as unencrypted PKCS#8
//!   (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM as openssl writes them; public keys as
//!   PKIX `PUBLIC KEY` PEM.
//! - `signature` — `sign-blob` signatures over bytes, streams and files, and their
//!   verification. The ECDSA arithmetic is aws-lc's (the same backend `sigstore` uses), which
//!   can sign and verify a SHA-256 computed elsewhere, so a multi-gigabyte file is hashed as it
//!   streams and never held in memory.
//! - `trust` — the fail-closed trust rules for a bundle's head (`check_head_signature`).
//! - `cosign` — cosign image signatures: a simple-signing payload that names the image's
//!   digest, signed in the same format (`verify_image_signature`).
//!
//! Secrets stay out of every `Debug`, `Display` and error text: [`Password`] and
//! [`SigningKey`] print no key material, and no error carries a password or key bytes.

mod cosign;
mod keys;
mod password;
mod signature;
mod trust;

pub use cosign::{verify_image_signature, ImageSignatureError};
pub use keys::{keygen, keygen_paths, KeyFormat, SigningKey, VerifyingKey};
pub use password::{Password, PasswordSource, PASSWORD_ENV};
pub use signature::{verify, verify_digest, verify_file, verify_reader};
pub use trust::{check_head_signature, HeadSignature};

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong with keys and signatures.
///
/// No variant carries a password or private key bytes; messages name the file and the next
/// step instead. [`SigningError::exit_code`] maps each variant to ferry's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The password does not decrypt the private key (or the encrypted key was altered).
    #[error(
        "wrong password for private key {key_path}: it does not decrypt the key (or the key \
         file was altered); set {PASSWORD_ENV} to the password the key was created with"
    )]
    WrongPassword {
        /// The encrypted key file.
        key_path: PathBuf,
    },

    /// No key in the trusted set produced this signature.
    #[error(
        "signature of {which} does not match: tried {tried} trusted key(s) ({fingerprints}); \
         the data was changed after signing, or it was signed with a different key"
    )]
    BadSignature {
        /// What the signature covers, e.g. `ferry.json` or `bundle.tar.gz`.
        which: String,
        /// How many keys were tried.
        tried: usize,
        /// `path (sha256:fingerprint)` of each key tried, comma-separated.
        fingerprints: String,
    },

    /// The signature text is not a well-formed base64 DER ECDSA signature.
    #[error("malformed signature of {which}: {reason}; expected base64 of a DER ECDSA P-256 signature (`cosign sign-blob` format)")]
    MalformedSignature {
        /// What the signature covers.
        which: String,
        /// What is wrong with it: empty, not base64, not DER, too long.
        reason: String,
    },

    /// The key file holds something ferry does not sign or verify with.
    #[error("unsupported key {path}: found `{found_header}`; {hint}")]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// The PEM label found (or a short description of the content).
        found_header: String,
        /// What to do instead.
        hint: String,
    },

    /// The key file has the right label but its content does not parse.
    #[error("malformed key {path}: {reason}")]
    MalformedKey {
        /// The key file.
        path: PathBuf,
        /// What failed (never the key bytes).
        reason: String,
    },

    /// Verification was asked for with no trusted key at all.
    #[error("no public key given to verify {which}; pass one or more `--key PUB.pub`")]
    NoKeys {
        /// What was to be verified.
        which: String,
    },

    /// A signature is required (a key was given, or `--require-signature`) but there is none.
    #[error(
        "{which} is not signed, but a signature is required ({why}); the signature entry is \
         missing or was stripped: obtain a signed bundle from the vendor"
    )]
    MissingSignature {
        /// What should have been signed.
        which: String,
        /// Why a signature is required: `--key given` or `--require-signature`.
        why: &'static str,
    },

    /// `--require-signature` without any key: the signature could not be checked.
    #[error(
        "{which} is signed, but --require-signature needs at least one `--key PUB.pub` to check \
         the signature against"
    )]
    RequireSignatureWithoutKey {
        /// What was to be verified.
        which: String,
    },

    /// An encrypted key needs a password and none can be obtained.
    #[error(
        "no password for {purpose}: set {PASSWORD_ENV} (it may be empty) or run on a terminal \
         to be prompted"
    )]
    NoPassword {
        /// What the password was needed for, e.g. `private key k.key`.
        purpose: String,
    },

    /// The two passwords typed at the keygen prompt differ.
    #[error("the two passwords typed do not match; run keygen again")]
    PasswordMismatch,

    /// `keygen` refuses to overwrite an existing key file.
    #[error("{path} already exists; refusing to overwrite a key (choose another --output-key-prefix or move the file away)")]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done: `reading`, `writing`, `hashing`, …
        action: &'static str,
        /// The file (or a description such as `<stream>`).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The cryptographic backend failed where it should not (key generation, signing).
    #[error("{operation} failed inside the crypto library; this is a bug or a broken environment")]
    Crypto {
        /// What was being done.
        operation: &'static str,
    },
}

impl SigningError {
    /// ferry's exit code for this error: 1 for a verification finding (the signature does not
    /// check out), 2 for a usage or environment problem (wrong password, unusable key, I/O).
    pub fn exit_code(&self) -> i32 {
        match self {
            SigningError::BadSignature { .. }
            | SigningError::MalformedSignature { .. }
            | SigningError::MissingSignature { .. } => 1,
            _ => 2,
        }
    }
}

type Result<T, E = SigningError> = std::result::Result<T, E>;

fn io_error(action: &'static str, path: &Path, source: io::Error) -> SigningError {
    SigningError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

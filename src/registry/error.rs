//! Errors of the registry client, each naming the registry or URL and the next step.

use std::path::PathBuf;

/// Everything that can go wrong while talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry refused the credentials (401) or the access (403). Never retried.
    #[error(
        "authentication to registry {registry} failed: {reason}; check the user name and \
         password (--username with --password-stdin, or --authfile)"
    )]
    AuthFailed {
        /// `HOST[:PORT]` of the registry.
        registry: String,
        /// What the registry said, e.g. `401 Unauthorized on GET https://…/v2/`.
        reason: String,
    },
    /// The registry's TLS certificate did not verify against the trusted roots.
    #[error(
        "the TLS certificate of registry {registry} is not trusted ({detail}); pass the CA \
         certificate that signed it with --ca-file CA.pem (or --plain-http if the registry \
         serves plain HTTP)"
    )]
    UntrustedCertificate {
        /// `HOST[:PORT]` of the registry.
        registry: String,
        /// The TLS library's reason.
        detail: String,
    },
    /// Nothing answered at the registry's address.
    #[error(
        "cannot reach registry {registry} at {url}: {detail}; check the host name and port and \
         that the registry is running"
    )]
    Unreachable {
        /// `HOST[:PORT]` of the registry.
        registry: String,
        /// The URL that was tried.
        url: String,
        /// The connection error.
        detail: String,
    },
    /// The registry answered with a status that is neither success nor retryable.
    #[error("{method} {url} failed with HTTP {status}: {body}")]
    Status {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Start of the response body (the registry's error JSON).
        body: String,
    },
    /// A retryable failure persisted through every attempt.
    #[error("{method} {url} still failed after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// HTTP method (or the operation).
        method: String,
        /// Request URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Any other transport failure (not retried).
    #[error("{method} {url} failed: {detail}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// The transport error chain.
        detail: String,
    },
    /// The registry stored a manifest under a different digest than its bytes have.
    #[error(
        "registry {registry} answered digest {found} for {reference}, expected {expected}; \
         the registry rewrote the manifest"
    )]
    DigestMismatch {
        /// `HOST[:PORT]` of the registry.
        registry: String,
        /// The reference pushed (`repo:tag` or `repo@digest`).
        reference: String,
        /// The digest of the bytes sent.
        expected: String,
        /// The `Docker-Content-Digest` the registry answered.
        found: String,
    },
    /// Reading a blob from the source failed (not retried).
    #[error("reading blob {digest} from the source failed: {source}")]
    Source {
        /// The blob's digest.
        digest: crate::oci::digest::Digest,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA file given with `--ca-file` could not be read or parsed.
    #[error("cannot use CA file {path}: {detail}; it must hold PEM certificates")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// Credentials could not be read from the configured place.
    #[error("cannot read credentials for {registry} from {origin}: {detail}")]
    Credentials {
        /// `HOST[:PORT]` of the registry.
        registry: String,
        /// Where they were looked up (a file, a credential helper).
        origin: String,
        /// Why.
        detail: String,
    },
    /// The registry address could not be understood.
    #[error("invalid registry address {input:?}: {reason}; expected HOST[:PORT][/PREFIX]")]
    InvalidRegistry {
        /// What was given.
        input: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The registry has no such manifest or blob (HTTP 404).
    #[error(
        "registry {registry} has no {what} ({code}); check the repository name, the tag or \
         digest, and that the credentials may read it"
    )]
    NotFound {
        /// `HOST[:PORT]` of the registry.
        registry: String,
        /// `MANIFEST_UNKNOWN` or `BLOB_UNKNOWN`.
        code: &'static str,
        /// What was asked for, e.g. `manifest team/app:1.0` or `blob team/app@sha256:…`.
        what: String,
    },
    /// What the registry served does not match what was asked for: another digest, another
    /// size, a `Docker-Content-Digest` that contradicts the bytes.
    #[error("registry {registry} served {what} that does not match: {detail}")]
    ContentMismatch {
        /// `HOST[:PORT]` of the registry (or the chart repository's origin).
        registry: String,
        /// What was fetched, e.g. `manifest team/app:1.0`.
        what: String,
        /// How it differs.
        detail: String,
    },
    /// A document that ferry keeps in memory is larger than its limit.
    #[error(
        "{what} from {registry} is larger than the limit of {limit} bytes; it is not what \
         ferry expects there (check the reference)"
    )]
    TooLarge {
        /// `HOST[:PORT]` of the registry.
        registry: String,
        /// What was fetched.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A reference that cannot be asked for.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The registry answered a request in a way the protocol does not allow.
    #[error("{method} {url}: {detail}")]
    Protocol {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

impl RegistryError {
    /// The process exit code this error maps to: every registry error is an environment
    /// error (2).
    pub fn exit_code(&self) -> i32 {
        2
    }
}

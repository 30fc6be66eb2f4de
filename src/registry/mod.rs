//! Client for the OCI Distribution API: ping, auth, blob HEAD/mount/upload, manifest push,
//! and the pull direction (manifests, blobs as resumable streams, Helm charts).
//!
//! Built directly on `reqwest` (rustls, the same HTTP stack `oci-client` uses) rather than on
//! `oci-client`: a push needs the response headers of failed requests (`Retry-After`,
//! `WWW-Authenticate`, `Docker-Content-Digest`), a blob body re-opened from its source on every
//! retry, a cross-repository mount whose `202 Accepted` hands back an upload session, and an
//! exact count of the bytes put on the wire. See `bundle-spec/load.md` for the protocol walk.

mod auth;
mod body;
pub mod bundle_source;
pub mod charts;
mod client;
mod error;
mod pull;
pub mod push;
pub mod referrers;
mod retry;
pub mod serve;

pub use auth::{resolve_credentials, Credential, CredentialSource};
pub use client::{
    BlobOpener, BlobProgress, MountOutcome, RegistryClient, RegistryOptions, RequestStats,
};
pub use error::RegistryError;
pub use pull::{BlobReader, ManifestHead, PulledManifest};
pub use retry::RetryPolicy;

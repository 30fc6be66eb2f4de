//! The pull direction of the registry client: manifests by tag or digest, small blobs into
//! memory, and large blobs as a synchronous, resumable stream for the threaded bundle build.
//!
//! A blob stream runs as a task on the caller's tokio runtime and hands its pieces to the
//! reading thread through a bounded channel, so a few MiB at most are in memory whatever the
//! blob's size. After a failure part-way (a reset, a stall beyond the read timeout, a 5xx or
//! 429) it asks again with `Range: bytes=N-`; a registry that ignores the range answers 200,
//! and the first N bytes are skipped, so the reader never sees a byte twice. Redirects to a
//! storage back end are followed without credentials (see `RegistryClient::authorize`).

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::mpsc;

use super::auth::Access;
use super::client::Failure;
use super::{RegistryClient, RegistryError};
use crate::oci::digest::{Digest, Hasher};
use crate::oci::document::{MANIFEST_ACCEPT, MAX_JSON, OCI_INDEX, OCI_MANIFEST};

/// Pieces of a blob stream waiting for the reader; with the HTTP stack's reads of at most a
/// few hundred KiB this bounds a stream's memory to a few MiB.
const STREAM_DEPTH: usize = 8;

/// A manifest or index as the registry served it.
#[derive(Debug, Clone)]
pub struct PulledManifest {
    /// The exact bytes (never re-serialised: their digest is the manifest's identity).
    pub bytes: Vec<u8>,
    /// The `Content-Type`, or the document's own `mediaType` when the registry sent a
    /// generic type or none.
    pub media_type: String,
    /// The sha256 of `bytes`.
    pub digest: Digest,
}

/// What a `HEAD` of a manifest tells: enough to pin a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

impl RegistryClient {
    /// `GET /v2/REPO/manifests/REFERENCE`, a tag or a `sha256:` digest, accepting OCI
    /// manifests and indexes and Docker schema 2 manifests and manifest lists, at most
    /// [`MAX_JSON`] bytes. A digest reference must match the bytes' digest, and so must a
    /// `Docker-Content-Digest` header when the registry sends one.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<PulledManifest, RegistryError> {
        let pinned = pinned_digest(reference)?;
        let what = manifest_name(repo, reference);
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let (headers, bytes) = self
            .get_limited(
                &url,
                &Access::pull(repo),
                Some(MANIFEST_ACCEPT),
                MAX_JSON,
                &what,
            )
            .await
            .map_err(|e| self.not_found(e, "MANIFEST_UNKNOWN", &what))?;
        let digest = Digest::of(&bytes);
        let mismatch = |detail: String| RegistryError::ContentMismatch {
            registry: self.registry().to_string(),
            what: what.clone(),
            detail,
        };
        if let Some(want) = pinned {
            if want != digest {
                return Err(mismatch(format!("its bytes hash to {digest}")));
            }
        }
        if let Some(said) = header(&headers, "Docker-Content-Digest") {
            // Another algorithm (sha512:) cannot be checked here; the bytes' digest stands.
            if said.starts_with("sha256:") && said != digest.to_string() {
                return Err(mismatch(format!(
                    "its Docker-Content-Digest header says {said}, its bytes hash to {digest}"
                )));
            }
        }
        let media_type = media_type_of(header(&headers, CONTENT_TYPE.as_str()), &bytes);
        Ok(PulledManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `HEAD /v2/REPO/manifests/TAG`: the digest, media type and size the tag points at,
    /// without the body. A registry that answers the `HEAD` without `Docker-Content-Digest`
    /// is asked with a `GET` instead.
    pub async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<ManifestHead, RegistryError> {
        let what = manifest_name(repo, tag);
        let url = self.url(&format!("v2/{repo}/manifests/{tag}"));
        let Some(headers) = self
            .head(&url, &Access::pull(repo), Some(MANIFEST_ACCEPT))
            .await?
        else {
            return Err(RegistryError::NotFound {
                registry: self.registry().to_string(),
                code: "MANIFEST_UNKNOWN",
                what,
            });
        };
        let digest = header(&headers, "Docker-Content-Digest").and_then(|d| d.parse().ok());
        let size = header(&headers, "Content-Length").and_then(|n| n.parse().ok());
        let media_type = header(&headers, CONTENT_TYPE.as_str())
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|t| !generic_type(t));
        match (digest, size, media_type) {
            (Some(digest), Some(size), Some(media_type)) => Ok(ManifestHead {
                digest,
                media_type,
                size,
            }),
            _ => {
                let m = self.get_manifest(repo, tag).await?;
                Ok(ManifestHead {
                    digest: m.digest,
                    media_type: m.media_type,
                    size: m.bytes.len() as u64,
                })
            }
        }
    }

    /// `GET /v2/REPO/blobs/DIGEST` into memory, for small blobs (a config, a Helm chart):
    /// at most `limit` bytes, checked against `digest`.
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {repo}@{digest}");
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let (_, bytes) = self
            .get_limited(&url, &Access::pull(repo), None, limit, &what)
            .await
            .map_err(|e| self.not_found(e, "BLOB_UNKNOWN", &what))?;
        let found = Digest::of(&bytes);
        if &found != digest {
            return Err(RegistryError::ContentMismatch {
                registry: self.registry().to_string(),
                what,
                detail: format!("its bytes hash to {found}"),
            });
        }
        Ok(bytes)
    }

    /// A synchronous reader of the blob `digest` (of `size` bytes) in `repo`, for threads
    /// outside the runtime `rt` (it blocks on a channel; never call `read` on a runtime
    /// thread). See [`BlobReader`].
    pub fn blob_reader(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> BlobReader {
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        let job = BlobJob {
            client: self.clone(),
            repo: repo.to_string(),
            digest: digest.clone(),
            size,
        };
        let task = rt.spawn(async move {
            if let Err(e) = job.run(&tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        BlobReader {
            rx,
            piece: Bytes::new(),
            hasher: Hasher::new(),
            received: 0,
            size,
            digest: digest.clone(),
            what: format!("blob {repo}@{digest} from {}", self.registry()),
            end: End::Open,
            task,
        }
    }

    /// A `GET` of at most `limit` bytes into memory, retried: the response headers and body.
    pub(super) async fn get_limited(
        &self,
        url: &Url,
        access: &Access,
        accept: Option<&'static str>,
        limit: u64,
        what: &str,
    ) -> Result<(HeaderMap, Vec<u8>), RegistryError> {
        self.with_retry("GET", url, |_| async {
            let mut r = self
                .send(Method::GET, url, access, |b| match accept {
                    Some(a) => b.header(ACCEPT, a),
                    None => b,
                })
                .await?;
            let too_large = || {
                Failure::Fatal(RegistryError::TooLarge {
                    registry: self.registry().to_string(),
                    what: what.to_string(),
                    limit,
                })
            };
            if r.content_length().is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let headers = r.headers().clone();
            let mut body = Vec::new();
            while let Some(c) = r
                .chunk()
                .await
                .map_err(|e| self.classify(&Method::GET, url, e))?
            {
                if body.len() as u64 + c.len() as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&c);
            }
            Ok((headers, body))
        })
        .await
    }

    /// Turns a 404 into [`RegistryError::NotFound`]; other errors pass.
    pub(super) fn not_found(
        &self,
        e: RegistryError,
        code: &'static str,
        what: &str,
    ) -> RegistryError {
        match e {
            RegistryError::Status { status: 404, .. } => RegistryError::NotFound {
                registry: self.registry().to_string(),
                code,
                what: what.to_string(),
            },
            e => e,
        }
    }
}

/// `repo:tag` or `repo@digest`.
fn manifest_name(repo: &str, reference: &str) -> String {
    if reference.contains(':') {
        format!("manifest {repo}@{reference}")
    } else {
        format!("manifest {repo}:{reference}")
    }
}

/// The digest a reference pins, if it is a digest; a digest of another algorithm, or a
/// malformed one, is refused (ferry checks every manifest it pulls).
fn pinned_digest(reference: &str) -> Result<Option<Digest>, RegistryError> {
    if !reference.contains(':') {
        if reference.is_empty() || reference.len() > 128 || reference.contains('/') {
            return Err(RegistryError::InvalidReference {
                reference: reference.to_string(),
                reason: "a tag is 1 to 128 characters of letters, digits, `_`, `.` and `-`".into(),
            });
        }
        return Ok(None);
    }
    reference
        .parse()
        .map(Some)
        .map_err(|_| RegistryError::InvalidReference {
            reference: reference.to_string(),
            reason: "expected a tag or a sha256:<64 lowercase hex> digest".into(),
        })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// A `Content-Type` that says nothing about which document it is.
fn generic_type(t: &str) -> bool {
    matches!(
        t,
        "" | "application/json" | "text/plain" | "application/octet-stream"
    )
}

/// The media type of a manifest: the `Content-Type` unless it is generic, else the
/// document's `mediaType`, else (umoci writes none) an index when it lists `manifests`.
fn media_type_of(content_type: Option<&str>, bytes: &[u8]) -> String {
    let ct = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if !generic_type(ct) {
        return ct.to_string();
    }
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape {
            media_type: Some(m),
            ..
        }) if !m.is_empty() => m,
        Ok(Shape {
            manifests: Some(_), ..
        }) => OCI_INDEX.to_string(),
        _ => OCI_MANIFEST.to_string(),
    }
}

// ---- the blob stream --------------------------------------------------------------------------

/// A blob as a synchronous `Read`: exactly the blob's size in bytes, each byte once, checked
/// against its digest at the end (a short, long or corrupt blob is an error naming it, never
/// an early end of file). Errors are `std::io::Error`s whose inner error
/// (`get_ref()`/`into_inner()`) is a [`RegistryError`] when the registry was at fault.
/// Dropping the reader stops the download.
pub struct BlobReader {
    rx: mpsc::Receiver<Result<Bytes, RegistryError>>,
    piece: Bytes,
    hasher: Hasher,
    received: u64,
    size: u64,
    digest: Digest,
    what: String,
    end: End,
    task: tokio::task::JoinHandle<()>,
}

/// Where a [`BlobReader`] stands.
enum End {
    /// Pieces are still coming.
    Open,
    /// The whole blob was read and checked.
    Done,
    /// It failed; every further read repeats the error.
    Failed(String),
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("what", &self.what)
            .field("received", &self.received)
            .field("size", &self.size)
            .finish()
    }
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlobReader {
    fn fail(&mut self, detail: String) -> std::io::Error {
        self.end = End::Failed(detail.clone());
        std::io::Error::new(std::io::ErrorKind::InvalidData, detail)
    }

    /// The end of the stream: the size and digest must be right.
    fn finish(&mut self) -> std::io::Result<usize> {
        if self.received != self.size {
            let d = format!(
                "{} ended after {} of {} bytes",
                self.what, self.received, self.size
            );
            return Err(self.fail(d));
        }
        let found = std::mem::take(&mut self.hasher).finish();
        if found != self.digest {
            let d = format!("{} does not match its digest: its bytes hash to {found}; the registry served corrupt data", self.what);
            return Err(self.fail(d));
        }
        self.end = End::Done;
        Ok(0)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.piece.is_empty() {
                let n = buf.len().min(self.piece.len());
                buf[..n].copy_from_slice(&self.piece.split_to(n));
                return Ok(n);
            }
            match &self.end {
                End::Done => return Ok(0),
                End::Failed(d) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        d.clone(),
                    ))
                }
                End::Open => {}
            }
            match self.rx.blocking_recv() {
                Some(Ok(p)) => {
                    self.received += p.len() as u64;
                    self.hasher.update(&p);
                    self.piece = p;
                }
                Some(Err(e)) => {
                    self.end = End::Failed(e.to_string());
                    return Err(std::io::Error::other(e));
                }
                None => return self.finish(),
            }
        }
    }
}

/// The download behind a [`BlobReader`].
struct BlobJob {
    client: Arc<RegistryClient>,
    repo: String,
    digest: Digest,
    size: u64,
}

type Pieces = mpsc::Sender<Result<Bytes, RegistryError>>;

impl BlobJob {
    /// Attempts until the whole blob went to `tx`: the retry policy's attempts count the
    /// failures in a row without progress, so a long blob on a flaky line still arrives.
    async fn run(&self, tx: &Pieces) -> Result<(), RegistryError> {
        let c = &self.client;
        let url = c.url(&format!("v2/{}/blobs/{}", self.repo, self.digest));
        let max = c.opts.retry.max_attempts.max(1);
        let mut delivered = 0u64;
        let mut failures = 0u32;
        loop {
            let before = delivered;
            match self.attempt(&url, &mut delivered, tx).await {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry { err, retry_after }) => {
                    if delivered > before {
                        failures = 0;
                    }
                    failures += 1;
                    if failures >= max {
                        return Err(RegistryError::RetriesExhausted {
                            method: format!("download of blob {} from", self.digest),
                            url: url.to_string(),
                            attempts: failures,
                            last: err.to_string(),
                        });
                    }
                    c.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(c.opts.retry.delay(failures, retry_after)).await;
                }
            }
        }
    }

    fn mismatch(&self, detail: String) -> Failure {
        Failure::Fatal(RegistryError::ContentMismatch {
            registry: self.client.registry().to_string(),
            what: format!("blob {}@{}", self.repo, self.digest),
            detail,
        })
    }

    /// One request: from byte `delivered` on (a `Range` request after the first).
    async fn attempt(&self, url: &Url, delivered: &mut u64, tx: &Pieces) -> Result<(), Failure> {
        let c = &self.client;
        let from = *delivered;
        let what = format!("blob {}@{}", self.repo, self.digest);
        let mut r = c
            .send(Method::GET, url, &Access::pull(&self.repo), |b| {
                if from > 0 {
                    b.header(RANGE, format!("bytes={from}-"))
                } else {
                    b
                }
            })
            .await
            .map_err(|f| match f {
                Failure::Fatal(e) => Failure::Fatal(c.not_found(e, "BLOB_UNKNOWN", &what)),
                f => f,
            })?;
        let mut skip = match r.status() {
            StatusCode::PARTIAL_CONTENT => {
                let start = header(r.headers(), CONTENT_RANGE.as_str())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(from) {
                    return Err(self.mismatch(format!(
                        "asked for bytes {from}- and got Content-Range {:?}",
                        header(r.headers(), CONTENT_RANGE.as_str()).unwrap_or_default()
                    )));
                }
                0
            }
            StatusCode::OK => from,
            s => {
                return Err(Failure::Fatal(RegistryError::Protocol {
                    method: "GET".into(),
                    url: url.to_string(),
                    detail: format!("expected 200 or 206, got {s}"),
                }))
            }
        };
        let want = self.size - from + skip;
        if let Some(n) = r.content_length().filter(|n| *n != want) {
            return Err(self.mismatch(format!(
                "the registry sends {n} bytes where {want} were expected (the blob has {} bytes)",
                self.size
            )));
        }
        while let Some(mut piece) = r
            .chunk()
            .await
            .map_err(|e| c.classify(&Method::GET, r.url(), e))?
        {
            let k = skip.min(piece.len() as u64);
            skip -= k;
            let piece = piece.split_off(k as usize);
            if piece.is_empty() {
                continue;
            }
            if *delivered + piece.len() as u64 > self.size {
                return Err(self.mismatch(format!("more than its {} bytes", self.size)));
            }
            *delivered += piece.len() as u64;
            if tx.send(Ok(piece)).await.is_err() {
                return Ok(()); // the reader is gone
            }
        }
        if *delivered < self.size {
            return Err(Failure::Retry {
                err: RegistryError::Transport {
                    method: "GET".into(),
                    url: r.url().to_string(),
                    detail: format!("the body ended after {} of {} bytes", delivered, self.size),
                },
                retry_after: None,
            });
        }
        Ok(())
    }
}

//! Pushing images to a registry: the plan (what goes where, in which order) and its executor.
//!
//! The executor walks each image from its leaves up: for an index its child manifests
//! first, for every manifest its config and layers first (HEAD, skip if present; mount from
//! another repository of the same push; else a streamed upload), then each manifest by
//! digest with its original bytes, and the tag last. A tag therefore never points at
//! something incomplete, and a re-run after an interruption finds the finished blobs by HEAD
//! and sends only the rest. `bundle-spec/load.md` is the normative description.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::oci::digest::Digest;
use crate::oci::document::{self, Document, REF_NAME};
use crate::registry::{BlobProgress, MountOutcome, RegistryClient, RegistryError, RegistryOptions};

/// One image to push: where it came from and where it goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageToPush {
    /// The original full reference, e.g. `registry.permit.io/agent-security/gateway:1.4.0`.
    pub source_ref: String,
    /// Repository in the target registry, prefix included: `PREFIX/agent-security/gateway`.
    pub target_repo: String,
    /// Tag to set; empty pushes by digest only.
    pub tag: String,
    /// Digest of the manifest or index.
    pub digest: Digest,
    /// Media type of that manifest or index.
    pub media_type: String,
}

/// Where blobs and manifests are read from (a bundle, an extracted folder, an OCI layout …).
pub trait BlobSource: Send + Sync {
    /// Opens a blob for streaming; called again for every upload attempt.
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>>;
    /// The blob's size if known without reading it.
    fn blob_size(&self, digest: &Digest) -> Option<u64>;
    /// The bytes of a manifest or index (small; read whole).
    fn read_manifest(&self, digest: &Digest) -> io::Result<Vec<u8>>;
}

/// What `push` does, apart from the images.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The target registry and how to talk to it.
    pub registry: RegistryOptions,
    /// Blobs (and images) in flight at once; at least 1.
    pub concurrency: usize,
    /// Only compute and return the plan; no network.
    pub dry_run: bool,
}

impl PushOptions {
    /// Defaults: concurrency 4, no dry run.
    pub fn new(registry: RegistryOptions) -> Self {
        PushOptions {
            registry,
            concurrency: 4,
            dry_run: false,
        }
    }
}

/// How a blob ended up in the target repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobAction {
    /// Sent over the wire.
    Uploaded,
    /// Already there (HEAD answered 200).
    Skipped,
    /// Linked from another repository of the same push.
    Mounted,
}

/// Receives progress events; the CLI maps them to one overall bar plus per-blob bars.
/// Every method has an empty default. Calls come from several tasks at once.
pub trait PushProgress: Send + Sync {
    /// The plan is known: `total_bytes` over `blobs` distinct (repository, blob) pairs.
    fn planned(&self, _total_bytes: u64, _blobs: usize) {}
    /// Work on a blob begins (HEAD first).
    fn blob_started(&self, _digest: &Digest, _size: u64) {}
    /// `n` more bytes of the blob went out.
    fn blob_bytes(&self, _digest: &Digest, _n: u64) {}
    /// The blob's upload starts over after a retryable failure.
    fn blob_restarted(&self, _digest: &Digest) {}
    /// The blob is in the repository.
    fn blob_done(&self, _digest: &Digest, _size: u64, _action: BlobAction) {}
    /// A manifest was pushed under `reference` (`host/repo:tag` or `host/repo@digest`).
    fn manifest_pushed(&self, _reference: &str, _digest: &Digest) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl PushProgress for NoProgress {}

/// A reference that now exists in the target registry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Pushed {
    /// `HOST/REPO:TAG` (or `HOST/REPO@DIGEST` for an untagged image).
    pub reference: String,
    /// The manifest or index digest it resolves to.
    pub digest: Digest,
}

/// The plan: every image with its manifests (in push order) and blobs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Plan {
    /// Target `HOST[:PORT]`.
    pub registry: String,
    /// Images in the order given.
    pub images: Vec<PlannedImage>,
    /// Distinct (repository, blob) pairs.
    pub blobs: usize,
    /// Their total size in bytes.
    pub total_bytes: u64,
}

/// One image of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedImage {
    /// The original reference.
    pub source_ref: String,
    /// `HOST/REPO:TAG` (or `@DIGEST`).
    pub target: String,
    /// Target repository.
    pub repo: String,
    /// Tag (may be empty).
    pub tag: String,
    /// Manifest or index digest.
    pub digest: Digest,
    /// Manifests in push order: children before the index that lists them.
    pub manifests: Vec<PlannedManifest>,
    /// Distinct blobs (configs and layers) of all those manifests.
    pub blobs: Vec<PlannedBlob>,
}

/// A manifest or index to push by digest.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedManifest {
    /// Digest.
    pub digest: Digest,
    /// Content-Type to push it with.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// A blob to make present.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedBlob {
    /// Digest.
    pub digest: Digest,
    /// Size in bytes (from the descriptor).
    pub size: u64,
    /// Media type from the descriptor.
    pub media_type: String,
}

/// What a push did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PushReport {
    /// Every reference pushed, with its digest.
    pub pushed: Vec<Pushed>,
    /// Blobs sent.
    pub blobs_uploaded: u64,
    /// Bytes of the blobs sent (successful attempts).
    pub bytes_uploaded: u64,
    /// Blob bytes put on the wire, failed attempts included.
    pub bytes_sent: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Bytes of the blobs already present.
    pub bytes_skipped: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Manifest PUTs (by digest and by tag).
    pub manifests_pushed: u64,
    /// HTTP requests made.
    pub requests: u64,
    /// Attempts retried.
    pub retries: u64,
    /// The plan that was executed (or, with `dry_run`, only computed).
    pub plan: Plan,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Talking to the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A manifest could not be read from the source.
    #[error("cannot read manifest {digest} of {image} from the source: {source}")]
    Source {
        /// The image being pushed.
        image: String,
        /// The manifest digest.
        digest: Digest,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A manifest is not valid JSON of the expected shape, or a digest is malformed.
    #[error("manifest {digest} of {image} is invalid: {detail}")]
    BadManifest {
        /// The image being pushed.
        image: String,
        /// The manifest digest.
        digest: Digest,
        /// What is wrong.
        detail: String,
    },
    /// The bytes the source gave for a manifest do not hash to its digest.
    #[error("manifest {digest} of {image} hashes to {found} in the source; the source is corrupt")]
    ManifestDigest {
        /// The image being pushed.
        image: String,
        /// The expected digest.
        digest: Digest,
        /// The digest of the bytes read.
        found: Digest,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
}

impl PushError {
    /// Process exit code: all push failures are environment errors (2).
    pub fn exit_code(&self) -> i32 {
        2
    }
}

// ---- planning ------------------------------------------------------------------------------

/// Computes the plan: reads every manifest (checking its digest), lists blobs and the push
/// order. Needs no network.
pub fn plan(
    registry: &str,
    source: &dyn BlobSource,
    images: &[ImageToPush],
) -> Result<Plan, PushError> {
    let mut plan = Plan {
        registry: registry.to_string(),
        ..Plan::default()
    };
    let mut seen_pairs = HashSet::new();
    for img in images {
        let mut manifests = Vec::new();
        let mut blobs = Vec::new();
        let mut seen = HashSet::new();
        walk(
            source,
            img,
            &img.digest,
            &img.media_type,
            0,
            &mut manifests,
            &mut blobs,
            &mut seen,
        )?;
        for b in &blobs {
            if seen_pairs.insert((img.target_repo.clone(), b.digest.clone())) {
                plan.blobs += 1;
                plan.total_bytes += b.size;
            }
        }
        let target = if img.tag.is_empty() {
            format!("{registry}/{}@{}", img.target_repo, img.digest)
        } else {
            format!("{registry}/{}:{}", img.target_repo, img.tag)
        };
        plan.images.push(PlannedImage {
            source_ref: img.source_ref.clone(),
            target,
            repo: img.target_repo.clone(),
            tag: img.tag.clone(),
            digest: img.digest.clone(),
            manifests,
            blobs,
        });
    }
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    source: &dyn BlobSource,
    img: &ImageToPush,
    digest: &Digest,
    media_type: &str,
    depth: usize,
    manifests: &mut Vec<PlannedManifest>,
    blobs: &mut Vec<PlannedBlob>,
    seen: &mut HashSet<Digest>,
) -> Result<(), PushError> {
    let bad = |detail: String| PushError::BadManifest {
        image: img.source_ref.clone(),
        digest: digest.clone(),
        detail,
    };
    if !seen.insert(digest.clone()) {
        return Ok(());
    }
    if depth > 4 {
        return Err(bad("indexes nested too deeply".into()));
    }
    let bytes = read_manifest_checked(source, img, digest)?;
    let (media_type, doc) =
        Document::parse(&bytes, Some(media_type)).map_err(|e| bad(e.to_string()))?;
    match doc {
        Document::Index(index) => {
            for child in index.manifests() {
                let child_digest: Digest = child
                    .digest()
                    .as_ref()
                    .parse()
                    .map_err(|e| bad(format!("child manifest: {e}")))?;
                walk(
                    source,
                    img,
                    &child_digest,
                    child.media_type().as_ref(),
                    depth + 1,
                    manifests,
                    blobs,
                    seen,
                )?;
            }
        }
        Document::Manifest(manifest) => {
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                let blob_type = d.media_type().as_ref();
                // Foreign (non-distributable) layers are fetched from their URLs by the
                // runtime and are not ours to push.
                if document::is_non_distributable(d) {
                    continue;
                }
                let blob: Digest = d
                    .digest()
                    .as_ref()
                    .parse()
                    .map_err(|e| bad(format!("blob digest: {e}")))?;
                if seen.insert(blob.clone()) {
                    blobs.push(PlannedBlob {
                        digest: blob,
                        size: d.size(),
                        media_type: blob_type.to_string(),
                    });
                }
            }
        }
    }
    manifests.push(PlannedManifest {
        digest: digest.clone(),
        media_type,
        size: bytes.len() as u64,
    });
    Ok(())
}

fn read_manifest_checked(
    source: &dyn BlobSource,
    img: &ImageToPush,
    digest: &Digest,
) -> Result<Vec<u8>, PushError> {
    let bytes = source
        .read_manifest(digest)
        .map_err(|e| PushError::Source {
            image: img.source_ref.clone(),
            digest: digest.clone(),
            source: e,
        })?;
    if bytes.len() as u64 > document::MAX_JSON {
        return Err(PushError::BadManifest {
            image: img.source_ref.clone(),
            digest: digest.clone(),
            detail: format!(
                "{} bytes is larger than the 4 MiB registries accept",
                bytes.len()
            ),
        });
    }
    let found = Digest::of(&bytes);
    if found != *digest {
        return Err(PushError::ManifestDigest {
            image: img.source_ref.clone(),
            digest: digest.clone(),
            found,
        });
    }
    Ok(bytes)
}

// ---- execution -----------------------------------------------------------------------------

/// Whether the registry already serves every image under its tag (or digest) with the
/// expected digest: then a push would send nothing, and the source need not be read.
pub fn all_present(opts: &PushOptions, images: &[ImageToPush]) -> Result<bool, PushError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PushError::Runtime)?;
    rt.block_on(async {
        let client = RegistryClient::new(opts.registry.clone())?;
        client.ping().await?;
        for img in images {
            let reference = if img.tag.is_empty() {
                img.digest.to_string()
            } else {
                img.tag.clone()
            };
            match client.manifest_digest(&img.target_repo, &reference).await? {
                Some(d) if d == img.digest => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    })
}

/// Pushes `images` from `source`, blocking the calling thread on an internal runtime.
pub fn push(
    opts: &PushOptions,
    source: Arc<dyn BlobSource>,
    images: &[ImageToPush],
    progress: Arc<dyn PushProgress>,
) -> Result<PushReport, PushError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(PushError::Runtime)?;
    rt.block_on(push_async(opts, source, images, progress))
}

/// Pushes `images` from `source` (async form of [`push`]); with `dry_run`, only plans.
pub async fn push_async(
    opts: &PushOptions,
    source: Arc<dyn BlobSource>,
    images: &[ImageToPush],
    progress: Arc<dyn PushProgress>,
) -> Result<PushReport, PushError> {
    let registry = opts.registry.registry.clone();
    let plan = {
        let source = source.clone();
        let images = images.to_vec();
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || plan(&registry, source.as_ref(), &images))
            .await
            .map_err(|e| PushError::Runtime(io::Error::other(e)))??
    };
    if opts.dry_run {
        return Ok(PushReport {
            plan,
            ..PushReport::default()
        });
    }
    progress.planned(plan.total_bytes, plan.blobs);
    let client = RegistryClient::new(opts.registry.clone())?;
    client.ping().await?;
    let exec = Exec {
        client,
        source,
        progress,
        slots: tokio::sync::Semaphore::new(opts.concurrency.max(1)),
        locks: Mutex::default(),
        present: Mutex::default(),
        c: Counters::default(),
    };
    let pushed: Vec<Pushed> = futures_util::stream::iter(plan.images.iter())
        .map(|img| exec.push_image(img))
        .buffered(opts.concurrency.max(1))
        .try_collect()
        .await?;
    let stats = exec.client.stats();
    let c = &exec.c;
    Ok(PushReport {
        pushed,
        blobs_uploaded: c.uploaded.load(Ordering::Relaxed),
        bytes_uploaded: c.bytes_uploaded.load(Ordering::Relaxed),
        bytes_sent: stats.bytes_sent.load(Ordering::Relaxed),
        blobs_skipped: c.skipped.load(Ordering::Relaxed),
        bytes_skipped: c.bytes_skipped.load(Ordering::Relaxed),
        blobs_mounted: c.mounted.load(Ordering::Relaxed),
        manifests_pushed: c.manifests.load(Ordering::Relaxed),
        requests: stats.requests.load(Ordering::Relaxed),
        retries: stats.retries.load(Ordering::Relaxed),
        plan,
    })
}

#[derive(Default)]
struct Counters {
    uploaded: AtomicU64,
    bytes_uploaded: AtomicU64,
    skipped: AtomicU64,
    bytes_skipped: AtomicU64,
    mounted: AtomicU64,
    manifests: AtomicU64,
}

struct Exec {
    client: RegistryClient,
    source: Arc<dyn BlobSource>,
    progress: Arc<dyn PushProgress>,
    /// Bounds the blobs in flight.
    slots: tokio::sync::Semaphore,
    /// One lock per digest, so that a blob shared by two repositories is uploaded once and
    /// mounted into the other.
    locks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Repositories of this push known to hold each blob.
    present: Mutex<HashMap<Digest, Vec<String>>>,
    c: Counters,
}

impl Exec {
    async fn push_image(&self, img: &PlannedImage) -> Result<Pushed, PushError> {
        futures_util::future::try_join_all(
            img.blobs.iter().map(|b| self.ensure_blob(&img.repo, b)),
        )
        .await?;
        let registry = self.client.registry().to_string();
        let image = ImageToPush {
            source_ref: img.source_ref.clone(),
            target_repo: img.repo.clone(),
            tag: img.tag.clone(),
            digest: img.digest.clone(),
            media_type: String::new(),
        };
        for (i, m) in img.manifests.iter().enumerate() {
            let bytes = {
                let source = self.source.clone();
                let image = image.clone();
                let digest = m.digest.clone();
                tokio::task::spawn_blocking(move || {
                    read_manifest_checked(source.as_ref(), &image, &digest)
                })
                .await
                .map_err(|e| PushError::Runtime(io::Error::other(e)))??
            };
            self.client
                .put_manifest(
                    &img.repo,
                    &m.digest.to_string(),
                    &m.media_type,
                    &bytes,
                    &m.digest,
                )
                .await?;
            self.c.manifests.fetch_add(1, Ordering::Relaxed);
            self.progress
                .manifest_pushed(&format!("{registry}/{}@{}", img.repo, m.digest), &m.digest);
            let is_root = i + 1 == img.manifests.len();
            if is_root && !img.tag.is_empty() {
                self.client
                    .put_manifest(&img.repo, &img.tag, &m.media_type, &bytes, &m.digest)
                    .await?;
                self.c.manifests.fetch_add(1, Ordering::Relaxed);
                self.progress.manifest_pushed(&img.target, &m.digest);
            }
        }
        Ok(Pushed {
            reference: img.target.clone(),
            digest: img.digest.clone(),
        })
    }

    async fn ensure_blob(&self, repo: &str, b: &PlannedBlob) -> Result<(), PushError> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(b.digest.clone())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let holders = self
            .present
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&b.digest)
            .cloned()
            .unwrap_or_default();
        if holders.iter().any(|r| r == repo) {
            return Ok(());
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("semaphore is never closed");
        self.progress.blob_started(&b.digest, b.size);
        let action = self.place_blob(repo, b, &holders).await?;
        match action {
            BlobAction::Skipped => {
                self.c.skipped.fetch_add(1, Ordering::Relaxed);
                self.c.bytes_skipped.fetch_add(b.size, Ordering::Relaxed);
            }
            BlobAction::Mounted => {
                self.c.mounted.fetch_add(1, Ordering::Relaxed);
            }
            BlobAction::Uploaded => {
                self.c.uploaded.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.present
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(b.digest.clone())
            .or_default()
            .push(repo.to_string());
        self.progress.blob_done(&b.digest, b.size, action);
        Ok(())
    }

    async fn place_blob(
        &self,
        repo: &str,
        b: &PlannedBlob,
        holders: &[String],
    ) -> Result<BlobAction, PushError> {
        if self.client.blob_exists(repo, &b.digest).await? {
            return Ok(BlobAction::Skipped);
        }
        let mut session = None;
        if let Some(from) = holders.first() {
            match self.client.mount_blob(repo, &b.digest, from).await? {
                MountOutcome::Mounted => return Ok(BlobAction::Mounted),
                MountOutcome::Upload(url) => session = Some(url),
            }
        }
        let source = self.source.clone();
        let digest = b.digest.clone();
        let open = move || source.open_blob(&digest);
        let sink: Arc<dyn BlobProgress> = Arc::new(BlobSink {
            progress: self.progress.clone(),
            digest: b.digest.clone(),
        });
        let n = self
            .client
            .upload_blob(repo, &b.digest, Some(b.size), &open, session, sink)
            .await?;
        self.c.bytes_uploaded.fetch_add(n, Ordering::Relaxed);
        Ok(BlobAction::Uploaded)
    }
}

struct BlobSink {
    progress: Arc<dyn PushProgress>,
    digest: Digest,
}

impl BlobProgress for BlobSink {
    fn sent(&self, n: u64) {
        self.progress.blob_bytes(&self.digest, n);
    }
    fn restart(&self) {
        self.progress.blob_restarted(&self.digest);
    }
}

// ---- an OCI image layout as a source ---------------------------------------------------------

/// An OCI image layout folder (`oci-layout`, `index.json`, `blobs/sha256/…`) as a
/// [`BlobSource`].
#[derive(Debug, Clone)]
pub struct LayoutSource {
    root: PathBuf,
}

/// One entry of a layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    /// `org.opencontainers.image.ref.name`, if set.
    pub name: Option<String>,
    /// Digest of the manifest or index.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
}

impl LayoutSource {
    /// Opens the layout at `root` (which must hold `index.json`).
    pub fn open(root: impl AsRef<Path>) -> io::Result<LayoutSource> {
        let root = root.as_ref().to_path_buf();
        if !root.join("index.json").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not an OCI image layout (no index.json)",
                    root.display()
                ),
            ));
        }
        Ok(LayoutSource { root })
    }

    /// The entries of `index.json`.
    pub fn refs(&self) -> io::Result<Vec<LayoutRef>> {
        let path = self.root.join("index.json");
        let index = document::read_layout_index(&std::fs::read(&path)?).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        index
            .manifests()
            .iter()
            .map(|d| {
                let digest = d.digest().as_ref().parse().map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                Ok(LayoutRef {
                    name: document::annotation(d, REF_NAME).map(str::to_string),
                    digest,
                    media_type: d.media_type().to_string(),
                })
            })
            .collect()
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }
}

impl BlobSource for LayoutSource {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        let path = self.blob_path(digest);
        let f = std::fs::File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Box::new(f))
    }

    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.blob_path(digest))
            .ok()
            .map(|m| m.len())
    }

    fn read_manifest(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        let path = self.blob_path(digest);
        std::fs::read(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

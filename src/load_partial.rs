//! `ferry load` of a delta bundle or of one part of a split bundle.
//!
//! A delta leaves blobs out: before anything is sent, every omitted blob is asked for with
//! a `HEAD` in each target repository that needs it, and the load stops, listing the
//! missing ones, unless all are there. A part pushes the blobs it holds, then every image
//! whose blobs are all in the registry by then (registries refuse a manifest before its
//! blobs); every part carries all manifests, so after the last part, in whatever order,
//! every image is there.

use crate::bundle::delta::{HaveBlob, HaveList};
use crate::bundle::partial::{Kind, PartialEvidence, PartialHead};
use crate::bundle::verify::{VerifyError, VerifyOptions};
use crate::load::{referrers_to_push, to_push, LoadError, LoadInput};
use crate::oci::digest::Digest;
use crate::registry::bundle_source::{index_partial, IndexedSource, MEMORY_BUDGET};
use crate::registry::push::{
    self, BlobSource, ImageToPush, Plan, PushOptions, PushProgress, PushReport,
};
use crate::registry::referrers::{push_referrers, ReferrerPush, ReferrersReport};
use crate::registry::{BlobProgress, RegistryClient, RegistryError};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Why a delta or a part could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PartialLoadError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Push(#[from] push::PushError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{registry} lacks {} blob(s) that the delta {delta} leaves out; nothing was pushed:\n{}\nload the bundle the delta was built against first, or ask the vendor for a delta built against `ferry load --have-list` of this registry", missing.len(), missing.iter().map(|m| format!("  {}/{}@{} ({} bytes)", registry, m.repo, m.digest, m.size)).collect::<Vec<_>>().join("\n"))]
    MissingBlobs {
        registry: String,
        delta: String,
        missing: Vec<MissingBlob>,
    },
}

impl PartialLoadError {
    /// 1 for a finding (a file that fails its checks, a registry that lacks omitted blobs),
    /// 2 for the environment.
    pub fn exit_code(&self) -> i32 {
        match self {
            PartialLoadError::Load(e) => e.exit_code(),
            PartialLoadError::MissingBlobs { .. } => 1,
            PartialLoadError::Push(e) => e.exit_code(),
            PartialLoadError::Registry(_) => 2,
        }
    }
}

impl From<VerifyError> for PartialLoadError {
    fn from(e: VerifyError) -> Self {
        PartialLoadError::Load(LoadError::Verify(e))
    }
}

/// A blob a repository of the target lacks.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingBlob {
    pub repo: String,
    pub digest: Digest,
    pub size: u64,
}

/// What loading a delta or a part did.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialLoad {
    pub evidence: PartialEvidence,
    /// The push of every image whose blobs are all in the registry now.
    pub report: PushReport,
    /// The push of the artifacts attached to the images, once every image is there.
    pub referrers: ReferrersReport,
    /// Blobs of images still waiting for other parts, uploaded now.
    pub blobs_uploaded_ahead: u64,
    /// Images that wait for blobs of other parts, with how many they still lack.
    pub waiting: Vec<(String, usize)>,
    #[serde(skip)]
    pub head: PartialHead,
}

/// Loads a delta or a part into the target registry.
pub fn load(input: &LoadInput, opts: &PushOptions) -> Result<PartialLoad, PartialLoadError> {
    let verify = VerifyOptions {
        input: input.input.clone(),
        limits: input.limits,
        progress: input.progress,
        check_head: input.check_head,
    };
    let (source, head, evidence) = index_partial(&verify, MEMORY_BUDGET)?;
    let images: Vec<ImageToPush> = head
        .release
        .images
        .iter()
        .map(|i| to_push(i, &input.target))
        .collect::<Result<_, _>>()?;
    // Attached artifacts (signatures, SBOMs) are planned like images: their blobs travel in
    // parts too, and are uploaded ahead like any other.
    let refs = match input.referrers {
        true => referrers_to_push(&head.release, &input.target)?,
        false => Vec::new(),
    };
    let all: Vec<ImageToPush> = images
        .iter()
        .cloned()
        .chain(refs.iter().map(|r| r.push.clone()))
        .collect();
    let source: Arc<IndexedSource> = Arc::new(source);
    let plan = push::plan(&opts.registry.registry, source.as_ref(), &all)?;
    let held: BTreeSet<&Digest> = source.digests().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(push::PushError::Runtime)?;
    let client = RegistryClient::new(opts.registry.clone())?;
    let missing = rt.block_on(absent(&client, &plan, &held))?;
    if head.manifest.kind == Kind::Delta && !missing.is_empty() {
        return Err(PartialLoadError::MissingBlobs {
            registry: opts.registry.registry.clone(),
            delta: input.input.display().to_string(),
            missing,
        });
    }
    let lacking = |img: &push::PlannedImage| {
        missing
            .iter()
            .filter(|m| m.repo == img.repo && img.blobs.iter().any(|b| b.digest == m.digest))
            .count()
    };
    let ready: Vec<ImageToPush> = images
        .iter()
        .zip(&plan.images)
        .filter(|(_, p)| lacking(p) == 0)
        .map(|(i, _)| i.clone())
        .collect();
    let progress: Arc<dyn PushProgress> = Arc::new(crate::progress::PushBars::new(input.progress));
    let report = if opts.dry_run || ready.is_empty() {
        PushReport::default()
    } else {
        rt.block_on(push::push_async(
            opts,
            source.clone(),
            &ready,
            progress.clone(),
        ))?
    };
    // Artifacts follow once every image is there (an artifact names its image).
    let ready_refs: Vec<ReferrerPush> = if ready.len() == images.len() {
        refs.iter()
            .zip(&plan.images[images.len()..])
            .filter(|(_, p)| lacking(p) == 0)
            .map(|(r, _)| r.clone())
            .collect()
    } else {
        Vec::new()
    };
    let referrers = match opts.dry_run {
        true => ReferrersReport::default(),
        false => push_referrers(opts, source.clone(), &ready_refs, progress)?,
    };
    // Whatever is not pushed now has the blobs this file holds uploaded ahead: images that
    // lack blobs, and artifacts whose image is not there yet (even with all their own blobs
    // here: a later part would not hold them).
    let pushed_now = |k: usize, p: &push::PlannedImage| match k < images.len() {
        true => lacking(p) == 0,
        false => ready.len() == images.len() && lacking(p) == 0,
    };
    let mut waiting = Vec::new();
    let mut ahead = 0;
    for (_, img) in plan
        .images
        .iter()
        .enumerate()
        .filter(|(k, p)| !pushed_now(*k, p))
    {
        if lacking(img) > 0 {
            waiting.push((img.target.clone(), lacking(img)));
        }
        if opts.dry_run {
            continue;
        }
        for b in img.blobs.iter().filter(|b| held.contains(&b.digest)) {
            ahead += rt.block_on(upload(
                &client,
                source.clone(),
                &img.repo,
                &b.digest,
                b.size,
            ))?;
        }
    }
    Ok(PartialLoad {
        evidence,
        report,
        referrers,
        blobs_uploaded_ahead: ahead,
        waiting,
        head,
    })
}

/// Every (repository, blob) of the plan the source does not hold and the registry lacks.
async fn absent(
    client: &RegistryClient,
    plan: &Plan,
    held: &BTreeSet<&Digest>,
) -> Result<Vec<MissingBlob>, RegistryError> {
    client.ping().await?;
    let mut out = BTreeSet::new();
    for img in &plan.images {
        for b in img.blobs.iter().filter(|b| !held.contains(&b.digest)) {
            if !client.blob_exists(&img.repo, &b.digest).await? {
                out.insert(MissingBlob {
                    repo: img.repo.clone(),
                    digest: b.digest.clone(),
                    size: b.size,
                });
            }
        }
    }
    Ok(out.into_iter().collect())
}

struct Quiet;
impl BlobProgress for Quiet {
    fn sent(&self, _: u64) {}
    fn restart(&self) {}
}

/// Uploads one held blob unless the repository has it; returns 1 when it was sent.
async fn upload(
    client: &RegistryClient,
    source: Arc<IndexedSource>,
    repo: &str,
    digest: &Digest,
    size: u64,
) -> Result<u64, RegistryError> {
    if client.blob_exists(repo, digest).await? {
        return Ok(0);
    }
    let d = digest.clone();
    let open = move || source.open_blob(&d);
    client
        .upload_blob(repo, digest, Some(size), &open, None, Arc::new(Quiet))
        .await?;
    Ok(1)
}

/// The have-list of what a load made present: every blob of every image pushed.
pub fn have_list(registry: &str, report: &PushReport) -> HaveList {
    let pushed: BTreeSet<&Digest> = report.pushed.iter().map(|p| &p.digest).collect();
    HaveList::new(
        registry,
        report
            .plan
            .images
            .iter()
            .filter(|i| pushed.contains(&i.digest))
            .flat_map(|i| i.blobs.iter())
            .map(|b| HaveBlob {
                digest: b.digest.clone(),
                size: b.size,
            }),
    )
}

/// The have-list of what the registry holds of a plan's blobs, asked with `HEAD` per
/// repository and blob; nothing is pushed (`ferry load --dry-run --have-list`).
pub fn ask_have_list(opts: &PushOptions, plan: &Plan) -> Result<HaveList, PartialLoadError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(push::PushError::Runtime)?;
    let client = RegistryClient::new(opts.registry.clone())?;
    let held = rt.block_on(async {
        client.ping().await?;
        let mut held = Vec::new();
        for img in &plan.images {
            for b in &img.blobs {
                if client.blob_exists(&img.repo, &b.digest).await? {
                    held.push(HaveBlob {
                        digest: b.digest.clone(),
                        size: b.size,
                    });
                }
            }
        }
        Ok::<_, RegistryError>(held)
    })?;
    Ok(HaveList::new(&opts.registry.registry, held))
}

//! `ferry load`: pushes the images of a bundle (or of an extracted bundle, an OCI layout,
//! an `oci-archive` or a `docker-archive`) to a registry, reading blobs in place.
//!
//! A `.tar.gz` bundle is verified in one streaming pass that also indexes it
//! (`registry::bundle_source`): layers kept in stored gzip blocks are later read straight
//! from the bundle file, small blobs are kept in memory, and the few large blobs that were
//! deflated (uncompressed layers from `docker save`) are spooled to a temporary folder.
//! Nothing else is copied.

use crate::bundle::archive::{Limits, MemberReader, TarPolicy};
use crate::bundle::manifest::{ImageEntry, Manifest};
use crate::bundle::source::BlobLocation;
use crate::bundle::source::{self, SourceKind, SourceSpec};
use crate::bundle::verify::{self, Evidence, HeadCheck, VerifyError, VerifyOptions};
use crate::oci::digest::Digest;
use crate::oci::document::Document;
use crate::oci::reference::{ImageRef, Target};
use crate::progress::Progress;
use crate::registry::bundle_source::{index_bundle, IndexedSource, MEMORY_BUDGET};
use crate::registry::push::{BlobSource, ImageToPush};
use crate::registry::referrers::{ReferrerPush, ReferrerToIndex};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to load, and from where.
pub struct LoadInput<'a> {
    pub input: PathBuf,
    /// The registry the images go to (`--registry HOST[:PORT][/PREFIX]`).
    pub target: Target,
    pub limits: Limits,
    pub progress: Progress,
    pub check_head: Option<&'a HeadCheck<'a>>,
    /// Push the artifacts attached to a bundle's images (signatures, attestations, SBOMs).
    pub referrers: bool,
}

/// The images of an input, ready to push.
pub struct Prepared {
    pub source: Arc<dyn BlobSource>,
    pub images: Vec<ImageToPush>,
    /// The artifacts attached to them (a bundle's referrers), pushed after the images.
    pub referrers: Vec<ReferrerPush>,
    /// The verification evidence when the input was a bundle.
    pub evidence: Option<Evidence>,
    /// The bundle manifest, when the input was a bundle.
    pub manifest: Option<Manifest>,
}

/// Why an input cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error(transparent)]
    Source(#[from] source::SourceError),
}

impl LoadError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadError::Verify(v) => v.exit_code(),
            _ => 2,
        }
    }
}

/// A bundle file whose every image the registry already serves: nothing needs reading
/// beyond the head, whose manifest (and signature, through `check_head`) is checked.
pub struct AlreadyLoaded {
    pub manifest: Manifest,
    pub images: Vec<ImageToPush>,
    pub head_check: Option<serde_json::Value>,
}

/// For a bundle file, asks the registry whether every image is already there under its tag
/// with the bundle's digest. `None` means a push (and so a full verification) is needed.
pub fn already_loaded(
    input: &LoadInput,
    push: &crate::registry::push::PushOptions,
) -> Result<Option<AlreadyLoaded>, LoadError> {
    if input.input.is_dir() {
        return Ok(None);
    }
    let Ok(head) = crate::bundle::head::read(&input.input) else {
        return Ok(None);
    };
    let head_check = match input.check_head {
        Some(check) => Some(
            check(&head.manifest_bytes, head.signature.as_deref()).map_err(VerifyError::Head)?,
        ),
        None => None,
    };
    let images = images_to_push(&head.manifest, &input.target)?;
    let mut all = images.clone();
    if input.referrers {
        all.extend(
            referrers_to_push(&head.manifest, &input.target)?
                .into_iter()
                .map(|r| r.push),
        );
    }
    match crate::registry::push::all_present(push, &all) {
        Ok(true) => Ok(Some(AlreadyLoaded {
            manifest: head.manifest,
            images,
            head_check,
        })),
        // Anything else (absent, or an error the full push will report properly).
        _ => Ok(None),
    }
}

/// Verifies (bundles) and indexes an input, and lists the images (and, unless left out,
/// their attached artifacts) to push.
pub fn prepare(input: &LoadInput) -> Result<Prepared, LoadError> {
    let mut prepared = prepare_all(input)?;
    if !input.referrers {
        prepared.referrers.clear();
    }
    Ok(prepared)
}

fn prepare_all(input: &LoadInput) -> Result<Prepared, LoadError> {
    let path = &input.input;
    let invalid = |message: String| LoadError::Input {
        path: path.clone(),
        message,
    };
    if path.is_dir() {
        if let Ok(root) = verify::find_root(path) {
            let evidence = verify::verify(&VerifyOptions {
                input: path.clone(),
                limits: input.limits,
                progress: input.progress,
                check_head: input.check_head,
            })?;
            let (manifest, _) = crate::bundle::inspect::read_manifest(&root)?;
            let spec = SourceSpec {
                kind: SourceKind::OciLayout,
                path: root.join("images"),
                name: None,
            };
            let (source, images) = from_manifest_images(&manifest, &input.target, |r| {
                Ok(source::resolve(
                    &SourceSpec {
                        name: Some(r.to_string()),
                        ..spec.clone()
                    },
                    r,
                    image_archive_policy(input.limits),
                )?)
            })?;
            let source = with_referrer_blobs(source, &manifest, &root.join("images"))?;
            return Ok(Prepared {
                source,
                images,
                referrers: referrers_to_push(&manifest, &input.target)?,
                evidence: Some(evidence),
                manifest: Some(manifest),
            });
        }
        if path.join("index.json").is_file() {
            return from_layout_names(
                &SourceSpec {
                    kind: SourceKind::OciLayout,
                    path: path.clone(),
                    name: None,
                },
                &input.target,
                image_archive_policy(input.limits),
            );
        }
        return Err(invalid(
            "neither a bundle folder nor an OCI image layout (no ferry.json, no index.json)".into(),
        ));
    }
    let mut magic = [0u8; 2];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| invalid(e.to_string()))?;
    let gz = n == 2 && magic == [0x1f, 0x8b];
    // A gzip file whose first entry is `NAME-VERSION/ferry.json` is a bundle, and whatever
    // is wrong with it is a finding; anything else may be a compressed image archive.
    let not_bundle = if gz {
        match crate::bundle::inspect::read_manifest(path) {
            Ok(_) => return from_bundle(input),
            Err(VerifyError::NotABundle { reason, .. }) => {
                format!(" (as a ferry bundle: {reason})")
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        String::new()
    };
    from_image_archive(input, gz, &not_bundle)
}

/// An image archive, possibly gzip-compressed (like a `docker save | gzip` file);
/// `not_bundle` says why a gzip file is not read as a bundle.
fn from_image_archive(
    input: &LoadInput,
    gz: bool,
    not_bundle: &str,
) -> Result<Prepared, LoadError> {
    let path = &input.input;
    let invalid = |message: String| LoadError::Input {
        path: path.clone(),
        message: format!("{message}{not_bundle}"),
    };
    let (archive, spool) = if gz {
        let dir = tempfile::Builder::new()
            .prefix("ferry-load-")
            .tempdir()
            .map_err(|e| invalid(e.to_string()))?;
        let out = dir.path().join("archive.tar");
        let mut dec = MemberReader::foreign(
            File::open(path).map_err(|e| invalid(e.to_string()))?,
            input.limits,
        );
        let mut f = File::create(&out).map_err(|e| invalid(e.to_string()))?;
        io::copy(&mut dec, &mut f).map_err(|e| {
            invalid(format!(
                "not a ferry bundle, and not a readable gzip-compressed image archive: {e}"
            ))
        })?;
        (out, Some(dir))
    } else {
        (path.clone(), None)
    };
    let policy = image_archive_policy(input.limits);
    // Messages name the input, not the decompressed copy.
    let named = |e: source::SourceError| LoadError::Source(e.at(path));
    let kind = source::archive_kind(&archive, policy).map_err(named)?;
    let mut prepared = from_layout_names(
        &SourceSpec {
            kind,
            path: archive,
            name: None,
        },
        &input.target,
        policy,
    )
    .map_err(|e| match e {
        LoadError::Source(e) => named(e),
        e => e,
    })?;
    if let Some(dir) = spool {
        // Keep the decompressed archive for as long as the source lives.
        let source = prepared.source.clone();
        prepared.source = Arc::new(Holding {
            inner: source,
            _dir: dir,
        });
    }
    Ok(prepared)
}

struct Holding {
    inner: Arc<dyn BlobSource>,
    _dir: tempfile::TempDir,
}

impl BlobSource for Holding {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        self.inner.open_blob(digest)
    }
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.inner.blob_size(digest)
    }
    fn read_manifest(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        self.inner.read_manifest(digest)
    }
}

/// How load reads image archives: within the limits of its command line, which limit
/// messages name.
fn image_archive_policy(limits: Limits) -> TarPolicy {
    TarPolicy {
        flags: true,
        ..TarPolicy::image_archive(limits)
    }
}

/// The images named in a layout's `index.json` or a docker archive's `manifest.json`.
fn from_layout_names(
    spec: &SourceSpec,
    target: &Target,
    policy: TarPolicy,
) -> Result<Prepared, LoadError> {
    let names = source::image_names(spec, policy)?;
    if names.is_empty() {
        return Err(LoadError::Input {
            path: spec.path.clone(),
            message: "holds no named images".into(),
        });
    }
    let mut blobs = IndexedSource::default();
    let mut images = Vec::new();
    for name in names {
        let reference = ImageRef::parse(&name).map_err(|_| LoadError::Input {
            path: spec.path.clone(),
            message: format!("image name `{name}` is not a full reference like registry/path:tag, so its target path is unknown"),
        })?;
        let resolved = source::resolve(
            &SourceSpec {
                name: Some(name.clone()),
                ..spec.clone()
            },
            &name,
            policy,
        )?;
        for b in &resolved.blobs {
            blobs.insert(b.digest.clone(), b.size, b.location.clone());
        }
        images.push(ImageToPush {
            source_ref: name.clone(),
            target_repo: target.repository(&reference.repository),
            tag: reference.tag.clone().unwrap_or_default(),
            digest: resolved.digest.clone(),
            media_type: resolved.media_type.clone(),
        });
    }
    Ok(Prepared {
        source: Arc::new(blobs),
        images,
        referrers: Vec::new(),
        evidence: None,
        manifest: None,
    })
}

fn from_manifest_images(
    manifest: &Manifest,
    target: &Target,
    resolve: impl Fn(&str) -> Result<source::ResolvedImage, LoadError>,
) -> Result<(Arc<dyn BlobSource>, Vec<ImageToPush>), LoadError> {
    let mut blobs = IndexedSource::default();
    let mut images = Vec::new();
    for img in &manifest.images {
        let resolved = resolve(&img.reference)?;
        for b in &resolved.blobs {
            blobs.insert(b.digest.clone(), b.size, b.location.clone());
        }
        images.push(to_push(img, target)?);
    }
    Ok((Arc::new(blobs), images))
}

/// The artifacts attached to a bundle's images, with their push targets: each into its
/// image's repository, a cosign artifact under its tag, an OCI referrer by digest and then
/// made findable (`registry::referrers`).
pub fn referrers_to_push(
    manifest: &Manifest,
    target: &Target,
) -> Result<Vec<ReferrerPush>, LoadError> {
    let mut out = Vec::new();
    for img in &manifest.images {
        let image = to_push(img, target)?;
        for r in &img.referrers {
            let push = ImageToPush {
                source_ref: r.layout_name(img),
                target_repo: image.target_repo.clone(),
                tag: r.tag.clone().unwrap_or_default(),
                digest: r.digest.clone(),
                media_type: r.media_type.clone(),
            };
            let index = r.tag.is_none().then(|| ReferrerToIndex {
                repo: image.target_repo.clone(),
                subject: img.digest.clone(),
                digest: r.digest.clone(),
                media_type: r.media_type.clone(),
                size: r.size,
                artifact_type: r.artifact_type.clone(),
            });
            out.push(ReferrerPush { push, index });
        }
    }
    Ok(out)
}

/// The blobs of a bundle folder's referrers (manifests, configs, layers), added to the
/// blobs of its images.
fn with_referrer_blobs(
    images: Arc<dyn BlobSource>,
    manifest: &Manifest,
    layout: &Path,
) -> Result<Arc<dyn BlobSource>, LoadError> {
    let referrers: Vec<&crate::bundle::manifest::Referrer> =
        manifest.images.iter().flat_map(|i| &i.referrers).collect();
    if referrers.is_empty() {
        return Ok(images);
    }
    let mut blobs = IndexedSource::default();
    let blob = |d: &Digest| layout.join("blobs/sha256").join(d.hex());
    let invalid = |d: &Digest, e: String| LoadError::Input {
        path: blob(d),
        message: e,
    };
    for r in referrers {
        let bytes =
            std::fs::read(blob(&r.digest)).map_err(|e| invalid(&r.digest, e.to_string()))?;
        blobs.insert(
            r.digest.clone(),
            r.size,
            BlobLocation::File(blob(&r.digest)),
        );
        let Ok((_, Document::Manifest(m))) = Document::parse(&bytes, Some(&r.media_type)) else {
            return Err(invalid(
                &r.digest,
                "an attached artifact that is not a manifest".into(),
            ));
        };
        for d in std::iter::once(m.config()).chain(m.layers()) {
            let Some(digest) = crate::oci::document::digest_of(d) else {
                return Err(invalid(
                    &r.digest,
                    "a descriptor has an unusable digest".into(),
                ));
            };
            blobs.insert(digest.clone(), d.size(), BlobLocation::File(blob(&digest)));
        }
    }
    Ok(Arc::new(Both {
        first: images,
        second: blobs,
    }))
}

/// Two blob sources, asked in order.
struct Both {
    first: Arc<dyn BlobSource>,
    second: IndexedSource,
}

impl BlobSource for Both {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        match self.first.blob_size(digest) {
            Some(_) => self.first.open_blob(digest),
            None => self.second.open_blob(digest),
        }
    }
    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.first
            .blob_size(digest)
            .or_else(|| self.second.blob_size(digest))
    }
    fn read_manifest(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        match self.first.blob_size(digest) {
            Some(_) => self.first.read_manifest(digest),
            None => self.second.read_manifest(digest),
        }
    }
}

/// Every image of a bundle, with its push target.
fn images_to_push(manifest: &Manifest, target: &Target) -> Result<Vec<ImageToPush>, LoadError> {
    manifest.images.iter().map(|i| to_push(i, target)).collect()
}

/// The push target of one bundle image: `PREFIX/REPOSITORY` of its normalised reference, the
/// same repository values files are rewritten to.
pub fn to_push(img: &ImageEntry, target: &Target) -> Result<ImageToPush, LoadError> {
    let reference = img.image_ref().map_err(|_| LoadError::Input {
        path: PathBuf::from("ferry.json"),
        message: format!(
            "image reference `{}` cannot be mapped to a target path",
            img.reference
        ),
    })?;
    Ok(ImageToPush {
        source_ref: img.reference.clone(),
        target_repo: target.repository(&reference.repository),
        tag: img.tag.clone().unwrap_or_default(),
        digest: img.digest.clone(),
        media_type: img.media_type.clone(),
    })
}

fn from_bundle(input: &LoadInput) -> Result<Prepared, LoadError> {
    let opts = VerifyOptions {
        input: input.input.clone(),
        limits: input.limits,
        progress: input.progress,
        check_head: input.check_head,
    };
    let indexed = index_bundle(&opts, MEMORY_BUDGET)?;
    let images = images_to_push(&indexed.manifest, &input.target)?;
    Ok(Prepared {
        source: Arc::new(indexed.source),
        images,
        referrers: referrers_to_push(&indexed.manifest, &input.target)?,
        evidence: Some(indexed.evidence),
        manifest: Some(indexed.manifest),
    })
}

/// One values file after rewriting, with what the coverage check found.
#[derive(Debug, serde::Serialize)]
pub struct ValuesOutcome {
    pub file: PathBuf,
    #[serde(skip)]
    pub before: String,
    #[serde(skip)]
    pub after: String,
    pub edits: Vec<crate::values::Edit>,
    /// Image maps left as they were although their image may not come from the mirror.
    pub unmoved: Vec<crate::values::Unmoved>,
    /// Images the chart still renders from elsewhere than the target with the rewritten
    /// values (a test hook's hard-coded image, say), each with its template line.
    pub stays: Vec<String>,
}

/// Renders the chart with the rewritten values (ferry's own offline rendering, every branch
/// these values take) and names every image that does not come from `target`: what no
/// values key moves must be mirrored under its own name or changed in the chart.
fn stays_on_registry(chart: &Path, rewritten: &str, target: &Target) -> Vec<String> {
    let checked = (|| -> Result<crate::images::ChartImages, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let file = dir.path().join("values.yaml");
        std::fs::write(&file, rewritten).map_err(|e| e.to_string())?;
        crate::images::chart_images(&[chart.to_path_buf()], &[file]).map_err(|e| e.to_string())
    })();
    let found = match checked {
        Ok(found) => found,
        Err(e) => {
            return vec![format!(
                "the chart could not be rendered to check the rewritten values: {e}"
            )]
        }
    };
    let base = format!("{}/", target.base());
    found
        .images
        .iter()
        .filter(|i| i.need == crate::images::Need::Required)
        .filter(|i| !i.reference.to_string().starts_with(&base))
        .map(|i| {
            let at = i
                .locations
                .first()
                .map(|l| format!("{}:{}: ", l.file, l.line))
                .unwrap_or_default();
            let why = if i.values_key {
                "a values key sets it, but not one ferry recognised as an image"
            } else {
                "no values key sets it"
            };
            format!(
                "{at}the chart still renders {} from its own registry ({why}); mirror it under that name, or change it in the chart",
                i.reference
            )
        })
        .collect()
}

/// Why values files could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Rewrite(#[from] crate::values::RewriteError),
    #[error("{} image reference(s) in the values are not in the bundle (each would be an ImagePullBackOff after install):\n{}", .0.len(), .0.join("\n"))]
    Missing(Vec<String>),
}

impl ValuesError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ValuesError::Missing(_) => 1,
            _ => 2,
        }
    }
}

/// Checks that every image the values files refer to is in `images`.
pub fn check_images(
    files: &[PathBuf],
    images: &[ImageEntry],
) -> Result<crate::values::Coverage, ValuesError> {
    let mut uses = Vec::new();
    for f in files {
        // A chart folder, or values with a Chart.yaml beside them: its appVersion is the tag of
        // image maps that give none.
        let chart = crate::values::locate(f);
        let text = std::fs::read_to_string(&chart.values).map_err(|source| ValuesError::Read {
            path: chart.values.clone(),
            source,
        })?;
        uses.extend(crate::values::find_chart_images(
            &text,
            &chart.values,
            chart.app_version.as_deref(),
        )?);
    }
    let coverage = crate::values::check_coverage(&uses, images);
    if !coverage.is_complete() {
        return Err(ValuesError::Missing(
            coverage.missing.iter().map(|m| m.to_string()).collect(),
        ));
    }
    Ok(coverage)
}

/// Rewrites values files for a registry; nothing is written here.
pub fn rewrite_values(
    files: &[PathBuf],
    opts: &crate::values::RewriteOptions,
) -> Result<Vec<ValuesOutcome>, ValuesError> {
    files
        .iter()
        .map(|f| {
            let before = std::fs::read_to_string(f).map_err(|source| ValuesError::Read {
                path: f.clone(),
                source,
            })?;
            // With a Chart.yaml beside the values, its appVersion is the tag of image maps
            // that give none (for pinning digests), and its templates give the images of maps
            // left empty.
            let chart = crate::values::locate(f);
            let maps = crate::values::null_maps(&before, f)?;
            let defaults = match &chart.chart {
                Some(dir) if !maps.is_empty() => Some(crate::images::template_defaults(
                    dir,
                    f,
                    &maps,
                    &opts.target,
                )),
                _ => None,
            };
            let facts = crate::values::ChartFacts {
                app_version: chart.app_version.as_deref(),
                defaults: defaults.as_deref(),
            };
            let out = crate::values::rewrite_chart(&before, f, facts, opts)?;
            let stays = match &chart.chart {
                Some(dir) => stays_on_registry(dir, &out.text, &opts.target),
                None => Vec::new(),
            };
            Ok(ValuesOutcome {
                file: f.clone(),
                before,
                after: out.text,
                edits: out.edits,
                unmoved: out.unmoved,
                stays,
            })
        })
        .collect()
}

/// Writes `text` to `path` atomically, keeping the permissions of a file it replaces.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::bundle::build::folder_of(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-values-")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

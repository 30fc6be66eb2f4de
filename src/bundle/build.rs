//! `ferry build`: turns a `ferry.yaml` into a deterministic, verifiable bundle.

mod delta_write;

use crate::bundle::archive::{
    stored_entry_len, write_own_member, EntryError, Limits, MemberReader, Packing,
    PositionedWriter, TarEntries, TarEntry, TarGzWriter, TarPolicy,
};
use crate::bundle::delta::{self, BaseSet, DeltaError, DeltaReport};
use crate::bundle::lock::{Lock, LockError, LockedChart, LockedImage, LOCK_VERSION};
use crate::bundle::manifest::{
    self, ChartEntry, FileEntry, ImageEntry, Manifest, Mode, FORMAT_VERSION, MANIFEST_NAME,
    SIGNATURE_NAME,
};
use crate::bundle::partial;
use crate::bundle::safepath::SafePath;
use crate::bundle::source::{
    self, BlobLocation, RemoteInputs, RemoteRequest, ResolvedImage, ResolvedReferrer, SourceSpec,
};
use crate::bundle::spec::{field_error, ChartSource, ImageSpec, Spec, SpecError, VerifySpec};
use crate::oci::digest::{hash_reader, BackgroundHasher, Digest};
use crate::oci::document::{self, LayoutEntry, MAX_JSON};
use crate::oci::reference::ImageRef;
use crate::progress::Progress;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Output buffer: large writes keep the page-cache copy cheap.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Blobs at least this large that a worker writes are hashed on a thread of their own.
const BACKGROUND_HASH_MIN: u64 = 4 * 1024 * 1024;

/// What `ferry build` needs.
#[derive(Clone)]
pub struct BuildOptions {
    /// The `ferry.yaml`.
    pub spec: PathBuf,
    /// The bundle to write (`NAME-VERSION.tar.gz` by convention).
    pub output: PathBuf,
    /// Seconds since the epoch for every timestamp; `SOURCE_DATE_EPOCH`, else 0.
    pub source_date_epoch: u64,
    pub progress: Progress,
    /// Resolves images pulled from registries; without it only local inputs are accepted.
    pub remote: Option<std::sync::Arc<dyn RemoteInputs>>,
    /// Blobs fetched at once while the bundle is written.
    pub jobs: usize,
    /// `--locked`: the lock every registry input must resolve to.
    pub locked: Option<Lock>,
    /// A check of the planned contents before anything is written (e.g. that the charts
    /// deploy no image the bundle lacks).
    pub check: Option<ContentsCheck>,
    /// Carry the signatures, attestations and SBOMs attached to each image.
    pub referrers: bool,
    /// Checks an image's signature under the key `verify:` names (needed when the spec
    /// has `verify:`).
    pub signature_check: Option<SignatureCheck>,
    /// `--base`: write a delta that leaves out the blobs the base holds instead of the
    /// complete bundle. Those blobs are never fetched, nor read beyond their first bytes.
    pub base: Option<std::sync::Arc<BaseSet>>,
}

/// Checks one signature artifact of an image under a public key: `key` (a PEM file), the
/// image's digest, the artifact's manifest bytes, and its small blobs by digest. `Ok` with
/// the key's `sha256:` fingerprint when a signature in it verifies, else why not.
pub type SignatureCheck = std::sync::Arc<
    dyn Fn(&Path, &Digest, &[u8], &dyn Fn(&Digest) -> Option<Vec<u8>>) -> Result<String, String>
        + Send
        + Sync,
>;

/// What a check before writing sees.
pub struct PlannedContents<'a> {
    /// Every chart, as a folder or packaged file on disk (fetched ones in a temporary folder).
    pub charts: Vec<PathBuf>,
    /// The spec's values files.
    pub values: Vec<PathBuf>,
    /// The images the bundle will hold.
    pub images: &'a [ImageEntry],
}

/// Checks the planned contents: `Ok(notes)`, or `Err(why the bundle must not be written)`.
pub type ContentsCheck =
    std::sync::Arc<dyn Fn(&PlannedContents) -> Result<Vec<String>, String> + Send + Sync>;

/// `from:` of an image pulled from another registry than its `ref` names.
pub const DOCKER_TRANSPORT: &str = "docker://";

/// Signs the manifest bytes during a build; returns the base64 signature.
pub type ManifestSigner<'a> =
    &'a dyn Fn(&[u8]) -> Result<String, Box<dyn std::error::Error + Send + Sync>>;

/// What a build produced.
#[derive(Debug)]
pub struct BuildReport {
    pub output: PathBuf,
    pub manifest: Manifest,
    pub manifest_digest: Digest,
    /// Size of the bundle file.
    pub bundle_bytes: u64,
    pub signed: bool,
    /// What the registry inputs resolved to (empty when every input is local).
    pub lock: Lock,
    /// What the user should know about the inputs (e.g. a chart whose repository lists no
    /// digest to check it against).
    pub notes: Vec<String>,
    /// What was written instead of the complete bundle, when a base was given.
    pub delta: Option<DeltaReport>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{spec}: image `{reference}`: {source}")]
    Image {
        spec: PathBuf,
        reference: String,
        source: source::SourceError,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{path}` would be written twice into the bundle: from {first} and from {second}")]
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    #[error("{source_desc}: blob {expected} does not match its digest (found {found}): the image source is corrupt")]
    CorruptBlob {
        source_desc: String,
        expected: Digest,
        found: Digest,
    },
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("signing the manifest failed: {0}")]
    Sign(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error("{}: {message}", spec.display())]
    Incomplete { spec: PathBuf, message: String },
    #[error("{}:{line}: image `{reference}`: {message}", spec.display())]
    Unsigned {
        spec: PathBuf,
        line: usize,
        reference: String,
        message: String,
    },
    #[error("{}:{line}: image `{reference}`: {message}", spec.display())]
    Pull {
        spec: PathBuf,
        line: usize,
        reference: String,
        message: String,
    },
}

impl BuildError {
    /// 1 when the bundle would be incomplete (a finding about the release), 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Incomplete { .. } | BuildError::Unsigned { .. } => 1,
            BuildError::Delta(e) => e.exit_code(),
            _ => 2,
        }
    }
}

/// One file the bundle will hold.
struct Planned {
    location: BlobLocation,
    /// The size the input has when planned; hashing and writing read exactly this much.
    size: u64,
    origin: String,
    mode: Mode,
    /// The digest the content must have (blobs), checked while hashing.
    expected: Option<Digest>,
}

impl Planned {
    /// A local file, at the size it has now.
    fn file(src: &Path, mode: Mode) -> Result<Planned, BuildError> {
        Ok(Planned {
            size: file_size(src)?,
            location: BlobLocation::File(src.to_path_buf()),
            origin: src.display().to_string(),
            mode,
            expected: None,
        })
    }
}

#[derive(Default)]
struct Plan {
    files: BTreeMap<SafePath, Planned>,
}

impl Plan {
    fn add(&mut self, path: SafePath, planned: Planned) -> Result<(), BuildError> {
        if let Some(prev) = self.files.get(&path) {
            if prev.expected.is_some() && prev.expected == planned.expected {
                return Ok(()); // The same blob from two images: stored once.
            }
            return Err(BuildError::Conflict {
                path: path.to_string(),
                first: prev.origin.clone(),
                second: planned.origin,
            });
        }
        if path.as_str() == MANIFEST_NAME || path.as_str() == SIGNATURE_NAME {
            return Err(BuildError::Conflict {
                path: path.to_string(),
                first: "ferry itself".into(),
                second: planned.origin,
            });
        }
        self.files.insert(path, planned);
        Ok(())
    }
}

/// The `SOURCE_DATE_EPOCH` of the environment, or 0.
pub fn source_date_epoch_from_env() -> Result<u64, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("SOURCE_DATE_EPOCH=`{v}` is not a whole number of seconds")),
        Err(_) => Ok(0),
    }
}

/// Builds a bundle. `sign`, when given, signs the manifest into `ferry.json.sig`.
///
/// The steps: `plan` every file, `hash_all` that are not content-addressed (pass 1),
/// `make_manifest`, sign it, and `write_bundle` (pass 2).
pub fn build(opts: &BuildOptions, sign: Option<ManifestSigner>) -> Result<BuildReport, BuildError> {
    let spec = Spec::load(&opts.spec)?;
    let contents = plan(opts, &spec)?;
    let contents_lock = contents.lock;
    let contents_notes = contents.notes;
    let entries: Vec<(SafePath, Planned)> = contents.plan.files.into_iter().collect();
    let hashed = hash_all(&entries, opts.progress)?;
    let manifest = make_manifest(
        opts,
        &spec,
        &entries,
        &hashed,
        contents.images,
        contents.charts,
    )?;
    let manifest_bytes = manifest.to_bytes();
    let signature = match sign {
        Some(f) => Some(f(&manifest_bytes).map_err(|e| BuildError::Sign(e.to_string()))?),
        None => None,
    };
    let root = manifest.root();
    let mtime = opts.source_date_epoch;
    let release_head = head_member(&root, mtime, &manifest_bytes, signature.as_deref())
        .map_err(io_err(&opts.output))?;
    let head_size = release_head.len() as u64;
    let (bundle_bytes, delta) = match &opts.base {
        None => {
            let file = write_bundle(opts, &root, &release_head, &entries, &hashed, None)?;
            (persist(file, &opts.output)?, None)
        }
        Some(base) => {
            let mut plan = delta_write::dry_run(opts, &root, head_size, &entries, &hashed, base)?;
            let sig = signature.clone();
            let release = partial::piece_of(&manifest, &manifest_bytes, sig, plan.size, head_size);
            let omitted = plan.omitted.clone();
            let head = delta::delta_manifest(&release, &manifest.files, omitted, base);
            let head_bytes =
                partial::head_member(&root, mtime, &head).map_err(io_err(&opts.output))?;
            plan.delta_head = head_bytes.len() as u64;
            let plan_ref = Some(&mut plan);
            let file = write_bundle(opts, &root, &head_bytes, &entries, &hashed, plan_ref)?;
            plan.check_written(&file)?;
            let bytes = persist(file, &opts.output)?;
            (bytes, Some(DeltaReport::of(&head, &opts.output, bytes)))
        }
    };
    Ok(BuildReport {
        output: opts.output.clone(),
        manifest_digest: Digest::of(&manifest_bytes),
        manifest,
        bundle_bytes,
        signed: signature.is_some(),
        lock: contents_lock,
        notes: contents_notes,
        delta,
    })
}

/// Sets mode 0644 and renames the finished bundle into place; returns its size.
fn persist(tmp: tempfile::NamedTempFile, output: &Path) -> Result<u64, BuildError> {
    partial::persist(tmp, output).map_err(io_err(output))
}

/// Everything a bundle will hold, before anything is hashed.
struct Contents {
    plan: Plan,
    images: Vec<ImageEntry>,
    charts: Vec<ChartEntry>,
    /// What the registry inputs resolved to.
    lock: Lock,
    /// What the user should know about the inputs.
    notes: Vec<String>,
}

/// The folder the spec's relative paths are taken from.
fn spec_base(spec: &Path) -> PathBuf {
    folder_of(spec).to_path_buf()
}

/// The folder a file is in: its parent, or the current folder for a bare name.
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// An error at a field of the spec.
fn at(spec: &Path, field: &str, span: &Spanned<String>, msg: String) -> BuildError {
    BuildError::Spec(field_error(spec, field, span, msg))
}

/// Checks the spec's name and version and plans every file the bundle will hold
/// (every input once; two inputs for one path are refused).
fn plan(opts: &BuildOptions, spec: &Spec) -> Result<Contents, BuildError> {
    let base = spec_base(&opts.spec);
    manifest::check_name("name", &spec.name.value)
        .map_err(|e| at(&opts.spec, "name", &spec.name, e.to_string()))?;
    manifest::check_name("version", &spec.version.value)
        .map_err(|e| at(&opts.spec, "version", &spec.version, e.to_string()))?;

    let mut plan = Plan::default();
    plan_files(&mut plan, spec, &base, &opts.spec)?;
    let mut lock = Lock {
        lock_version: LOCK_VERSION,
        ..Lock::default()
    };
    let mut charts = Vec::new();
    let mut notes = Vec::new();
    for c in &spec.charts {
        let entry = match &c.value {
            ChartSource::Path(rel) => add_chart(&mut plan, &base, rel, c, &opts.spec)?,
            remote => add_remote_chart(&mut plan, &mut lock, &mut notes, opts, remote, c)?,
        };
        charts.push(entry);
    }
    let images = plan_images(&mut plan, &mut lock, opts, spec, &base)?;
    if let Some(old) = &opts.locked {
        old.check_complete(&Lock::path_for(&opts.spec), &lock)?;
    }
    if let Some(check) = &opts.check {
        notes.extend(run_check(
            check, opts, spec, &base, &plan, &charts, &images,
        )?);
    }
    Ok(Contents {
        plan,
        images,
        charts,
        lock,
        notes,
    })
}

/// The README, values files, scripts and extra files.
fn plan_files(
    plan: &mut Plan,
    spec: &Spec,
    base: &Path,
    spec_path: &Path,
) -> Result<(), BuildError> {
    if let Some(readme) = &spec.readme {
        add_file(plan, base, readme, None, Mode::Regular, "readme", spec_path)?;
    }
    for v in &spec.values {
        add_file(plan, base, v, None, Mode::Regular, "values", spec_path)?;
    }
    for s in &spec.scripts {
        add_file(
            plan,
            base,
            s,
            Some("scripts"),
            Mode::Executable,
            "scripts",
            spec_path,
        )?;
    }
    for f in &spec.files {
        let src = base.join(&f.src.value);
        let dest = match &f.dest {
            Some(d) => SafePath::new(&d.value)
                .map_err(|e| at(spec_path, "files.dest", d, e.to_string()))?,
            None => file_name_path(&src).map_err(|m| at(spec_path, "files.src", &f.src, m))?,
        };
        let mode = mode_of(&src).map_err(|m| at(spec_path, "files.src", &f.src, m))?;
        plan.add(dest, Planned::file(&src, mode)?)?;
    }
    Ok(())
}

/// Every blob of every image once, then the layout's `index.json` and `oci-layout`.
fn plan_images(
    plan: &mut Plan,
    lock: &mut Lock,
    opts: &BuildOptions,
    spec: &Spec,
    base: &Path,
) -> Result<Vec<ImageEntry>, BuildError> {
    let spec_path = opts.spec.as_path();
    let mut images = Vec::new();
    let mut index_entries = Vec::new();
    let mut seen_refs = BTreeMap::new();
    for img in &spec.images {
        let reference = ImageRef::parse(&img.reference.value)
            .map_err(|e| at(spec_path, "images.ref", &img.reference, e.to_string()))?;
        let full = reference.to_string();
        if seen_refs.insert(full.clone(), ()).is_some() {
            return Err(at(
                spec_path,
                "images.ref",
                &img.reference,
                format!("`{full}` is listed twice"),
            ));
        }
        let (resolved, locked) = resolve_image(opts, spec, img, &reference, base)?;
        lock.images.extend(locked);
        let total = plan_blobs(plan, &resolved.blobs)?;
        check_pins(spec_path, img, &reference, &resolved)?;
        index_entries.push(LayoutEntry {
            media_type: resolved.media_type.clone(),
            digest: resolved.digest.clone(),
            size: resolved.size,
            name: full.clone(),
        });
        let verify = img.verify.as_ref().or(spec.verify.as_ref());
        let referrers = plan_referrers(plan, opts, img, verify, &full, &resolved)?;
        let mut entry = ImageEntry {
            reference: full,
            registry: reference.host().to_string(),
            repository: reference.repository,
            tag: reference.tag,
            digest: resolved.digest,
            media_type: resolved.media_type,
            source_digest: resolved.source_digest,
            non_distributable: resolved.non_distributable,
            platforms: resolved.platforms,
            size: total,
            referrers: Vec::new(),
        };
        for r in referrers {
            let name = r.layout_name(&entry);
            // The same image under two tags of one repository shares its artifacts' names.
            if !index_entries.iter().any(|e| e.name == name) {
                index_entries.push(LayoutEntry {
                    media_type: r.media_type.clone(),
                    digest: r.digest.clone(),
                    size: r.size,
                    name,
                });
            }
            entry.referrers.push(r);
        }
        images.push(entry);
    }
    if !images.is_empty() {
        let generated = |b: Vec<u8>| Planned {
            size: b.len() as u64,
            location: BlobLocation::Memory(b.into()),
            origin: "(generated)".into(),
            mode: Mode::Regular,
            expected: None,
        };
        plan.add(
            SafePath::new("images/index.json").expect("safe"),
            generated(document::layout_index_bytes(&index_entries)),
        )?;
        plan.add(
            SafePath::new("images/oci-layout").expect("safe"),
            generated(document::OCI_LAYOUT_FILE.to_vec()),
        )?;
    }
    Ok(images)
}

/// Plans the blobs of the artifacts attached to an image and, when `verify` names a key,
/// checks that a signature among them verifies for the image under it (the fingerprint is
/// recorded on each signature that does). Returns what `ferry.json` lists for them.
fn plan_referrers(
    plan: &mut Plan,
    opts: &BuildOptions,
    img: &ImageSpec,
    verify: Option<&VerifySpec>,
    full: &str,
    resolved: &ResolvedImage,
) -> Result<Vec<crate::bundle::manifest::Referrer>, BuildError> {
    let mut out = Vec::new();
    for r in &resolved.referrers {
        plan_blobs(plan, &r.blobs)?;
        out.push(r.entry.clone());
    }
    let Some(verify) = verify else {
        return Ok(out);
    };
    let spec_path = opts.spec.as_path();
    let located = |m: String| at(spec_path, "verify.key", &verify.key, m);
    if !opts.referrers {
        return Err(located(format!(
            "image `{full}`: `verify:` checks signatures, which --no-referrers leaves out"
        )));
    }
    let check = opts
        .signature_check
        .as_ref()
        .ok_or_else(|| located("checking image signatures is not available here".into()))?;
    let key = spec_base(spec_path).join(&verify.key.value);
    let mut why = Vec::new();
    for (i, r) in resolved.referrers.iter().enumerate() {
        if r.entry.kind != crate::oci::referrers::ReferrerKind::Signature {
            continue;
        }
        let bytes = r.memory_blob(&r.entry.digest).unwrap_or_default();
        match check(&key, &resolved.digest, bytes, &|d| small_blob(r, d)) {
            Ok(fingerprint) => out[i].verified_keys.push(fingerprint),
            Err(e) => why.push(e),
        }
    }
    if out.iter().all(|r| r.verified_keys.is_empty()) {
        let detail = match why.is_empty() {
            true => "it has no signature (no `sha256-HEX.sig` tag or signature referrer)".into(),
            false => why.join("; "),
        };
        return Err(BuildError::Unsigned {
            spec: spec_path.to_path_buf(),
            line: img.reference.referenced.line() as usize,
            reference: full.to_string(),
            message: format!("no signature verifies under {}: {detail}", key.display()),
        });
    }
    Ok(out)
}

/// A small blob of an artifact, from memory or read from its location.
fn small_blob(r: &ResolvedReferrer, digest: &Digest) -> Option<Vec<u8>> {
    if let Some(b) = r.memory_blob(digest) {
        return Some(b.to_vec());
    }
    let blob = r.blobs.iter().find(|b| b.digest == *digest)?;
    if blob.size > MAX_JSON {
        return None;
    }
    let mut bytes = Vec::new();
    blob.location
        .open(blob.size)
        .ok()?
        .take(blob.size)
        .read_to_end(&mut bytes)
        .ok()?;
    (Digest::of(&bytes) == *digest).then_some(bytes)
}

/// Plans blobs as `images/blobs/sha256/HEX`, each checked against its digest when written
/// (a blob two images share is stored once); returns their total size.
fn plan_blobs(plan: &mut Plan, blobs: &[source::SourceBlob]) -> Result<u64, BuildError> {
    let mut total = 0;
    for blob in blobs {
        total += blob.size;
        let path = SafePath::new(&format!("images/blobs/sha256/{}", blob.digest.hex()))
            .expect("hex path is safe");
        plan.add(
            path,
            Planned {
                size: blob.size,
                location: blob.location.clone(),
                origin: blob.location.describe(),
                mode: Mode::Regular,
                expected: Some(blob.digest.clone()),
            },
        )?;
    }
    Ok(total)
}

/// Resolves one image of the spec: from a local layout or archive (`from: oci:…` and the
/// like), or from a registry (no `from`, or `from: docker://…`) through `opts.remote`.
fn resolve_image(
    opts: &BuildOptions,
    spec: &Spec,
    img: &ImageSpec,
    reference: &ImageRef,
    base: &Path,
) -> Result<(ResolvedImage, Option<LockedImage>), BuildError> {
    let spec_path = opts.spec.as_path();
    let full = reference.to_string();
    let image_err = |source| BuildError::Image {
        spec: spec_path.to_path_buf(),
        reference: full.clone(),
        source,
    };
    let pull = match &img.from {
        Some(from) if !from.value.starts_with(DOCKER_TRANSPORT) => {
            if let Some(first) = img.platforms.as_ref().and_then(|p| p.first()) {
                return Err(at(spec_path, "images.platforms", first, "`platforms` applies to images pulled from a registry; a local input is carried as it is".into()));
            }
            let src = SourceSpec::parse(&from.value, base)
                .map_err(|m| at(spec_path, "images.from", from, m))?;
            let policy = TarPolicy::image_archive(Limits::default());
            let mut resolved = source::resolve(&src, &full, policy).map_err(image_err)?;
            if opts.referrers {
                resolved.referrers =
                    source::referrers(&src, policy, &resolved.digest).map_err(image_err)?;
            }
            return Ok((resolved, None));
        }
        Some(from) => ImageRef::parse(&from.value[DOCKER_TRANSPORT.len()..]).map_err(|e| {
            at(
                spec_path,
                "images.from",
                from,
                format!("{e} (expected `docker://HOST/PATH:TAG[@DIGEST]`)"),
            )
        })?,
        None => reference.clone(),
    };
    let Some(remote) = &opts.remote else {
        let field = img.from.as_ref().unwrap_or(&img.reference);
        return Err(at(
            spec_path,
            "images.from",
            field,
            "pulling from a registry is not available here; give a local `from: oci:DIR[:NAME]`"
                .into(),
        ));
    };
    let digest = match &img.digest {
        Some(d) => Some(
            d.value
                .parse::<Digest>()
                .map_err(|e| at(spec_path, "images.digest", d, e.to_string()))?,
        ),
        None => match pull.digest.as_deref().or(reference.digest.as_deref()) {
            Some(d) => Some(
                d.parse::<Digest>()
                    .map_err(|e| at(spec_path, "images.ref", &img.reference, e.to_string()))?,
            ),
            None => None,
        },
    };
    let platforms = img.platforms.as_ref().unwrap_or(&spec.platforms);
    let platforms: Vec<String> = platforms.iter().map(|p| p.value.clone()).collect();
    let request = RemoteRequest {
        reference: reference.clone(),
        pull,
        digest,
        platforms,
        referrers: opts.referrers,
    };
    let resolved = remote
        .resolve(&request)
        .map_err(|message| BuildError::Pull {
            spec: spec_path.to_path_buf(),
            line: img
                .from
                .as_ref()
                .unwrap_or(&img.reference)
                .referenced
                .line() as usize,
            reference: full.clone(),
            message,
        })?;
    let locked = LockedImage {
        reference: full.clone(),
        source: format!("{DOCKER_TRANSPORT}{}", request.pull),
        digest: resolved
            .source_digest
            .clone()
            .unwrap_or_else(|| resolved.digest.clone()),
        platforms: request.platforms.clone(),
    };
    if let Some(old) = &opts.locked {
        old.check_image(&Lock::path_for(spec_path), &locked)?;
    }
    Ok((resolved, Some(locked)))
}

/// Checks the digests the spec pins (in `ref`, in `from`, in `digest:`) against what the
/// source holds. A filtered index is checked by the digest of the index it came from.
fn check_pins(
    spec_path: &Path,
    img: &ImageSpec,
    reference: &ImageRef,
    resolved: &ResolvedImage,
) -> Result<(), BuildError> {
    let upstream = resolved.source_digest.as_ref().unwrap_or(&resolved.digest);
    let from = img
        .from
        .as_ref()
        .map_or("the registry", |f| f.value.as_str());
    if let Some(pinned) = &reference.digest {
        if *pinned != upstream.to_string() {
            return Err(at(
                spec_path,
                "images.ref",
                &img.reference,
                format!("the reference pins {pinned} but `{from}` holds {upstream}"),
            ));
        }
    }
    if let Some(pinned) = &img.digest {
        if pinned.value != upstream.to_string() {
            return Err(at(
                spec_path,
                "images.digest",
                pinned,
                format!(
                    "the spec pins {} but `{from}` holds {upstream}",
                    pinned.value
                ),
            ));
        }
    }
    Ok(())
}

/// The manifest, from the plan and the digests of pass 1, checked.
fn make_manifest(
    opts: &BuildOptions,
    spec: &Spec,
    entries: &[(SafePath, Planned)],
    hashed: &[(Digest, u64)],
    images: Vec<ImageEntry>,
    charts: Vec<ChartEntry>,
) -> Result<Manifest, BuildError> {
    let files: Vec<FileEntry> = entries
        .iter()
        .zip(hashed)
        .map(|((path, p), (digest, size))| FileEntry {
            path: path.clone(),
            size: *size,
            mode: p.mode,
            digest: digest.clone(),
        })
        .collect();
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: spec.name.value.clone(),
        version: spec.version.value.clone(),
        created: rfc3339(opts.source_date_epoch),
        ferry_version: env!("CARGO_PKG_VERSION").to_string(),
        files,
        images,
        charts,
        egress: spec.egress.clone(),
    };
    manifest.format_version = manifest.needed_version();
    manifest.check().map_err(|e| BuildError::Input {
        path: opts.spec.clone(),
        message: e.to_string(),
    })?;
    Ok(manifest)
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |source| BuildError::Io {
        path: path.clone(),
        source,
    }
}

/// A new temporary file in the folder of `path` (the current folder for a bare name), to be
/// renamed over `path` once complete; an error comes with the folder.
pub(crate) fn temp_file_beside(
    path: &Path,
    prefix: &str,
) -> Result<tempfile::NamedTempFile, (PathBuf, io::Error)> {
    let dir = folder_of(path);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map_err(|e| (dir.to_path_buf(), e))
}

/// Pass 2: writes the bundle into a temporary file beside its destination: `head` (the
/// head member), then the entries under `root`.
///
/// Entries go in order, except blobs fetched from a registry: each is a stored member of
/// its own whose length follows from its name and size, so the writer leaves room for it
/// and moves on while `opts.jobs` workers fetch such blobs and write them at their offsets.
/// The bytes are the same whatever order the fetches finish in. With a `delta` plan, the
/// blobs the base holds are skipped (never fetched, nor read past their first bytes), and
/// the compressed members the dry run already wrote are copied from it, not written again.
fn write_bundle(
    opts: &BuildOptions,
    root: &str,
    head: &[u8],
    entries: &[(SafePath, Planned)],
    hashed: &[(Digest, u64)],
    mut delta: Option<&mut delta_write::DeltaPlan>,
) -> Result<tempfile::NamedTempFile, BuildError> {
    let tmp =
        temp_file_beside(&opts.output, ".ferry-build-").map_err(|(dir, e)| io_err(&dir)(e))?;
    let total = match delta.as_deref() {
        Some(d) => d.carried(entries),
        None => entries.iter().map(|(_, p)| p.size).sum(),
    };
    let bar = opts.progress.bytes(total, "writing");
    // A delta's carried blobs all have their places: workers write them all.
    let fetched = match delta.as_deref() {
        Some(d) => d.stored(),
        None => entries.iter().filter(|(_, p)| fetched_later(p)).count(),
    };
    let delta_mode = delta.is_some();
    let fetches = Fetches {
        file: tmp.as_file(),
        mtime: opts.source_date_epoch,
        bar: &bar,
        failed: AtomicBool::new(false),
        first_error: Mutex::new(None),
    };
    {
        let write_err = io_err(&opts.output);
        let file = tmp.as_file().try_clone().map_err(io_err(tmp.path()))?;
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, file);
        file.write_all(head).map_err(&write_err)?;
        let mut w = TarGzWriter::new(file, opts.source_date_epoch);
        // A delta's stored entries all go to workers: nothing is hashed in order.
        let hasher = (!delta_mode).then(|| BackgroundHasher::new(4, 1 << 20));
        let workers = opts.jobs.clamp(1, 64).min(fetched);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Fetch>(workers.max(1));
        let rx = Mutex::new(rx);
        std::thread::scope(|scope| -> Result<(), BuildError> {
            let tx = tx; // Dropped when the writer is done: the workers then stop.
            for _ in 0..workers {
                scope.spawn(|| fetches.work(&rx));
            }
            for (i, ((path, planned), digest)) in entries.iter().zip(hashed).enumerate() {
                if fetches.failed.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(d) = delta.as_deref_mut() {
                    if !d.writes(i, &mut w).map_err(&write_err)? {
                        continue;
                    }
                }
                let name = format!("{root}/{path}");
                if delta_mode || fetched_later(planned) {
                    let len = stored_entry_len(&name, planned.size);
                    let at = w.reserve_member(len).map_err(&write_err)?;
                    let job = Fetch { name, planned, at };
                    if tx.send(job).is_err() {
                        break; // No worker is left to take it.
                    }
                } else {
                    let hasher = hasher.as_ref().expect("a hasher outside a delta");
                    let written =
                        write_entry(&mut w, &name, planned, &digest.0, hasher, &bar, &write_err);
                    if let Err(e) = written {
                        fetches.failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(())
        })?;
        if let Some(e) = fetches.first_error.lock().map_err(|_| poisoned())?.take() {
            return Err(e);
        }
        let mut out = match delta {
            Some(d) => d.finish(w).map_err(&write_err)?,
            None => w.finish().map_err(&write_err)?,
        };
        out.flush().map_err(&write_err)?;
    }
    bar.finish_and_clear();
    Ok(tmp)
}

fn poisoned() -> BuildError {
    BuildError::Input {
        path: PathBuf::from("(build)"),
        message: "a blob fetch panicked".into(),
    }
}

/// Whether a planned file is fetched by a worker into a member of its own (a stored blob
/// from a registry) rather than written in order. (A delta's carried stored blobs, local
/// ones too, all go to workers: its layout is known before anything is written.)
fn fetched_later(p: &Planned) -> bool {
    matches!(&p.location, BlobLocation::Remote(r) if r.packing() == Packing::Store)
}

/// One blob to fetch into the room left for it at `at`.
struct Fetch<'a> {
    name: String,
    planned: &'a Planned,
    at: u64,
}

/// The workers' shared state: the output file, and the first failure (which stops the rest).
struct Fetches<'a> {
    file: &'a std::fs::File,
    mtime: u64,
    bar: &'a indicatif::ProgressBar,
    failed: AtomicBool,
    first_error: Mutex<Option<BuildError>>,
}

impl Fetches<'_> {
    /// Takes jobs until the writer is done or a fetch failed.
    fn work(&self, rx: &Mutex<std::sync::mpsc::Receiver<Fetch>>) {
        loop {
            let job = match rx.lock() {
                Ok(rx) => match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
                Err(_) => return,
            };
            // After a failure the queue is drained without fetching, so the writer never
            // waits on a full queue.
            if self.failed.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(e) = self.fetch(&job) {
                self.failed.store(true, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert(e);
                }
            }
        }
    }

    /// Fetches one blob (from its registry, or its local file) into its member, checking it
    /// against its digest on the way.
    fn fetch(&self, job: &Fetch) -> Result<(), BuildError> {
        let remote = match &job.planned.location {
            BlobLocation::Remote(r) => Some(r),
            _ => None,
        };
        let expected = job
            .planned
            .expected
            .as_ref()
            .expect("only blobs are written by workers");
        let read_err = io_err(Path::new(&job.planned.origin));
        let opened = match remote {
            Some(r) => r.open(),
            None => job.planned.location.open(job.planned.size),
        };
        let reader = self.bar.wrap_read(opened.map_err(&read_err)?);
        // Frames and blocks go out in 1 MiB writes, not one system call each.
        let out = BufWriter::with_capacity(WRITE_BUFFER, PositionedWriter::new(self.file, job.at));
        let (name, mode, size) = (&job.name, job.planned.mode.bits(), job.planned.size);
        let found = if remote.is_some_and(|r| r.checks_digest()) {
            // The reader checks the bytes when asked past their end: hashed once.
            let mut reader = reader;
            let out = write_own_member(out, self.mtime, name, mode, size, &mut reader);
            out.and_then(|o| o.into_inner().map_err(|e| e.into_error()))
                .map_err(&read_err)?;
            if reader.read(&mut [0u8; 1]).map_err(&read_err)? != 0 {
                return Err(read_err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than the {size} bytes its descriptor gives"),
                )));
            }
            expected.clone()
        } else if size >= BACKGROUND_HASH_MIN {
            // Hashed on a thread of its own while this one copies: a large blob costs the
            // longer of the two, not their sum.
            let hasher = BackgroundHasher::new(4, 1 << 20);
            let tee = HashTee {
                inner: reader,
                hasher: &hasher,
            };
            let out = write_own_member(out, self.mtime, name, mode, size, tee);
            out.and_then(|o| o.into_inner().map_err(|e| e.into_error()))
                .map_err(&read_err)?;
            hasher.finish().0
        } else {
            let mut tee = crate::oci::digest::HashingReader::new(reader);
            let out = write_own_member(out, self.mtime, name, mode, size, &mut tee);
            out.and_then(|o| o.into_inner().map_err(|e| e.into_error()))
                .map_err(&read_err)?;
            tee.finish().0
        };
        if found != *expected {
            return Err(BuildError::CorruptBlob {
                source_desc: job.planned.origin.clone(),
                expected: expected.clone(),
                found,
            });
        }
        if let Some(r) = remote {
            r.verified();
        }
        Ok(())
    }
}

/// Writes one planned file as an entry named `name`, checking its bytes on the way: a blob
/// against its digest (hashed on the background hasher's thread), any other file against
/// its digest from pass 1.
fn write_entry<W: Write>(
    w: &mut TarGzWriter<W>,
    name: &str,
    planned: &Planned,
    digest: &Digest,
    hasher: &BackgroundHasher,
    bar: &indicatif::ProgressBar,
    write_err: &impl Fn(io::Error) -> BuildError,
) -> Result<(), BuildError> {
    let size = planned.size;
    let read_err = io_err(Path::new(&planned.origin));
    let mut reader = planned.location.open(size).map_err(&read_err)?;
    let mut head = [0u8; 8];
    let n = read_up_to(&mut reader, &mut head).map_err(&read_err)?;
    let packing = match &planned.location {
        BlobLocation::Remote(r) => r.packing(),
        _ => Packing::sniff(&head[..n]),
    };
    let data = bar.wrap_read(io::Cursor::new(head[..n].to_vec()).chain(reader));
    let mode = planned.mode.bits();
    match &planned.expected {
        Some(expected) => {
            let tee = HashTee {
                inner: data,
                hasher,
            };
            append(w, name, mode, size, packing, tee).map_err(write_err)?;
            let (found, _) = hasher.finish();
            if found != *expected {
                return Err(BuildError::CorruptBlob {
                    source_desc: planned.origin.clone(),
                    expected: expected.clone(),
                    found,
                });
            }
        }
        None => {
            // Small files are hashed again while written: one that changed since pass 1
            // fails the build instead of producing a bundle that fails verify.
            let mut tee = crate::oci::digest::HashingReader::new(data);
            append(w, name, mode, size, packing, &mut tee).map_err(write_err)?;
            let (found, _) = tee.finish();
            if found != *digest {
                return Err(BuildError::Input {
                    path: PathBuf::from(&planned.origin),
                    message: "changed while the bundle was being written; build again".into(),
                });
            }
        }
    }
    Ok(())
}

/// Appends an entry: a stored one as a member of its own, a compressed one to the run.
fn append<W: Write>(
    w: &mut TarGzWriter<W>,
    name: &str,
    mode: u32,
    size: u64,
    packing: Packing,
    data: impl Read,
) -> io::Result<()> {
    match packing {
        Packing::Store => w.append_own_member(name, mode, size, data),
        Packing::Compress => w.append(name, mode, size, packing, data),
    }
}

/// Writes the head member: the manifest and, when given, its signature. It is stored, not
/// deflated, so its size depends only on the lengths of what it holds: re-signing with a
/// signature of the same padded length can then replace it in place.
pub fn write_head<W: Write>(
    w: &mut TarGzWriter<W>,
    root: &str,
    manifest: &[u8],
    signature: Option<&str>,
) -> io::Result<()> {
    w.append(
        &format!("{root}/{MANIFEST_NAME}"),
        0o644,
        manifest.len() as u64,
        Packing::Store,
        manifest,
    )?;
    if let Some(sig) = signature {
        w.append(
            &format!("{root}/{SIGNATURE_NAME}"),
            0o644,
            sig.len() as u64,
            Packing::Store,
            sig.as_bytes(),
        )?;
    }
    w.end_member()
}

/// The head member, in memory: what [`write_head`] writes.
pub fn head_member(
    root: &str,
    mtime: u64,
    manifest: &[u8],
    signature: Option<&str>,
) -> io::Result<Vec<u8>> {
    let mut w = TarGzWriter::new(Vec::new(), mtime);
    write_head(&mut w, root, manifest, signature)?;
    w.into_output()
}

/// Passes reads through and hashes a copy on the background hasher's thread.
struct HashTee<'h, R> {
    inner: R,
    hasher: &'h BackgroundHasher,
}

impl<R: Read> Read for HashTee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut done = 0;
        while done < n {
            let mut b = self.hasher.buffer();
            let k = (n - done).min(b.len());
            b[..k].copy_from_slice(&buf[done..done + k]);
            b.truncate(k);
            self.hasher.submit(b);
            done += k;
        }
        Ok(n)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Pass 1: hashes every planned file that is not content-addressed, on all cores. Blobs are
/// named by their digest; they are hashed while they are written (pass 2), on a second core.
fn hash_all(
    entries: &[(SafePath, Planned)],
    progress: Progress,
) -> Result<Vec<(Digest, u64)>, BuildError> {
    let bar = progress.bytes(0, "hashing");
    let hashed = crate::parallel::par_map(entries, |(_, p)| {
        if let Some(expected) = &p.expected {
            // Content-addressed: checked while written (pass 2).
            return Ok((expected.clone(), p.size));
        }
        let io_err = |source| BuildError::Io {
            path: PathBuf::from(&p.origin),
            source,
        };
        let reader = p.location.open(p.size).map_err(io_err)?;
        let (digest, size) = hash_reader(bar.wrap_read(reader)).map_err(io_err)?;
        if size != p.size {
            return Err(BuildError::Input {
                path: PathBuf::from(&p.origin),
                message: format!("changed size while read ({} then {size} bytes)", p.size),
            });
        }
        Ok((digest, size))
    });
    bar.finish_and_clear();
    hashed.into_iter().collect()
}

fn file_size(path: &Path) -> Result<u64, BuildError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BuildError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn file_name_path(src: &Path) -> Result<SafePath, String> {
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("`{}` has no usable file name", src.display()))?;
    SafePath::new(name).map_err(|e| e.to_string())
}

fn mode_of(src: &Path) -> Result<Mode, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(src)
        .map_err(|e| format!("cannot read `{}`: {e}", src.display()))?;
    if !meta.is_file() {
        return Err(format!("`{}` is not a regular file (bundles hold regular files only; symlinks are not followed)", src.display()));
    }
    Ok(if meta.permissions().mode() & 0o100 != 0 {
        Mode::Executable
    } else {
        Mode::Regular
    })
}

fn add_file(
    plan: &mut Plan,
    base: &Path,
    rel: &Spanned<String>,
    dir: Option<&str>,
    mode: Mode,
    field: &str,
    spec: &Path,
) -> Result<(), BuildError> {
    let src = base.join(&rel.value);
    mode_of(&src).map_err(|m| BuildError::Spec(field_error(spec, field, rel, m)))?;
    let name =
        file_name_path(&src).map_err(|m| BuildError::Spec(field_error(spec, field, rel, m)))?;
    let path = match dir {
        Some(d) => SafePath::new(d).expect("static dir").join(&name),
        None => name,
    };
    plan.add(path, Planned::file(&src, mode)?)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChartYaml {
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    app_version: Option<String>,
}

fn check_chart_yaml(text: &str, at: &str) -> Result<ChartEntry, String> {
    let parsed: ChartYaml =
        serde_saphyr::from_str(text).map_err(|e| format!("{at}: not a valid Chart.yaml: {e}"))?;
    let name = parsed
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{at}: Chart.yaml has no `name`"))?;
    let version = parsed
        .version
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{at}: Chart.yaml has no `version`"))?;
    Ok(ChartEntry {
        name,
        version,
        app_version: parsed.app_version,
        path: SafePath::new("charts").expect("static"),
    })
}

fn add_chart(
    plan: &mut Plan,
    base: &Path,
    rel: &str,
    at: &Spanned<ChartSource>,
    spec: &Path,
) -> Result<ChartEntry, BuildError> {
    let src = base.join(rel);
    let located = |m: String| BuildError::Spec(field_error(spec, "charts", at, m));
    let name = file_name_path(&src).map_err(located)?;
    let meta = std::fs::metadata(&src)
        .map_err(|e| located(format!("cannot read `{}`: {e}", src.display())))?;
    if meta.is_dir() {
        let chart_yaml = src.join("Chart.yaml");
        let text = std::fs::read_to_string(&chart_yaml).map_err(|e| {
            located(format!(
                "`{}`: {e} (a chart folder needs a Chart.yaml)",
                chart_yaml.display()
            ))
        })?;
        let mut entry =
            check_chart_yaml(&text, &chart_yaml.display().to_string()).map_err(located)?;
        let root = SafePath::new("charts").expect("static").join(&name);
        entry.path = root.clone();
        let mut walk: Vec<_> = walkdir::WalkDir::new(&src)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| BuildError::Input {
                path: src.clone(),
                message: e.to_string(),
            })?;
        walk.retain(|e| !e.file_type().is_dir());
        for e in walk {
            let rel_path = e.path().strip_prefix(&src).expect("under chart root");
            let rel_str = rel_path.to_str().ok_or_else(|| BuildError::Input {
                path: e.path().to_path_buf(),
                message: "file name is not UTF-8".into(),
            })?;
            let safe = SafePath::new(rel_str).map_err(|err| BuildError::Input {
                path: e.path().to_path_buf(),
                message: err.to_string(),
            })?;
            let mode = mode_of(e.path()).map_err(|message| BuildError::Input {
                path: e.path().to_path_buf(),
                message,
            })?;
            plan.add(root.join(&safe), Planned::file(e.path(), mode)?)?;
        }
        Ok(entry)
    } else {
        let text = chart_yaml_from_tgz(&src).map_err(located)?;
        let mut entry =
            check_chart_yaml(&text, &format!("{} (Chart.yaml)", src.display())).map_err(located)?;
        let path = SafePath::new("charts").expect("static").join(&name);
        entry.path = path.clone();
        plan.add(path, Planned::file(&src, Mode::Regular)?)?;
        Ok(entry)
    }
}

/// Runs the pre-write check on the charts as they will be in the bundle: folders and local
/// packaged charts where they are, fetched charts written to a temporary folder.
fn run_check(
    check: &ContentsCheck,
    opts: &BuildOptions,
    spec: &Spec,
    base: &Path,
    plan: &Plan,
    charts: &[ChartEntry],
    images: &[ImageEntry],
) -> Result<Vec<String>, BuildError> {
    let tmp = tempfile::tempdir().map_err(io_err(Path::new("(temporary folder)")))?;
    let mut chart_paths = Vec::new();
    for (entry, source) in charts.iter().zip(&spec.charts) {
        match &source.value {
            ChartSource::Path(rel) => chart_paths.push(base.join(rel)),
            _ => {
                let Some(Planned {
                    location: BlobLocation::Memory(bytes),
                    ..
                }) = plan.files.get(&entry.path)
                else {
                    continue;
                };
                let file = tmp
                    .path()
                    .join(format!("{}-{}.tgz", entry.name, entry.version));
                std::fs::write(&file, bytes).map_err(io_err(&file))?;
                chart_paths.push(file);
            }
        }
    }
    let planned = PlannedContents {
        charts: chart_paths,
        values: spec.values.iter().map(|v| base.join(&v.value)).collect(),
        images,
    };
    check(&planned).map_err(|message| BuildError::Incomplete {
        spec: opts.spec.clone(),
        message,
    })
}

/// A chart from a registry or a chart repository: fetched into memory (charts are small),
/// stored as `charts/NAME-VERSION.tgz`, and locked by its digest.
fn add_remote_chart(
    plan: &mut Plan,
    lock: &mut Lock,
    notes: &mut Vec<String>,
    opts: &BuildOptions,
    source: &ChartSource,
    at: &Spanned<ChartSource>,
) -> Result<ChartEntry, BuildError> {
    let spec = opts.spec.as_path();
    let located = |m: String| BuildError::Spec(field_error(spec, "charts", at, m));
    let Some(remote) = &opts.remote else {
        return Err(located(format!(
            "fetching {} is not available here; give a chart folder or .tgz",
            source.describe()
        )));
    };
    let fetched = remote.fetch_chart(source).map_err(located)?;
    let what = fetched.source.clone();
    let text = chart_yaml_from_packaged(&fetched.bytes[..], &what).map_err(located)?;
    let mut entry = check_chart_yaml(&text, &format!("{what} (Chart.yaml)")).map_err(located)?;
    if let ChartSource::Repo { name, version, .. } = source {
        if entry.name != *name || entry.version != *version {
            return Err(located(format!(
                "the repository served {} {} for {name} {version}",
                entry.name, entry.version
            )));
        }
    }
    let file = format!("{}-{}.tgz", entry.name, entry.version);
    let path = SafePath::new("charts")
        .expect("static")
        .join(&SafePath::new(&file).map_err(|e| located(format!("`{file}`: {e}")))?);
    entry.path = path.clone();
    let locked = LockedChart {
        source: match source {
            ChartSource::Repo {
                repo,
                name,
                version,
            } => format!("{} {name} {version}", repo.trim_end_matches('/')),
            other => other.describe(),
        },
        name: entry.name.clone(),
        version: entry.version.clone(),
        digest: Digest::of(&fetched.bytes),
    };
    if let Some(old) = &opts.locked {
        old.check_chart(&Lock::path_for(spec), &locked)?;
    }
    lock.charts.push(locked);
    notes.extend(fetched.notes.iter().map(|n| format!("{what}: {n}")));
    let size = fetched.bytes.len() as u64;
    plan.add(
        path,
        Planned {
            size,
            location: BlobLocation::Memory(fetched.bytes.into()),
            origin: what,
            mode: Mode::Regular,
            expected: None,
        },
    )?;
    Ok(entry)
}

/// Reads `<chart>/Chart.yaml` out of a packaged chart.
fn chart_yaml_from_tgz(path: &Path) -> Result<String, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    chart_yaml_from_packaged(f, &path.display().to_string())
}

/// Reads `<chart>/Chart.yaml` out of a packaged chart's bytes; `what` names it in messages.
fn chart_yaml_from_packaged(data: impl Read, what: &str) -> Result<String, String> {
    let limits = Limits::default();
    let mut ar = tar::Archive::new(MemberReader::foreign(data, limits));
    let not_chart = |e: EntryError| format!("`{what}` is not a packaged chart (.tgz): {e}");
    let mut entries = TarEntries::new(&mut ar, TarPolicy::foreign(limits)).map_err(not_chart)?;
    while let Some(TarEntry { name, mut entry }) = entries.next_entry().map_err(not_chart)? {
        let parts: Vec<&str> = name.as_str().split('/').collect();
        if parts.len() == 2 && parts[1] == "Chart.yaml" {
            let mut s = String::new();
            entry
                .by_ref()
                .take(MAX_JSON)
                .read_to_string(&mut s)
                .map_err(|e| format!("`{what}`: Chart.yaml: {e}"))?;
            return Ok(s);
        }
    }
    Err(format!(
        "`{what}` has no <chart>/Chart.yaml: not a packaged Helm chart"
    ))
}

/// Formats seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("formattable")
}

//! What `ferry serve` answers from: the images of one or more verified bundles, by the
//! repository names a client may ask for.
//!
//! Each input (a bundle file or an extracted bundle folder) is verified once, in the pass
//! that also indexes where each blob lives (`registry::bundle_source`). Every image is then
//! walked from its manifest or index, so that a repository answers only for the manifests
//! and blobs of its own images. Manifests, configs and indexes are kept in memory (the
//! verifier bounds them); layers stay where they are.

use crate::bundle::archive::{Limits, TarPolicy};
use crate::bundle::manifest::{ImageEntry, Manifest};
use crate::bundle::source::{self, SourceKind, SourceSpec};
use crate::bundle::verify::{self, Evidence, HeadCheck, VerifyError, VerifyOptions};
use crate::oci::digest::Digest;
use crate::oci::document::{self, Document};
use crate::oci::reference::ImageRef;
use crate::progress::Progress;
use crate::registry::bundle_source::{index_bundle_in_place, IndexedSource, MEMORY_BUDGET};
use crate::registry::push::BlobSource;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the images cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("{path} changed while it was being verified ({what}); serve it once it is complete")]
    ChangedDuringVerify { path: PathBuf, what: String },
    #[error(
        "two bundles disagree on {reference}: {first_bundle} has {first}, {second_bundle} has \
         {second}; serve them separately, on two ports"
    )]
    TagConflict {
        reference: String,
        first_bundle: PathBuf,
        first: Digest,
        second_bundle: PathBuf,
        second: Digest,
    },
}

impl CatalogError {
    /// 1 for a bundle that failed verification or two that disagree, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CatalogError::Verify(v) => v.exit_code(),
            CatalogError::TagConflict { .. } => 1,
            _ => 2,
        }
    }
}

/// How to open the inputs.
pub struct CatalogOptions<'a> {
    pub limits: Limits,
    pub progress: Progress,
    pub check_head: Option<&'a HeadCheck<'a>>,
    /// Also answer under `PREFIX/PATH`.
    pub prefix: Option<String>,
}

/// The identity of a file when it was verified: a changed size, modification time or inode
/// means the bytes can no longer be trusted without hashing them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileId {
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let m = std::fs::metadata(path)?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }

    /// What differs between the verified identity and `now`, in words.
    pub fn differences(&self, now: &FileId) -> String {
        let mut out = Vec::new();
        if self.size != now.size {
            out.push(format!("size {} → {}", self.size, now.size));
        }
        if self.mtime_ns != now.mtime_ns {
            out.push("modification time changed".to_string());
        }
        if (self.dev, self.ino) != (now.dev, now.ino) {
            out.push("it was replaced by another file (inode changed)".to_string());
        }
        out.join(", ")
    }
}

/// One verified input.
pub struct Bundle {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub source: IndexedSource,
    /// What the verification found (the signature check among it).
    pub evidence: Evidence,
    /// The identity, at verification, of every file blobs are read from in place.
    pub files: HashMap<PathBuf, FileId>,
}

/// A manifest or index, kept whole.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub media_type: String,
    pub bytes: Arc<[u8]>,
    /// What a referrers response lists for it.
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Value>,
}

/// A blob and the input it is read from.
#[derive(Debug, Clone, Copy)]
pub struct BlobPlace {
    pub size: u64,
    pub bundle: usize,
}

/// One repository of one source registry.
#[derive(Debug, Default)]
pub struct Repo {
    pub registry: String,
    pub path: String,
    pub tags: BTreeMap<String, Digest>,
    /// Every manifest and blob its images reach.
    pub digests: BTreeSet<Digest>,
    /// For conflict messages: which input gave each tag.
    tag_origin: BTreeMap<String, usize>,
}

impl Repo {
    /// `registry/path`, as the original references write it.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }
}

/// Why a repository name does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Unknown,
    /// Several source registries share the path: the `ns` query parameter picks one.
    Ambiguous(Vec<String>),
}

/// Everything `ferry serve` answers from.
#[derive(Default)]
pub struct Catalog {
    pub bundles: Vec<Bundle>,
    pub blobs: HashMap<Digest, BlobPlace>,
    pub manifests: HashMap<Digest, StoredManifest>,
    pub repos: Vec<Repo>,
    /// Served name → the repositories it may mean.
    pub names: BTreeMap<String, Vec<usize>>,
    /// Subject digest → the manifests that name it as their `subject`.
    pub referrers: HashMap<Digest, BTreeSet<Digest>>,
}

impl Catalog {
    /// Verifies and indexes every input, and merges their images.
    pub fn open(inputs: &[PathBuf], opts: &CatalogOptions) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::default();
        let mut by_key: HashMap<(String, String), usize> = HashMap::new();
        for path in inputs {
            let bundle = open_input(path, opts)?;
            let index = catalog.bundles.len();
            catalog.bundles.push(bundle);
            catalog.add_images(index, &mut by_key)?;
        }
        for (i, repo) in catalog.repos.iter().enumerate() {
            for name in served_names(repo, opts.prefix.as_deref()) {
                let list = catalog.names.entry(name).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        Ok(catalog)
    }

    /// The repository a request names, with the `ns` query parameter when there is one.
    pub fn lookup(&self, name: &str, ns: Option<&str>) -> Result<&Repo, Lookup> {
        let found = self.names.get(name).ok_or(Lookup::Unknown)?;
        let repos: Vec<&Repo> = found.iter().map(|&i| &self.repos[i]).collect();
        match ns {
            Some(ns) => {
                let ns = normalise_ns(ns);
                repos
                    .into_iter()
                    .find(|r| r.registry == ns)
                    .ok_or(Lookup::Unknown)
            }
            None if repos.len() == 1 => Ok(repos[0]),
            None => Err(Lookup::Ambiguous(
                repos.iter().map(|r| r.full_name()).collect(),
            )),
        }
    }

    /// Every source registry the images come from.
    pub fn registries(&self) -> BTreeSet<&str> {
        self.repos.iter().map(|r| r.registry.as_str()).collect()
    }

    /// The input a blob is read from.
    pub fn blob(&self, digest: &Digest) -> Option<(&Bundle, u64)> {
        let place = self.blobs.get(digest)?;
        Some((&self.bundles[place.bundle], place.size))
    }

    fn add_images(
        &mut self,
        bundle: usize,
        by_key: &mut HashMap<(String, String), usize>,
    ) -> Result<(), CatalogError> {
        let images = self.bundles[bundle].manifest.images.clone();
        for image in &images {
            let reference = image_ref(&self.bundles[bundle].path, image)?;
            let registry = reference.host().to_string();
            let key = (registry.clone(), reference.repository.clone());
            let repo_index = *by_key.entry(key).or_insert_with(|| {
                self.repos.push(Repo {
                    registry,
                    path: reference.repository.clone(),
                    ..Repo::default()
                });
                self.repos.len() - 1
            });
            let mut reached = BTreeSet::new();
            self.walk(
                bundle,
                &image.digest,
                Some(&image.media_type),
                &mut reached,
                0,
            )?;
            self.repos[repo_index].digests.extend(reached);
            if let Some(tag) = &image.tag {
                self.add_tag(repo_index, tag, &image.digest, bundle)?;
            }
            // Signatures, attestations and SBOMs are served where cosign and admission
            // controllers look: cosign's tags, and the referrers API (their `subject`).
            for r in &image.referrers {
                let mut reached = BTreeSet::new();
                self.walk(bundle, &r.digest, Some(&r.media_type), &mut reached, 0)?;
                self.repos[repo_index].digests.extend(reached);
                if let Some(tag) = &r.tag {
                    self.add_tag(repo_index, tag, &r.digest, bundle)?;
                }
            }
        }
        Ok(())
    }

    fn add_tag(
        &mut self,
        repo: usize,
        tag: &str,
        digest: &Digest,
        bundle: usize,
    ) -> Result<(), CatalogError> {
        let r = &mut self.repos[repo];
        match r.tags.get(tag) {
            Some(existing) if existing != digest => {
                let first = r.tag_origin[tag];
                Err(CatalogError::TagConflict {
                    reference: format!("{}:{tag}", r.full_name()),
                    first_bundle: self.bundles[first].path.clone(),
                    first: existing.clone(),
                    second_bundle: self.bundles[bundle].path.clone(),
                    second: digest.clone(),
                })
            }
            Some(_) => Ok(()),
            None => {
                r.tags.insert(tag.to_string(), digest.clone());
                r.tag_origin.insert(tag.to_string(), bundle);
                Ok(())
            }
        }
    }

    /// Records a manifest or index and everything it reaches.
    fn walk(
        &mut self,
        bundle: usize,
        digest: &Digest,
        declared: Option<&str>,
        reached: &mut BTreeSet<Digest>,
        depth: usize,
    ) -> Result<(), CatalogError> {
        let path = self.bundles[bundle].path.clone();
        let bad = |message: String| CatalogError::Input {
            path: path.clone(),
            message,
        };
        if depth > 4 {
            return Err(bad(format!("{digest}: indexes nested too deeply")));
        }
        reached.insert(digest.clone());
        let source = &self.bundles[bundle].source;
        let bytes = source
            .read_manifest(digest)
            .map_err(|e| bad(format!("cannot read manifest {digest}: {e}")))?;
        let (media_type, doc) = Document::parse(&bytes, declared)
            .map_err(|e| bad(format!("manifest {digest}: {e}")))?;
        let raw: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest {digest}: {e}")))?;
        let mut blobs = Vec::new();
        match &doc {
            Document::Index(_) => {
                for child in doc.manifests() {
                    let Some(d) = document::digest_of(child) else {
                        continue;
                    };
                    let mt = child.media_type().to_string();
                    self.walk(bundle, &d, Some(&mt), reached, depth + 1)?;
                }
            }
            Document::Manifest(m) => {
                blobs.extend(document::digest_of(m.config()));
                blobs.extend(m.layers().iter().filter_map(document::digest_of));
            }
        }
        for blob in blobs {
            let source = &self.bundles[bundle].source;
            // Non-distributable layers are not in the bundle: nodes fetch them elsewhere.
            if let Some(size) = source.blob_size(&blob) {
                self.blobs
                    .entry(blob.clone())
                    .or_insert(BlobPlace { size, bundle });
                reached.insert(blob);
            }
        }
        if let Some(subject) = raw
            .pointer("/subject/digest")
            .and_then(|s| s.as_str())
            .and_then(|s| s.parse::<Digest>().ok())
        {
            self.referrers
                .entry(subject)
                .or_default()
                .insert(digest.clone());
        }
        let artifact_type = raw
            .get("artifactType")
            .or_else(|| raw.pointer("/config/mediaType"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        self.manifests
            .entry(digest.clone())
            .or_insert(StoredManifest {
                media_type,
                bytes: bytes.into(),
                artifact_type,
                annotations: raw.get("annotations").cloned(),
            });
        Ok(())
    }
}

/// The names a repository answers under: its path, `PREFIX/PATH`, and `REGISTRY/PATH` (for
/// mirrors such as CRI-O's, which cannot send `ns`) when the host is a valid name component.
fn served_names(repo: &Repo, prefix: Option<&str>) -> Vec<String> {
    let mut names = vec![repo.path.clone()];
    if let Some(p) = prefix {
        names.push(format!("{p}/{}", repo.path));
    }
    if super::http::valid_name(&repo.registry) {
        names.push(repo.full_name());
    }
    names
}

/// containerd sends `ns=docker.io`; hosts are compared as the references normalise them.
fn normalise_ns(ns: &str) -> String {
    match ns.to_ascii_lowercase().as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

fn image_ref(path: &Path, image: &ImageEntry) -> Result<ImageRef, CatalogError> {
    image.image_ref().map_err(|e| CatalogError::Input {
        path: path.to_path_buf(),
        message: format!("ferry.json: image {}: {e}", image.reference),
    })
}

/// Verifies one input and indexes its blobs.
fn open_input(path: &Path, opts: &CatalogOptions) -> Result<Bundle, CatalogError> {
    let verify_opts = VerifyOptions {
        input: path.to_path_buf(),
        limits: opts.limits,
        progress: opts.progress,
        check_head: opts.check_head,
    };
    if path.is_dir() {
        return open_folder(path, &verify_opts);
    }
    let io_err = |e: std::io::Error| VerifyError::Open {
        path: path.to_path_buf(),
        source: e,
    };
    let before = FileId::of(path).map_err(io_err)?;
    let indexed = index_bundle_in_place(&verify_opts, MEMORY_BUDGET)?;
    let after = FileId::of(path).map_err(io_err)?;
    if before != after {
        return Err(CatalogError::ChangedDuringVerify {
            path: path.to_path_buf(),
            what: before.differences(&after),
        });
    }
    Ok(Bundle {
        path: path.to_path_buf(),
        manifest: indexed.manifest,
        source: indexed.source,
        evidence: indexed.evidence,
        files: HashMap::from([(path.to_path_buf(), before)]),
    })
}

/// An extracted bundle folder: verified file by file, its layout read in place.
fn open_folder(path: &Path, opts: &VerifyOptions) -> Result<Bundle, CatalogError> {
    let evidence = verify::verify(opts)?;
    let root = verify::find_root(path)?;
    let (manifest, _) = crate::bundle::inspect::read_manifest(&root)?;
    let mut blobs = IndexedSource::default();
    let policy = TarPolicy::image_archive(opts.limits);
    for image in &manifest.images {
        // The image, and each referrer under the name the layout gives it.
        let names = std::iter::once(image.reference.clone())
            .chain(image.referrers.iter().map(|r| r.layout_name(image)));
        for name in names {
            let spec = SourceSpec {
                kind: SourceKind::OciLayout,
                path: root.join("images"),
                name: Some(name.clone()),
            };
            let resolved =
                source::resolve(&spec, &name, policy).map_err(|e| CatalogError::Input {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            for b in resolved.blobs {
                blobs.insert(b.digest, b.size, b.location);
            }
        }
    }
    let mut files = HashMap::new();
    let digests: Vec<Digest> = blobs.digests().cloned().collect();
    for d in digests {
        if let Some(file) = blobs.backing_file(&d) {
            let id = FileId::of(file).map_err(|source| VerifyError::Open {
                path: file.to_path_buf(),
                source,
            })?;
            files.insert(file.to_path_buf(), id);
        }
    }
    Ok(Bundle {
        path: path.to_path_buf(),
        manifest,
        source: blobs,
        evidence,
        files,
    })
}

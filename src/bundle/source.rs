//! Image inputs of `ferry build` and `ferry load`: OCI image layouts, `oci-archive` and
//! `docker-archive` tarballs, resolved to the exact blobs an image consists of. Archives are
//! read with the checks of `archive::TarEntries` and their members read in place.

use crate::bundle::archive::{EntryError, Packing, TarEntries, TarEntry, TarPolicy};
use crate::bundle::manifest::Referrer;
use crate::bundle::safepath::SafePath;
use crate::bundle::spec::ChartSource;
use crate::oci::digest::{hash_reader, Digest};
use crate::oci::document::{
    self, names, BlobRef, Document, CONTAINERD_NAME, MAX_JSON, OCI_CONFIG, OCI_MANIFEST, REF_NAME,
};
use crate::oci::reference::ImageRef;
use crate::oci::referrers::{self, ReferrerKind};
use oci_spec::image::{Descriptor, Platform};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which kind of input an image is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    OciLayout,
    OciArchive,
    DockerArchive,
}

/// A parsed `from:` of the spec: `oci:DIR[:NAME]`, `oci-archive:FILE[:NAME]`,
/// `docker-archive:FILE[:REF]`.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub kind: SourceKind,
    pub path: PathBuf,
    pub name: Option<String>,
}

impl SourceSpec {
    /// Parses a `from:` string; relative paths are taken from `base`.
    pub fn parse(from: &str, base: &Path) -> Result<SourceSpec, String> {
        let (transport, rest) = from
            .split_once(':')
            .ok_or_else(|| "expected `oci:DIR[:NAME]`, `oci-archive:FILE[:NAME]` or `docker-archive:FILE[:REF]`".to_string())?;
        let kind = match transport {
            "oci" => SourceKind::OciLayout,
            "oci-archive" => SourceKind::OciArchive,
            "docker-archive" => SourceKind::DockerArchive,
            other => {
                return Err(format!(
                    "unknown transport `{other}`; use `oci:`, `oci-archive:` or `docker-archive:` (a registry is not a build input: copy the image with `skopeo copy` first)"
                ))
            }
        };
        let (path, name) = match rest.split_once(':') {
            Some((p, n)) if !n.is_empty() => (p, Some(n.to_string())),
            Some((p, _)) => (p, None),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err("the path after the transport is empty".into());
        }
        Ok(SourceSpec {
            kind,
            path: base.join(path),
            name,
        })
    }
}

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub enum BlobLocation {
    /// A file of its own (a blob of an OCI layout folder).
    File(PathBuf),
    /// A member of an uncompressed tar archive, at a byte offset.
    Member { archive: Arc<PathBuf>, offset: u64 },
    /// Bytes held in memory (manifests, configs and synthesised manifests: small).
    Memory(Arc<[u8]>),
    /// Bytes fetched from elsewhere (a registry) while the bundle is written.
    Remote(Arc<dyn RemoteBlob>),
}

/// A blob whose bytes are fetched (from a registry, or a cache of one) when it is written.
pub trait RemoteBlob: Send + Sync {
    /// Opens the blob's bytes afresh. The reader yields the blob's bytes exactly once each;
    /// the caller checks them against the digest.
    fn open(&self) -> io::Result<Box<dyn Read + Send>>;
    /// The blob's bytes were read to the end and matched their digest (a cache may keep them).
    fn verified(&self) {}
    /// How its bytes are packed: chosen from the media type, not sniffed.
    fn packing(&self) -> Packing;
    /// Whether the reader `open` gives checks the bytes against the digest itself (and fails
    /// at the end when they do not match), so the caller need not hash them again.
    fn checks_digest(&self) -> bool {
        false
    }
    /// Where it comes from, for messages.
    fn describe(&self) -> String;
}

impl std::fmt::Debug for dyn RemoteBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// An image the spec takes from a registry: the one `ref` names, or another one (`from:
/// docker://…`) while the bundle records `ref`.
#[derive(Debug, Clone)]
pub struct RemoteRequest {
    /// The reference the bundle records.
    pub reference: ImageRef,
    /// The reference to pull.
    pub pull: ImageRef,
    /// A digest the image must have (`digest:` of the spec, or the digest in `pull`).
    pub digest: Option<Digest>,
    /// Platforms to keep of an index; empty keeps it whole.
    pub platforms: Vec<String>,
    /// Also take the artifacts attached to the image (cosign tags, OCI referrers).
    pub referrers: bool,
}

/// Fetches the build inputs that live in registries and chart repositories.
pub trait RemoteInputs: Send + Sync {
    /// The image, its manifests and configs fetched, its layers as `BlobLocation::Remote`.
    fn resolve(&self, request: &RemoteRequest) -> Result<ResolvedImage, String>;
    /// A packaged chart from a registry (`oci://…`) or a classic chart repository, its bytes
    /// checked against the digest its source gives.
    fn fetch_chart(&self, source: &ChartSource) -> Result<FetchedChart, String>;
}

impl std::fmt::Debug for dyn RemoteInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteInputs")
    }
}

/// A packaged chart fetched for the build.
#[derive(Debug, Clone)]
pub struct FetchedChart {
    /// The `.tgz` bytes as served.
    pub bytes: Vec<u8>,
    /// Where they came from (the `oci://` reference or the chart's URL), for messages.
    pub source: String,
    /// What the user should know (e.g. that the repository lists no digest to check).
    pub notes: Vec<String>,
}

impl BlobLocation {
    /// Opens the blob's bytes for reading.
    pub fn open(&self, size: u64) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            BlobLocation::File(p) => Box::new(File::open(p)?),
            BlobLocation::Member { archive, offset } => {
                let mut f = File::open(archive.as_path())?;
                f.seek(SeekFrom::Start(*offset))?;
                Box::new(f.take(size))
            }
            BlobLocation::Memory(b) => Box::new(io::Cursor::new(b.clone())),
            BlobLocation::Remote(r) => r.open()?,
        })
    }

    /// A description for messages.
    pub fn describe(&self) -> String {
        match self {
            BlobLocation::File(p) => p.display().to_string(),
            BlobLocation::Member { archive, offset } => {
                format!("{} (at byte {offset})", archive.display())
            }
            BlobLocation::Memory(_) => "(generated)".into(),
            BlobLocation::Remote(r) => r.describe(),
        }
    }
}

/// One blob an image needs.
#[derive(Debug, Clone)]
pub struct SourceBlob {
    pub digest: Digest,
    pub size: u64,
    pub location: BlobLocation,
}

/// An image resolved to its blobs.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platforms: Vec<String>,
    /// Every blob, manifests and indexes included, each once.
    pub blobs: Vec<SourceBlob>,
    /// The digest of the index the image was made from, when it is not `digest`: a
    /// multi-platform index filtered down to some platforms is a new index.
    pub source_digest: Option<Digest>,
    /// Layers left out because their media type says they may not be redistributed
    /// (their manifests keep them; runtimes fetch them from their URLs).
    pub non_distributable: Vec<Digest>,
    /// Signatures, attestations and SBOMs attached to the image, when asked for.
    pub referrers: Vec<ResolvedReferrer>,
}

/// An artifact attached to an image, resolved to its blobs.
#[derive(Debug, Clone)]
pub struct ResolvedReferrer {
    /// What `ferry.json` records about it.
    pub entry: Referrer,
    /// Its manifest, config and layers, each once (the manifest first).
    pub blobs: Vec<SourceBlob>,
}

impl ResolvedReferrer {
    /// An artifact from its manifest's bytes (`blobs` hold them first); `by_tag` is the kind
    /// its cosign tag says, when it came by tag.
    pub fn new(
        digest: Digest,
        media_type: String,
        bytes: &[u8],
        by_tag: Option<ReferrerKind>,
        image: &Digest,
        blobs: Vec<SourceBlob>,
    ) -> Result<ResolvedReferrer, String> {
        let d = referrers::describe(bytes).map_err(|e| format!("artifact {digest}: {e}"))?;
        let tag = match by_tag {
            Some(kind) => referrers::cosign_tag(image, kind),
            None => None,
        };
        Ok(ResolvedReferrer {
            entry: Referrer {
                kind: d.kind(by_tag),
                digest,
                media_type,
                size: bytes.len() as u64,
                tag,
                artifact_type: d.artifact_type.clone(),
                predicate_types: d.predicate_types.clone(),
                sbom_format: d.sbom_format.clone(),
                verified_keys: Vec::new(),
                keyless: d.keyless,
            },
            blobs,
        })
    }

    /// The bytes of a blob it holds in memory (its manifest; small configs and layers).
    pub fn memory_blob(&self, digest: &Digest) -> Option<&[u8]> {
        self.blobs.iter().find_map(|b| match &b.location {
            BlobLocation::Memory(m) if b.digest == *digest => Some(&m[..]),
            _ => None,
        })
    }
}

/// An image that cannot be read from its source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: no image named `{name}` (it has: {available})")]
    NotFound {
        path: PathBuf,
        name: String,
        available: String,
    },
    #[error("{path}: it holds {count} images; name the one to use as `{hint}`")]
    Ambiguous {
        path: PathBuf,
        count: usize,
        hint: String,
    },
}

impl SourceError {
    /// The same error about `path` (a decompressed copy's error, about the original).
    pub fn at(self, path: &Path) -> SourceError {
        let path = path.to_path_buf();
        match self {
            SourceError::Io { source, .. } => SourceError::Io { path, source },
            SourceError::Invalid { message, .. } => SourceError::Invalid { path, message },
            SourceError::NotFound {
                name, available, ..
            } => SourceError::NotFound {
                path,
                name,
                available,
            },
            SourceError::Ambiguous { count, hint, .. } => {
                SourceError::Ambiguous { path, count, hint }
            }
        }
    }
}

/// Random access to the files of a layout, whether a folder or a tar archive.
trait Store {
    fn origin(&self) -> &Path;
    /// Size and location of a file of the layout, by its path inside the layout.
    fn file(&self, path: &str) -> Option<(u64, BlobLocation)>;
}

struct DirStore {
    root: PathBuf,
}

impl Store for DirStore {
    fn origin(&self) -> &Path {
        &self.root
    }
    fn file(&self, path: &str) -> Option<(u64, BlobLocation)> {
        let p = self.root.join(path);
        let meta = std::fs::symlink_metadata(&p).ok()?;
        meta.is_file()
            .then_some((meta.len(), BlobLocation::File(p)))
    }
}

/// The members of an uncompressed tar archive, indexed by their safe paths, read in place
/// by byte offset; links are resolved inside the archive.
struct ArchiveStore {
    path: Arc<PathBuf>,
    members: HashMap<SafePath, (u64, u64)>,
    links: HashMap<SafePath, SafePath>,
}

impl ArchiveStore {
    fn open(path: &Path, policy: TarPolicy) -> Result<ArchiveStore, SourceError> {
        let io_err = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |message: String| SourceError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut f = File::open(path).map_err(io_err)?;
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic).map_err(io_err)?;
        if n == 2 && magic == [0x1f, 0x8b] {
            return Err(invalid("the archive is gzip-compressed; ferry reads uncompressed image archives (as skopeo and docker save write them): run `gunzip` on it first".into()));
        }
        f.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let refused = |e: EntryError| match e {
            EntryError::Read(e) => invalid(format!("not a readable tar archive: {e}")),
            e => invalid(e.to_string()),
        };
        let mut members = HashMap::new();
        let mut links = HashMap::new();
        let mut ar = tar::Archive::new(f);
        let mut entries = TarEntries::new(&mut ar, policy).map_err(refused)?;
        while let Some(TarEntry { name, entry }) = entries.next_entry().map_err(refused)? {
            match entry.header().entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = link_target(&name, &entry)
                        .map_err(|reason| invalid(format!("entry `{name}`: {reason}")))?;
                    links.insert(name, target);
                }
                _ => {
                    members.insert(name, (entry.raw_file_position(), entry.size()));
                }
            }
        }
        Ok(ArchiveStore {
            path: Arc::new(path.to_path_buf()),
            members,
            links,
        })
    }
}

impl Store for ArchiveStore {
    fn origin(&self) -> &Path {
        &self.path
    }
    fn file(&self, path: &str) -> Option<(u64, BlobLocation)> {
        let mut rest = path;
        while let Some(r) = rest.strip_prefix("./") {
            rest = r;
        }
        let mut p = SafePath::new(rest).ok()?;
        for _ in 0..8 {
            if let Some(&(offset, size)) = self.members.get(&p) {
                return Some((
                    size,
                    BlobLocation::Member {
                        archive: self.path.clone(),
                        offset,
                    },
                ));
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

/// The member a link of an image archive points to: a hard link names a member, a symbolic
/// link a path relative to its own folder. A target outside the archive is refused.
fn link_target<R: Read>(name: &SafePath, entry: &tar::Entry<'_, R>) -> Result<SafePath, String> {
    let raw = entry
        .link_name_bytes()
        .ok_or_else(|| "a link without a target".to_string())?;
    let target = String::from_utf8_lossy(&raw);
    if target.starts_with('/') {
        return Err(format!("a link to the absolute path `{target}`"));
    }
    let joined = if entry.header().entry_type() == tar::EntryType::Symlink {
        let dir = name.as_str().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{target}")
    } else {
        target.to_string()
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("a link to `{target}`, outside the archive"));
                }
            }
            c => parts.push(c),
        }
    }
    SafePath::new(&parts.join("/")).map_err(|e| format!("a link to `{target}`: {e}"))
}

fn read_small(store: &dyn Store, path: &str, what: &str) -> Result<Vec<u8>, SourceError> {
    let origin = store.origin().to_path_buf();
    let (size, loc) = store.file(path).ok_or_else(|| SourceError::Invalid {
        path: origin.clone(),
        message: format!("{what} `{path}` is missing"),
    })?;
    if size > MAX_JSON {
        return Err(SourceError::Invalid {
            path: origin,
            message: format!("{what} `{path}` is {size} bytes; the limit is {MAX_JSON}"),
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    loc.open(size)
        .and_then(|r| r.take(size).read_to_end(&mut buf))
        .map_err(|source| SourceError::Io {
            path: origin,
            source,
        })?;
    Ok(buf)
}

/// A layout's `index.json`.
fn read_index(store: &dyn Store) -> Result<oci_spec::image::ImageIndex, SourceError> {
    let bytes = read_small(store, "index.json", "index")?;
    document::read_layout_index(&bytes).map_err(|e| SourceError::Invalid {
        path: store.origin().to_path_buf(),
        message: format!("index.json: {e}"),
    })
}

/// The names of every image a source holds: `org.opencontainers.image.ref.name` (or the
/// containerd name) of a layout's `index.json`, or the `RepoTags` of a docker archive.
/// Archives are read with `policy` (`TarPolicy::image_archive`).
pub fn image_names(spec: &SourceSpec, policy: TarPolicy) -> Result<Vec<String>, SourceError> {
    let layout_names = |store: &dyn Store| -> Result<Vec<String>, SourceError> {
        let index = read_index(store)?;
        Ok(index
            .manifests()
            .iter()
            .filter_map(|d| {
                document::annotation(d, CONTAINERD_NAME)
                    .or_else(|| document::annotation(d, REF_NAME))
                    .map(str::to_string)
            })
            .collect())
    };
    match spec.kind {
        SourceKind::OciLayout => layout_names(&DirStore {
            root: spec.path.clone(),
        }),
        SourceKind::OciArchive => layout_names(&ArchiveStore::open(&spec.path, policy)?),
        SourceKind::DockerArchive => {
            let store = ArchiveStore::open(&spec.path, policy)?;
            if store.file("index.json").is_some() && store.file("oci-layout").is_some() {
                return layout_names(&store);
            }
            let bytes = read_small(&store, "manifest.json", "docker manifest")?;
            let entries: Vec<LegacyEntry> =
                serde_json::from_slice(&bytes).map_err(|e| SourceError::Invalid {
                    path: spec.path.clone(),
                    message: format!("manifest.json: {e}"),
                })?;
            Ok(entries
                .into_iter()
                .flat_map(|e| e.repo_tags.unwrap_or_default())
                .collect())
        }
    }
}

/// Which kind of image archive an uncompressed tar file is: a `docker-archive` when it has
/// a `manifest.json`, otherwise an `oci-archive`.
pub fn archive_kind(path: &Path, policy: TarPolicy) -> Result<SourceKind, SourceError> {
    let store = ArchiveStore::open(path, policy)?;
    Ok(if store.file("manifest.json").is_some() {
        SourceKind::DockerArchive
    } else {
        SourceKind::OciArchive
    })
}

/// Resolves one image of a source; archives are read with `policy`
/// (`TarPolicy::image_archive`).
pub fn resolve(
    spec: &SourceSpec,
    wanted_ref: &str,
    policy: TarPolicy,
) -> Result<ResolvedImage, SourceError> {
    match spec.kind {
        SourceKind::OciLayout => {
            if !spec.path.join("index.json").is_file() {
                return Err(SourceError::Invalid {
                    path: spec.path.clone(),
                    message: "not an OCI image layout folder (no index.json)".into(),
                });
            }
            resolve_layout(
                &DirStore {
                    root: spec.path.clone(),
                },
                spec.name.as_deref(),
                wanted_ref,
                "oci:DIR:NAME",
            )
        }
        SourceKind::OciArchive => {
            let store = ArchiveStore::open(&spec.path, policy)?;
            resolve_layout(
                &store,
                spec.name.as_deref(),
                wanted_ref,
                "oci-archive:FILE:NAME",
            )
        }
        SourceKind::DockerArchive => {
            let store = ArchiveStore::open(&spec.path, policy)?;
            if store.file("index.json").is_some() && store.file("oci-layout").is_some() {
                resolve_layout(
                    &store,
                    spec.name.as_deref(),
                    wanted_ref,
                    "docker-archive:FILE:REF",
                )
            } else {
                resolve_docker_legacy(&store, spec.name.as_deref(), wanted_ref)
            }
        }
    }
}

fn resolve_layout(
    store: &dyn Store,
    name: Option<&str>,
    wanted_ref: &str,
    hint: &str,
) -> Result<ResolvedImage, SourceError> {
    let origin = store.origin().to_path_buf();
    let index = read_index(store)?;
    let descriptors = index.manifests();
    let chosen: Vec<&Descriptor> = match name {
        Some(n) => descriptors
            .iter()
            .filter(|d| names(d).contains(&n))
            .collect(),
        None => {
            let by_ref: Vec<&Descriptor> = descriptors
                .iter()
                .filter(|d| {
                    names(d)
                        .iter()
                        .any(|x| *x == wanted_ref || wanted_ref.ends_with(&format!(":{x}")))
                })
                .collect();
            if by_ref.len() == 1 || descriptors.len() != 1 {
                by_ref
            } else {
                descriptors.iter().collect()
            }
        }
    };
    let desc = match chosen.as_slice() {
        [one] => *one,
        [] if name.is_none() && descriptors.len() > 1 => {
            return Err(SourceError::Ambiguous {
                path: origin,
                count: descriptors.len(),
                hint: hint.into(),
            })
        }
        [] => {
            let available = descriptors
                .iter()
                .flat_map(names)
                .map(str::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SourceError::NotFound {
                path: origin,
                name: name.unwrap_or(wanted_ref).to_string(),
                available: if available.is_empty() {
                    "no named images".into()
                } else {
                    available
                },
            });
        }
        many => {
            return Err(SourceError::Ambiguous {
                path: origin,
                count: many.len(),
                hint: hint.into(),
            })
        }
    };
    let mut walk = Walk {
        store,
        blobs: Vec::new(),
        seen: HashMap::new(),
        platforms: Vec::new(),
    };
    let (media_type, digest) = walk.descriptor(desc, 0, None)?;
    Ok(ResolvedImage {
        media_type,
        digest,
        size: desc.size(),
        platforms: walk.platforms,
        blobs: walk.blobs,
        source_digest: None,
        non_distributable: Vec::new(),
        referrers: Vec::new(),
    })
}

/// The artifacts a layout holds for the image `image`: manifests its `index.json` names with
/// cosign's tags (`sha256-HEX.sig`, alone or after `REPO:`), the manifests an index under the
/// referrers tag schema's `sha256-HEX` lists, and every manifest `index.json` lists whose
/// `subject` is the image. A legacy `docker save` archive holds none.
pub fn referrers(
    spec: &SourceSpec,
    policy: TarPolicy,
    image: &Digest,
) -> Result<Vec<ResolvedReferrer>, SourceError> {
    let archive;
    let dir;
    let store: &dyn Store = match spec.kind {
        SourceKind::OciLayout => {
            dir = DirStore {
                root: spec.path.clone(),
            };
            &dir
        }
        _ => {
            archive = ArchiveStore::open(&spec.path, policy)?;
            if archive.file("index.json").is_none() {
                return Ok(Vec::new());
            }
            &archive
        }
    };
    let index = read_index(store)?;
    let fallback = referrers::fallback_tag(image);
    let mut found: Vec<(&Descriptor, Option<ReferrerKind>)> = Vec::new();
    let mut children = Vec::new();
    for d in index.manifests() {
        let tag = names(d)
            .into_iter()
            .map(|n| n.rsplit_once(':').map_or(n, |(_, t)| t))
            .find(|t| t.starts_with("sha256-"));
        match tag.and_then(referrers::parse_cosign_tag) {
            Some((digest, kind)) if digest == *image => found.push((d, Some(kind))),
            Some(_) => {}
            None if tag == Some(fallback.as_str()) => children.push(d),
            None => found.push((d, None)),
        }
    }
    let mut walk = Walk {
        store,
        blobs: Vec::new(),
        seen: HashMap::new(),
        platforms: Vec::new(),
    };
    let mut listed = Vec::new();
    for d in children {
        let (_, bytes) = walk.json(d)?;
        if let (_, Document::Index(i)) = Document::parse(&bytes, Some(d.media_type().as_ref()))
            .map_err(|e| walk.err(format!("{fallback}: {e}")))?
        {
            listed.extend(i.manifests().iter().cloned());
        }
    }
    let mut out: Vec<ResolvedReferrer> = Vec::new();
    let candidates = found
        .into_iter()
        .map(|(d, k)| (d.clone(), k))
        .chain(listed.into_iter().map(|d| (d, None)));
    for (d, by_tag) in candidates {
        // A manifest named by a cosign tag must be readable; any other entry of the layout is
        // only looked at for its `subject`, and one that cannot be read is not an artifact.
        let found = match by_tag {
            Some(_) => walk.referrer(&d, by_tag, image)?,
            None => walk.referrer(&d, None, image).ok().flatten(),
        };
        let Some(r) = found else {
            continue;
        };
        if !out.iter().any(|o| o.entry.digest == r.entry.digest) {
            out.push(r);
        }
    }
    Ok(out)
}

struct Walk<'a> {
    store: &'a dyn Store,
    blobs: Vec<SourceBlob>,
    seen: HashMap<Digest, ()>,
    platforms: Vec<String>,
}

impl Walk<'_> {
    fn err(&self, message: String) -> SourceError {
        SourceError::Invalid {
            path: self.store.origin().to_path_buf(),
            message,
        }
    }

    fn locate(&mut self, d: &Descriptor) -> Result<(Digest, BlobLocation), SourceError> {
        let digest: Digest = d
            .digest()
            .as_ref()
            .parse()
            .map_err(|e| self.err(format!("{e}")))?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let (size, loc) = self
            .store
            .file(&path)
            .ok_or_else(|| self.err(format!("blob {digest} is missing")))?;
        if size != d.size() {
            return Err(self.err(format!(
                "blob {digest} is {size} bytes but its descriptor says {}",
                d.size()
            )));
        }
        Ok((digest, loc))
    }

    fn add(&mut self, digest: &Digest, size: u64, location: BlobLocation) {
        if self.seen.insert(digest.clone(), ()).is_none() {
            self.blobs.push(SourceBlob {
                digest: digest.clone(),
                size,
                location,
            });
        }
    }

    fn json(&mut self, d: &Descriptor) -> Result<(Digest, Vec<u8>), SourceError> {
        let (digest, loc) = self.locate(d)?;
        let size = d.size();
        if size > MAX_JSON {
            return Err(self.err(format!(
                "manifest {digest} is {size} bytes; the limit is {MAX_JSON}"
            )));
        }
        let mut bytes = Vec::new();
        loc.open(size)
            .and_then(|r| r.take(size).read_to_end(&mut bytes))
            .map_err(|source| SourceError::Io {
                path: self.store.origin().to_path_buf(),
                source,
            })?;
        if Digest::of(&bytes) != digest {
            return Err(self.err(format!(
                "blob {digest} does not match its digest: the source is corrupt"
            )));
        }
        Ok((digest, bytes))
    }

    /// The artifact `d` names when it is attached to `image`: by its cosign tag (`by_tag`)
    /// or by its `subject`; `None` for any other manifest. Its blobs are gathered afresh.
    fn referrer(
        &mut self,
        d: &Descriptor,
        by_tag: Option<ReferrerKind>,
        image: &Digest,
    ) -> Result<Option<ResolvedReferrer>, SourceError> {
        let (digest, bytes) = self.json(d)?;
        if digest == *image {
            return Ok(None);
        }
        let Ok((media_type, Document::Manifest(m))) =
            Document::parse(&bytes, Some(d.media_type().as_ref()))
        else {
            return Ok(None);
        };
        let described = referrers::describe(&bytes).map_err(|e| self.err(e))?;
        if by_tag.is_none() && described.subject.as_ref() != Some(image) {
            return Ok(None);
        }
        let mut blobs = vec![SourceBlob {
            digest: digest.clone(),
            size: d.size(),
            location: BlobLocation::Memory(bytes.clone().into()),
        }];
        for b in std::iter::once(m.config()).chain(m.layers()) {
            let (bd, loc) = self.locate(b)?;
            if !blobs.iter().any(|x| x.digest == bd) {
                blobs.push(SourceBlob {
                    digest: bd,
                    size: b.size(),
                    location: loc,
                });
            }
        }
        ResolvedReferrer::new(digest, media_type, &bytes, by_tag, image, blobs)
            .map(Some)
            .map_err(|e| self.err(e))
    }

    /// Walks a manifest or index descriptor; returns its media type and digest.
    fn descriptor(
        &mut self,
        d: &Descriptor,
        depth: u32,
        platform: Option<&Platform>,
    ) -> Result<(String, Digest), SourceError> {
        if depth > 4 {
            return Err(self.err("indexes nested deeper than 4 levels".into()));
        }
        let (digest, bytes) = self.json(d)?;
        let (media_type, doc) = Document::parse(&bytes, Some(d.media_type().as_ref()))
            .map_err(|e| self.err(format!("manifest {digest}: {e}")))?;
        self.add(&digest, d.size(), BlobLocation::Memory(bytes.into()));
        match doc {
            Document::Index(index) => {
                for child in index.manifests() {
                    self.descriptor(child, depth + 1, child.platform().as_ref())?;
                }
            }
            Document::Manifest(manifest) => {
                let config = manifest.config();
                let (config_digest, config_bytes) = self.json(config)?;
                let rendered = match platform {
                    Some(p) => Some(document::render_platform(p)),
                    None => document::config_platform(config.media_type().as_ref(), &config_bytes)
                        .map_err(|e| self.err(format!("config {config_digest}: {e}")))?
                        .map(|p| document::render_platform(&p)),
                };
                self.platforms.extend(rendered);
                self.add(
                    &config_digest,
                    config.size(),
                    BlobLocation::Memory(config_bytes.into()),
                );
                for layer in manifest.layers() {
                    let (ld, loc) = self.locate(layer)?;
                    self.add(&ld, layer.size(), loc);
                }
            }
        }
        Ok((media_type, digest))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A `docker save` archive of the legacy form: `manifest.json`, a config, layer tars.
fn resolve_docker_legacy(
    store: &ArchiveStore,
    name: Option<&str>,
    wanted_ref: &str,
) -> Result<ResolvedImage, SourceError> {
    let origin = store.origin().to_path_buf();
    let invalid = |message: String| SourceError::Invalid {
        path: origin.clone(),
        message,
    };
    let bytes = read_small(store, "manifest.json", "docker manifest")?;
    let entries: Vec<LegacyEntry> =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("manifest.json: {e}")))?;
    let entry = pick_legacy_entry(&entries, &origin, name, wanted_ref)?;
    let config_bytes = read_small(store, &entry.config, "image config")?;
    let config_digest = Digest::of(&config_bytes);
    let platform = document::config_platform(OCI_CONFIG, &config_bytes)
        .map_err(|e| invalid(format!("{}: {e}", entry.config)))?
        .ok_or_else(|| {
            invalid(format!(
                "{}: the image config names no platform",
                entry.config
            ))
        })?;
    let io_err = |source| SourceError::Io {
        path: origin.clone(),
        source,
    };
    let mut blobs = Vec::new();
    let mut layer_refs = Vec::new();
    for layer in &entry.layers {
        let (size, loc) = store
            .file(layer)
            .ok_or_else(|| invalid(format!("layer `{layer}` is missing")))?;
        let mut reader = loc.open(size).map_err(io_err)?;
        let mut head = Vec::with_capacity(6);
        (&mut reader)
            .take(6)
            .read_to_end(&mut head)
            .map_err(io_err)?;
        let media_type = document::layer_media_type(&head).ok_or_else(|| {
            invalid(format!(
                "layer `{layer}` is bzip2- or xz-compressed, which an OCI image manifest cannot describe"
            ))
        })?;
        let (digest, rest) = hash_reader(io::Cursor::new(&head).chain(reader)).map_err(io_err)?;
        if rest != size {
            return Err(invalid(format!("layer `{layer}` is truncated")));
        }
        layer_refs.push(BlobRef {
            media_type,
            digest: digest.clone(),
            size,
        });
        if !blobs.iter().any(|b: &SourceBlob| b.digest == digest) {
            blobs.push(SourceBlob {
                digest,
                size,
                location: loc,
            });
        }
    }
    // The archive holds no manifest: ferry writes an OCI one, so that every OCI layout
    // reader can read the image from a bundle (bundle-format.md, 8.2).
    let manifest = document::image_manifest_bytes(
        &BlobRef {
            media_type: OCI_CONFIG,
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
        },
        &layer_refs,
    );
    let digest = Digest::of(&manifest);
    let size = manifest.len() as u64;
    blobs.insert(
        0,
        SourceBlob {
            digest: config_digest,
            size: config_bytes.len() as u64,
            location: BlobLocation::Memory(config_bytes.into()),
        },
    );
    blobs.insert(
        0,
        SourceBlob {
            digest: digest.clone(),
            size,
            location: BlobLocation::Memory(manifest.into()),
        },
    );
    Ok(ResolvedImage {
        media_type: OCI_MANIFEST.into(),
        digest,
        size,
        platforms: vec![document::render_platform(&platform)],
        blobs,
        source_digest: None,
        non_distributable: Vec::new(),
        referrers: Vec::new(),
    })
}

/// The `manifest.json` entry of a legacy `docker save` archive that `name` (or, without one,
/// `wanted_ref`) names; the only entry when the archive holds one and no name was given.
fn pick_legacy_entry<'a>(
    entries: &'a [LegacyEntry],
    origin: &Path,
    name: Option<&str>,
    wanted_ref: &str,
) -> Result<&'a LegacyEntry, SourceError> {
    let norm = |r: &str| {
        crate::oci::reference::ImageRef::parse(r)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| r.to_string())
    };
    let want = norm(name.unwrap_or(wanted_ref));
    let tags = |e: &LegacyEntry| e.repo_tags.clone().unwrap_or_default();
    let matching: Vec<&LegacyEntry> = entries
        .iter()
        .filter(|e| tags(e).iter().any(|t| norm(t) == want))
        .collect();
    match (matching.as_slice(), entries) {
        ([one], _) => Ok(*one),
        ([], [only]) if name.is_none() => Ok(only),
        ([], _) => {
            let available = entries.iter().flat_map(tags).collect::<Vec<_>>().join(", ");
            Err(SourceError::NotFound {
                path: origin.to_path_buf(),
                name: want,
                available,
            })
        }
        (many, _) => Err(SourceError::Ambiguous {
            path: origin.to_path_buf(),
            count: many.len(),
            hint: "docker-archive:FILE:REF".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::archive::Limits;

    fn append(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        data: &[u8],
        link: &str,
    ) {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    /// `docker save` refers to a shared layer through symbolic links (relative to the link's
    /// folder) and `tar` writes repeated files as hard links: both are followed in place.
    #[test]
    fn links_inside_an_image_archive_are_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let manifest = br#"[{"Config":"./cfg.json","RepoTags":["example.com/a:1"],"Layers":["one/layer.tar","two/layer.tar"]}]"#;
        let mut b = tar::Builder::new(Vec::new());
        append(
            &mut b,
            "./manifest.json",
            tar::EntryType::Regular,
            manifest,
            "",
        );
        append(&mut b, "config.json", tar::EntryType::Regular, config, "");
        append(
            &mut b,
            "cfg.json",
            tar::EntryType::Link,
            b"",
            "./config.json",
        );
        append(
            &mut b,
            "blobs/layer",
            tar::EntryType::Regular,
            b"layer bytes",
            "",
        );
        append(
            &mut b,
            "one/layer.tar",
            tar::EntryType::Symlink,
            b"",
            "../blobs/layer",
        );
        append(
            &mut b,
            "two/layer.tar",
            tar::EntryType::Symlink,
            b"",
            "../one/layer.tar",
        );
        let path = tmp.path().join("save.tar");
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let spec = SourceSpec {
            kind: SourceKind::DockerArchive,
            path,
            name: None,
        };
        let image = resolve(
            &spec,
            "example.com/a:1",
            TarPolicy::image_archive(Limits::default()),
        )
        .unwrap();
        assert_eq!(image.platforms, ["linux/amd64"]);
        // The manifest, the config and the one layer (listed twice, stored once).
        assert_eq!(image.blobs.len(), 3);
        let layer = &image.blobs[2];
        assert_eq!(layer.digest, Digest::of(b"layer bytes"));
        let mut read = Vec::new();
        layer
            .location
            .open(layer.size)
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, b"layer bytes");
    }
}

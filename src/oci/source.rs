//! Image sources for `ferry build`: OCI image layouts, `oci-archive` and `docker-archive`
//! tarballs, resolved to the exact blobs an image consists of.

use crate::oci::digest::{hash_reader, Digest};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// containers/image labels docker-archive layers with this type even though they are
/// uncompressed tars; ferry writes the same manifest so its digest matches skopeo's.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Manifests, indexes and configs larger than this are refused.
pub const MAX_JSON: u64 = 4 * 1024 * 1024;
/// The annotation that names a reference in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    fn render(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{}", self.os, self.architecture, v),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
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

/// The members of an uncompressed tar archive, indexed by normalised path.
struct ArchiveStore {
    path: Arc<PathBuf>,
    members: HashMap<String, (u64, u64)>,
    links: HashMap<String, String>,
}

impl ArchiveStore {
    fn open(path: &Path) -> Result<ArchiveStore, SourceError> {
        let io_err = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut f = File::open(path).map_err(io_err)?;
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic).map_err(io_err)?;
        if n == 2 && magic == [0x1f, 0x8b] {
            return Err(SourceError::Invalid {
                path: path.to_path_buf(),
                message: "the archive is gzip-compressed; ferry reads uncompressed image archives (as skopeo and docker save write them): run `gunzip` on it first".into(),
            });
        }
        f.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let mut members = HashMap::new();
        let mut links = HashMap::new();
        let mut ar = tar::Archive::new(f);
        let invalid = |e: io::Error| SourceError::Invalid {
            path: path.to_path_buf(),
            message: format!("not a readable tar archive: {e}"),
        };
        for entry in ar.entries().map_err(invalid)? {
            let entry = entry.map_err(invalid)?;
            let name = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(target) = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                    {
                        let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                            resolve_relative(&name, &target)
                        } else {
                            normalise(&target)
                        };
                        links.insert(name, resolved);
                    }
                }
                _ => {}
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
        let mut p = normalise(path);
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

fn normalise(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn resolve_relative(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return normalise(target);
    }
    let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
    normalise(&format!("{dir}/{target}"))
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

/// The names of every image a source holds: `org.opencontainers.image.ref.name` (or the
/// containerd name) of a layout's `index.json`, or the `RepoTags` of a docker archive.
pub fn image_names(spec: &SourceSpec) -> Result<Vec<String>, SourceError> {
    let layout_names = |store: &dyn Store| -> Result<Vec<String>, SourceError> {
        let bytes = read_small(store, "index.json", "index")?;
        let index: Document = serde_json::from_slice(&bytes).map_err(|e| SourceError::Invalid {
            path: store.origin().to_path_buf(),
            message: format!("index.json: {e}"),
        })?;
        Ok(index
            .manifests
            .unwrap_or_default()
            .iter()
            .filter_map(|d| {
                d.annotations
                    .get(CONTAINERD_NAME)
                    .or_else(|| d.annotations.get(REF_NAME))
                    .cloned()
            })
            .collect())
    };
    match spec.kind {
        SourceKind::OciLayout => layout_names(&DirStore {
            root: spec.path.clone(),
        }),
        SourceKind::OciArchive => layout_names(&ArchiveStore::open(&spec.path)?),
        SourceKind::DockerArchive => {
            let store = ArchiveStore::open(&spec.path)?;
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

/// Resolves one image of a source.
pub fn resolve(spec: &SourceSpec, wanted_ref: &str) -> Result<ResolvedImage, SourceError> {
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
            let store = ArchiveStore::open(&spec.path)?;
            resolve_layout(
                &store,
                spec.name.as_deref(),
                wanted_ref,
                "oci-archive:FILE:NAME",
            )
        }
        SourceKind::DockerArchive => {
            let store = ArchiveStore::open(&spec.path)?;
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
    let index_bytes = read_small(store, "index.json", "index")?;
    let index: Document =
        serde_json::from_slice(&index_bytes).map_err(|e| SourceError::Invalid {
            path: origin.clone(),
            message: format!("index.json: {e}"),
        })?;
    let descriptors = index.manifests.unwrap_or_default();
    let names = |d: &Descriptor| -> Vec<String> {
        [REF_NAME, CONTAINERD_NAME]
            .iter()
            .filter_map(|k| d.annotations.get(*k).cloned())
            .collect()
    };
    let chosen: Vec<&Descriptor> = match name {
        Some(n) => descriptors
            .iter()
            .filter(|d| names(d).iter().any(|x| x == n))
            .collect(),
        None => {
            let by_ref: Vec<&Descriptor> = descriptors
                .iter()
                .filter(|d| {
                    names(d)
                        .iter()
                        .any(|x| x == wanted_ref || wanted_ref.ends_with(&format!(":{x}")))
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
        size: desc.size,
        platforms: walk.platforms,
        blobs: walk.blobs,
    })
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
        let digest: Digest = d.digest.parse().map_err(|e| self.err(format!("{e}")))?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let (size, loc) = self
            .store
            .file(&path)
            .ok_or_else(|| self.err(format!("blob {digest} is missing")))?;
        if size != d.size {
            return Err(self.err(format!(
                "blob {digest} is {size} bytes but its descriptor says {}",
                d.size
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
        if d.size > MAX_JSON {
            return Err(self.err(format!(
                "manifest {digest} is {} bytes; the limit is {MAX_JSON}",
                d.size
            )));
        }
        let mut bytes = Vec::new();
        loc.open(d.size)
            .and_then(|r| r.take(d.size).read_to_end(&mut bytes))
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
        let doc: Document = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("manifest {digest}: {e}")))?;
        let media_type = d
            .media_type
            .clone()
            .or(doc.media_type.clone())
            .unwrap_or_else(|| {
                if doc.manifests.is_some() {
                    OCI_INDEX.into()
                } else {
                    OCI_MANIFEST.into()
                }
            });
        self.add(&digest, d.size, BlobLocation::Memory(bytes.into()));
        match media_type.as_str() {
            OCI_INDEX | DOCKER_LIST => {
                for child in doc.manifests.unwrap_or_default() {
                    self.descriptor(&child, depth + 1, child.platform.as_ref())?;
                }
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = doc
                    .config
                    .ok_or_else(|| self.err(format!("manifest {digest} has no config")))?;
                let (config_digest, config_bytes) = self.json(&config)?;
                match platform {
                    Some(p) => self.platforms.push(p.render()),
                    None => {
                        let p: Platform = serde_json::from_slice(&config_bytes)
                            .map_err(|e| self.err(format!("config {config_digest}: {e}")))?;
                        self.platforms.push(p.render());
                    }
                }
                self.add(
                    &config_digest,
                    config.size,
                    BlobLocation::Memory(config_bytes.into()),
                );
                for layer in doc.layers.unwrap_or_default() {
                    let (ld, loc) = self.locate(&layer)?;
                    self.add(&ld, layer.size, loc);
                }
            }
            other => {
                return Err(self.err(format!(
                    "manifest {digest} has unsupported media type `{other}`"
                )))
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
    let entry = match (matching.as_slice(), entries.as_slice()) {
        ([one], _) => *one,
        ([], [only]) if name.is_none() => only,
        ([], _) => {
            let available = entries.iter().flat_map(tags).collect::<Vec<_>>().join(", ");
            return Err(SourceError::NotFound {
                path: origin.clone(),
                name: want,
                available,
            });
        }
        (many, _) => {
            return Err(SourceError::Ambiguous {
                path: origin.clone(),
                count: many.len(),
                hint: "docker-archive:FILE:REF".into(),
            })
        }
    };
    let config_bytes = read_small(store, &entry.config, "image config")?;
    let config_digest = Digest::of(&config_bytes);
    let platform: Platform = serde_json::from_slice(&config_bytes)
        .map_err(|e| invalid(format!("{}: {e}", entry.config)))?;
    let mut blobs = Vec::new();
    let mut layer_json = Vec::new();
    for layer in &entry.layers {
        let (size, loc) = store
            .file(layer)
            .ok_or_else(|| invalid(format!("layer `{layer}` is missing")))?;
        let (digest, read) = hash_reader(loc.open(size).map_err(|source| SourceError::Io {
            path: origin.clone(),
            source,
        })?)
        .map_err(|source| SourceError::Io {
            path: origin.clone(),
            source,
        })?;
        if read != size {
            return Err(invalid(format!("layer `{layer}` is truncated")));
        }
        layer_json.push(format!(
            r#"{{"mediaType":"{DOCKER_LAYER}","size":{size},"digest":"{digest}"}}"#
        ));
        if !blobs.iter().any(|b: &SourceBlob| b.digest == digest) {
            blobs.push(SourceBlob {
                digest,
                size,
                location: loc,
            });
        }
    }
    // The same bytes containers/image synthesises for a docker-archive, field order included.
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":{},"digest":"{config_digest}"}},"layers":[{}]}}"#,
        config_bytes.len(),
        layer_json.join(",")
    );
    let manifest = manifest.into_bytes();
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
        media_type: DOCKER_MANIFEST.into(),
        digest,
        size,
        platforms: vec![platform.render()],
        blobs,
    })
}

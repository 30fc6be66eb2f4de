//! Image sources for `ferry build`: OCI image layouts, `oci-archive` and `docker-archive`
//! tarballs, resolved to the exact blobs an image consists of.

use crate::oci::digest::{hash_reader, Digest};
/// Manifests, indexes and configs larger than this are refused.
pub use crate::oci::document::MAX_JSON;
use crate::oci::document::{
    self, names, BlobRef, Document, CONTAINERD_NAME, OCI_CONFIG, OCI_MANIFEST, REF_NAME,
};
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
pub fn image_names(spec: &SourceSpec) -> Result<Vec<String>, SourceError> {
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

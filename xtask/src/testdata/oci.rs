//! Byte-stable building blocks for the fixture's container images: deterministic tar and gzip,
//! OCI descriptors, configs, manifests and indexes, and the layout and archive forms they are
//! shipped in.
//!
//! Every output here is a pure function of its inputs: tar headers carry mtime 0, uid/gid 0,
//! empty owner names and fixed modes; gzip members carry mtime 0, no file name, OS byte 255 and
//! compression level 6 of the pinned zlib-rs backend; JSON is compact and its key order comes
//! from struct field order (maps are `BTreeMap`s), never from a hash map.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use flate2::{Compression, GzBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Media type of an OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed OCI layer.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of an uncompressed OCI layer (what Docker 25+ `docker save` writes).
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Annotation naming a reference inside an OCI image layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The creation time written into every config and history entry.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `n` pseudo-random bytes that depend only on `seed`: sha256 in counter mode. Incompressible,
/// so layer sizes stay what the fixture asks for.
pub fn noise(seed: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut counter = 0u64;
    while out.len() < n {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(n);
    out
}

/// One regular file or directory to put into a tar stream.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// Relative path; directories end with `/`.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// File contents; empty for directories.
    pub data: Vec<u8>,
}

impl TarEntry {
    /// A regular file with mode 0644.
    pub fn file(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            mode: 0o644,
            data: data.into(),
        }
    }

    /// A regular file with mode 0755.
    pub fn exe(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            mode: 0o755,
            ..Self::file(path, data)
        }
    }

    fn is_dir(&self) -> bool {
        self.path.ends_with('/')
    }
}

/// Adds a directory entry for every missing parent and sorts by path, so parents precede
/// their children and the order never depends on the caller.
pub fn with_parent_dirs(entries: Vec<TarEntry>) -> Vec<TarEntry> {
    let mut all: BTreeMap<String, TarEntry> = BTreeMap::new();
    for e in entries {
        let mut prefix = String::new();
        let parts: Vec<&str> = e.path.trim_end_matches('/').split('/').collect();
        for part in &parts[..parts.len() - 1] {
            prefix.push_str(part);
            prefix.push('/');
            all.entry(prefix.clone()).or_insert_with(|| TarEntry {
                path: prefix.clone(),
                mode: 0o755,
                data: Vec::new(),
            });
        }
        all.insert(e.path.clone(), e);
    }
    all.into_values().collect()
}

/// Writes `entries` in the given order as a ustar stream with every header field fixed.
pub fn tar(entries: &[TarEntry]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_username("").context("tar header user name")?;
        h.set_groupname("").context("tar header group name")?;
        if e.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(e.data.len() as u64);
        }
        builder
            .append_data(&mut h, &e.path, e.data.as_slice())
            .with_context(|| format!("writing tar entry {}", e.path))?;
    }
    builder.into_inner().context("finishing tar stream")
}

/// gzip with a fixed header (mtime 0, no name, OS 255) at level 6.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(6));
    gz.write_all(bytes).context("gzip write")?;
    gz.finish().context("gzip finish")
}

/// Compact JSON of a value whose key order is fixed by its type.
pub fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("fixture JSON types always serialise")
}

/// An OCI platform.
#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// Operating system, always `linux` here.
    pub os: String,
    /// CPU variant, e.g. `v8`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/ARCH[/VARIANT]`.
    pub fn linux(architecture: &str, variant: Option<&str>) -> Self {
        Self {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
        }
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform, for entries of an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (sorted).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// Describes `bytes` with `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.into(),
            digest: format!("sha256:{}", sha256_hex(bytes)),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The digest without its `sha256:` prefix.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// Adds an annotation.
    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: &'a [Descriptor],
}

/// An OCI image manifest.
pub fn manifest(config: &Descriptor, layers: &[Descriptor], version: &str) -> Vec<u8> {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.version".to_string(),
        version.to_string(),
    );
    json(&Manifest {
        schema_version: 2,
        media_type: MANIFEST,
        config,
        layers,
        annotations,
    })
}

/// An OCI image index over `manifests`.
pub fn index(manifests: &[Descriptor]) -> Vec<u8> {
    json(&Index {
        schema_version: 2,
        media_type: INDEX,
        manifests,
    })
}

/// The run-time part of an image config (Docker's capitalised keys).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// Non-root user.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Ports, `8080/tcp` → `{}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Entrypoint argv.
    pub entrypoint: Vec<String>,
    /// Default arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
    created_by: String,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: &'static str,
    architecture: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    os: &'a str,
    config: &'a RunConfig,
    rootfs: RootFs<'a>,
    history: Vec<History>,
}

/// An OCI image config for `platform` whose `rootfs.diff_ids` are the sha256 of each
/// uncompressed layer tar, with one history line per layer.
pub fn config(platform: &Platform, run: &RunConfig, layers: &[(&Layer, &str)]) -> Vec<u8> {
    json(&ImageConfig {
        created: EPOCH,
        architecture: &platform.architecture,
        variant: platform.variant.as_deref(),
        os: &platform.os,
        config: run,
        rootfs: RootFs {
            kind: "layers",
            diff_ids: layers
                .iter()
                .map(|(l, _)| format!("sha256:{}", l.diff_id_hex()))
                .collect(),
        },
        history: layers
            .iter()
            .map(|(_, by)| History {
                created: EPOCH,
                created_by: by.to_string(),
            })
            .collect(),
    })
}

/// A filesystem layer: the uncompressed tar and its gzip form.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The uncompressed tar stream.
    pub tar: Vec<u8>,
    /// The same stream gzip-compressed.
    pub gz: Vec<u8>,
}

impl Layer {
    /// Builds a layer from files (parent directories are added).
    pub fn new(files: Vec<TarEntry>) -> Result<Self> {
        let tar = tar(&with_parent_dirs(files))?;
        let gz = gzip(&tar)?;
        Ok(Self { tar, gz })
    }

    /// sha256 hex of the uncompressed tar (the config's diff_id).
    pub fn diff_id_hex(&self) -> String {
        sha256_hex(&self.tar)
    }
}

/// Content-addressed blobs, each stored once however often it is added.
#[derive(Debug, Default)]
pub struct BlobStore {
    blobs: BTreeMap<String, Vec<u8>>,
}

impl BlobStore {
    /// Stores `bytes` and returns its descriptor.
    pub fn add(&mut self, media_type: &str, bytes: Vec<u8>) -> Descriptor {
        let d = Descriptor::of(media_type, &bytes);
        self.blobs.entry(d.hex().to_string()).or_insert(bytes);
        d
    }

    /// Stores a single-platform image (gzip layers) and returns its manifest descriptor.
    pub fn add_image(
        &mut self,
        platform: &Platform,
        run: &RunConfig,
        layers: &[(&Layer, &str)],
        version: &str,
        layer_form: LayerForm,
    ) -> Descriptor {
        let layer_descs: Vec<Descriptor> = layers
            .iter()
            .map(|(l, _)| match layer_form {
                LayerForm::Gzip => self.add(LAYER_GZIP, l.gz.clone()),
                LayerForm::Tar => self.add(LAYER_TAR, l.tar.clone()),
            })
            .collect();
        let config = self.add(CONFIG, config(platform, run, layers));
        self.add(MANIFEST, manifest(&config, &layer_descs, version))
    }

    /// The blob with digest hex `hex`.
    pub fn get(&self, hex: &str) -> Option<&[u8]> {
        self.blobs.get(hex).map(Vec::as_slice)
    }

    /// Files of an OCI image layout holding every blob and an `index.json` over `refs`.
    pub fn layout(&self, refs: &[Descriptor]) -> Vec<TarEntry> {
        let mut files = vec![
            TarEntry::file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            TarEntry::file("index.json", index(refs)),
        ];
        for (hex, bytes) in &self.blobs {
            files.push(TarEntry::file(format!("blobs/sha256/{hex}"), bytes.clone()));
        }
        files
    }
}

/// How an image's layers are stored.
#[derive(Debug, Clone, Copy)]
pub enum LayerForm {
    /// gzip-compressed (`tar+gzip`), as registries and OCI layouts usually hold them.
    Gzip,
    /// Uncompressed (`tar`), as `docker save` writes them.
    Tar,
}

/// A tar archive of `files`, with directory entries added and paths sorted.
pub fn archive(files: Vec<TarEntry>) -> Result<Vec<u8>> {
    tar(&with_parent_dirs(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_and_tar_are_byte_stable() {
        let files = || {
            vec![
                TarEntry::file("etc/os-release", "ID=test\n"),
                TarEntry::exe("app/run", "#!/bin/sh\n"),
            ]
        };
        let a = Layer::new(files()).unwrap();
        let b = Layer::new(files()).unwrap();
        assert_eq!(a.gz, b.gz);
        // gzip header: magic, deflate, no flags, mtime 0, OS 255.
        assert_eq!(&a.gz[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        assert_eq!(a.gz[9], 255);
    }

    #[test]
    fn parents_come_first_and_once() {
        let out = with_parent_dirs(vec![
            TarEntry::file("a/b/c", "x"),
            TarEntry::file("a/d", "y"),
        ]);
        let paths: Vec<_> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a/", "a/b/", "a/b/c", "a/d"]);
    }

    #[test]
    fn tar_headers_are_normalised() {
        let bytes = tar(&with_parent_dirs(vec![TarEntry::exe("app/x", "hi")])).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            assert_eq!(h.mode().unwrap(), 0o755);
        }
    }
}

//! Images pulled from registries for `ferry build`: tags resolved to digests, indexes kept
//! whole or filtered to some platforms, manifests and configs fetched into memory, and every
//! layer left as a `BlobLocation::Remote` that the build streams into the bundle.
//!
//! One `RegistryClient` per registry, the same client `ferry load` pushes with. An optional
//! content-addressed cache (`DIR/blobs/sha256/HEX`, written by rename into place once a blob
//! matched its digest) means a rebuild downloads nothing twice.

use crate::bundle::archive::Packing;
use crate::bundle::source::{
    BlobLocation, FetchedChart, RemoteBlob, RemoteInputs, RemoteRequest, ResolvedImage,
    ResolvedReferrer, SourceBlob,
};
use crate::bundle::spec::ChartSource;
use crate::error_chain::error_chain;
use crate::oci::digest::{Digest, Hasher};
use crate::oci::document::{self, Document, MAX_JSON};
use crate::oci::reference::DOCKER_HUB;
use crate::oci::referrers::{self, ReferrerKind};
use crate::registry::charts::{self, OciChartRef};
use crate::registry::{CredentialSource, RegistryClient, RegistryError, RegistryOptions};
use oci_spec::image::{Descriptor, Platform};
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The API host of Docker Hub, which references call `docker.io`.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// How to reach the registries images are pulled from.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Where credentials come from (Docker `config.json`, containers `auth.json`, helpers).
    pub credentials: CredentialSource,
    /// Extra CA certificates: for every registry (`None`) or one `HOST[:PORT]`.
    pub ca_files: Vec<(Option<String>, PathBuf)>,
    /// Plain HTTP for every registry.
    pub plain_http: bool,
    /// Plain HTTP for these registries only.
    pub plain_http_hosts: Vec<String>,
    /// A content-addressed cache of fetched blobs.
    pub cache: Option<PathBuf>,
    /// Keep non-distributable (foreign) layers instead of leaving them out.
    pub include_non_distributable: bool,
}

/// Resolves images in registries; hand it to the build as `BuildOptions::remote`.
pub struct Puller {
    rt: tokio::runtime::Runtime,
    opts: PullOptions,
    clients: Mutex<HashMap<String, Arc<RegistryClient>>>,
    cache: Option<Arc<Cache>>,
}

impl Puller {
    /// Starts the network runtime; touches no registry yet.
    pub fn new(opts: PullOptions) -> io::Result<Puller> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let cache = match &opts.cache {
            Some(dir) => Some(Arc::new(Cache::create(dir)?)),
            None => None,
        };
        Ok(Puller {
            rt,
            opts,
            clients: Mutex::new(HashMap::new()),
            cache,
        })
    }

    /// The client for `host` (a reference's registry), made on first use.
    fn client(&self, host: &str) -> Result<Arc<RegistryClient>, String> {
        let api = if host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            host
        };
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| "a pull panicked".to_string())?;
        if let Some(c) = clients.get(api) {
            return Ok(c.clone());
        }
        let mut o = self.options_for(host);
        o.registry = api.to_string();
        let client = Arc::new(RegistryClient::new(o).map_err(|e| error_chain(&e))?);
        clients.insert(api.to_string(), client.clone());
        Ok(client)
    }

    /// Credentials, CA file and plain HTTP for `host` (`HOST[:PORT]`).
    fn options_for(&self, host: &str) -> RegistryOptions {
        let mut o = RegistryOptions::new(host);
        o.credentials = self.opts.credentials.clone();
        o.plain_http = self.opts.plain_http || self.opts.plain_http_hosts.iter().any(|h| h == host);
        o.ca_file = self
            .opts
            .ca_files
            .iter()
            .find(|(h, _)| h.as_deref() == Some(host))
            .or_else(|| self.opts.ca_files.iter().find(|(h, _)| h.is_none()))
            .map(|(_, f)| f.clone());
        o
    }
}

/// `HOST[:PORT]` of an `http(s)://` URL.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

impl RemoteInputs for Puller {
    fn fetch_chart(&self, source: &ChartSource) -> Result<FetchedChart, String> {
        let fetched = match source {
            ChartSource::Oci(reference) => {
                let r = OciChartRef::parse(reference).map_err(|e| error_chain(&e))?;
                let client = self.client(&r.registry)?;
                self.rt
                    .block_on(client.fetch_oci_chart(&r.repository, &r.version))
            }
            ChartSource::Repo {
                repo,
                name,
                version,
            } => {
                let opts = self.options_for(url_host(repo));
                self.rt
                    .block_on(charts::fetch_repo_chart(&opts, repo, name, version))
            }
            ChartSource::Path(p) => return Err(format!("`{p}` is a local chart")),
        }
        .map_err(|e| error_chain(&e))?;
        Ok(FetchedChart {
            bytes: fetched.bytes,
            source: fetched.source,
            notes: fetched.notes,
        })
    }

    fn resolve(&self, request: &RemoteRequest) -> Result<ResolvedImage, String> {
        let host = request.pull.host().to_string();
        let client = self.client(&host)?;
        let repo = request.pull.repository.clone();
        let wanted = match (&request.digest, &request.pull.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        };
        let top = self
            .rt
            .block_on(client.get_manifest(&repo, &wanted))
            .map_err(|e| error_chain(&e))?;
        let mut walk = Walk {
            puller: self,
            client,
            source: format!("docker://{host}/{repo}"),
            repo,
            blobs: Vec::new(),
            seen: BTreeSet::new(),
            platforms: Vec::new(),
            skipped: Vec::new(),
        };
        let (media_type, doc) = Document::parse(&top.bytes, Some(&top.media_type))
            .map_err(|e| format!("{}@{}: {e}", walk.source, top.digest))?;
        let (digest, size, source_digest) = match doc {
            Document::Index(index) if !request.platforms.is_empty() => {
                let kept = pick_platforms(&index, &request.platforms)
                    .map_err(|e| format!("{}@{}: {e}", walk.source, top.digest))?;
                let bytes = filtered_index(&top.bytes, &kept)
                    .map_err(|e| format!("{}@{}: {e}", walk.source, top.digest))?;
                let digest = Digest::of(&bytes);
                let size = bytes.len() as u64;
                walk.memory(&digest, bytes);
                for child in index
                    .manifests()
                    .iter()
                    .filter(|d| document::digest_of(d).is_some_and(|x| kept.contains(&x)))
                {
                    walk.descriptor(child, 1)?;
                }
                (digest, size, Some(top.digest.clone()))
            }
            doc => {
                let size = top.bytes.len() as u64;
                walk.memory(&top.digest, top.bytes.clone());
                walk.document(doc, &top.digest, 0, None)?;
                if !request.platforms.is_empty() {
                    check_single_platform(&walk.platforms, &request.platforms)
                        .map_err(|e| format!("{}@{}: {e}", walk.source, top.digest))?;
                }
                (top.digest.clone(), size, None)
            }
        };
        // The artifacts of a filtered index sign or describe the upstream index, which the
        // bundle does not hold: they are not carried.
        let referrers = match request.referrers && source_digest.is_none() {
            true => walk.referrers(&digest)?,
            false => Vec::new(),
        };
        Ok(ResolvedImage {
            media_type,
            digest,
            size,
            platforms: walk.platforms,
            blobs: walk.blobs,
            source_digest,
            non_distributable: walk.skipped,
            referrers,
        })
    }
}

/// Walks an image in a registry, collecting its blobs.
struct Walk<'p> {
    puller: &'p Puller,
    client: Arc<RegistryClient>,
    /// `docker://HOST/REPO`, for messages.
    source: String,
    repo: String,
    blobs: Vec<SourceBlob>,
    seen: BTreeSet<Digest>,
    platforms: Vec<String>,
    skipped: Vec<Digest>,
}

impl Walk<'_> {
    fn memory(&mut self, digest: &Digest, bytes: Vec<u8>) {
        if self.seen.insert(digest.clone()) {
            self.blobs.push(SourceBlob {
                digest: digest.clone(),
                size: bytes.len() as u64,
                location: BlobLocation::Memory(bytes.into()),
            });
        }
    }

    fn at(&self, digest: &Digest, message: impl std::fmt::Display) -> String {
        format!("{}@{digest}: {message}", self.source)
    }

    /// A small document by digest (a child manifest or a config), from the cache when it
    /// has it, checked against its digest.
    fn small(&self, d: &Descriptor, manifest: bool) -> Result<(Digest, Vec<u8>), String> {
        let digest = document::digest_of(d)
            .ok_or_else(|| format!("{}: a descriptor has an unusable digest", self.source))?;
        if d.size() > MAX_JSON {
            return Err(self.at(
                &digest,
                format!(
                    "{} bytes; the limit for a manifest or config is {MAX_JSON}",
                    d.size()
                ),
            ));
        }
        if let Some(bytes) = self.puller.cache.as_ref().and_then(|c| c.read(&digest)) {
            return Ok((digest, bytes));
        }
        let rt = &self.puller.rt;
        let bytes = if manifest {
            rt.block_on(self.client.get_manifest(&self.repo, &digest.to_string()))
                .map(|m| m.bytes)
        } else {
            rt.block_on(self.client.get_blob(&self.repo, &digest, MAX_JSON))
        }
        .map_err(|e| error_chain(&e))?;
        // The client has checked the bytes against the digest; the size is the descriptor's.
        if bytes.len() as u64 != d.size() {
            return Err(self.at(
                &digest,
                format!(
                    "the registry served {} bytes; the manifest gives {}",
                    bytes.len(),
                    d.size()
                ),
            ));
        }
        if let Some(c) = &self.puller.cache {
            c.write(&digest, &bytes);
        }
        Ok((digest, bytes))
    }

    fn descriptor(&mut self, d: &Descriptor, depth: u32) -> Result<(), String> {
        if depth > 4 {
            return Err(format!(
                "{}: indexes nested deeper than 4 levels",
                self.source
            ));
        }
        let (digest, bytes) = self.small(d, true)?;
        let (_, doc) = Document::parse(&bytes, Some(d.media_type().as_ref()))
            .map_err(|e| self.at(&digest, e))?;
        self.memory(&digest, bytes);
        self.document(doc, &digest, depth, d.platform().as_ref())
    }

    fn document(
        &mut self,
        doc: Document,
        digest: &Digest,
        depth: u32,
        platform: Option<&Platform>,
    ) -> Result<(), String> {
        match doc {
            Document::Index(index) => {
                for child in index.manifests() {
                    self.descriptor(child, depth + 1)?;
                }
            }
            Document::Manifest(manifest) => {
                let config = manifest.config();
                let (config_digest, config_bytes) = self.small(config, false)?;
                let rendered = match platform {
                    Some(p) => Some(document::render_platform(p)),
                    None => document::config_platform(config.media_type().as_ref(), &config_bytes)
                        .map_err(|e| self.at(digest, format!("config {config_digest}: {e}")))?
                        .map(|p| document::render_platform(&p)),
                };
                self.platforms.extend(rendered);
                self.memory(&config_digest, config_bytes);
                for layer in manifest.layers() {
                    self.layer(layer)?;
                }
            }
        }
        Ok(())
    }

    /// The artifacts attached to the image `digest`: cosign's `sha256-HEX.sig|.att|.sbom`
    /// tags, and the OCI referrers the registry lists through its referrers API or, without
    /// one, under the referrers tag schema's `sha256-HEX` index.
    fn referrers(&mut self, digest: &Digest) -> Result<Vec<ResolvedReferrer>, String> {
        let rt = &self.puller.rt;
        let mut out: Vec<ResolvedReferrer> = Vec::new();
        for kind in ReferrerKind::COSIGN {
            let tag = referrers::cosign_tag(digest, kind).unwrap_or_default();
            let m = match rt.block_on(self.client.get_manifest(&self.repo, &tag)) {
                Ok(m) => m,
                Err(RegistryError::NotFound { .. }) => continue,
                Err(e) => return Err(error_chain(&e)),
            };
            out.extend(self.referrer(m.digest, m.media_type, m.bytes, Some(kind), digest)?);
        }
        let index = match rt
            .block_on(self.client.get_referrers(&self.repo, digest))
            .map_err(|e| error_chain(&e))?
        {
            Some(index) => Some(index),
            None => rt
                .block_on(self.client.get_referrers_tag(&self.repo, digest))
                .map_err(|e| error_chain(&e))?,
        };
        let Some(index) = index else {
            return Ok(out);
        };
        let Ok((_, Document::Index(index))) = Document::parse(&index, None) else {
            return Err(self.at(digest, "the referrers index is not an image index"));
        };
        for d in index.manifests() {
            if out
                .iter()
                .any(|r| Some(&r.entry.digest) == document::digest_of(d).as_ref())
            {
                continue;
            }
            let (rd, bytes) = self.small(d, true)?;
            out.extend(self.referrer(rd, d.media_type().to_string(), bytes, None, digest)?);
        }
        Ok(out)
    }

    /// One artifact from its manifest: its config into memory, its layers streamed when the
    /// bundle is written (a blob the image or another artifact already brought is planned
    /// once by the build).
    fn referrer(
        &mut self,
        digest: Digest,
        media_type: String,
        bytes: Vec<u8>,
        by_tag: Option<ReferrerKind>,
        image: &Digest,
    ) -> Result<Option<ResolvedReferrer>, String> {
        let m = match Document::parse(&bytes, Some(&media_type)) {
            Ok((_, Document::Manifest(m))) => m,
            // An index attached to an image is not carried (bundle-format 8.3).
            Ok((_, Document::Index(_))) => return Ok(None),
            Err(e) => return Err(self.at(&digest, format!("an attached artifact: {e}"))),
        };
        let config = m.config();
        let (config_digest, config_bytes) = self.small(config, false)?;
        let mut blobs = vec![
            SourceBlob {
                digest: digest.clone(),
                size: bytes.len() as u64,
                location: BlobLocation::Memory(bytes.clone().into()),
            },
            SourceBlob {
                digest: config_digest,
                size: config.size(),
                location: BlobLocation::Memory(config_bytes.into()),
            },
        ];
        for d in m.layers() {
            let before = self.blobs.len();
            self.layer(d)?;
            blobs.extend(self.blobs.drain(before..));
        }
        ResolvedReferrer::new(digest, media_type, &bytes, by_tag, image, blobs).map(Some)
    }

    fn layer(&mut self, d: &Descriptor) -> Result<(), String> {
        let digest = document::digest_of(d)
            .ok_or_else(|| format!("{}: a layer has an unusable digest", self.source))?;
        if document::is_non_distributable(d) && !self.puller.opts.include_non_distributable {
            if !self.skipped.contains(&digest) {
                self.skipped.push(digest);
            }
            return Ok(());
        }
        if !self.seen.insert(digest.clone()) {
            return Ok(());
        }
        let blob = RegistryBlob {
            client: self.client.clone(),
            rt: self.puller.rt.handle().clone(),
            repo: self.repo.clone(),
            describe: format!("{}@{digest}", self.source),
            digest: digest.clone(),
            size: d.size(),
            packing: packing_of(d.media_type().as_ref()),
            cache: self.puller.cache.clone(),
            pending: Mutex::new(None),
        };
        self.blobs.push(SourceBlob {
            digest,
            size: d.size(),
            location: BlobLocation::Remote(Arc::new(blob)),
        });
        Ok(())
    }
}

/// Compressed layers (gzip, zstd) are stored as they are; anything else is deflated.
fn packing_of(media_type: &str) -> Packing {
    let m = media_type.to_ascii_lowercase();
    if m.ends_with("gzip") || m.ends_with("zstd") || m.ends_with("bzip2") || m.ends_with("xz") {
        Packing::Store
    } else {
        Packing::Compress
    }
}

/// Whether a platform an index lists is one of those asked for: `linux/arm64` matches any
/// variant of it, `linux/arm/v7` that variant only.
fn platform_matches(have: &str, wanted: &str) -> bool {
    have == wanted || have.starts_with(&format!("{wanted}/"))
}

/// The manifests of an index to keep for `wanted` platforms, with the attestation manifests
/// that refer to them (BuildKit's `vnd.docker.reference.digest`). Every wanted platform must
/// be there.
fn pick_platforms(
    index: &oci_spec::image::ImageIndex,
    wanted: &[String],
) -> Result<BTreeSet<Digest>, String> {
    let listed: Vec<(String, &Descriptor)> = index
        .manifests()
        .iter()
        .filter_map(|d| {
            d.platform()
                .as_ref()
                .map(|p| (document::render_platform(p), d))
        })
        .collect();
    let mut kept = BTreeSet::new();
    for w in wanted {
        let matching: Vec<&Descriptor> = listed
            .iter()
            .filter(|(p, _)| platform_matches(p, w))
            .map(|(_, d)| *d)
            .collect();
        if matching.is_empty() {
            let have: Vec<&str> = listed
                .iter()
                .map(|(p, _)| p.as_str())
                .filter(|p| *p != "unknown/unknown")
                .collect();
            return Err(format!(
                "the index has no `{w}` manifest (it has: {}); fix `platforms:`",
                have.join(", ")
            ));
        }
        kept.extend(matching.into_iter().filter_map(document::digest_of));
    }
    for d in index.manifests() {
        let refers = document::annotation(d, "vnd.docker.reference.digest")
            .and_then(|x| x.parse::<Digest>().ok());
        if refers.is_some_and(|r| kept.contains(&r)) {
            kept.extend(document::digest_of(d));
        }
    }
    Ok(kept)
}

/// A single-platform image must be one of the platforms asked for.
fn check_single_platform(have: &[String], wanted: &[String]) -> Result<(), String> {
    if have.is_empty()
        || have
            .iter()
            .any(|h| wanted.iter().any(|w| platform_matches(h, w)))
    {
        return Ok(());
    }
    Err(format!(
        "the image is {} only; `platforms:` asks for {}",
        have.join(", "),
        wanted.join(", ")
    ))
}

/// The index with only the `kept` manifests: a new document, so a new digest. Keys come out
/// sorted and compact, so the same index and platforms always give the same bytes.
fn filtered_index(bytes: &[u8], kept: &BTreeSet<Digest>) -> Result<Vec<u8>, String> {
    let mut index: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("index: {e}"))?;
    let manifests = index
        .get_mut("manifests")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or("index without `manifests`")?;
    manifests.retain(|m| {
        m.get("digest")
            .and_then(serde_json::Value::as_str)
            .and_then(|d| d.parse::<Digest>().ok())
            .is_some_and(|d| kept.contains(&d))
    });
    serde_json::to_vec(&index).map_err(|e| format!("index: {e}"))
}

/// A layer in a registry, streamed into the bundle when the build writes it.
struct RegistryBlob {
    client: Arc<RegistryClient>,
    rt: tokio::runtime::Handle,
    repo: String,
    describe: String,
    digest: Digest,
    size: u64,
    packing: Packing,
    cache: Option<Arc<Cache>>,
    /// The cache file being filled by the current read, kept once the blob verified.
    pending: Mutex<Option<tempfile::TempPath>>,
}

impl RemoteBlob for RegistryBlob {
    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        if let Some(cache) = &self.cache {
            if let Some(file) = cache.open(&self.digest, self.size) {
                return Ok(Box::new(Checked {
                    inner: file,
                    hasher: Hasher::new(),
                    digest: self.digest.clone(),
                    path: cache.path(&self.digest),
                    checked: false,
                }));
            }
        }
        let reader = self
            .client
            .blob_reader(&self.rt, &self.repo, &self.digest, self.size);
        match &self.cache {
            Some(cache) => {
                let (file, path) = cache.pending()?.into_parts();
                if let Ok(mut pending) = self.pending.lock() {
                    *pending = Some(path);
                }
                Ok(Box::new(Tee {
                    inner: reader,
                    copy: file,
                }))
            }
            None => Ok(Box::new(reader)),
        }
    }

    fn verified(&self) {
        let pending = self.pending.lock().ok().and_then(|mut p| p.take());
        if let (Some(cache), Some(path)) = (&self.cache, pending) {
            cache.keep(path, &self.digest);
        }
    }

    fn packing(&self) -> Packing {
        self.packing
    }

    fn checks_digest(&self) -> bool {
        // The registry's reader checks size and digest at the end; so does `Checked`.
        true
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// A cached blob read back, hashed on the way: at the end, bytes that do not match the
/// digest are an error naming the cache file.
struct Checked {
    inner: File,
    hasher: Hasher,
    digest: Digest,
    path: PathBuf,
    checked: bool,
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.checked {
            self.checked = true;
            let found = std::mem::take(&mut self.hasher).finish();
            if found != self.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the cached blob {} does not match its digest (found {found}); delete it and build again",
                        self.path.display()
                    ),
                ));
            }
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Copies what is read into a cache file.
struct Tee<R> {
    inner: R,
    copy: File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// A content-addressed blob cache: `DIR/blobs/sha256/HEX`, each file renamed into place
/// only after its bytes matched the digest, so a file there is always whole.
struct Cache {
    blobs: PathBuf,
}

impl Cache {
    fn create(dir: &Path) -> io::Result<Cache> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| io::Error::new(e.kind(), format!("cache {}: {e}", blobs.display())))?;
        Ok(Cache { blobs })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// The cached blob, when it is there with the right size (its bytes are checked by the
    /// build as they are written).
    fn open(&self, digest: &Digest, size: u64) -> Option<File> {
        let f = File::open(self.path(digest)).ok()?;
        (f.metadata().ok()?.len() == size).then_some(f)
    }

    /// A small cached blob whose bytes match its digest.
    fn read(&self, digest: &Digest) -> Option<Vec<u8>> {
        let f = File::open(self.path(digest)).ok()?;
        let mut bytes = Vec::new();
        f.take(MAX_JSON + 1).read_to_end(&mut bytes).ok()?;
        (Digest::of(&bytes) == *digest).then_some(bytes)
    }

    /// Keeps a small verified blob; a cache that cannot be written is only a slower rebuild.
    fn write(&self, digest: &Digest, bytes: &[u8]) {
        if let Ok(mut tmp) = self.pending() {
            if tmp.write_all(bytes).is_ok() {
                let _ = tmp.persist(self.path(digest));
            }
        }
    }

    fn pending(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.blobs)
    }

    fn keep(&self, path: tempfile::TempPath, digest: &Digest) {
        let _ = path.persist(self.path(digest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_hosts_are_taken_from_urls() {
        assert_eq!(
            url_host("https://charts.example.com/stable"),
            "charts.example.com"
        );
        assert_eq!(url_host("http://127.0.0.1:8080/"), "127.0.0.1:8080");
        assert_eq!(url_host("https://u:p@c.example:8443"), "c.example:8443");
    }

    #[test]
    fn platforms_match_with_and_without_variant() {
        assert!(platform_matches("linux/arm64/v8", "linux/arm64"));
        assert!(platform_matches("linux/arm/v7", "linux/arm/v7"));
        assert!(!platform_matches("linux/arm/v6", "linux/arm/v7"));
        assert!(!platform_matches("linux/arm64", "linux/arm"));
    }

    #[test]
    fn packing_follows_the_media_type() {
        assert_eq!(packing_of(document::OCI_LAYER_GZIP), Packing::Store);
        assert_eq!(packing_of(document::OCI_LAYER_ZSTD), Packing::Store);
        assert_eq!(
            packing_of("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Packing::Store
        );
        assert_eq!(packing_of(document::OCI_LAYER_TAR), Packing::Compress);
    }

    /// The shape `docker buildx build --push` gives: an OCI index with an attestation manifest
    /// per platform (`unknown/unknown`, pointing at its image through
    /// `vnd.docker.reference.digest`), variants on arm, and keys ferry never writes.
    #[test]
    fn a_buildkit_index_keeps_the_attestations_of_the_platforms_kept() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let (amd, arm, att_amd, att_arm) = (d('1'), d('2'), d('3'), d('4'));
        let att = |of: &str, digest: &str| {
            format!(
                r#"{{"mediaType":"{}","digest":"{digest}","size":566,"annotations":{{"vnd.docker.reference.digest":"{of}","vnd.docker.reference.type":"attestation-manifest"}},"platform":{{"architecture":"unknown","os":"unknown"}}}}"#,
                document::OCI_MANIFEST
            )
        };
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{m}","digest":"{amd}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{m}","digest":"{arm}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},{},{}],"annotations":{{"org.opencontainers.image.created":"2026-11-01T00:00:00Z"}}}}"#,
            document::OCI_INDEX,
            att(&amd, &att_amd),
            att(&arm, &att_arm),
            m = document::OCI_MANIFEST,
        );
        let (_, doc) = Document::parse(idx.as_bytes(), None).unwrap();
        let Document::Index(index) = doc else {
            panic!("an index")
        };
        let kept = pick_platforms(&index, &["linux/arm64".to_string()]).unwrap();
        let want: BTreeSet<Digest> = [&arm, &att_arm]
            .iter()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(kept, want);
        let text = String::from_utf8(filtered_index(idx.as_bytes(), &kept).unwrap()).unwrap();
        assert!(text.contains(&att_arm) && !text.contains(&att_amd) && !text.contains(&amd));
        assert!(text.contains("org.opencontainers.image.created"), "{text}");
        // The attestations' own platform is not one a user can ask for.
        let err = pick_platforms(&index, &["linux/s390x".to_string()]).unwrap_err();
        assert!(!err.contains("unknown"), "{err}");
    }

    #[test]
    fn a_filtered_index_is_stable_and_keeps_only_what_was_asked() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{a}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},{{"mediaType":"{}","digest":"{b}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#,
            document::OCI_INDEX,
            document::OCI_MANIFEST,
            document::OCI_MANIFEST
        );
        let (_, doc) = Document::parse(idx.as_bytes(), None).unwrap();
        let Document::Index(index) = doc else {
            panic!("an index")
        };
        let kept = pick_platforms(&index, &["linux/arm64".to_string()]).unwrap();
        assert_eq!(kept.len(), 1);
        let once = filtered_index(idx.as_bytes(), &kept).unwrap();
        assert_eq!(once, filtered_index(idx.as_bytes(), &kept).unwrap());
        let text = String::from_utf8(once).unwrap();
        assert!(text.contains(&b) && !text.contains(&a), "{text}");
        let err = pick_platforms(&index, &["linux/s390x".to_string()]).unwrap_err();
        assert!(err.contains("linux/amd64, linux/arm64"), "{err}");
    }
}

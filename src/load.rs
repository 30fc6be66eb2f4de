//! `ferry load`: pushes the images of a bundle (or of an extracted bundle, an OCI layout,
//! an `oci-archive` or a `docker-archive`) to a registry, reading blobs in place.
//!
//! A `.tar.gz` bundle is verified in one streaming pass that also indexes it: layers kept
//! in stored gzip blocks are later read straight from the bundle file at their offsets
//! (skipping the 5-byte block frames), small blobs are kept in memory, and the few large
//! blobs that were deflated (uncompressed layers from `docker save`) are spooled to a
//! temporary folder. Nothing else is copied.

use crate::bundle::archive::{Limits, MemberInfo, STORED_BLOCK};
use crate::bundle::manifest::{blob_hex, FileEntry, ImageEntry, Manifest};
use crate::bundle::verify::{
    self, EntryPlace, Evidence, HeadCheck, Sink, VerifyError, VerifyOptions,
};
use crate::oci::digest::Digest;
use crate::oci::reference::{ImageRef, Target};
use crate::oci::source::{self, BlobLocation, SourceKind, SourceSpec, MAX_JSON};
use crate::progress::Progress;
use crate::registry::push::{BlobSource, ImageToPush};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of small blobs kept in memory while indexing a bundle.
const MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

/// Where one blob's bytes are.
#[derive(Debug, Clone)]
enum Loc {
    Located(BlobLocation),
    /// Inside a stored gzip member of a bundle file.
    Stored {
        file: Arc<PathBuf>,
        member: MemberInfo,
        data_offset: u64,
    },
    Spooled(PathBuf),
}

/// A `BlobSource` over blobs found anywhere: a bundle, a folder or an archive.
pub struct IndexedSource {
    blobs: HashMap<Digest, (u64, Loc)>,
    /// Keeps spooled blobs alive until the push is over.
    _spool: Option<tempfile::TempDir>,
}

impl IndexedSource {
    fn get(&self, digest: &Digest) -> io::Result<&(u64, Loc)> {
        self.blobs.get(digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {digest} is not in the source"),
            )
        })
    }
}

impl BlobSource for IndexedSource {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        let (size, loc) = self.get(digest)?;
        Ok(match loc {
            Loc::Located(l) => l.open(*size)?,
            Loc::Spooled(p) => Box::new(File::open(p)?),
            Loc::Stored {
                file,
                member,
                data_offset,
            } => Box::new(StoredReader::open(file, *member, *data_offset, *size)?),
        })
    }

    fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.blobs.get(digest).map(|(s, _)| *s)
    }

    fn read_manifest(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        let (size, _) = self.get(digest)?;
        if *size > MAX_JSON {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("manifest {digest} is {size} bytes, over the {MAX_JSON}-byte limit"),
            ));
        }
        let mut out = Vec::with_capacity(*size as usize);
        self.open_blob(digest)?.take(*size).read_to_end(&mut out)?;
        Ok(out)
    }
}

/// Reads a range of the tar stream that lies inside one stored gzip member, straight from
/// the file: stored blocks are 65,535 bytes of data after a 5-byte frame.
struct StoredReader {
    file: BufReader<File>,
    /// Bytes left in the current block.
    in_block: usize,
    left: u64,
}

impl StoredReader {
    fn open(
        path: &Path,
        member: MemberInfo,
        data_offset: u64,
        size: u64,
    ) -> io::Result<StoredReader> {
        let d = data_offset
            .checked_sub(member.decompressed_offset)
            .ok_or_else(|| io::Error::other("blob starts before its member"))?;
        let block = d / STORED_BLOCK as u64;
        let within = d % STORED_BLOCK as u64;
        let pos = member.compressed_offset + 10 + block * (STORED_BLOCK as u64 + 5) + 5 + within;
        let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
        file.seek(SeekFrom::Start(pos))?;
        Ok(StoredReader {
            file,
            in_block: STORED_BLOCK - within as usize,
            left: size,
        })
    }
}

impl Read for StoredReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.in_block == 0 {
            // The next block's frame: BFINAL/BTYPE byte, LEN, NLEN.
            let mut frame = [0u8; 5];
            self.file.read_exact(&mut frame)?;
            let len = u16::from_le_bytes([frame[1], frame[2]]);
            if frame[0] & 0b110 != 0 || len != !u16::from_le_bytes([frame[3], frame[4]]) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a stored deflate block where one was expected",
                ));
            }
            self.in_block = len as usize;
        }
        let want = buf
            .len()
            .min(self.in_block)
            .min(self.left.min(usize::MAX as u64) as usize);
        let avail = self.file.fill_buf()?;
        if avail.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the bundle ends inside a blob",
            ));
        }
        let n = want.min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.file.consume(n);
        self.in_block -= n;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Indexes a bundle's blobs while it is verified.
struct IndexSink {
    file: Arc<PathBuf>,
    /// The manifest as verified in this pass.
    manifest: Option<Manifest>,
    blobs: HashMap<Digest, (u64, Loc)>,
    spool: Option<tempfile::TempDir>,
    memory_left: u64,
    current: Option<(Digest, Vec<u8>)>,
}

impl Sink for IndexSink {
    fn start(&mut self, manifest: &Manifest, _: &[u8], _: Option<&[u8]>, _: u64) -> io::Result<()> {
        self.manifest = Some(manifest.clone());
        Ok(())
    }

    fn open(&mut self, entry: &FileEntry, place: EntryPlace) -> io::Result<Box<dyn Write + '_>> {
        let Some((hex, digest)) =
            blob_hex(&entry.path).and_then(|h| Some((h, Digest::from_hex(h).ok()?)))
        else {
            return Ok(Box::new(io::sink()));
        };
        if entry.size <= MAX_JSON && entry.size <= self.memory_left {
            self.memory_left -= entry.size;
            self.current = Some((digest, Vec::with_capacity(entry.size as usize)));
            return Ok(Box::new(&mut self.current.as_mut().expect("just set").1));
        }
        if let Some(member) = place.member.filter(|m| m.stored) {
            self.blobs.insert(
                digest,
                (
                    entry.size,
                    Loc::Stored {
                        file: self.file.clone(),
                        member,
                        data_offset: place.data_offset,
                    },
                ),
            );
            return Ok(Box::new(io::sink()));
        }
        if self.spool.is_none() {
            self.spool = Some(tempfile::Builder::new().prefix("ferry-load-").tempdir()?);
        }
        let path = self.spool.as_ref().expect("just made").path().join(hex);
        self.blobs
            .insert(digest, (entry.size, Loc::Spooled(path.clone())));
        Ok(Box::new(io::BufWriter::new(File::create(path)?)))
    }

    fn close(&mut self, entry: &FileEntry, _: u64) -> io::Result<()> {
        if let Some((digest, bytes)) = self.current.take() {
            self.blobs.insert(
                digest,
                (entry.size, Loc::Located(BlobLocation::Memory(bytes.into()))),
            );
        }
        Ok(())
    }
}

/// What to load, and from where.
pub struct LoadInput<'a> {
    pub input: PathBuf,
    /// The registry the images go to (`--registry HOST[:PORT][/PREFIX]`).
    pub target: Target,
    pub limits: Limits,
    pub progress: Progress,
    pub check_head: Option<&'a HeadCheck<'a>>,
}

/// The images of an input, ready to push.
pub struct Prepared {
    pub source: Arc<dyn BlobSource>,
    pub images: Vec<ImageToPush>,
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
    let images = head
        .manifest
        .images
        .iter()
        .map(|i| to_push(i, &input.target))
        .collect::<Result<Vec<_>, _>>()?;
    match crate::registry::push::all_present(push, &images) {
        Ok(true) => Ok(Some(AlreadyLoaded {
            manifest: head.manifest,
            images,
            head_check,
        })),
        // Anything else (absent, or an error the full push will report properly).
        _ => Ok(None),
    }
}

/// Verifies (bundles) and indexes an input, and lists the images to push.
pub fn prepare(input: &LoadInput) -> Result<Prepared, LoadError> {
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
                )?)
            })?;
            return Ok(Prepared {
                source,
                images,
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
    let head = if gz {
        Some(crate::bundle::head::read(path))
    } else {
        None
    };
    if let Some(Ok(_)) = head {
        return from_bundle(input);
    }
    let not_bundle = match head {
        Some(Err(e)) => format!(" (as a ferry bundle: {e})"),
        _ => String::new(),
    };
    let invalid = |message: String| LoadError::Input {
        path: path.clone(),
        message: format!("{message}{not_bundle}"),
    };
    // An image archive, possibly gzip-compressed (like a `docker save | gzip` file).
    let (archive, spool) = if gz {
        let dir = tempfile::Builder::new()
            .prefix("ferry-load-")
            .tempdir()
            .map_err(|e| invalid(e.to_string()))?;
        let out = dir.path().join("archive.tar");
        let mut dec = flate2::read::MultiGzDecoder::new(
            File::open(path).map_err(|e| invalid(e.to_string()))?,
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
    let kind = if archive_has(&archive, "manifest.json") {
        SourceKind::DockerArchive
    } else {
        SourceKind::OciArchive
    };
    let mut prepared = from_layout_names(
        &SourceSpec {
            kind,
            path: archive,
            name: None,
        },
        &input.target,
    )?;
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

fn archive_has(path: &Path, name: &str) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    let mut ar = tar::Archive::new(f);
    let Ok(entries) = ar.entries() else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        e.path()
            .map(|p| p.to_string_lossy().trim_start_matches("./") == name)
            .unwrap_or(false)
    })
}

/// The images named in a layout's `index.json` or a docker archive's `manifest.json`.
fn from_layout_names(spec: &SourceSpec, target: &Target) -> Result<Prepared, LoadError> {
    let names = source::image_names(spec)?;
    if names.is_empty() {
        return Err(LoadError::Input {
            path: spec.path.clone(),
            message: "holds no named images".into(),
        });
    }
    let mut blobs = HashMap::new();
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
        )?;
        for b in &resolved.blobs {
            blobs.insert(b.digest.clone(), (b.size, Loc::Located(b.location.clone())));
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
        source: Arc::new(IndexedSource {
            blobs,
            _spool: None,
        }),
        images,
        evidence: None,
        manifest: None,
    })
}

fn from_manifest_images(
    manifest: &Manifest,
    target: &Target,
    resolve: impl Fn(&str) -> Result<source::ResolvedImage, LoadError>,
) -> Result<(Arc<dyn BlobSource>, Vec<ImageToPush>), LoadError> {
    let mut blobs = HashMap::new();
    let mut images = Vec::new();
    for img in &manifest.images {
        let resolved = resolve(&img.reference)?;
        for b in &resolved.blobs {
            blobs.insert(b.digest.clone(), (b.size, Loc::Located(b.location.clone())));
        }
        images.push(to_push(img, target)?);
    }
    Ok((
        Arc::new(IndexedSource {
            blobs,
            _spool: None,
        }),
        images,
    ))
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
    let file = File::open(&input.input).map_err(|source| VerifyError::Open {
        path: input.input.clone(),
        source,
    })?;
    let mut sink = IndexSink {
        file: Arc::new(input.input.clone()),
        manifest: None,
        blobs: HashMap::new(),
        spool: None,
        memory_left: MEMORY_BUDGET,
        current: None,
    };
    let opts = VerifyOptions {
        input: input.input.clone(),
        limits: input.limits,
        progress: input.progress,
        check_head: input.check_head,
    };
    let evidence = verify::stream(file, &opts, Some(&mut sink))?;
    let manifest = sink
        .manifest
        .take()
        .expect("a verified bundle has a manifest");
    let images = manifest
        .images
        .iter()
        .map(|i| to_push(i, &input.target))
        .collect::<Result<Vec<_>, _>>()?;
    let source = IndexedSource {
        blobs: sink.blobs,
        _spool: sink.spool,
    };
    Ok(Prepared {
        source: Arc::new(source),
        images,
        evidence: Some(evidence),
        manifest: Some(manifest),
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
            let out = crate::values::rewrite(&before, f, opts)?;
            Ok(ValuesOutcome {
                file: f.clone(),
                before,
                after: out.text,
                edits: out.edits,
            })
        })
        .collect()
}

/// Writes `text` to `path` atomically, keeping the permissions of a file it replaces.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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

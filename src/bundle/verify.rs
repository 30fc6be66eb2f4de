//! `ferry verify`: one streaming pass that checks every byte of a bundle against its
//! manifest, for a `.tar.gz` or a folder extracted with plain `tar -xzf`.

use crate::bundle::archive::{
    EntryError, LimitExceeded, Limits, MemberInfo, MemberReader, TarEntries, TarEntry, TarPolicy,
};
use crate::bundle::head::{self, ManifestEntry};
use crate::bundle::layout::{self, LayoutError, LayoutSummary};
use crate::bundle::manifest::{
    blob_hex, FileEntry, Manifest, ManifestError, Mode, MANIFEST_NAME, MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
};
use crate::bundle::safepath::{SafePath, UnsafePath};
use crate::error_chain::error_chain;
use crate::oci::digest::{BackgroundHasher, Digest, Hasher};
use crate::oci::document::MAX_JSON;
use crate::progress::Progress;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Inputs of `verify`.
#[derive(Clone)]
pub struct VerifyOptions<'a> {
    pub input: PathBuf,
    pub limits: Limits,
    pub progress: Progress,
    /// Checks the head (manifest bytes, signature bytes) before anything else is read;
    /// signature verification plugs in here.
    pub check_head: Option<&'a HeadCheck<'a>>,
}

/// A check of the images once every byte has verified (image signatures plug in here): it
/// gets the manifest and the small JSON blobs of `images/` by digest hex.
pub type ImagesCheck<'k> = dyn Fn(&Manifest, &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<serde_json::Value, String>
    + Sync
    + 'k;

/// A check run on the manifest and signature bytes before the rest of the bundle.
pub type HeadCheck<'k> =
    dyn Fn(&[u8], Option<&[u8]>) -> Result<serde_json::Value, String> + Sync + 'k;

/// Why a bundle failed verification (a finding: exit code 1), or could not be read (2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: not a ferry bundle: {reason}")]
    NotABundle { path: PathBuf, reason: String },
    #[error("ferry.json: {0}")]
    Manifest(#[from] ManifestError),
    #[error("head check failed: {0}")]
    Head(String),
    #[error("{0}")]
    Images(String),
    #[error("entry `{entry}`: unsafe path: {reason}")]
    UnsafePath { entry: String, reason: UnsafePath },
    #[error("entry `{entry}` is a {kind}; a bundle holds regular files only")]
    NotRegular { entry: String, kind: String },
    #[error("entry `{entry}` is outside the bundle folder `{root}/`")]
    WrongRoot { entry: String, root: String },
    #[error("entry `{entry}` is not listed in ferry.json")]
    Unlisted { entry: String },
    #[error("entry `{entry}` appears twice")]
    Duplicate { entry: String },
    #[error("entry `{entry}`: size is {found} bytes, ferry.json says {expected}")]
    SizeMismatch {
        entry: String,
        expected: u64,
        found: u64,
    },
    #[error("entry `{entry}`: mode is {found:o}, ferry.json says {expected:o}")]
    ModeMismatch {
        entry: String,
        expected: u32,
        found: u32,
    },
    #[error(
        "entry `{entry}`: sha256 is {found}, ferry.json says {expected}: the content was changed"
    )]
    DigestMismatch {
        entry: String,
        expected: Digest,
        found: Digest,
    },
    #[error("{count} file(s) listed in ferry.json are missing, first `{first}`")]
    Missing { count: usize, first: String },
    #[error("{location}: the archive is damaged: {detail}")]
    Corrupt { location: String, detail: String },
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    #[error("after the last entry `{after}`: {detail}")]
    Trailing { after: String, detail: String },
    #[error("images: {0}")]
    Layout(#[from] LayoutError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl VerifyError {
    /// 1 for a finding about the bundle, 2 when it could not be read at all.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::Open { .. } => 2,
            _ => 1,
        }
    }
}

/// The evidence record of a successful verification.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub bundle: PathBuf,
    /// `tar.gz` or `directory`.
    pub form: &'static str,
    pub name: String,
    pub version: String,
    pub created: String,
    pub manifest_digest: Digest,
    pub files_checked: usize,
    pub bytes_checked: u64,
    pub blobs_checked: usize,
    pub layout: LayoutSummary,
    pub gzip_members: u32,
    pub signature_present: bool,
    /// What the head check reported (signature verification), if one ran.
    pub head_check: Option<serde_json::Value>,
    pub checks: Vec<&'static str>,
    /// What the images check reported (image signatures), if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_check: Option<serde_json::Value>,
}

/// Receives verified file data while the stream is read (extraction).
pub trait Sink {
    /// Called once the head is checked, before any file.
    fn start(
        &mut self,
        manifest: &Manifest,
        manifest_bytes: &[u8],
        signature: Option<&[u8]>,
        head_mtime: u64,
    ) -> io::Result<()>;
    /// Opens the destination of one listed file; `place` says where its bytes are.
    fn open(&mut self, entry: &FileEntry, place: EntryPlace) -> io::Result<Box<dyn Write + '_>>;
    /// The file was written and its digest matched.
    fn close(&mut self, entry: &FileEntry, mtime: u64) -> io::Result<()>;
}

/// Where an entry's data sits in a `.tar.gz` bundle.
#[derive(Debug, Clone, Copy)]
pub struct EntryPlace {
    /// Offset of the data in the decompressed tar stream.
    pub data_offset: u64,
    /// The gzip member its header was read from.
    pub member: Option<MemberInfo>,
}

/// Verifies a bundle file or folder.
pub fn verify(opts: &VerifyOptions) -> Result<Evidence, VerifyError> {
    verify_images(opts, None)
}

/// Verifies a bundle file or folder, then runs `images` (when given) on its images: only a
/// bundle whose every byte verified is handed to it.
pub fn verify_images(
    opts: &VerifyOptions,
    images: Option<&ImagesCheck>,
) -> Result<Evidence, VerifyError> {
    if opts.input.is_dir() {
        verify_dir(opts, images)
    } else {
        let file = File::open(&opts.input).map_err(|source| VerifyError::Open {
            path: opts.input.clone(),
            source,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        stream_checked(file, len, opts, None, images)
    }
}

fn run_images_check(
    images: Option<&ImagesCheck>,
    manifest: &Manifest,
    json: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Option<serde_json::Value>, VerifyError> {
    images
        .map(|check| check(manifest, json).map_err(VerifyError::Images))
        .transpose()
}

const BUF: usize = 1024 * 1024;

/// Reads a whole `.tar.gz` bundle, checking everything and feeding `sink` if given.
pub fn stream(
    file: File,
    opts: &VerifyOptions,
    sink: Option<&mut dyn Sink>,
) -> Result<Evidence, VerifyError> {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    stream_checked(file, len, opts, sink, None)
}

/// [`stream`] over any reader of a bundle's bytes, `len` of them (for the progress bar):
/// `join` verifies the release while it assembles it from its parts. The reader is read to
/// its end.
pub fn stream_reader(
    input: impl Read,
    len: u64,
    opts: &VerifyOptions,
    sink: Option<&mut dyn Sink>,
) -> Result<Evidence, VerifyError> {
    stream_checked(input, len, opts, sink, None)
}

fn stream_checked(
    input: impl Read,
    len: u64,
    opts: &VerifyOptions,
    mut sink: Option<&mut dyn Sink>,
    images: Option<&ImagesCheck>,
) -> Result<Evidence, VerifyError> {
    let bar = opts.progress.bytes(len, "verifying");
    let limits = opts.limits;
    let reader = MemberReader::new(bar.wrap_read(input), limits);
    let table = reader.table();
    let mut archive = tar::Archive::new(reader);
    let mut entries = TarEntries::new(&mut archive, TarPolicy::bundle(limits))
        .map_err(|e| entry_error(e, "start of the bundle"))?;

    // The head: ferry.json first, checked against the limits before anything else is
    // read, then optionally its signature.
    let ManifestEntry {
        root,
        manifest,
        bytes: manifest_bytes,
        mtime: head_mtime,
    } = &head::read_manifest_entry(&opts.input, &mut entries)?;
    check_limits(manifest, &limits)?;
    let signature = &head::read_signature_entry(root, &mut entries)?;
    let head_check = run_head_check(opts.check_head, manifest_bytes, signature.as_deref())?;
    if let Some(s) = sink.as_deref_mut() {
        s.start(manifest, manifest_bytes, signature.as_deref(), *head_mtime)
            .map_err(|source| VerifyError::Io {
                path: opts.input.clone(),
                source,
            })?;
    }

    // The body: every other entry, each listed once, with its size, mode and digest.
    let mut body = Body::new(manifest, root);
    let mut copier = Copier::new();
    let last = match signature {
        Some(_) => format!("{root}/{SIGNATURE_NAME}"),
        None => format!("{root}/{MANIFEST_NAME}"),
    };
    let last = check_entries(&mut entries, &table, &mut body, &mut copier, sink, last)?;
    drop(entries);

    // After the end-of-archive block: only zero padding, then a clean end of the last member.
    let mut rest = archive.into_inner();
    check_end(&mut rest, &last, &mut copier.buf)?;
    bar.finish_and_clear();
    body.check_complete()?;
    let json = |hex: &str| body.json_blobs.get(hex).cloned();
    let layout = layout::check(manifest, body.index_json.as_deref(), &json)?;
    let images_check = run_images_check(images, manifest, &json)?;
    Ok(Evidence {
        bundle: opts.input.clone(),
        form: "tar.gz",
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        created: manifest.created.clone(),
        manifest_digest: Digest::of(manifest_bytes),
        files_checked: manifest.files.len(),
        bytes_checked: body.bytes_checked,
        blobs_checked: layout.blobs,
        layout,
        gzip_members: rest.members(),
        signature_present: signature.is_some(),
        head_check,
        checks: CHECKS.to_vec(),
        images_check,
    })
}

/// Checks every entry after `last` up to the end-of-archive blocks; returns the last name.
pub(crate) fn check_entries<R: Read>(
    entries: &mut TarEntries<'_, R>,
    table: &crate::bundle::archive::MemberTable,
    body: &mut Body,
    copier: &mut Copier,
    mut sink: Option<&mut dyn Sink>,
    mut last: String,
) -> Result<String, VerifyError> {
    while let Some(TarEntry { name, entry }) = entries
        .next_entry()
        .map_err(|e| entry_error(e, &format!("after `{last}`")))?
    {
        let member = table.lock().expect("member table").last().copied();
        check_entry(body, copier, sink.as_deref_mut(), &name, entry, member)?;
        last = name.to_string();
    }
    Ok(last)
}

/// Checks one entry after the head against the manifest, streaming its data into the
/// sink (if any) while hashing it; `member` is the gzip member its header was read from.
pub(crate) fn check_entry<'s, R: Read>(
    body: &mut Body<'_>,
    copier: &mut Copier,
    mut sink: Option<&mut (dyn Sink + 's)>,
    name: &SafePath,
    entry: tar::Entry<'_, R>,
    member: Option<MemberInfo>,
) -> Result<(), VerifyError> {
    let (listed, rel) = body.admit(name, &entry)?;
    let mtime = entry.header().mtime().unwrap_or(0);
    let place = EntryPlace {
        data_offset: entry.raw_file_position(),
        member,
    };
    let keep_json = rel.as_str() == "images/index.json"
        || (blob_hex(&rel).is_some() && listed.size <= MAX_JSON);
    let io_error = |source| VerifyError::Io {
        path: PathBuf::from(name.as_str()),
        source,
    };
    let out = match sink.as_deref_mut() {
        Some(s) => Some(s.open(listed, place).map_err(io_error)?),
        None => None,
    };
    let (digest, kept) = copier.copy(entry, name, out, keep_json)?;
    if digest != listed.digest {
        return Err(VerifyError::DigestMismatch {
            entry: name.to_string(),
            expected: listed.digest.clone(),
            found: digest,
        });
    }
    if let Some(s) = sink {
        s.close(listed, mtime).map_err(io_error)?;
    }
    body.record(listed, &rel, kept)
}

/// Runs the head check (signature verification), if there is one.
fn run_head_check(
    check: Option<&HeadCheck<'_>>,
    manifest_bytes: &[u8],
    signature: Option<&[u8]>,
) -> Result<Option<serde_json::Value>, VerifyError> {
    check
        .map(|check| check(manifest_bytes, signature).map_err(VerifyError::Head))
        .transpose()
}

/// Largest sum of image manifests, configs and indexes kept for the layout check.
const JSON_BUDGET: u64 = 64 * 1024 * 1024;

/// What the body entries are checked against, and what they leave for the layout check.
pub(crate) struct Body<'m> {
    manifest: &'m Manifest,
    root: &'m str,
    listed: HashMap<&'m str, &'m FileEntry>,
    seen: HashSet<&'m str>,
    pub(crate) json_blobs: HashMap<String, Vec<u8>>,
    json_left: u64,
    pub(crate) index_json: Option<Vec<u8>>,
    pub(crate) bytes_checked: u64,
}

impl<'m> Body<'m> {
    pub(crate) fn new(manifest: &'m Manifest, root: &'m str) -> Self {
        let listed: HashMap<&str, &FileEntry> = manifest
            .files
            .iter()
            .map(|f| (f.path.as_str(), f))
            .collect();
        Body {
            manifest,
            root,
            seen: HashSet::with_capacity(listed.len()),
            listed,
            json_blobs: HashMap::new(),
            json_left: JSON_BUDGET,
            index_json: None,
            bytes_checked: 0,
        }
    }

    /// Checks an entry's header against the manifest: inside the bundle folder, listed,
    /// not seen before, with the listed size and mode. Returns its listing and bundle path.
    fn admit<R: Read>(
        &mut self,
        name: &SafePath,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(&'m FileEntry, SafePath), VerifyError> {
        let rel = match name.strip_first() {
            Some(rel) if name.first() == self.root => rel,
            _ => {
                return Err(VerifyError::WrongRoot {
                    entry: name.to_string(),
                    root: self.root.to_string(),
                })
            }
        };
        let listed = *self.listed.get(rel.as_str()).ok_or_else(|| {
            if rel.as_str() == MANIFEST_NAME || rel.as_str() == SIGNATURE_NAME {
                VerifyError::Duplicate {
                    entry: name.to_string(),
                }
            } else {
                VerifyError::Unlisted {
                    entry: name.to_string(),
                }
            }
        })?;
        if !self.seen.insert(listed.path.as_str()) {
            return Err(VerifyError::Duplicate {
                entry: name.to_string(),
            });
        }
        if entry.size() != listed.size {
            return Err(VerifyError::SizeMismatch {
                entry: name.to_string(),
                expected: listed.size,
                found: entry.size(),
            });
        }
        let mode = entry.header().mode().map_err(|e| VerifyError::Corrupt {
            location: name.to_string(),
            detail: error_chain(&e),
        })? & 0o7777;
        if Mode::from_bits(mode) != Some(listed.mode) {
            return Err(VerifyError::ModeMismatch {
                entry: name.to_string(),
                expected: listed.mode.bits(),
                found: mode,
            });
        }
        Ok((listed, rel))
    }

    /// Counts a checked entry and keeps its bytes when the layout check needs them.
    fn record(
        &mut self,
        listed: &FileEntry,
        rel: &SafePath,
        kept: Vec<u8>,
    ) -> Result<(), VerifyError> {
        self.bytes_checked += listed.size;
        if kept.is_empty() {
            return Ok(());
        }
        if rel.as_str() == "images/index.json" {
            self.index_json = Some(kept);
        } else if let Some(hex) = blob_hex(rel) {
            self.json_left = self
                .json_left
                .checked_sub(kept.len() as u64)
                .ok_or_else(|| LimitExceeded {
                    what: "total size of image manifests".into(),
                    limit: JSON_BUDGET,
                    found: JSON_BUDGET + 1,
                    flag: "",
                })?;
            self.json_blobs.insert(hex.to_string(), kept);
        }
        Ok(())
    }

    /// Every listed file was seen.
    pub(crate) fn check_complete(&self) -> Result<(), VerifyError> {
        if self.seen.len() == self.listed.len() {
            return Ok(());
        }
        let missing: Vec<&str> = self
            .manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| !self.seen.contains(p))
            .collect();
        Err(VerifyError::Missing {
            count: missing.len(),
            first: format!("{}/{}", self.root, missing[0]),
        })
    }
}

/// Streams entry data to a sink while hashing it.
pub(crate) struct Copier {
    pub(crate) buf: Vec<u8>,
    bg: BackgroundHasher,
}

impl Copier {
    pub(crate) fn new() -> Self {
        Copier {
            buf: vec![0u8; BUF],
            bg: BackgroundHasher::new(4, BUF),
        }
    }

    /// Reads the whole entry into `out`, returning its digest and, when `keep_json` and
    /// it looks like JSON, its first `MAX_JSON` bytes.
    pub(crate) fn copy<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        name: &SafePath,
        mut out: Option<Box<dyn Write + '_>>,
        keep_json: bool,
    ) -> Result<(Digest, Vec<u8>), VerifyError> {
        let size = entry.size();
        let io_error = |source| VerifyError::Io {
            path: PathBuf::from(name.as_str()),
            source,
        };
        let mut kept = Vec::new();
        // Large entries are hashed on a second core while this thread inflates the next
        // chunk; small ones inline, where a round trip to the worker would cost more.
        let background = size >= BUF as u64;
        let mut hasher = Hasher::new();
        let mut read_total = 0u64;
        loop {
            let mut b = if background {
                self.bg.buffer()
            } else {
                std::mem::take(&mut self.buf)
            };
            let n = loop {
                match entry.read(&mut b) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(VerifyError::Corrupt {
                            location: name.to_string(),
                            detail: error_chain(&e),
                        })
                    }
                }
            };
            if n == 0 {
                if background {
                    self.bg.give_back(b);
                } else {
                    self.buf = b;
                }
                break;
            }
            read_total += n as u64;
            if keep_json && (kept.len() as u64) < MAX_JSON && (!kept.is_empty() || b[0] == b'{') {
                kept.extend_from_slice(&b[..n]);
            }
            if let Some(o) = out.as_mut() {
                o.write_all(&b[..n]).map_err(io_error)?;
            }
            if background {
                b.truncate(n);
                self.bg.submit(b);
            } else {
                hasher.update(&b[..n]);
                self.buf = b;
            }
        }
        if let Some(mut o) = out {
            o.flush().map_err(io_error)?;
        }
        let digest = if background {
            self.bg.finish().0
        } else {
            hasher.finish()
        };
        if read_total != size {
            return Err(VerifyError::Corrupt {
                location: name.to_string(),
                detail: format!("only {read_total} of {size} bytes present"),
            });
        }
        Ok((digest, kept))
    }
}

/// After the end-of-archive marker: at most 1 MiB of zeros, then the clean end of the
/// last member and of the file.
pub(crate) fn check_end<R: Read>(
    rest: &mut R,
    last: &str,
    buf: &mut [u8],
) -> Result<(), VerifyError> {
    let trailing = |detail: String| VerifyError::Trailing {
        after: last.to_string(),
        detail,
    };
    let mut zeros = 0u64;
    loop {
        let n = match rest.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(trailing(error_chain(&e))),
        };
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(trailing(
                "non-zero data after the end-of-archive marker".into(),
            ));
        }
        zeros += n as u64;
        if zeros > 1 << 20 {
            return Err(trailing(
                "more than 1 MiB of padding after the end-of-archive marker".into(),
            ));
        }
    }
}

const CHECKS: [&str; 7] = [
    "ferry.json is the first entry and a valid format-v1 manifest",
    "every entry is a regular file with a safe path under the bundle folder",
    "every entry is listed once in ferry.json with the same size and mode",
    "every entry's sha256 equals ferry.json (OCI blobs: equals their digest)",
    "no file listed in ferry.json is missing",
    "every image in images/index.json resolves to manifests, configs and layers inside the bundle, and every blob is referenced",
    "gzip framing is canonical, CRCs match, nothing follows the archive",
];

/// An error of the tar facility as a verification finding; `location` says where a read
/// error happened.
pub(crate) fn entry_error(e: EntryError, location: &str) -> VerifyError {
    match e {
        EntryError::Read(e) => VerifyError::Corrupt {
            location: location.to_string(),
            detail: error_chain(&e),
        },
        EntryError::UnsafePath { entry, reason } => VerifyError::UnsafePath { entry, reason },
        EntryError::NotRegular { entry, kind } => VerifyError::NotRegular { entry, kind },
        EntryError::Limit(e) => VerifyError::Limit(e),
    }
}

pub(crate) fn check_limits(m: &Manifest, limits: &Limits) -> Result<(), LimitExceeded> {
    LimitExceeded::check(
        || "number of entries".into(),
        limits.max_entries,
        m.files.len() as u64 + 2,
        "--max-entries",
    )?;
    for f in &m.files {
        LimitExceeded::check(
            || format!("size of `{}`", f.path),
            limits.max_entry_size,
            f.size,
            "--max-file-size",
        )?;
    }
    LimitExceeded::check(
        || "total size".into(),
        limits.max_total_size,
        m.total_size(),
        "--max-total-size",
    )
}

/// Finds the bundle folder in `dir`: `dir` itself or its single child holding ferry.json.
pub fn find_root(dir: &Path) -> Result<PathBuf, VerifyError> {
    if dir.join(MANIFEST_NAME).is_file() {
        return Ok(dir.to_path_buf());
    }
    let read = std::fs::read_dir(dir).map_err(|source| VerifyError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    let candidates: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(MANIFEST_NAME).is_file())
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(VerifyError::NotABundle {
            path: dir.to_path_buf(),
            reason: format!("no {MANIFEST_NAME} in it or in a folder inside it"),
        }),
        _ => Err(VerifyError::NotABundle {
            path: dir.to_path_buf(),
            reason: "it holds several bundle folders; name one".into(),
        }),
    }
}

/// Verifies a folder extracted with `tar -xzf` (or `ferry extract`): its head, then the
/// files against the manifest (names, sizes, modes), then their digests, then the layout.
fn verify_dir(opts: &VerifyOptions, images: Option<&ImagesCheck>) -> Result<Evidence, VerifyError> {
    let root = find_root(&opts.input)?;
    let head = read_dir_head(opts, &root)?;
    let manifest = &head.manifest;
    let found = walk_dir(&root, manifest)?;
    hash_dir_files(
        &found,
        opts.progress.bytes(manifest.total_size(), "verifying"),
    )?;
    let json = |hex: &str| -> Option<Vec<u8>> {
        let p = root.join("images/blobs/sha256").join(hex);
        let len = std::fs::metadata(&p).ok()?.len();
        (len <= MAX_JSON).then(|| std::fs::read(&p).ok()).flatten()
    };
    let index = std::fs::read(root.join("images/index.json")).ok();
    let layout = layout::check(manifest, index.as_deref(), &json)?;
    let images_check = run_images_check(images, manifest, &json)?;
    Ok(Evidence {
        bundle: opts.input.clone(),
        form: "directory",
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        created: manifest.created.clone(),
        manifest_digest: Digest::of(&head.manifest_bytes),
        files_checked: manifest.files.len(),
        bytes_checked: manifest.total_size(),
        blobs_checked: layout.blobs,
        layout,
        gzip_members: 0,
        signature_present: head.signature.is_some(),
        head_check: head.head_check,
        checks: CHECKS[..6].to_vec(),
        images_check,
    })
}

/// The head of a bundle folder, read and checked.
struct DirHead {
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    signature: Option<Vec<u8>>,
    head_check: Option<serde_json::Value>,
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads `ferry.json` and `ferry.json.sig` (each within its size limit), checks that the
/// folder is named after the bundle, and runs the head check.
fn read_dir_head(opts: &VerifyOptions, root: &Path) -> Result<DirHead, VerifyError> {
    let manifest_path = root.join(MANIFEST_NAME);
    let sig_path = root.join(SIGNATURE_NAME);
    for (path, limit) in [
        (&manifest_path, MAX_MANIFEST_BYTES),
        (&sig_path, head::MAX_SIGNATURE_BYTES),
    ] {
        if let Ok(meta) = std::fs::metadata(path) {
            LimitExceeded::check(
                || format!("size of `{}`", path.display()),
                limit,
                meta.len(),
                "",
            )?;
        }
    }
    let manifest_bytes = std::fs::read(&manifest_path).map_err(io_error(&manifest_path))?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    let dir_name = root
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if dir_name != manifest.root() && root != opts.input {
        return Err(VerifyError::WrongRoot {
            entry: dir_name.into(),
            root: manifest.root(),
        });
    }
    let signature = if sig_path.is_file() {
        Some(std::fs::read(&sig_path).map_err(io_error(&sig_path))?)
    } else {
        None
    };
    let head_check = run_head_check(opts.check_head, &manifest_bytes, signature.as_deref())?;
    Ok(DirHead {
        manifest_bytes,
        manifest,
        signature,
        head_check,
    })
}

/// A listed file found in a bundle folder: its path on disk, its entry, its name in messages.
type FoundFile<'m> = (PathBuf, &'m FileEntry, String);

/// Walks a bundle folder: every file is a regular file the manifest lists, with its size and
/// mode, and every listed file is there.
fn walk_dir<'m>(root: &Path, manifest: &'m Manifest) -> Result<Vec<FoundFile<'m>>, VerifyError> {
    let listed: BTreeMap<&str, &FileEntry> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mut found = Vec::new();
    for e in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(|err| VerifyError::Io {
            path: root.to_path_buf(),
            source: err.into(),
        })?;
        if let Some(file) = check_dir_entry(root, &e, manifest, &listed)? {
            found.push(file);
        }
    }
    if found.len() != listed.len() {
        let have: HashSet<&str> = found.iter().map(|(_, e, _)| e.path.as_str()).collect();
        let missing: Vec<&str> = manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| !have.contains(p))
            .collect();
        return Err(VerifyError::Missing {
            count: missing.len(),
            first: format!("{}/{}", manifest.root(), missing[0]),
        });
    }
    Ok(found)
}

/// Checks one walked path: folders and the head are passed over (`None`); anything else
/// must be a regular file the manifest lists, with its size and execute bit.
fn check_dir_entry<'m>(
    root: &Path,
    e: &walkdir::DirEntry,
    manifest: &Manifest,
    listed: &BTreeMap<&str, &'m FileEntry>,
) -> Result<Option<FoundFile<'m>>, VerifyError> {
    use std::os::unix::fs::PermissionsExt;
    let rel = e.path().strip_prefix(root).expect("under root");
    if rel.as_os_str().is_empty() || e.file_type().is_dir() {
        return Ok(None);
    }
    let rel_str = rel.to_str().ok_or_else(|| VerifyError::UnsafePath {
        entry: rel.display().to_string(),
        reason: UnsafePath::NotUtf8(rel.display().to_string()),
    })?;
    let name = format!("{}/{rel_str}", manifest.root());
    if !e.file_type().is_file() {
        let kind = if e.file_type().is_symlink() {
            "symbolic link"
        } else {
            "special file"
        };
        return Err(VerifyError::NotRegular {
            entry: name,
            kind: kind.into(),
        });
    }
    if rel_str == MANIFEST_NAME || rel_str == SIGNATURE_NAME {
        return Ok(None);
    }
    let entry = *listed.get(rel_str).ok_or(VerifyError::Unlisted {
        entry: name.clone(),
    })?;
    let meta = e.metadata().map_err(|err| VerifyError::Io {
        path: e.path().to_path_buf(),
        source: err.into(),
    })?;
    if meta.len() != entry.size {
        return Err(VerifyError::SizeMismatch {
            entry: name,
            expected: entry.size,
            found: meta.len(),
        });
    }
    // Extraction applies the umask, so only the owner's execute bit is compared.
    let exec = meta.permissions().mode() & 0o100 != 0;
    if exec != (entry.mode == Mode::Executable) {
        return Err(VerifyError::ModeMismatch {
            entry: name,
            expected: entry.mode.bits(),
            found: meta.permissions().mode() & 0o7777,
        });
    }
    Ok(Some((e.path().to_path_buf(), entry, name)))
}

/// Hashes the found files in parallel, each against its listed digest.
fn hash_dir_files(found: &[FoundFile<'_>], bar: indicatif::ProgressBar) -> Result<(), VerifyError> {
    let checked = crate::parallel::par_map(found, |(path, entry, name)| {
        match File::open(path).and_then(|f| crate::oci::digest::hash_reader(bar.wrap_read(f))) {
            Ok((digest, _)) if digest == entry.digest => Ok(()),
            Ok((digest, _)) => Err(VerifyError::DigestMismatch {
                entry: name.clone(),
                expected: entry.digest.clone(),
                found: digest,
            }),
            Err(source) => Err(VerifyError::Io {
                path: path.clone(),
                source,
            }),
        }
    });
    bar.finish_and_clear();
    checked.into_iter().collect()
}

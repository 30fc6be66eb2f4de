//! Delta bundles and parts of split bundles (format version 2): their head, the streaming
//! check of one on its own, and the pieces `delta` and `split` share: scanning a complete
//! bundle's members, writing a file behind a partial head, and rebuilding a release's head.
//!
//! A partial file is a ferry bundle whose `ferry.json` has `formatVersion` 2 and a `kind`.
//! It carries the complete release's manifest bytes and signature, and holds some of the
//! release's gzip members byte for byte, so that merging or joining rebuilds the release
//! file exactly. `bundle-spec/bundle-format.md` sections 15 to 17 are normative.

use crate::bundle::archive::{
    canonical_header, padding, stored_entry_len, Limits, MemberInfo, MemberReader, Packing,
    TarEntries, TarPolicy,
};
use crate::bundle::build::{self, temp_file_beside};
use crate::bundle::head::{self, is_manifest_name, read_small};
use crate::bundle::layout::{self, LayoutSummary};
use crate::bundle::manifest::{
    blob_hex, check_name, FileEntry, Manifest, MANIFEST_NAME, MAX_MANIFEST_BYTES,
    PARTIAL_FORMAT_VERSION,
};
use crate::bundle::safepath::SafePath;
use crate::bundle::verify::{
    self, check_end, check_entries, check_limits, entry_error, Body, Copier, EntryPlace, Evidence,
    Sink, VerifyError, VerifyOptions,
};
use crate::oci::digest::Digest;
use crate::oci::document::MAX_JSON;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What a partial file is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The files of a release without the blobs a base already holds.
    Delta,
    /// One volume of a release cut into parts.
    Part,
}

impl Kind {
    /// How messages name it.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Delta => "delta bundle",
            Kind::Part => "part of a split bundle",
        }
    }
}

/// `ferry.json` of a delta or a part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartialManifest {
    /// Always 2.
    pub format_version: u32,
    pub kind: Kind,
    /// The release's name and version: the root folder is the release's.
    pub name: String,
    pub version: String,
    pub created: String,
    /// The ferry that wrote this file.
    pub ferry_version: String,
    /// The complete release this file is a piece of.
    pub release: Release,
    /// The files this file holds, sorted by path, each exactly as the release lists it.
    pub files: Vec<FileEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<PartInfo>,
}

/// The complete release's head, and the size of its file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// The release's `ferry.json` bytes, base64 (RFC 4648, with padding).
    pub manifest: String,
    /// SHA-256 of those bytes.
    pub manifest_digest: Digest,
    /// The release's `ferry.json.sig`, when it is signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Bytes of the release's bundle file.
    pub size: u64,
    /// Bytes of its head member.
    pub head_size: u64,
}

/// What a delta leaves out, and what it was made against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeltaInfo {
    pub base: Base,
    /// Every blob left out, in the order of the release file.
    pub omitted: Vec<Omitted>,
}

/// The base of a delta: a bundle (its manifest) or a have-list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Base {
    /// `bundle` or `haveList`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The base's manifest digest, or the have-list file's digest.
    pub digest: Digest,
    /// The registry a have-list was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

/// One blob a delta leaves out: its member starts at byte `at` of the release file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Omitted {
    pub digest: Digest,
    pub size: u64,
    pub at: u64,
}

/// Where a part sits in its set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartInfo {
    /// 1-based.
    pub index: u32,
    pub count: u32,
    /// The release bytes `[at, at + length)` this part carries verbatim.
    pub at: u64,
    pub length: u64,
}

/// A checked partial head.
#[derive(Debug, Clone)]
pub struct PartialHead {
    pub root: String,
    pub manifest: PartialManifest,
    pub bytes: Vec<u8>,
    /// Modification time of the head entry (the release's, too).
    pub mtime: u64,
    /// The release manifest, parsed from `release.manifest`.
    pub release: Manifest,
    pub release_bytes: Vec<u8>,
    /// Bytes the head entry takes in the tar stream (its header, data and padding): where
    /// the tar stream of the body starts.
    pub head_entry_len: u64,
}

impl PartialHead {
    /// The release manifest with only the files this file holds: what its entries are
    /// checked against.
    pub fn held(&self) -> Manifest {
        Manifest {
            files: self.manifest.files.clone(),
            ..self.release.clone()
        }
    }

    /// The release's signature bytes, if signed.
    pub fn release_signature(&self) -> Option<&[u8]> {
        self.manifest
            .release
            .signature
            .as_deref()
            .map(str::as_bytes)
    }

    /// The release's head member, rebuilt: the bytes a build wrote in front of its body.
    pub fn release_head(&self) -> io::Result<Vec<u8>> {
        let out = build::head_member(
            &self.root,
            self.mtime,
            &self.release_bytes,
            self.manifest.release.signature.as_deref(),
        )?;
        if out.len() as u64 != self.manifest.release.head_size {
            return Err(io::Error::other(format!(
                "the release head rebuilds to {} bytes, ferry.json says {}",
                out.len(),
                self.manifest.release.head_size
            )));
        }
        Ok(out)
    }
}

/// Why a partial head is refused (a finding).
fn bad(input: &Path, detail: impl std::fmt::Display) -> VerifyError {
    VerifyError::Head(format!("{}: {detail}", input.display()))
}

/// Parses and checks partial manifest bytes against the release they carry.
pub fn parse(
    input: &Path,
    bytes: &[u8],
) -> Result<(PartialManifest, Manifest, Vec<u8>), VerifyError> {
    let m: PartialManifest = serde_json::from_slice(bytes).map_err(|e| {
        bad(
            input,
            format!("ferry.json is not a valid delta or part head: {e}"),
        )
    })?;
    if m.format_version != PARTIAL_FORMAT_VERSION {
        return Err(bad(input, "a delta or part head has formatVersion 2"));
    }
    check_name("name", &m.name)?;
    check_name("version", &m.version)?;
    let release_bytes = base64::engine::general_purpose::STANDARD
        .decode(&m.release.manifest)
        .map_err(|e| bad(input, format!("release.manifest is not base64: {e}")))?;
    if Digest::of(&release_bytes) != m.release.manifest_digest {
        return Err(bad(
            input,
            format!(
                "release.manifest does not hash to release.manifestDigest {}",
                m.release.manifest_digest
            ),
        ));
    }
    let release = Manifest::parse(&release_bytes)?;
    if release.name != m.name || release.version != m.version {
        return Err(bad(
            input,
            format!(
                "it says {} {} but carries the manifest of {} {}",
                m.name, m.version, release.name, release.version
            ),
        ));
    }
    check_files(input, &m, &release)?;
    match (m.kind, &m.delta, &m.part) {
        (Kind::Delta, Some(d), None) => check_omitted(input, &m, d, &release)?,
        (Kind::Part, None, Some(p)) => {
            let end = p.at.checked_add(p.length);
            if p.index == 0
                || p.index > p.count
                || p.at < m.release.head_size
                || end.is_none_or(|e| e > m.release.size)
            {
                return Err(bad(
                    input,
                    format!(
                        "part {} of {} covering bytes {}+{} does not fit a release of {} bytes",
                        p.index, p.count, p.at, p.length, m.release.size
                    ),
                ));
            }
        }
        _ => {
            return Err(bad(
                input,
                "a delta head has `delta` and no `part`; a part head has `part` and no `delta`",
            ))
        }
    }
    Ok((m, release, release_bytes))
}

/// Every held file is the release's, sorted and once.
fn check_files(input: &Path, m: &PartialManifest, release: &Manifest) -> Result<(), VerifyError> {
    let listed: HashMap<&str, &FileEntry> =
        release.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut previous: Option<&SafePath> = None;
    for f in &m.files {
        if previous.is_some_and(|p| p.as_str() >= f.path.as_str()) {
            return Err(bad(
                input,
                format!("ferry.json lists `{}` out of order or twice", f.path),
            ));
        }
        previous = Some(&f.path);
        match listed.get(f.path.as_str()) {
            Some(r) if *r == f => {}
            Some(r) => {
                return Err(bad(
                    input,
                    format!(
                        "ferry.json lists `{}` as {} bytes, sha256 {}; the release manifest says {} bytes, {}",
                        f.path, f.size, f.digest, r.size, r.digest
                    ),
                ))
            }
            None => {
                return Err(bad(
                    input,
                    format!("ferry.json lists `{}`, which the release manifest does not", f.path),
                ))
            }
        }
    }
    Ok(())
}

/// A delta's held and omitted files are exactly the release's.
fn check_omitted(
    input: &Path,
    m: &PartialManifest,
    d: &DeltaInfo,
    release: &Manifest,
) -> Result<(), VerifyError> {
    let mut all: BTreeMap<&str, u64> = m.files.iter().map(|f| (f.path.as_str(), f.size)).collect();
    let paths: Vec<String> = d
        .omitted
        .iter()
        .map(|o| format!("images/blobs/sha256/{}", o.digest.hex()))
        .collect();
    for (o, path) in d.omitted.iter().zip(&paths) {
        if all.insert(path, o.size).is_some() {
            return Err(bad(
                input,
                format!("blob {} is both held and omitted", o.digest),
            ));
        }
        if o.at < m.release.head_size || o.at >= m.release.size {
            return Err(bad(
                input,
                format!("omitted blob {} is placed outside the release", o.digest),
            ));
        }
    }
    let expected: BTreeMap<&str, u64> = release
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size))
        .collect();
    if all != expected {
        let missing = expected
            .keys()
            .find(|p| !all.contains_key(*p))
            .map(|p| format!("`{p}` is neither held nor omitted"))
            .unwrap_or_else(|| "an omitted blob differs from the release manifest".into());
        return Err(bad(input, missing));
    }
    Ok(())
}

/// Reads the first entry: a partial head, or `Ok(None)` for a manifest of another version.
fn read_head<R: Read>(
    input: &Path,
    entries: &mut TarEntries<'_, R>,
) -> Result<Option<PartialHead>, VerifyError> {
    let not_bundle = |reason: String| VerifyError::NotABundle {
        path: input.to_path_buf(),
        reason,
    };
    let first = entries
        .next_entry()
        .map_err(|e| entry_error(e, "the first entry (ferry.json)"))?
        .ok_or_else(|| not_bundle("it holds no entries".into()))?;
    let name = first.name.to_string();
    if !is_manifest_name(&name) {
        return Err(not_bundle(format!(
            "the first entry is `{name}`, not `NAME-VERSION/{MANIFEST_NAME}`"
        )));
    }
    let mtime = first.entry.header().mtime().unwrap_or(0);
    let size = first.entry.size();
    let head_entry_len = first.entry.raw_file_position() + size + padding(size);
    let bytes = read_small(first.entry, &name, MAX_MANIFEST_BYTES)?;
    // A delta or a part: formatVersion 2 with a `kind`. Anything else is for the reader
    // of complete bundles.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        format_version: u32,
        kind: Option<Kind>,
    }
    match serde_json::from_slice::<Probe>(&bytes) {
        Ok(Probe {
            format_version: PARTIAL_FORMAT_VERSION,
            kind: Some(_),
        }) => {}
        _ => return Ok(None),
    }
    let (manifest, release, release_bytes) = parse(input, &bytes)?;
    let root = release.root();
    if name != format!("{root}/{MANIFEST_NAME}") {
        return Err(VerifyError::WrongRoot { entry: name, root });
    }
    Ok(Some(PartialHead {
        root,
        manifest,
        bytes,
        mtime,
        release,
        release_bytes,
        head_entry_len,
    }))
}

/// The partial head of a file, or `None` when it is not a delta or a part (a complete
/// bundle, or not a bundle at all: the caller's usual reader reports that).
pub fn peek(input: &Path) -> Result<Option<PartialHead>, VerifyError> {
    if input.is_dir() {
        return Ok(None);
    }
    let Ok(f) = File::open(input) else {
        return Ok(None);
    };
    let limits = Limits::default();
    let mut archive = tar::Archive::new(MemberReader::new(f, limits));
    let Ok(mut entries) = TarEntries::new(&mut archive, TarPolicy::bundle(limits)) else {
        return Ok(None);
    };
    match read_head(input, &mut entries) {
        Ok(h) => Ok(h),
        Err(
            e @ (VerifyError::Head(_) | VerifyError::Manifest(_) | VerifyError::WrongRoot { .. }),
        ) => Err(e),
        Err(_) => Ok(None),
    }
}

/// What checking a delta or a part found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialEvidence {
    pub bundle: PathBuf,
    pub kind: Kind,
    pub name: String,
    pub version: String,
    /// The release manifest's digest (what the signature covers).
    pub manifest_digest: Digest,
    pub files_checked: usize,
    pub bytes_checked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<PartInfo>,
    /// Blobs a delta leaves out, and their bytes.
    pub omitted: usize,
    pub omitted_bytes: u64,
    pub layout: LayoutSummary,
    pub signature_present: bool,
    pub head_check: Option<serde_json::Value>,
    pub checks: Vec<&'static str>,
}

const CHECKS: [&str; 6] = [
    "ferry.json is a formatVersion 2 head carrying the release manifest, whose digest it names",
    "the release manifest's signature is checked (with --key) as for a complete bundle",
    "every file the head lists is listed identically in the release manifest",
    "every entry is a regular file listed once, with its size, mode and sha256",
    "every image of the release resolves to manifests held here and blobs of the release",
    "gzip framing is canonical, CRCs match, nothing follows the archive",
];

/// Checks a delta or a part on its own, in one streaming pass, feeding `sink` if given.
pub fn stream(
    file: File,
    opts: &VerifyOptions,
    sink: Option<&mut dyn Sink>,
) -> Result<(PartialHead, PartialEvidence), VerifyError> {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let checked = stream_reader(file, len, opts, sink)?;
    Ok((checked.head, checked.evidence))
}

/// What the streaming check of a partial file found.
pub struct Checked {
    pub head: PartialHead,
    pub evidence: PartialEvidence,
    /// Every gzip member of the file, in order: where it starts in the file and in the tar
    /// stream (merge places the release's other members by them).
    pub members: Vec<MemberInfo>,
}

/// [`stream`] over any reader of a partial file's bytes, `len` of them (for the progress
/// bar); the reader is read to its end.
pub fn stream_reader(
    input: impl Read,
    len: u64,
    opts: &VerifyOptions,
    mut sink: Option<&mut dyn Sink>,
) -> Result<Checked, VerifyError> {
    let bar = opts.progress.bytes(len, "verifying");
    let limits = opts.limits;
    let reader = MemberReader::new(bar.wrap_read(input), limits);
    let table = reader.table();
    let mut archive = tar::Archive::new(reader);
    let mut entries = TarEntries::new(&mut archive, TarPolicy::bundle(limits))
        .map_err(|e| entry_error(e, "start of the bundle"))?;
    let head = read_head(&opts.input, &mut entries)?.ok_or_else(|| VerifyError::NotABundle {
        path: opts.input.clone(),
        reason: "it is a complete bundle, not a delta or a part".into(),
    })?;
    let held = head.held();
    check_limits(&held, &limits)?;
    let head_check = opts
        .check_head
        .map(|c| c(&head.release_bytes, head.release_signature()))
        .transpose()
        .map_err(VerifyError::Head)?;
    if let Some(s) = sink.as_deref_mut() {
        s.start(
            &held,
            &head.release_bytes,
            head.release_signature(),
            head.mtime,
        )
        .map_err(|source| VerifyError::Io {
            path: opts.input.clone(),
            source,
        })?;
    }
    let mut body = Body::new(&held, &head.root);
    let mut copier = Copier::new();
    let first = format!("{}/{MANIFEST_NAME}", head.root);
    let last = check_entries(&mut entries, &table, &mut body, &mut copier, sink, first)?;
    drop(entries);
    let mut rest = archive.into_inner();
    check_end(&mut rest, &last, &mut copier.buf)?;
    bar.finish_and_clear();
    body.check_complete()?;
    // Every image resolves within the release: manifests and indexes are in every delta
    // and every part, the other blobs anywhere in the release.
    let layout = layout::check(&head.release, body.index_json.as_deref(), &|hex| {
        body.json_blobs.get(hex).cloned()
    })?;
    let omitted = head
        .manifest
        .delta
        .as_ref()
        .map(|d| &d.omitted[..])
        .unwrap_or(&[]);
    let evidence = PartialEvidence {
        bundle: opts.input.clone(),
        kind: head.manifest.kind,
        name: head.release.name.clone(),
        version: head.release.version.clone(),
        manifest_digest: head.manifest.release.manifest_digest.clone(),
        files_checked: held.files.len(),
        bytes_checked: body.bytes_checked,
        part: head.manifest.part.clone(),
        omitted: omitted.len(),
        omitted_bytes: omitted.iter().map(|o| o.size).sum(),
        layout,
        signature_present: head.manifest.release.signature.is_some(),
        head_check,
        checks: CHECKS.to_vec(),
    };
    drop(body);
    let members = table.lock().expect("member table").clone();
    Ok(Checked {
        head,
        evidence,
        members,
    })
}

/// Checks a delta or part file on its own.
pub fn verify(opts: &VerifyOptions) -> Result<(PartialHead, PartialEvidence), VerifyError> {
    let file = File::open(&opts.input).map_err(|source| VerifyError::Open {
        path: opts.input.clone(),
        source,
    })?;
    stream(file, opts, None)
}

/// One entry of a scanned complete bundle.
#[derive(Debug, Clone)]
pub struct ScannedEntry {
    pub file: FileEntry,
    /// Where the gzip member its header was read from starts.
    pub member: u64,
    pub stored: bool,
}

/// A complete bundle, verified, with where every entry's member starts.
pub struct Scanned {
    pub path: PathBuf,
    pub head: head::Head,
    /// Bytes of the file.
    pub size: u64,
    /// Entries after the head, in file order.
    pub entries: Vec<ScannedEntry>,
    /// The bytes of small blobs (at most `MAX_JSON`) and `images/index.json`, by path.
    pub small: HashMap<SafePath, Vec<u8>>,
    /// The verification of the whole file, when it was verified (`scan`), not only walked.
    pub evidence: Option<Evidence>,
}

impl Scanned {
    /// The gzip members after the head: start, end, and the entries whose headers they hold.
    pub fn members(&self) -> Vec<(u64, u64, Vec<&ScannedEntry>)> {
        let mut out: Vec<(u64, u64, Vec<&ScannedEntry>)> = Vec::new();
        for e in &self.entries {
            match out.last_mut() {
                Some(m) if m.0 == e.member => m.2.push(e),
                _ => out.push((e.member, 0, vec![e])),
            }
        }
        let ends: Vec<u64> = out.iter().skip(1).map(|m| m.0).chain([self.size]).collect();
        for (m, end) in out.iter_mut().zip(ends) {
            m.1 = end;
        }
        out
    }
}

/// Records where each entry's member starts and keeps small blobs.
struct ScanSink {
    entries: Vec<ScannedEntry>,
    small: HashMap<SafePath, Vec<u8>>,
    current: Option<Vec<u8>>,
}

impl Sink for ScanSink {
    fn start(&mut self, _: &Manifest, _: &[u8], _: Option<&[u8]>, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn open(&mut self, entry: &FileEntry, place: EntryPlace) -> io::Result<Box<dyn Write + '_>> {
        let member = place
            .member
            .ok_or_else(|| io::Error::other("an entry outside every gzip member"))?;
        self.entries.push(ScannedEntry {
            file: entry.clone(),
            member: member.compressed_offset,
            stored: member.stored,
        });
        let keep = entry.size <= MAX_JSON
            && (blob_hex(&entry.path).is_some() || entry.path.as_str() == "images/index.json");
        if keep {
            Ok(Box::new(self.current.insert(Vec::new())))
        } else {
            Ok(Box::new(io::sink()))
        }
    }
    fn close(&mut self, entry: &FileEntry, _: u64) -> io::Result<()> {
        if let Some(bytes) = self.current.take() {
            self.small.insert(entry.path.clone(), bytes);
        }
        Ok(())
    }
}

/// Verifies a complete bundle and notes where each of its members starts.
pub fn scan(opts: &VerifyOptions) -> Result<Scanned, VerifyError> {
    let path = opts.input.clone();
    let head = head::read(&path)?;
    let file = File::open(&path).map_err(|source| VerifyError::Open {
        path: path.clone(),
        source,
    })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut sink = ScanSink {
        entries: Vec::new(),
        small: HashMap::new(),
        current: None,
    };
    let evidence = verify::stream(file, opts, Some(&mut sink))?;
    Ok(Scanned {
        path,
        head,
        size,
        entries: sink.entries,
        small: sink.small,
        evidence: Some(evidence),
    })
}

/// Reads one gzip member and stops: EOF once the member reader has moved on to the next one
/// (a read never spans two members, so nothing of this member is lost).
struct OneMember<R: Read> {
    inner: MemberReader<R>,
    done: bool,
}

impl<R: Read> Read for OneMember<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if self.inner.members() > 1 {
            self.done = true;
            return Ok(0);
        }
        Ok(n)
    }
}

/// Notes where each member of a complete bundle that this ferry has just written starts,
/// without reading its layers: a stored member holds one entry and its length follows from
/// its tar header (4.4 rule 3), so only that header is read before jumping over it; compressed
/// members (text) are inflated. For `build --base` and `build --max-part-size`, whose input
/// is the build's own output; a bundle from elsewhere is `scan`ned (verified) instead.
pub fn walk(path: &Path) -> Result<Scanned, VerifyError> {
    let head = head::read(path)?;
    let io_err = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let listed: HashMap<&str, &FileEntry> = head
        .manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mut entries = Vec::new();
    let mut small = HashMap::new();
    let mut at = head.body_offset;
    while at < size {
        let mut src = File::open(path).map_err(io_err)?;
        src.seek(SeekFrom::Start(at)).map_err(io_err)?;
        let mut reader = OneMember {
            inner: MemberReader::new(src, Limits::default()),
            done: false,
        };
        let mut archive = tar::Archive::new(&mut reader);
        let mut stored = false;
        for e in archive.entries().map_err(io_err)? {
            let mut e = e.map_err(io_err)?;
            let name = e.path().map_err(io_err)?.to_string_lossy().into_owned();
            let rel = name.split_once('/').map_or("", |(_, r)| r);
            let Some(file) = listed.get(rel) else {
                return Err(VerifyError::Unlisted { entry: name });
            };
            stored =
                e.header().as_ustar().is_some() && reader_is_stored(path, at).map_err(io_err)?;
            entries.push(ScannedEntry {
                file: (*file).clone(),
                member: at,
                stored,
            });
            if stored {
                // One entry per stored member: its length is known; skip its data.
                break;
            }
            if file.size <= MAX_JSON
                && (blob_hex(&file.path).is_some() || rel == "images/index.json")
            {
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).map_err(io_err)?;
                small.insert(file.path.clone(), bytes);
            }
        }
        let next = match (stored, entries.last()) {
            (true, Some(e)) => {
                at + stored_entry_len(&format!("{}/{}", head.root, e.file.path), e.file.size)
            }
            _ => {
                // Drain to the member's end to learn where the next one starts.
                io::copy(&mut reader, &mut io::sink()).map_err(io_err)?;
                match reader.inner.member_offsets().get(1) {
                    Some(rel) => at + rel,
                    None => size,
                }
            }
        };
        if next <= at {
            return Err(VerifyError::Corrupt {
                location: format!("the gzip member at byte {at}"),
                detail: "it does not move the walk forward".into(),
            });
        }
        at = next;
    }
    Ok(Scanned {
        path: path.to_path_buf(),
        head,
        size,
        entries,
        small,
        evidence: None,
    })
}

/// Whether the gzip member at `at` has the stored header.
fn reader_is_stored(path: &Path, at: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; 10];
    File::open(path)?.read_exact_at(&mut header, at)?;
    Ok(header == canonical_header(Packing::Store))
}

/// Writes `manifest` as the head of a new file at `output`, then `body`, and renames it
/// into place (mode 0644). Returns the file's size.
pub fn write_file(
    output: &Path,
    root: &str,
    mtime: u64,
    manifest: &PartialManifest,
    body: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<u64> {
    let tmp = temp_file_beside(output, ".ferry-partial-").map_err(|(_, e)| e)?;
    let mut file = tmp.as_file().try_clone()?;
    file.write_all(&head_member(root, mtime, manifest)?)?;
    body(&mut file)?;
    file.flush()?;
    persist(tmp, output)
}

/// The head member of a partial file: `manifest` as its `ferry.json`.
pub fn head_member(root: &str, mtime: u64, manifest: &PartialManifest) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
    bytes.push(b'\n');
    build::head_member(root, mtime, &bytes, None)
}

/// Sets mode 0644 and renames a finished temporary file into place; returns its size.
pub fn persist(tmp: tempfile::NamedTempFile, output: &Path) -> io::Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    let size = tmp.as_file().metadata()?.len();
    tmp.persist(output).map_err(|e| e.error)?;
    Ok(size)
}

/// Copies bytes `[at, at + len)` of `from` to the current position of `to` (with
/// `copy_file_range` where the kernel offers it).
pub fn copy_range(from: &Path, at: u64, len: u64, to: &mut File) -> io::Result<()> {
    let mut src = File::open(from)?;
    src.seek(SeekFrom::Start(at))?;
    let copied = io::copy(&mut src.take(len), to)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} ends {} bytes early", from.display(), len - copied),
        ));
    }
    Ok(())
}

/// Where the second gzip member of a ferry file starts (the end of its head member).
pub fn head_member_len(path: &Path) -> io::Result<u64> {
    let f = File::open(path)?;
    let mut members = MemberReader::new(f, Limits::default());
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = members.read(&mut chunk)?;
        if n == 0 || members.members() > 1 {
            break;
        }
    }
    members
        .member_offsets()
        .get(1)
        .copied()
        .ok_or_else(|| io::Error::other(format!("{}: a single gzip member", path.display())))
}

/// The base64 of release manifest bytes, as a partial head carries them.
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The partial head every piece of `scanned` starts from (no files, no delta, no part).
pub fn release_of(scanned: &Scanned) -> PartialManifest {
    let h = &scanned.head;
    let signature = h
        .signature
        .as_ref()
        .map(|s| String::from_utf8_lossy(s).into_owned());
    piece_of(
        &h.manifest,
        &h.manifest_bytes,
        signature,
        scanned.size,
        h.body_offset,
    )
}

/// The head of a piece (a part until told otherwise, holding no file yet) of the release
/// whose manifest is `manifest` (`manifest_bytes`), signed with `signature`, whose file is
/// `size` bytes with a head member of `head_size`.
pub fn piece_of(
    manifest: &Manifest,
    manifest_bytes: &[u8],
    signature: Option<String>,
    size: u64,
    head_size: u64,
) -> PartialManifest {
    PartialManifest {
        format_version: PARTIAL_FORMAT_VERSION,
        kind: Kind::Part,
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        created: manifest.created.clone(),
        ferry_version: env!("CARGO_PKG_VERSION").to_string(),
        release: Release {
            manifest: encode(manifest_bytes),
            manifest_digest: Digest::of(manifest_bytes),
            signature,
            size,
            head_size,
        },
        files: Vec::new(),
        delta: None,
        part: None,
    }
}

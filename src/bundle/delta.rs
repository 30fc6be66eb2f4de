//! Delta bundles: a release without the blobs a base already holds (`ferry build --base`),
//! and `ferry merge`, which rebuilds the release byte for byte from the delta and its base.
//!
//! A delta holds the release's gzip members verbatim except the stored members of blobs the
//! base holds (layers: each is a member of its own, bundle-format.md 4.4), which it lists
//! by digest, size and offset. Merging writes the release head, the delta's members at their
//! offsets, and each omitted blob's member rebuilt from the base's bytes.

use crate::bundle::archive::{
    padding, stored_entry_len, MemberReader, OwnMemberWriter, PositionedWriter, TarEntries,
    TarEntry, TarPolicy,
};
use crate::bundle::build::temp_file_beside;
use crate::bundle::head;
use crate::bundle::manifest::{blob_hex, FileEntry, Manifest, MANIFEST_NAME, MAX_MANIFEST_BYTES};
use crate::bundle::partial::{
    self, head_member_len, persist, Base, DeltaInfo, Kind, Omitted, PartialHead,
};
use crate::bundle::safepath::SafePath;
use crate::bundle::verify::{
    self, check_limits, entry_error, Copier, EntryPlace, Sink, VerifyError, VerifyOptions,
};
use crate::oci::digest::Digest;
use crate::oci::document::MAX_JSON;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The blobs a customer's registry holds, written on the customer side (`ferry load
/// --have-list`) for the vendor to build a delta against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HaveList {
    /// Always `ferry-have-list`.
    pub kind: String,
    /// The registry the blobs are in.
    pub registry: String,
    /// Every blob, by digest, with its size.
    pub blobs: Vec<HaveBlob>,
}

/// One blob of a have-list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HaveBlob {
    pub digest: Digest,
    pub size: u64,
}

/// `kind` of a have-list.
pub const HAVE_LIST_KIND: &str = "ferry-have-list";

impl HaveList {
    /// A have-list of `blobs`, sorted and once each.
    pub fn new(registry: &str, blobs: impl IntoIterator<Item = HaveBlob>) -> HaveList {
        let mut blobs: Vec<HaveBlob> = blobs.into_iter().collect();
        blobs.sort();
        blobs.dedup();
        HaveList {
            kind: HAVE_LIST_KIND.into(),
            registry: registry.into(),
            blobs,
        }
    }

    /// The canonical bytes: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("have-list serialises");
        out.push(b'\n');
        out
    }
}

/// What a delta is built against: the blobs the customer holds, with their sizes.
#[derive(Debug, Clone)]
pub struct BaseSet {
    pub base: Base,
    pub blobs: HashMap<Digest, u64>,
}

/// Why a delta could not be made or merged.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{base} lacks {} blob(s) the delta {delta} omits:\n{}\nmerge with the bundle the delta was built against ({wanted})", missing.len(), missing.iter().map(|o| format!("  {} ({} bytes)", o.digest, o.size)).collect::<Vec<_>>().join("\n"))]
    MissingBlobs {
        base: PathBuf,
        delta: PathBuf,
        wanted: String,
        missing: Vec<Omitted>,
    },
    #[error("{base}: {source}; nothing was written")]
    Base { base: PathBuf, source: VerifyError },
}

impl DeltaError {
    /// 1 for a finding (a bundle that fails its checks, a base that lacks blobs), 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            DeltaError::Verify(e) | DeltaError::Base { source: e, .. } => e.exit_code(),
            DeltaError::MissingBlobs { .. } => 1,
            _ => 2,
        }
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> DeltaError + '_ {
    move |source| DeltaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a base: a bundle file (its head only), its `ferry.json`, or a have-list.
pub fn read_base(path: &Path) -> Result<BaseSet, DeltaError> {
    let input = |message: String| DeltaError::Input {
        path: path.to_path_buf(),
        message,
    };
    let from_manifest = |m: &Manifest, bytes: &[u8]| BaseSet {
        base: Base {
            kind: "bundle".into(),
            name: Some(m.name.clone()),
            version: Some(m.version.clone()),
            digest: Digest::of(bytes),
            registry: None,
        },
        blobs: m
            .files
            .iter()
            .filter(|f| blob_hex(&f.path).is_some())
            .map(|f| (f.digest.clone(), f.size))
            .collect(),
    };
    // A bundle is read by its head only; a JSON file is small (at most a manifest's size).
    let mut magic = [0u8; 2];
    let n = File::open(path)
        .and_then(|mut f| io::Read::read(&mut f, &mut magic))
        .map_err(io_err(path))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        let (m, bytes) = crate::bundle::inspect::read_manifest(path)?;
        return Ok(from_manifest(&m, &bytes));
    }
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    if len > MAX_MANIFEST_BYTES {
        return Err(input(format!(
            "{len} bytes: too large for a ferry.json or a have-list (at most {MAX_MANIFEST_BYTES})"
        )));
    }
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    #[derive(Deserialize)]
    struct Probe {
        kind: Option<String>,
    }
    let probe: Probe = serde_json::from_slice(&bytes).map_err(|e| {
        input(format!(
            "neither a bundle, a ferry.json nor a have-list: {e}"
        ))
    })?;
    if probe.kind.as_deref() == Some(HAVE_LIST_KIND) {
        let list: HaveList = serde_json::from_slice(&bytes)
            .map_err(|e| input(format!("not a valid have-list: {e}")))?;
        return Ok(BaseSet {
            base: Base {
                kind: "haveList".into(),
                name: None,
                version: None,
                digest: Digest::of(&bytes),
                registry: Some(list.registry.clone()),
            },
            blobs: list.blobs.into_iter().map(|b| (b.digest, b.size)).collect(),
        });
    }
    let m = Manifest::parse(&bytes).map_err(|e| input(e.to_string()))?;
    Ok(from_manifest(&m, &bytes))
}

/// What `make` wrote.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaReport {
    pub output: PathBuf,
    pub bytes: u64,
    pub release_bytes: u64,
    pub files: usize,
    pub omitted: usize,
    pub omitted_bytes: u64,
    pub manifest_digest: Digest,
}

/// The head of the delta of a release against `base`: the release's manifest (with its
/// signature, file size and head size) and every file but the `omitted` blobs.
pub fn delta_manifest(
    release: &partial::PartialManifest,
    files: &[FileEntry],
    omitted: Vec<Omitted>,
    base: &BaseSet,
) -> partial::PartialManifest {
    let left_out: HashSet<String> = omitted
        .iter()
        .map(|o| format!("images/blobs/sha256/{}", o.digest.hex()))
        .collect();
    let mut held: Vec<FileEntry> = files
        .iter()
        .filter(|f| !left_out.contains(f.path.as_str()))
        .cloned()
        .collect();
    held.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    partial::PartialManifest {
        kind: Kind::Delta,
        files: held,
        delta: Some(DeltaInfo {
            base: base.base.clone(),
            omitted,
        }),
        ..release.clone()
    }
}

impl DeltaReport {
    /// What a delta with head `manifest`, written to `output` (`bytes` long), holds.
    pub fn of(manifest: &partial::PartialManifest, output: &Path, bytes: u64) -> DeltaReport {
        let omitted = manifest.delta.as_ref().map_or(&[][..], |d| &d.omitted[..]);
        DeltaReport {
            output: output.to_path_buf(),
            bytes,
            release_bytes: manifest.release.size,
            files: manifest.files.len(),
            omitted: omitted.len(),
            omitted_bytes: omitted.iter().map(|o| o.size).sum(),
            manifest_digest: manifest.release.manifest_digest.clone(),
        }
    }
}

/// What `merge` wrote.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeReport {
    pub output: PathBuf,
    pub bytes: u64,
    pub manifest_digest: Digest,
    /// Blobs taken from the base.
    pub from_base: usize,
    pub evidence: verify::Evidence,
}

/// `len` bytes of the delta's body, at byte `from` of the delta file, that belong at byte `to`
/// of the release.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    from: u64,
    to: u64,
    len: u64,
}

/// An omitted blob, to be rebuilt as its stored member from the base's bytes.
#[derive(Debug, Clone)]
struct Wanted {
    /// Where its member starts in the release.
    at: u64,
    digest: Digest,
    size: u64,
    /// Its mode in the release manifest.
    mode: u32,
    /// Where its member was cut out of the delta: the byte of the delta file it goes before.
    cut: u64,
}

/// Where every byte of the delta goes, and what the base must give.
struct Plan {
    /// The delta's body between the omitted members, in order, tiling `[body, len)`.
    stretches: Vec<Stretch>,
    /// The omitted blobs by path (`images/blobs/sha256/HEX`).
    wanted: BTreeMap<String, Wanted>,
    /// Bytes of the delta file the head places: its head member and the release's bytes
    /// less the omitted members.
    len: u64,
}

/// Lays out the release from a checked delta head: the delta's body, which starts at byte
/// `body` of the delta file, cut in front of every omitted member.
fn plan(head: &PartialHead, info: &DeltaInfo, body: u64) -> Result<Plan, String> {
    let release = &head.manifest.release;
    let modes: HashMap<&str, u32> = head
        .release
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.mode.bits()))
        .collect();
    let mut omitted = info.omitted.clone();
    omitted.sort_by_key(|o| o.at);
    let (mut from, mut to) = (body, release.head_size);
    let mut stretches = Vec::new();
    let mut wanted = BTreeMap::new();
    for o in &omitted {
        let path = format!("images/blobs/sha256/{}", o.digest.hex());
        let len = o
            .at
            .checked_sub(to)
            .ok_or_else(|| format!("the member of omitted blob {} overlaps another", o.digest))?;
        stretches.push(Stretch { from, to, len });
        from += len;
        let mode = *modes
            .get(path.as_str())
            .ok_or_else(|| format!("omitted blob {} is not in the release manifest", o.digest))?;
        to = o.at + stored_entry_len(&format!("{}/{path}", head.root), o.size);
        wanted.insert(
            path,
            Wanted {
                at: o.at,
                digest: o.digest.clone(),
                size: o.size,
                mode,
                cut: from,
            },
        );
    }
    let len = release
        .size
        .checked_sub(to)
        .ok_or("the omitted members run past the release's end")?;
    stretches.push(Stretch { from, to, len });
    Ok(Plan {
        stretches,
        wanted,
        len: from + len,
    })
}

/// Reads the delta for its verifier and writes each byte of its body at its place in the
/// merged file as it goes by: the delta is read once, and what is copied is what was checked.
struct SpliceTee<'a> {
    delta: File,
    /// Bytes read so far.
    pos: u64,
    stretches: &'a [Stretch],
    /// The first stretch that does not end before `pos`.
    next: usize,
    out: &'a File,
    /// Why writing the merged file failed, if it did.
    failed: Option<io::Error>,
}

impl SpliceTee<'_> {
    fn place(&mut self, mut at: u64, mut bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        while !bytes.is_empty() {
            while self
                .stretches
                .get(self.next)
                .is_some_and(|s| s.from + s.len <= at)
            {
                self.next += 1;
            }
            // Bytes past the last stretch are not the release's: `check_splice` refuses them.
            let Some(s) = self.stretches.get(self.next) else {
                return Ok(());
            };
            if at < s.from {
                // The delta's own head member.
                let skip = (s.from - at).min(bytes.len() as u64) as usize;
                (at, bytes) = (at + skip as u64, &bytes[skip..]);
                continue;
            }
            let n = (s.from + s.len - at).min(bytes.len() as u64) as usize;
            self.out.write_all_at(&bytes[..n], s.to + (at - s.from))?;
            (at, bytes) = (at + n as u64, &bytes[n..]);
        }
        Ok(())
    }
}

impl io::Read for SpliceTee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.delta.read(buf)?;
        if let Err(e) = self.place(self.pos, &buf[..n]) {
            self.failed = Some(e);
            return Err(io::Error::other("the merged file could not be written"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Notes where each entry of the delta ends in its tar stream: the places between entries.
#[derive(Default)]
struct EntryEnds(BTreeSet<u64>);

impl Sink for EntryEnds {
    fn start(&mut self, _: &Manifest, _: &[u8], _: Option<&[u8]>, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn open(&mut self, entry: &FileEntry, place: EntryPlace) -> io::Result<Box<dyn Write + '_>> {
        self.0
            .insert(place.data_offset + entry.size + padding(entry.size));
        Ok(Box::new(io::sink()))
    }
    fn close(&mut self, _: &FileEntry, _: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Checks that the delta, as read and verified, is laid out as its head says, so that the
/// merged file is a valid member chain and tar stream (bundle-format.md 16.2): it is as long
/// as the plan; its head is a member of its own holding only the head entry; and each cut,
/// where an omitted member goes, is where a gzip member starts and the entry before it ends.
fn check_splice(
    plan: &Plan,
    checked: &partial::Checked,
    ends: &BTreeSet<u64>,
    read: u64,
) -> Result<(), String> {
    if read != plan.len {
        return Err(format!(
            "{read} bytes, but its head accounts for {} (its head member and the release's bytes less the omitted members)",
            plan.len
        ));
    }
    let body = plan.stretches[0].from;
    let starts: HashMap<u64, u64> = checked
        .members
        .iter()
        .map(|m| (m.compressed_offset, m.decompressed_offset))
        .collect();
    if starts.get(&body) != Some(&checked.head.head_entry_len) {
        return Err("its head is not a gzip member of its own holding only ferry.json".into());
    }
    for (path, w) in &plan.wanted {
        let between = starts
            .get(&w.cut)
            .is_some_and(|d| *d == checked.head.head_entry_len || ends.contains(d));
        if !between {
            return Err(format!(
                "the member of `{path}` belongs at byte {} of the delta, which is not a gzip member boundary between two entries",
                w.cut
            ));
        }
    }
    Ok(())
}

/// Reads and checks the delta once, writing its body into place in `out` as it goes by.
fn splice_delta(
    delta: &VerifyOptions,
    plan: &Plan,
    out: &File,
    output: &Path,
) -> Result<partial::Checked, DeltaError> {
    let file = File::open(&delta.input).map_err(|source| VerifyError::Open {
        path: delta.input.clone(),
        source,
    })?;
    let len = file.metadata().map_err(io_err(&delta.input))?.len();
    let mut tee = SpliceTee {
        delta: file,
        pos: 0,
        stretches: &plan.stretches,
        next: 0,
        out,
        failed: None,
    };
    let mut ends = EntryEnds::default();
    let checked = partial::stream_reader(&mut tee, len, delta, Some(&mut ends));
    if let Some(source) = tee.failed.take() {
        return Err(DeltaError::Io {
            path: output.to_path_buf(),
            source,
        });
    }
    let checked = checked?;
    check_splice(plan, &checked, &ends.0, tee.pos).map_err(|detail| VerifyError::Corrupt {
        location: delta.input.display().to_string(),
        detail,
    })?;
    Ok(checked)
}

/// Reads the base bundle until every wanted blob has gone by, writing each into its member in
/// `out` while it is hashed; returns the blobs it lacks. Only the wanted blobs are hashed:
/// they are all the merge takes from the base, and each must hash to its digest.
fn fill_from_base(
    base: &VerifyOptions,
    head: &PartialHead,
    mut wanted: BTreeMap<String, Wanted>,
    out: (&File, &Path),
) -> Result<BTreeMap<String, Wanted>, DeltaError> {
    // Errors that name the base already stay as they are.
    let base_err = |source: VerifyError| match source {
        e @ (VerifyError::Open { .. } | VerifyError::NotABundle { .. }) => DeltaError::Verify(e),
        source => DeltaError::Base {
            base: base.input.clone(),
            source,
        },
    };
    let file = File::open(&base.input).map_err(|source| {
        base_err(VerifyError::Open {
            path: base.input.clone(),
            source,
        })
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = base.progress.bytes(len, "reading the base");
    let mut archive = tar::Archive::new(MemberReader::new(bar.wrap_read(file), base.limits));
    let mut entries = TarEntries::new(&mut archive, TarPolicy::bundle(base.limits))
        .map_err(|e| base_err(entry_error(e, "start of the bundle")))?;
    let own = head::read_entries(&base.input, &mut entries).map_err(base_err)?;
    // What the base's manifest does not list, it lacks; what it lists is proven below.
    let listed: HashSet<(&str, u64)> = own
        .manifest
        .manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size))
        .collect();
    let lacking: BTreeMap<String, Wanted> = wanted
        .iter()
        .filter(|(p, w)| !listed.contains(&(p.as_str(), w.size)))
        .map(|(p, w)| (p.clone(), w.clone()))
        .collect();
    if !lacking.is_empty() {
        return Ok(lacking);
    }
    let mut copier = Copier::new();
    let mut last = format!("{}/{MANIFEST_NAME}", own.manifest.root);
    while !wanted.is_empty() {
        let Some(TarEntry { name, entry }) = entries
            .next_entry()
            .map_err(|e| base_err(entry_error(e, &format!("after `{last}`"))))?
        else {
            break;
        };
        last = name.to_string();
        if let Some(w) = name
            .strip_first()
            .and_then(|rel| wanted.remove(rel.as_str()))
        {
            fill_one(&mut copier, entry, &name, &w, head, out).map_err(|e| match e {
                DeltaError::Verify(source) => base_err(source),
                e => e,
            })?;
        }
    }
    bar.finish_and_clear();
    Ok(wanted)
}

/// Writes the member of blob `w` at its place in `out` from the base's entry `name`, while it
/// is hashed, and checks the hash.
fn fill_one<R: io::Read>(
    copier: &mut Copier,
    entry: tar::Entry<'_, R>,
    name: &SafePath,
    w: &Wanted,
    head: &PartialHead,
    (out, output): (&File, &Path),
) -> Result<(), DeltaError> {
    if entry.size() != w.size {
        return Err(DeltaError::Verify(VerifyError::SizeMismatch {
            entry: name.to_string(),
            expected: w.size,
            found: entry.size(),
        }));
    }
    let path = format!("{}/images/blobs/sha256/{}", head.root, w.digest.hex());
    let mut member = OwnMemberWriter::new(
        io::BufWriter::with_capacity(1 << 20, PositionedWriter::new(out, w.at)),
        head.mtime,
        &path,
        w.mode,
        w.size,
    )
    .map_err(io_err(output))?;
    let copied = copier.copy(entry, name, Some(Box::new(&mut member)), w.size <= MAX_JSON);
    let (digest, json) = match copied {
        // Reading the base fails as a finding; an I/O error is writing the merged file.
        Err(VerifyError::Io { source, .. }) => return Err(io_err(output)(source)),
        other => other?,
    };
    if digest != w.digest {
        return Err(DeltaError::Verify(VerifyError::DigestMismatch {
            entry: name.to_string(),
            expected: w.digest.clone(),
            found: digest,
        }));
    }
    if !json.is_empty() {
        // A verifier keeps small JSON blobs for the layout check; the delta's check kept all
        // it needs, and a merged file keeps exactly those only if no omitted blob is one. A
        // delta ferry writes leaves out layers only.
        return Err(DeltaError::Verify(VerifyError::Corrupt {
            location: name.to_string(),
            detail: "a JSON document, which a delta never leaves out".into(),
        }));
    }
    let end = member
        .finish()
        .map_err(io_err(output))?
        .into_inner()
        .map_err(|e| io_err(output)(e.into_error()))?
        .position();
    if end != w.at + stored_entry_len(&path, w.size) {
        return Err(DeltaError::Input {
            path: output.to_path_buf(),
            message: format!("the member of `{path}` was not written to its length"),
        });
    }
    Ok(())
}

/// What a merged file is proven to be, without reading it again.
const MERGE_CHECKS: [&str; 5] = [
    "the delta passes every check of a delta: its head, the release signature (with --key), every entry it holds, the release's image layout",
    "the release head is rebuilt from the release manifest and signature the delta carries, at the release's head size",
    "the delta's body is copied in the read that checks it, cut only at gzip member boundaries between entries",
    "every omitted blob is rebuilt as its stored member from base bytes that hash to its digest",
    "the merged file has the release's size and every release file once",
];

/// Rebuilds the release of `delta` from it and `base` (a complete bundle) into `output`.
///
/// Every byte of the result is proven without reading it again (bundle-format.md 16.2):
/// the head member is rebuilt from the release manifest and signature the delta carries,
/// which the delta's check hashed to `release.manifestDigest` (and checked with the key), and
/// is exactly `release.headSize` bytes; the rest of the delta is copied into place in the
/// same read that verifies it, so each of its gzip members is canonical with a matching CRC
/// and each of its entries is the release's, with its size, mode and digest, and it ends
/// with the release's end-of-archive; each omitted member is written by the stored-member
/// writer (deterministic framing) around base bytes that hashed to the blob's digest, under
/// the release's path and mode. The delta's files and the omitted blobs are together the
/// release's files, each once. The members are spliced only where `check_splice` found a
/// gzip member boundary of the delta that is also a boundary between two of its entries,
/// so the result is a chain of whole members whose tar stream is the delta's with the
/// omitted entries inserted between entries. `ferry verify` of the result therefore passes
/// every check the delta's and the base's passes made, against the release manifest.
pub fn merge(
    delta: &VerifyOptions,
    base: &VerifyOptions,
    output: &Path,
) -> Result<MergeReport, DeltaError> {
    let Some(peeked) = partial::peek(&delta.input)? else {
        // Not a delta or a part: the partial check says what it is.
        partial::verify(delta)?;
        return Err(not_a_delta(&delta.input, "not a delta bundle"));
    };
    let info = match (&peeked.manifest.kind, &peeked.manifest.delta) {
        (Kind::Delta, Some(d)) => d.clone(),
        _ => {
            return Err(not_a_delta(
                &delta.input,
                "a part of a split bundle, not a delta: `ferry join` its parts",
            ))
        }
    };
    // The merged file is the release: its manifest is what the limits apply to.
    check_limits(&peeked.release, &delta.limits).map_err(VerifyError::from)?;
    let body = head_member_len(&delta.input).map_err(io_err(&delta.input))?;
    let plan = plan(&peeked, &info, body).map_err(|message| DeltaError::Input {
        path: delta.input.clone(),
        message,
    })?;
    let tmp = temp_file_beside(output, ".ferry-merge-").map_err(|(d, e)| io_err(&d)(e))?;
    let out = tmp.as_file();
    {
        use std::os::unix::fs::FileExt;
        let release_head = peeked.release_head().map_err(io_err(&delta.input))?;
        out.write_all_at(&release_head, 0).map_err(io_err(output))?;
    }
    let checked = splice_delta(delta, &plan, out, output)?;
    let head = &checked.head;
    if head.bytes != peeked.bytes {
        return Err(DeltaError::Input {
            path: delta.input.clone(),
            message: "its head changed while it was read".into(),
        });
    }
    let missing = fill_from_base(base, head, plan.wanted.clone(), (out, output))?;
    if !missing.is_empty() {
        return Err(missing_blobs(&info, &missing, base, delta));
    }
    let release = &head.manifest.release;
    let written = out.metadata().map_err(io_err(output))?.len();
    if written != release.size {
        return Err(DeltaError::Input {
            path: output.to_path_buf(),
            message: format!("{written} bytes merged, the release has {}", release.size),
        });
    }
    let bytes = persist(tmp, output).map_err(io_err(output))?;
    let e = &checked.evidence;
    let from_base: u64 = info.omitted.iter().map(|o| o.size).sum();
    Ok(MergeReport {
        output: output.to_path_buf(),
        bytes,
        manifest_digest: release.manifest_digest.clone(),
        from_base: info.omitted.len(),
        evidence: verify::Evidence {
            bundle: output.to_path_buf(),
            form: "tar.gz",
            name: head.release.name.clone(),
            version: head.release.version.clone(),
            created: head.release.created.clone(),
            manifest_digest: release.manifest_digest.clone(),
            files_checked: head.release.files.len(),
            bytes_checked: e.bytes_checked + from_base,
            blobs_checked: e.layout.blobs,
            layout: e.layout.clone(),
            // The delta's members after its head, the release head, the rebuilt members.
            gzip_members: (checked
                .members
                .iter()
                .filter(|m| m.compressed_offset >= body)
                .count()
                + 1
                + info.omitted.len()) as u32,
            signature_present: e.signature_present,
            head_check: e.head_check.clone(),
            checks: MERGE_CHECKS.to_vec(),
            images_check: None,
        },
    })
}

fn not_a_delta(path: &Path, message: &str) -> DeltaError {
    DeltaError::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The error for a base that lacks blobs the delta leaves out.
fn missing_blobs(
    info: &DeltaInfo,
    missing: &BTreeMap<String, Wanted>,
    base: &VerifyOptions,
    delta: &VerifyOptions,
) -> DeltaError {
    let missing = info
        .omitted
        .iter()
        .filter(|o| missing.values().any(|w| w.digest == o.digest))
        .cloned()
        .collect();
    let b = &info.base;
    DeltaError::MissingBlobs {
        base: base.input.clone(),
        delta: delta.input.clone(),
        wanted: match (&b.name, &b.version) {
            (Some(n), Some(v)) => format!("{n} {v}, manifest {}", b.digest),
            _ => format!(
                "the have-list {} of {}",
                b.digest,
                b.registry.as_deref().unwrap_or("?")
            ),
        },
        missing,
    }
}

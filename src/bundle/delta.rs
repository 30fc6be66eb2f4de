//! Delta bundles: a release without the blobs a base already holds (`ferry build --base`),
//! and `ferry merge`, which rebuilds the release byte for byte from the delta and its base.
//!
//! A delta holds the release's gzip members verbatim except the stored members of blobs the
//! base holds (layers: each is a member of its own, bundle-format.md 4.4), which it lists
//! by digest, size and offset. Merging writes the release head, the delta's members at their
//! offsets, and each omitted blob's member rebuilt from the base's bytes.

use crate::bundle::archive::{stored_entry_len, OwnMemberWriter, PositionedWriter};
use crate::bundle::build::temp_file_beside;
use crate::bundle::manifest::{blob_hex, FileEntry, Manifest, MAX_MANIFEST_BYTES};
use crate::bundle::partial::{
    self, copy_range, head_member_len, persist, Base, DeltaInfo, Kind, Omitted, PartialHead,
};
use crate::bundle::verify::{self, EntryPlace, Sink, VerifyError, VerifyOptions};
use crate::oci::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
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
}

impl DeltaError {
    /// 1 for a finding (a bundle that fails its checks, a base that lacks blobs), 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            DeltaError::Verify(e) => e.exit_code(),
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

/// Writes omitted blobs into their members as the base's bytes stream past.
struct FillSink<'a> {
    file: &'a File,
    root: String,
    mtime: u64,
    /// Blob path → where its member goes, until written.
    wanted: BTreeMap<String, (u64, Digest)>,
    current: Option<(String, OwnMemberWriter<PositionedWriter<'a>>)>,
}

impl Sink for FillSink<'_> {
    fn start(&mut self, _: &Manifest, _: &[u8], _: Option<&[u8]>, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn open(&mut self, entry: &FileEntry, _: EntryPlace) -> io::Result<Box<dyn Write + '_>> {
        let path = entry.path.as_str();
        match self.wanted.get(path) {
            Some((at, digest)) if *digest == entry.digest => {
                let w = OwnMemberWriter::new(
                    PositionedWriter::new(self.file, *at),
                    self.mtime,
                    &format!("{}/{path}", self.root),
                    entry.mode.bits(),
                    entry.size,
                )?;
                let (_, w) = self.current.insert((path.to_string(), w));
                Ok(Box::new(w))
            }
            _ => Ok(Box::new(io::sink())),
        }
    }
    fn close(&mut self, _: &FileEntry, _: u64) -> io::Result<()> {
        // Reached only when the digest matched: the member is complete and right.
        if let Some((path, w)) = self.current.take() {
            w.finish()?;
            self.wanted.remove(&path);
        }
        Ok(())
    }
}

/// Rebuilds the release of `delta` from it and `base` (a complete bundle) into `output`,
/// checking the delta, the base and the result.
pub fn merge(
    delta: &VerifyOptions,
    base: &VerifyOptions,
    output: &Path,
) -> Result<MergeReport, DeltaError> {
    let (head, _) = partial::verify(delta)?;
    let info = match (&head.manifest.kind, &head.manifest.delta) {
        (Kind::Delta, Some(d)) => d.clone(),
        _ => {
            return Err(DeltaError::Input {
                path: delta.input.clone(),
                message: "a part of a split bundle, not a delta: `ferry join` its parts".into(),
            })
        }
    };
    let tmp = temp_file_beside(output, ".ferry-merge-").map_err(|(d, e)| io_err(&d)(e))?;
    let file = tmp.as_file();
    let wanted = write_known(&head, &info, &delta.input, file).map_err(io_err(output))?;
    let mut sink = FillSink {
        file,
        root: head.root.clone(),
        mtime: head.mtime,
        wanted,
        current: None,
    };
    let base_file = File::open(&base.input).map_err(|source| VerifyError::Open {
        path: base.input.clone(),
        source,
    })?;
    verify::stream(base_file, base, Some(&mut sink))?;
    if !sink.wanted.is_empty() {
        let left: Vec<&Digest> = sink.wanted.values().map(|(_, d)| d).collect();
        let missing = info
            .omitted
            .iter()
            .filter(|o| left.contains(&&o.digest))
            .cloned()
            .collect();
        let b = &info.base;
        return Err(DeltaError::MissingBlobs {
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
        });
    }
    let check = verify::stream(
        tmp.reopen().map_err(io_err(output))?,
        &VerifyOptions {
            input: tmp.path().to_path_buf(),
            check_head: None,
            ..delta.clone()
        },
        None,
    )?;
    if check.manifest_digest != head.manifest.release.manifest_digest {
        return Err(DeltaError::Input {
            path: output.to_path_buf(),
            message: "the merged bundle's manifest is not the release's".into(),
        });
    }
    let bytes = persist(tmp, output).map_err(io_err(output))?;
    Ok(MergeReport {
        output: output.to_path_buf(),
        bytes,
        manifest_digest: head.manifest.release.manifest_digest.clone(),
        from_base: info.omitted.len(),
        evidence: verify::Evidence {
            bundle: output.to_path_buf(),
            ..check
        },
    })
}

/// Writes the release head and the delta's members at their places in `file`; returns the
/// omitted blobs' paths with where their members go.
fn write_known(
    head: &PartialHead,
    info: &DeltaInfo,
    delta: &Path,
    file: &File,
) -> io::Result<BTreeMap<String, (u64, Digest)>> {
    let release_head = head.release_head()?;
    let mut out = file.try_clone()?;
    out.write_all(&release_head)?;
    let mut from = head_member_len(delta)?;
    let mut pos = release_head.len() as u64;
    let mut wanted = BTreeMap::new();
    let mut omitted = info.omitted.clone();
    omitted.sort_by_key(|o| o.at);
    for o in &omitted {
        let path = format!("images/blobs/sha256/{}", o.digest.hex());
        let len =
            o.at.checked_sub(pos)
                .ok_or_else(|| io::Error::other("omitted blobs overlap"))?;
        out.seek(SeekFrom::Start(pos))?;
        copy_range(delta, from, len, &mut out)?;
        from += len;
        pos = o.at + stored_entry_len(&format!("{}/{path}", head.root), o.size);
        wanted.insert(path, (o.at, o.digest.clone()));
    }
    let rest = head
        .manifest
        .release
        .size
        .checked_sub(pos)
        .ok_or_else(|| io::Error::other("omitted blobs run past the release's end"))?;
    out.seek(SeekFrom::Start(pos))?;
    copy_range(delta, from, rest, &mut out)?;
    if from + rest != std::fs::metadata(delta)?.len() {
        return Err(io::Error::other(format!(
            "{} holds bytes beyond the release's",
            delta.display()
        )));
    }
    Ok(wanted)
}

//! Split volumes: `ferry split` (and `ferry build --max-part-size`) cut a complete bundle
//! into parts at gzip member boundaries, each a bundle that verifies on its own; `ferry
//! join` puts them back together byte for byte.
//!
//! A part carries the release's signed head, a contiguous run of the release's members
//! verbatim, and copies of every image manifest and index (and `images/index.json`) that
//! its run lacks, so that loading it can push every image whose blobs are all present.

use crate::bundle::archive::{stored_entry_len, Packing, TarGzWriter};
use crate::bundle::build::temp_file_beside;
use crate::bundle::partial::{self, copy_range, persist, Kind, PartInfo, PartialHead, Scanned};
use crate::bundle::safepath::SafePath;
use crate::bundle::verify::{self, VerifyError, VerifyOptions};
use crate::oci::digest::Digest;
use crate::oci::document::{self, Document};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a split or a join failed.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{message}")]
    Set { message: String },
    #[error("{part} is damaged: {source}; nothing was written")]
    Damaged { part: PathBuf, source: VerifyError },
    #[error("--max-part-size {max}: every part needs about {needed} bytes for its head and the image manifests it carries; give a larger size")]
    TooSmall { max: u64, needed: u64 },
}

impl SplitError {
    /// 1 for a finding (a part that fails its checks, an incomplete set), 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            SplitError::Verify(e) => e.exit_code(),
            SplitError::Set { .. } | SplitError::Damaged { .. } => 1,
            _ => 2,
        }
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> SplitError + '_ {
    move |source| SplitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One part written.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartWritten {
    pub path: PathBuf,
    pub bytes: u64,
    pub index: u32,
    pub files: usize,
}

/// What `split` wrote.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitReport {
    pub parts: Vec<PartWritten>,
    pub manifest_digest: Digest,
    /// Blobs larger than a part can be, each in an oversized part of its own.
    pub notes: Vec<String>,
}

/// Parses a size: a whole number of bytes with an optional unit, `K`/`KB`, `M`/`MB`, `G`/`GB`,
/// `T`/`TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size: expected a number of bytes, e.g. 300MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000_u64.pow(2),
        "g" | "gb" => 1000_u64.pow(3),
        "t" | "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}`; use K, M, G, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("`{s}` is not a usable size"))
}

/// The file name of part `index` of `count` of the release `root` (`NAME-VERSION`).
pub fn part_name(root: &str, index: u32, count: u32) -> String {
    format!("{root}.part{index}-of-{count}.tar.gz")
}

/// The image manifests and indexes of a bundle, and `images/index.json`: what every part
/// carries.
fn documents(scanned: &Scanned) -> Result<BTreeSet<SafePath>, SplitError> {
    let mut out = BTreeSet::new();
    let index_path = SafePath::new("images/index.json").expect("a safe path");
    let Some(index) = scanned.small.get(&index_path) else {
        return Ok(out);
    };
    out.insert(index_path);
    let bad = |detail: String| SplitError::Input {
        path: scanned.path.clone(),
        message: detail,
    };
    let index = document::read_layout_index(index).map_err(|e| bad(e.to_string()))?;
    let mut todo: Vec<(Digest, String)> = index
        .manifests()
        .iter()
        .filter_map(|d| Some((document::digest_of(d)?, d.media_type().to_string())))
        .collect();
    while let Some((digest, media_type)) = todo.pop() {
        let path =
            SafePath::new(&format!("images/blobs/sha256/{}", digest.hex())).expect("a safe path");
        if out.contains(&path) {
            continue;
        }
        let bytes = scanned
            .small
            .get(&path)
            .ok_or_else(|| bad(format!("image document {digest} is not in the bundle")))?;
        let (_, doc) =
            Document::parse(bytes, Some(&media_type)).map_err(|e| bad(format!("{digest}: {e}")))?;
        todo.extend(
            doc.manifests()
                .iter()
                .filter_map(|d| Some((document::digest_of(d)?, d.media_type().to_string()))),
        );
        out.insert(path);
    }
    Ok(out)
}

/// Bytes every part may need besides its run of the release: a head listing every file, a
/// member with every image document, and the end-of-archive member (an upper bound, plus
/// 1 KiB for the part fields).
fn reserve(
    scanned: &Scanned,
    release: &partial::PartialManifest,
    docs: &BTreeSet<SafePath>,
) -> io::Result<u64> {
    let root = &scanned.head.root;
    let mut all = release.clone();
    all.files = scanned.head.manifest.files.clone();
    let json = serde_json::to_vec_pretty(&all).map_err(io::Error::other)?;
    let head = stored_entry_len(&format!("{root}/ferry.json"), json.len() as u64 + 1024);
    let mut w = TarGzWriter::new(Vec::new(), scanned.head.mtime);
    for p in docs {
        let data = &scanned.small[p];
        w.append(
            &format!("{root}/{p}"),
            0o644,
            data.len() as u64,
            Packing::Compress,
            &data[..],
        )?;
    }
    let documents = w.into_output()?.len() as u64;
    let end = end_of_archive(scanned.head.mtime)?.len() as u64;
    Ok(head + documents + end)
}

/// A run of the release's members that becomes one part.
struct Run {
    at: u64,
    end: u64,
    files: Vec<crate::bundle::manifest::FileEntry>,
}

/// Cuts the complete bundle `scanned` into parts of at most `max` bytes in `dir`.
pub fn split(scanned: &Scanned, max: u64, dir: &Path) -> Result<SplitReport, SplitError> {
    let root = scanned.head.root.clone();
    let docs = documents(scanned)?;
    let release = partial::release_of(scanned);
    let reserve = reserve(scanned, &release, &docs).map_err(io_err(&scanned.path))?;
    if reserve >= max {
        return Err(SplitError::TooSmall {
            max,
            needed: reserve,
        });
    }
    let budget = max - reserve;
    let mut runs: Vec<Run> = Vec::new();
    let mut notes = Vec::new();
    for (start, end, entries) in scanned.members() {
        let fits = runs.last().is_some_and(|r| end - r.at <= budget);
        if !fits {
            runs.push(Run {
                at: start,
                end,
                files: Vec::new(),
            });
        }
        let run = runs.last_mut().expect("a run");
        run.end = end;
        run.files.extend(entries.iter().map(|e| e.file.clone()));
        if end - start > budget {
            notes.push(format!(
                "`{}` ({} bytes) does not fit a part of {max} bytes: it gets a part of its own, larger than the rest",
                entries[0].file.path, entries[0].file.size
            ));
        }
    }
    let count = runs.len() as u32;
    let eoa = end_of_archive(scanned.head.mtime).map_err(io_err(dir))?;
    let mut parts = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let index = i as u32 + 1;
        let held: BTreeSet<&str> = run.files.iter().map(|f| f.path.as_str()).collect();
        let extras: Vec<&SafePath> = docs.iter().filter(|p| !held.contains(p.as_str())).collect();
        let mut files = run.files.clone();
        let listed = &scanned.head.manifest.files;
        files.extend(
            extras
                .iter()
                .filter_map(|p| listed.iter().find(|f| f.path == **p).cloned()),
        );
        files.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        let mut manifest = release.clone();
        manifest.kind = Kind::Part;
        manifest.files = files;
        manifest.part = Some(PartInfo {
            index,
            count,
            at: run.at,
            length: run.end - run.at,
        });
        let path = dir.join(part_name(&root, index, count));
        let last = run.end == scanned.size;
        let bytes = partial::write_file(&path, &root, scanned.head.mtime, &manifest, |out| {
            if !extras.is_empty() {
                let mut w = TarGzWriter::new(&mut *out, scanned.head.mtime);
                for p in &extras {
                    let data = &scanned.small[*p];
                    let mode = listed
                        .iter()
                        .find(|f| f.path == **p)
                        .map_or(0o644, |f| f.mode.bits());
                    w.append(
                        &format!("{root}/{p}"),
                        mode,
                        data.len() as u64,
                        Packing::Compress,
                        &data[..],
                    )?;
                }
                w.into_output()?;
            }
            copy_range(&scanned.path, run.at, run.end - run.at, out)?;
            if !last {
                out.write_all(&eoa)?;
            }
            Ok(())
        })
        .map_err(io_err(&path))?;
        if bytes > max && run.end - run.at <= budget {
            return Err(SplitError::Input {
                path: path.clone(),
                message: format!("{bytes} bytes, over --max-part-size {max}: a bug in ferry's estimate of a part's head"),
            });
        }
        parts.push(PartWritten {
            path,
            bytes,
            index,
            files: manifest.files.len(),
        });
    }
    Ok(SplitReport {
        parts,
        manifest_digest: release.release.manifest_digest,
        notes,
    })
}

/// The end-of-archive member a part that does not end the release closes with.
fn end_of_archive(mtime: u64) -> io::Result<Vec<u8>> {
    TarGzWriter::new(Vec::new(), mtime).finish()
}

/// What `join` wrote.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinReport {
    pub output: PathBuf,
    pub bytes: u64,
    pub parts: usize,
    pub manifest_digest: Digest,
    pub evidence: verify::Evidence,
}

/// Checks that `heads` are every part of one release, and orders them.
fn complete_set(
    heads: &[(PathBuf, PartialHead)],
) -> Result<Vec<&(PathBuf, PartialHead)>, SplitError> {
    let first = &heads[0].1;
    let mut by_index: BTreeMap<u32, &(PathBuf, PartialHead)> = BTreeMap::new();
    let count = first.manifest.part.as_ref().map_or(0, |p| p.count);
    for h in heads {
        let Some(part) = &h.1.manifest.part else {
            return Err(SplitError::Input {
                path: h.0.clone(),
                message: "a delta bundle, not a part: `ferry merge` it with its base".into(),
            });
        };
        if h.1.manifest.release.manifest_digest != first.manifest.release.manifest_digest
            || part.count != count
        {
            return Err(SplitError::Set {
                message: format!(
                    "{} is a part of {} {} (manifest {}), {} of {} {} (manifest {}): parts of different releases",
                    h.0.display(),
                    h.1.release.name,
                    h.1.release.version,
                    h.1.manifest.release.manifest_digest,
                    heads[0].0.display(),
                    first.release.name,
                    first.release.version,
                    first.manifest.release.manifest_digest
                ),
            });
        }
        if let Some(other) = by_index.insert(part.index, h) {
            return Err(SplitError::Set {
                message: format!(
                    "{} and {} are both part {} of {count}",
                    other.0.display(),
                    h.0.display(),
                    part.index
                ),
            });
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| part_name(&first.root, i, count))
        .collect();
    if !missing.is_empty() {
        return Err(SplitError::Set {
            message: format!(
                "{} of the {count} parts of {} {} are missing: {}",
                missing.len(),
                first.release.name,
                first.release.version,
                missing.join(", ")
            ),
        });
    }
    Ok(by_index.into_values().collect())
}

/// One part's run: `len` bytes at byte `from` of the part file, release bytes `[at, at + len)`.
struct Carried<'p> {
    path: &'p PathBuf,
    from: u64,
    at: u64,
    len: u64,
}

/// Where each ordered part's run is, checking that the runs tile the release's body.
fn carried<'p>(
    ordered: &[&'p (PathBuf, PartialHead)],
    eoa: u64,
) -> Result<Vec<Carried<'p>>, SplitError> {
    let release = &ordered[0].1.manifest.release;
    let mut pos = release.head_size;
    let mut runs = Vec::new();
    for (path, head) in ordered {
        let part = head.manifest.part.as_ref().expect("checked: a part");
        if part.at != pos {
            return Err(SplitError::Set {
                message: format!(
                    "{} starts at byte {} of the release, but the parts before it end at {pos}",
                    path.display(),
                    part.at
                ),
            });
        }
        let len = std::fs::metadata(path).map_err(io_err(path))?.len();
        let last = part.at + part.length == release.size;
        let tail = if last { 0 } else { eoa };
        let from = len
            .checked_sub(part.length + tail)
            .ok_or_else(|| SplitError::Input {
                path: path.clone(),
                message: "shorter than the bytes it says it carries".into(),
            })?;
        runs.push(Carried {
            path,
            from,
            at: part.at,
            len: part.length,
        });
        pos += part.length;
    }
    if pos != release.size {
        return Err(SplitError::Set {
            message: format!(
                "the parts end at byte {pos} of the release, which has {} bytes",
                release.size
            ),
        });
    }
    Ok(runs)
}

/// Yields the release's bytes in order, the rebuilt head and then each part's run, and
/// writes every byte it yields to the joined file: each part is read once, and what is
/// written is what the verifier reading through this checks.
struct JoinReader<'a> {
    sources: Vec<(io::Take<File>, &'a PathBuf)>,
    head: io::Cursor<Vec<u8>>,
    current: usize,
    out: &'a File,
    /// Release bytes yielded so far.
    pos: u64,
    /// Why writing the joined file failed, if it did.
    failed: Option<io::Error>,
}

impl Read for JoinReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            let n = self.head.read(buf)?;
            if n > 0 {
                break n;
            }
            let Some((src, path)) = self.sources.get_mut(self.current) else {
                return Ok(0);
            };
            let n = src.read(buf)?;
            if n > 0 {
                break n;
            }
            if src.limit() > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ends {} bytes early", path.display(), src.limit()),
                ));
            }
            self.current += 1;
        };
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.failed = Some(e);
            return Err(io::Error::other("the joined file could not be written"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// How far the verifier reads ahead of what it has checked (its gzip reader's buffer, with
/// room to spare): the part whose bytes failed was read at most this far back.
const READ_AHEAD: u64 = 4 << 20;

/// The part to name when the joined stream failed its check at release byte `pos`: the part
/// whose run holds the entry named in the error, or one whose run was read just before the
/// failure, once that part fails its own check. Errors about the release as a whole (its
/// head, its signature, the limits) are no part's.
fn damaged(
    parts: &[VerifyOptions],
    ordered: &[&(PathBuf, PartialHead)],
    runs: &[Carried],
    pos: u64,
    e: VerifyError,
) -> SplitError {
    if !about_bytes(&e) {
        return SplitError::Verify(e);
    }
    let text = e.to_string();
    // An entry listed by one part only is in its run; image documents are listed by all.
    let mut candidates: Vec<&PathBuf> = ordered
        .iter()
        .filter(|(_, h)| {
            h.manifest.files.iter().any(|f| {
                let name = format!("{}/{}", h.root, f.path);
                text.contains(&format!("`{name}`")) || text.starts_with(&format!("{name}: "))
            })
        })
        .map(|(path, _)| path)
        .collect();
    if candidates.len() > 1 {
        candidates.clear();
    }
    let window = pos.saturating_sub(READ_AHEAD);
    candidates.extend(
        runs.iter()
            .rev()
            .filter(|r| r.at < pos && r.at + r.len > window)
            .map(|r| r.path),
    );
    let mut tried = BTreeSet::new();
    for path in candidates {
        let Some(opts) = parts.iter().find(|o| &o.input == path) else {
            continue;
        };
        if !tried.insert(path) {
            continue;
        }
        if let Err(own) = partial::verify(opts) {
            if about_bytes(&own) {
                return SplitError::Damaged {
                    part: path.clone(),
                    source: own,
                };
            }
        }
    }
    SplitError::Verify(e)
}

/// Whether a verification error is about the bytes read (a part's damage can cause it),
/// rather than about the release's head, its signature or the limits.
fn about_bytes(e: &VerifyError) -> bool {
    !matches!(
        e,
        VerifyError::Open { .. }
            | VerifyError::NotABundle { .. }
            | VerifyError::Manifest(_)
            | VerifyError::Head(_)
            | VerifyError::Images(_)
            | VerifyError::Limit(_)
            | VerifyError::Io { .. }
    )
}

/// Joins every part of a release, in any order, into `output`: the release file byte for
/// byte. The release is verified in full while it is written, in one read of each part:
/// every byte written is a byte the verifier checked against the signed release manifest,
/// and the file is renamed into place only once that check passed.
pub fn join(parts: &[VerifyOptions], output: &Path) -> Result<JoinReport, SplitError> {
    if parts.is_empty() {
        return Err(SplitError::Set {
            message: "no parts given".into(),
        });
    }
    // Only the heads are read here: the joined stream is verified in full against the signed
    // release manifest below, which proves every byte every part gave.
    let mut heads = Vec::new();
    for p in parts {
        let head = partial::peek(&p.input)?.ok_or_else(|| SplitError::Input {
            path: p.input.clone(),
            message: "not a part of a split bundle".into(),
        })?;
        heads.push((p.input.clone(), head));
    }
    let ordered = complete_set(&heads)?;
    let first = &ordered[0].1;
    let eoa = end_of_archive(first.mtime).map_err(io_err(output))?;
    let runs = carried(&ordered, eoa.len() as u64)?;
    let mut sources = Vec::new();
    for r in &runs {
        let mut f = File::open(r.path).map_err(io_err(r.path))?;
        f.seek(SeekFrom::Start(r.from)).map_err(io_err(r.path))?;
        sources.push((f.take(r.len), r.path));
    }
    let tmp = temp_file_beside(output, ".ferry-join-").map_err(|(d, e)| io_err(&d)(e))?;
    let mut reader = JoinReader {
        sources,
        head: io::Cursor::new(first.release_head().map_err(io_err(output))?),
        current: 0,
        out: tmp.as_file(),
        pos: 0,
        failed: None,
    };
    let release = &first.manifest.release;
    let opts = VerifyOptions {
        input: output.to_path_buf(),
        ..parts[0].clone()
    };
    let checked = verify::stream_reader(&mut reader, release.size, &opts, None);
    if let Some(source) = reader.failed.take() {
        return Err(SplitError::Io {
            path: output.to_path_buf(),
            source,
        });
    }
    let check = checked.map_err(|e| damaged(parts, &ordered, &runs, reader.pos, e))?;
    if reader.pos != release.size {
        return Err(SplitError::Set {
            message: format!(
                "the parts gave {} bytes; the release has {}",
                reader.pos, release.size
            ),
        });
    }
    if check.manifest_digest != release.manifest_digest {
        return Err(SplitError::Set {
            message: "the joined bundle's manifest is not the release's".into(),
        });
    }
    let bytes = persist(tmp, output).map_err(io_err(output))?;
    Ok(JoinReport {
        output: output.to_path_buf(),
        bytes,
        parts: ordered.len(),
        manifest_digest: release.manifest_digest.clone(),
        evidence: verify::Evidence {
            bundle: output.to_path_buf(),
            ..check
        },
    })
}

/// The parts of `head`'s set found beside `part` (same folder, same release), and the
/// indexes missing there.
pub fn siblings(part: &Path, head: &PartialHead) -> (Vec<(u32, PathBuf)>, Vec<u32>) {
    let Some(info) = &head.manifest.part else {
        return (Vec::new(), Vec::new());
    };
    let dir = crate::bundle::build::folder_of(part);
    let mut found: BTreeMap<u32, PathBuf> = BTreeMap::new();
    found.insert(info.index, part.to_path_buf());
    if let Ok(read) = std::fs::read_dir(dir) {
        for e in read.filter_map(Result::ok) {
            let p = e.path();
            let is_tgz = p.to_str().is_some_and(|s| s.ends_with(".tar.gz"));
            if !is_tgz || p == part {
                continue;
            }
            if let Ok(Some(h)) = partial::peek(&p) {
                let same =
                    h.manifest.release.manifest_digest == head.manifest.release.manifest_digest;
                if let (true, Some(i)) = (same, &h.manifest.part) {
                    found.entry(i.index).or_insert(p);
                }
            }
        }
    }
    let missing = (1..=info.count)
        .filter(|i| !found.contains_key(i))
        .collect();
    (found.into_iter().collect(), missing)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_with_decimal_and_binary_units() {
        for (text, want) in [
            ("300MiB", 300 << 20),
            ("1G", 1_000_000_000),
            ("4gib", 4 << 30),
            ("700 MB", 700_000_000),
            ("1234", 1234),
            ("64K", 64_000),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in ["", "0", "MiB", "12 parsecs", "-3M", "99999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}

//! The blobs to push, wherever they are: `IndexedSource` maps each digest to its place.
//!
//! A `.tar.gz` bundle is verified in one streaming pass that also indexes it
//! (`index_bundle`): blobs in stored gzip members are later read straight from the bundle
//! file by `StoredReader`, small blobs are kept in memory, and large blobs that were
//! deflated (uncompressed layers from `docker save`) are spooled to a temporary folder.
//! Every blob is hashed again while it is pushed, so a byte changed after the verifying
//! pass aborts the upload.

use crate::bundle::archive::{
    parse_stored_frame, stored_block_left, stored_position, MemberInfo, STORED_FRAME,
};
use crate::bundle::manifest::{blob_hex, FileEntry, Manifest};
use crate::bundle::partial::{self, PartialEvidence, PartialHead};
use crate::bundle::source::BlobLocation;
use crate::bundle::verify::{self, EntryPlace, Evidence, Sink, VerifyError, VerifyOptions};
use crate::oci::digest::Digest;
use crate::oci::document::MAX_JSON;
use crate::registry::push::BlobSource;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of small blobs kept in memory while indexing a bundle, by default.
pub const MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

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
#[derive(Default)]
pub struct IndexedSource {
    blobs: HashMap<Digest, (u64, Loc)>,
    /// Keeps spooled blobs alive until the push is over.
    _spool: Option<tempfile::TempDir>,
}

impl IndexedSource {
    /// Adds a blob at a known location (a layout folder, an archive member, memory).
    pub fn insert(&mut self, digest: Digest, size: u64, location: BlobLocation) {
        self.blobs.insert(digest, (size, Loc::Located(location)));
    }

    /// The digests of every blob, in no particular order.
    pub fn digests(&self) -> impl Iterator<Item = &Digest> {
        self.blobs.keys()
    }

    /// Whether a blob is read in place from a stored member of the bundle file.
    pub fn is_in_place(&self, digest: &Digest) -> bool {
        matches!(self.blobs.get(digest), Some((_, Loc::Stored { .. })))
    }

    /// Opens `len` bytes of a blob from byte `start` on, reading only those bytes (for
    /// `ferry serve`'s Range responses). The caller checks that the range is within the blob.
    pub fn open_range(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> io::Result<Box<dyn Read + Send>> {
        let (_, loc) = self.get(digest)?;
        let seek_file = |path: &Path, at: u64| -> io::Result<Box<dyn Read + Send>> {
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(at))?;
            Ok(Box::new(BufReader::with_capacity(1 << 16, f).take(len)))
        };
        match loc {
            Loc::Located(BlobLocation::File(p)) | Loc::Spooled(p) => seek_file(p, start),
            Loc::Located(BlobLocation::Member { archive, offset }) => {
                seek_file(archive, offset + start)
            }
            Loc::Located(BlobLocation::Memory(b)) => {
                let from = usize::try_from(start).map_err(io::Error::other)?;
                let to = usize::try_from(start + len).map_err(io::Error::other)?;
                let part = b.get(from..to).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "range outside the blob")
                })?;
                Ok(Box::new(io::Cursor::new(part.to_vec())))
            }
            Loc::Located(BlobLocation::Remote(_)) => Err(io::Error::other(
                "a blob fetched from a registry cannot be read in part",
            )),
            Loc::Stored {
                file,
                member,
                data_offset,
            } => Ok(Box::new(StoredReader::open(
                file,
                *member,
                data_offset + start,
                len,
            )?)),
        }
    }

    /// The file a blob is read from when it is not in memory and not a private spool copy:
    /// the bundle file for stored members, the blob file of an extracted bundle. A server
    /// checks that this file is unchanged before answering from it without hashing.
    pub fn backing_file(&self, digest: &Digest) -> Option<&Path> {
        match &self.blobs.get(digest)?.1 {
            Loc::Stored { file, .. } => Some(file.as_path()),
            Loc::Located(BlobLocation::File(p)) => Some(p),
            Loc::Located(BlobLocation::Member { archive, .. }) => Some(archive.as_path()),
            _ => None,
        }
    }

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

/// Reads `size` bytes of the tar stream that lie inside one stored gzip member, straight
/// from the bundle file, checking every block frame it crosses. The positions come from
/// `archive::stored_position`.
pub struct StoredReader {
    file: BufReader<File>,
    /// Bytes left in the current block.
    in_block: usize,
    left: u64,
}

impl StoredReader {
    /// `data_offset` is the position of the first byte in the decompressed tar stream;
    /// `member` the stored member it is in.
    pub fn open(
        path: &Path,
        member: MemberInfo,
        data_offset: u64,
        size: u64,
    ) -> io::Result<StoredReader> {
        if !member.stored {
            return Err(io::Error::other("the blob is not in a stored member"));
        }
        let d = data_offset
            .checked_sub(member.decompressed_offset)
            .ok_or_else(|| io::Error::other("the blob starts before its member"))?;
        let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
        file.seek(SeekFrom::Start(stored_position(
            member.compressed_offset,
            d,
        )))?;
        Ok(StoredReader {
            file,
            in_block: stored_block_left(d),
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
            let mut frame = [0u8; STORED_FRAME];
            self.file.read_exact(&mut frame)?;
            self.in_block = parse_stored_frame(frame).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a stored deflate block where one was expected",
                )
            })? as usize;
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
    /// Read blobs in stored members in place even when they are small (`ferry serve`).
    in_place_first: bool,
    current: Option<(Digest, Vec<u8>)>,
}

impl IndexSink {
    /// Opens the bundle `opts` names, with a sink that indexes its blobs within
    /// `memory_budget` bytes of small blobs held in memory.
    fn open_for(
        opts: &VerifyOptions,
        memory_budget: u64,
        in_place_first: bool,
    ) -> Result<(File, IndexSink), VerifyError> {
        let file = File::open(&opts.input).map_err(|source| VerifyError::Open {
            path: opts.input.clone(),
            source,
        })?;
        let sink = IndexSink {
            file: Arc::new(opts.input.clone()),
            manifest: None,
            blobs: HashMap::new(),
            spool: None,
            memory_left: memory_budget,
            in_place_first,
            current: None,
        };
        Ok((file, sink))
    }
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
        let stored = place.member.is_some_and(|m| m.stored);
        if entry.size <= MAX_JSON
            && entry.size <= self.memory_left
            && !(stored && self.in_place_first)
        {
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

/// A verified and indexed bundle file.
pub struct IndexedBundle {
    pub source: IndexedSource,
    pub manifest: Manifest,
    pub evidence: Evidence,
}

/// Verifies the bundle file `opts.input` in one pass and indexes its blobs: up to
/// `memory_budget` bytes of blobs of at most 4 MiB are kept in memory, the others are read
/// in place when they are in a stored member and spooled otherwise.
pub fn index_bundle(
    opts: &VerifyOptions,
    memory_budget: u64,
) -> Result<IndexedBundle, VerifyError> {
    index(opts, memory_budget, false)
}

/// As `index_bundle`, but every blob in a stored member is read in place, however small, so
/// that only deflated blobs (manifests, configs) take memory: what a long-running server
/// wants.
pub fn index_bundle_in_place(
    opts: &VerifyOptions,
    memory_budget: u64,
) -> Result<IndexedBundle, VerifyError> {
    index(opts, memory_budget, true)
}

fn index(
    opts: &VerifyOptions,
    memory_budget: u64,
    in_place_first: bool,
) -> Result<IndexedBundle, VerifyError> {
    let (file, mut sink) = IndexSink::open_for(opts, memory_budget, in_place_first)?;
    let evidence = verify::stream(file, opts, Some(&mut sink))?;
    let manifest = sink
        .manifest
        .take()
        .expect("a verified bundle has a manifest");
    Ok(IndexedBundle {
        source: IndexedSource {
            blobs: sink.blobs,
            _spool: sink.spool,
        },
        manifest,
        evidence,
    })
}

/// Verifies a delta or a part on its own (`bundle::partial`) and indexes the blobs it
/// holds, as `index_bundle` does for a complete bundle.
pub fn index_partial(
    opts: &VerifyOptions,
    memory_budget: u64,
) -> Result<(IndexedSource, PartialHead, PartialEvidence), VerifyError> {
    let (file, mut sink) = IndexSink::open_for(opts, memory_budget, false)?;
    let (head, evidence) = partial::stream(file, opts, Some(&mut sink))?;
    let source = IndexedSource {
        blobs: sink.blobs,
        _spool: sink.spool,
    };
    Ok((source, head, evidence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::archive::{Packing, TarGzWriter, STORED_BLOCK};

    /// Deterministic incompressible bytes.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A file with a compressed member, then one stored entry of `data` (its data 512 bytes
    /// into the stored member, after its tar header).
    fn bundle_with(data: &[u8]) -> (tempfile::NamedTempFile, MemberInfo) {
        let mut w = TarGzWriter::new(Vec::new(), 0);
        w.append("r/a.txt", 0o644, 5, Packing::Compress, &b"hello"[..])
            .unwrap();
        w.end_member().unwrap();
        let before = w.into_output().unwrap();
        let member = MemberInfo {
            compressed_offset: before.len() as u64,
            decompressed_offset: 1024,
            stored: true,
        };
        let mut w = TarGzWriter::new(before, 0);
        w.append("r/b.gz", 0o644, data.len() as u64, Packing::Store, data)
            .unwrap();
        let bytes = w.finish().unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        (f, member)
    }

    #[test]
    fn stored_reads_start_anywhere_and_cross_blocks() {
        let data = noise(3 * STORED_BLOCK + 1234);
        let (file, member) = bundle_with(&data);
        let block = STORED_BLOCK as u64;
        // Offsets within the entry's data; the data starts 512 bytes into the member.
        let starts = [
            0,
            1,
            block - 512 - 1,
            block - 512,
            block - 511,
            block,
            2 * block - 512 + 7,
            data.len() as u64 - 1,
        ];
        for start in starts {
            for len in [1u64, 2, 700, block + 3, data.len() as u64 - start] {
                let len = len.min(data.len() as u64 - start);
                for chunk in [1usize, 4093, 1 << 20] {
                    let mut r = StoredReader::open(
                        file.path(),
                        member,
                        member.decompressed_offset + 512 + start,
                        len,
                    )
                    .unwrap();
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; chunk];
                    loop {
                        let n = r.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let want = &data[start as usize..(start + len) as usize];
                    assert!(
                        got == want,
                        "start {start}, length {len}, chunk {chunk}: bytes differ"
                    );
                }
            }
        }
    }

    #[test]
    fn a_broken_frame_is_refused() {
        let data = noise(2 * STORED_BLOCK);
        let (file, member) = bundle_with(&data);
        let mut bytes = std::fs::read(file.path()).unwrap();
        // The second block's frame: NLEN no longer the complement of LEN.
        let frame =
            stored_position(member.compressed_offset, STORED_BLOCK as u64) as usize - STORED_FRAME;
        bytes[frame + 3] ^= 1;
        std::fs::write(file.path(), &bytes).unwrap();
        let mut r = StoredReader::open(
            file.path(),
            member,
            member.decompressed_offset + 512,
            data.len() as u64,
        )
        .unwrap();
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("stored deflate block"), "{err}");
    }
}

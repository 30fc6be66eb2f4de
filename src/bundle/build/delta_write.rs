//! `ferry build --base`: writing a delta without reading the blobs its base holds.
//!
//! A dry run lays the release out first: the stored member of every blob takes a length that
//! follows from its path and size alone (bundle-format.md 4.4 rule 3), so only the compressed
//! members have to be written to be measured. They go to a spool file, with where each
//! begins in the release. That gives the release's size and the offset of every member the
//! delta leaves out, so the delta's head can be written first; the write then copies the
//! spooled members, writes the carried blobs, and skips the base's blobs, never opening them
//! beyond their first bytes (which say how a local blob is packed).

use super::{io_err, read_up_to, temp_file_beside, write_entry, BuildError, BuildOptions, Planned};
use crate::bundle::archive::{stored_entry_len, Packing, TarGzWriter};
use crate::bundle::delta::BaseSet;
use crate::bundle::manifest::blob_hex;
use crate::bundle::partial::Omitted;
use crate::bundle::safepath::SafePath;
use crate::bundle::source::BlobLocation;
use crate::oci::digest::{BackgroundHasher, Digest};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What becomes of one entry of the release in the delta.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// A carried stored member, starting at this release offset.
    Stored { at: u64 },
    /// A blob the base holds: its member (this long) is left out.
    Omitted { len: u64 },
    /// Part of a compressed member, spooled by the dry run.
    InRun,
}

/// The release laid out by the dry run, and how far the delta's write has come.
pub(super) struct DeltaPlan {
    places: Vec<Place>,
    spool: tempfile::NamedTempFile,
    /// The spooled bytes: (release offset, spool offset, length), in release order.
    segments: Vec<(u64, u64, u64)>,
    /// Segments copied so far.
    copied: usize,
    /// Bytes of the release file and of its head member.
    pub(super) size: u64,
    release_head: u64,
    /// Bytes of the delta's own head member, once written.
    pub(super) delta_head: u64,
    /// Bytes of the left-out members passed so far.
    skipped: u64,
    pub(super) omitted: Vec<Omitted>,
}

/// The dry run: lays out the release whose head member is `release_head` bytes, spooling its
/// compressed members (their entries checked against their digests as they are written) and
/// measuring its stored ones.
pub(super) fn dry_run(
    opts: &BuildOptions,
    root: &str,
    release_head: u64,
    entries: &[(SafePath, Planned)],
    hashed: &[(Digest, u64)],
    base: &BaseSet,
) -> Result<DeltaPlan, BuildError> {
    let spool =
        temp_file_beside(&opts.output, ".ferry-spool-").map_err(|(dir, e)| io_err(&dir)(e))?;
    let write_err = io_err(spool.path());
    let file = spool.as_file().try_clone().map_err(&write_err)?;
    let out = Spool {
        out: BufWriter::new(file),
        release: release_head,
        segments: Vec::new(),
    };
    let mut w = TarGzWriter::new(out, opts.source_date_epoch);
    // Compressed entries are small documents, as a rule: small buffers.
    let hasher = BackgroundHasher::new(2, 256 * 1024);
    let bar = indicatif::ProgressBar::hidden();
    let mut places = Vec::with_capacity(entries.len());
    let mut omitted = Vec::new();
    for ((path, planned), (digest, _)) in entries.iter().zip(hashed) {
        let name = format!("{root}/{path}");
        let packing = packing_of(planned).map_err(io_err(Path::new(&planned.origin)))?;
        if packing == Packing::Compress {
            write_entry(&mut w, &name, planned, digest, &hasher, &bar, &write_err)?;
            places.push(Place::InRun);
            continue;
        }
        let len = stored_entry_len(&name, planned.size);
        let at = w.reserve_member(len).map_err(&write_err)?;
        let held = blob_hex(path).is_some() && base.blobs.get(digest) == Some(&planned.size);
        if held {
            omitted.push(Omitted {
                digest: digest.clone(),
                size: planned.size,
                at,
            });
            places.push(Place::Omitted { len });
        } else {
            places.push(Place::Stored { at });
        }
    }
    let mut out = w.finish().map_err(&write_err)?;
    out.out.flush().map_err(&write_err)?;
    Ok(DeltaPlan {
        places,
        segments: out.segments,
        copied: 0,
        size: out.release,
        release_head,
        delta_head: 0,
        skipped: 0,
        omitted,
        spool,
    })
}

/// How a planned file will be packed: from the media type for a registry blob, else from
/// its first bytes (as the write decides).
fn packing_of(planned: &Planned) -> io::Result<Packing> {
    Ok(match &planned.location {
        BlobLocation::Remote(r) => r.packing(),
        local => {
            let mut head = [0u8; 8];
            let n = read_up_to(&mut local.open(planned.size)?, &mut head)?;
            Packing::sniff(&head[..n])
        }
    })
}

impl DeltaPlan {
    /// Bytes of the entries the write reads: the carried stored ones.
    pub(super) fn carried(&self, entries: &[(SafePath, Planned)]) -> u64 {
        self.places
            .iter()
            .zip(entries)
            .filter(|(p, _)| matches!(p, Place::Stored { .. }))
            .map(|(_, (_, e))| e.size)
            .sum()
    }

    /// How many carried stored members there are.
    pub(super) fn stored(&self) -> usize {
        self.places
            .iter()
            .filter(|p| matches!(p, Place::Stored { .. }))
            .count()
    }

    /// Before entry `i` is written: copies the spooled members in front of it into `w`, and
    /// says whether the entry is written (a carried stored member) or not (left out, or
    /// already in a spooled member).
    pub(super) fn writes<W: Write + Seek>(
        &mut self,
        i: usize,
        w: &mut TarGzWriter<W>,
    ) -> io::Result<bool> {
        match self.places[i] {
            Place::InRun => Ok(false),
            Place::Omitted { len } => {
                self.skipped += len;
                Ok(false)
            }
            Place::Stored { at } => {
                self.copy_spooled(at, w.raw()?)?;
                let want = self.delta_head + (at - self.release_head) - self.skipped;
                let found = w.position()?;
                if found != want {
                    return Err(io::Error::other(format!(
                        "a stored member lands at byte {found} of the delta, not at {want}: its source changed while the delta was written; build again"
                    )));
                }
                Ok(true)
            }
        }
    }

    /// After the last entry: copies the remaining spooled members (the end of the archive
    /// among them) and gives the output back.
    pub(super) fn finish<W: Write + Seek>(&mut self, mut w: TarGzWriter<W>) -> io::Result<W> {
        self.copy_spooled(u64::MAX, w.raw()?)?;
        w.into_output()
    }

    /// Copies every spooled segment that starts before release offset `before` to `out`.
    fn copy_spooled(&mut self, before: u64, out: &mut impl Write) -> io::Result<()> {
        while let Some(&(at, from, len)) = self.segments.get(self.copied) {
            if at >= before {
                break;
            }
            let mut src = File::open(self.spool.path())?;
            src.seek(SeekFrom::Start(from))?;
            let n = io::copy(&mut src.take(len), out)?;
            if n != len {
                return Err(io::Error::other("the spool file ended early"));
            }
            self.copied += 1;
        }
        Ok(())
    }

    /// Checks that the delta written to `file` has the length its layout gives.
    pub(super) fn check_written(&self, file: &tempfile::NamedTempFile) -> Result<(), BuildError> {
        let len = file
            .as_file()
            .metadata()
            .map_err(io_err(file.path()))?
            .len();
        let want = self.delta_head + (self.size - self.release_head) - self.skipped;
        if len != want {
            return Err(BuildError::Input {
                path: file.path().to_path_buf(),
                message: format!(
                    "the delta is {len} bytes, its layout gives {want}: an input changed while it was written; build again"
                ),
            });
        }
        Ok(())
    }
}

/// The dry run's output: keeps what it is given (the compressed members) in the spool file
/// and counts the room left for stored members, in release offsets.
struct Spool {
    out: BufWriter<File>,
    /// The release offset the next byte has.
    release: u64,
    segments: Vec<(u64, u64, u64)>,
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write_all(buf)?;
        let n = buf.len() as u64;
        match self.segments.last_mut() {
            Some(last) if last.0 + last.2 == self.release => last.2 += n,
            last => {
                let spooled = last.map_or(0, |l| l.1 + l.2);
                self.segments.push((self.release, spooled, n));
            }
        }
        self.release += n;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Seek for Spool {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Start(at) if at >= self.release => self.release = at,
            SeekFrom::Current(0) => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the release layout only moves forward",
                ))
            }
        }
        Ok(self.release)
    }
}

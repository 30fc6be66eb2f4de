//! The bundle's container: deterministic tar entries inside a chain of gzip members.
//!
//! A bundle is one tar stream cut into gzip members. The head member holds only
//! `ferry.json` (and `ferry.json.sig`) so that signing can replace it without touching the
//! rest. Entries whose data is already compressed go into members of stored (level 0)
//! deflate blocks; everything else is compressed at level 6. A blob's stored member holds
//! that entry alone, so its length follows from its name and size (`stored_entry_len`) and
//! blobs can be written concurrently at offsets fixed before their first byte arrives.
//!
//! Reading goes through one facility whatever the archive: `MemberReader` reads a chain of
//! gzip members (ferry's canonical headers for bundles, any RFC 1952 header for foreign
//! archives such as packaged charts), checks every CRC-32 and stops decompression bombs;
//! `TarEntries` reads the tar stream on top, turning every name into a `SafePath` and
//! enforcing the entry limits. Stored members can also be read in place: `stored_position`
//! maps a byte of a stored member's content to its position in the file.

use crate::bundle::safepath::{SafePath, UnsafePath};
use flate2::{Compression, GzBuilder};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

/// The tar block size.
pub const BLOCK: u64 = 512;
/// The deflate level used for text.
pub const TEXT_LEVEL: u32 = 6;
/// Copy buffer size for entry data.
const COPY_BUF: usize = 1024 * 1024;

/// How an entry's bytes are packed into the gzip stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Deflate at `TEXT_LEVEL`.
    Compress,
    /// Stored deflate blocks: for data that is already compressed.
    Store,
}

impl Packing {
    fn level(self) -> Compression {
        match self {
            Packing::Compress => Compression::new(TEXT_LEVEL),
            Packing::Store => Compression::new(0),
        }
    }

    /// Chooses a packing by sniffing the first bytes of the data: gzip, zstd, bzip2 and xz
    /// streams are stored, everything else is compressed.
    pub fn sniff(head: &[u8]) -> Packing {
        const MAGICS: [&[u8]; 4] = [b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ\x00"];
        if MAGICS.iter().any(|m| head.starts_with(m)) {
            Packing::Store
        } else {
            Packing::Compress
        }
    }
}

/// The 10-byte gzip member header ferry writes for a packing.
pub fn canonical_header(packing: Packing) -> [u8; 10] {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), packing.level());
    enc.write_all(b"").expect("in-memory");
    let bytes = enc.finish().expect("in-memory");
    bytes[..10].try_into().expect("gzip header is 10 bytes")
}

/// Writes tar entries into a chain of gzip members, one member per run of equal packing.
pub struct TarGzWriter<W: Write> {
    out: Option<W>,
    member: Option<(Packing, Member<W>)>,
    mtime: u64,
    buf: Vec<u8>,
}

impl<W: Write> TarGzWriter<W> {
    /// Entries get `mtime` as their modification time.
    pub fn new(out: W, mtime: u64) -> Self {
        TarGzWriter {
            out: Some(out),
            member: None,
            mtime,
            buf: Vec::new(),
        }
    }

    fn writer(&mut self, packing: Packing) -> io::Result<&mut Member<W>> {
        if self.member.as_ref().is_some_and(|(p, _)| *p != packing) {
            self.end_member()?;
        }
        if self.member.is_none() {
            let out = self.out.take().expect("writer present between members");
            let member = match packing {
                Packing::Compress => Member::Deflate(
                    GzBuilder::new()
                        .mtime(0)
                        .operating_system(255)
                        .write(out, packing.level()),
                ),
                Packing::Store => Member::Stored(StoredMember::new(out)?),
            };
            self.member = Some((packing, member));
        }
        Ok(&mut self.member.as_mut().expect("member just opened").1)
    }

    /// Closes the current gzip member, so the next entry starts a new one.
    pub fn end_member(&mut self) -> io::Result<()> {
        if let Some((_, enc)) = self.member.take() {
            self.out = Some(enc.finish()?);
        }
        Ok(())
    }

    /// Appends one regular file. `data` must yield exactly `size` bytes.
    pub fn append(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        packing: Packing,
        mut data: impl Read,
    ) -> io::Result<()> {
        let mtime = self.mtime;
        let mut buf = std::mem::take(&mut self.buf);
        // Grown as entries need it: a writer of small entries never touches a whole MiB.
        let need = size.min(COPY_BUF as u64) as usize;
        if buf.len() < need {
            buf.resize(need, 0);
        }
        let result = (|| {
            let w = self.writer(packing)?;
            write_header(w, path, mode, size, mtime)?;
            let mut left = size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = match data.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("`{path}` ended {left} bytes early: it changed while the bundle was written"),
                        ))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                w.write_all(&buf[..n])?;
                left -= n as u64;
            }
            w.write_all(&[0u8; BLOCK as usize][..padding(size) as usize])
        })();
        self.buf = buf;
        result
    }

    /// Appends one entry as a stored member of its own, closing any open member first.
    /// Such a member takes exactly `stored_entry_len(path, size)` bytes, whatever came before.
    pub fn append_own_member(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: impl Read,
    ) -> io::Result<()> {
        self.end_member()?;
        self.append(path, mode, size, Packing::Store, data)?;
        self.end_member()
    }

    /// Closes the current member and returns the output without ending the archive:
    /// for writing a head member in front of an existing body.
    pub fn into_output(mut self) -> io::Result<W> {
        self.end_member()?;
        Ok(self.out.take().expect("writer present"))
    }

    /// Writes the end-of-archive blocks, closes the last member and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let w = self.writer(Packing::Compress)?;
        w.write_all(&[0u8; 2 * BLOCK as usize])?;
        self.end_member()?;
        Ok(self.out.take().expect("writer present"))
    }
}

impl<W: Write + Seek> TarGzWriter<W> {
    /// Closes the current member and leaves `len` bytes for a member someone else writes
    /// (at the returned offset, e.g. with [`write_own_member`] through a positioned writer).
    pub fn reserve_member(&mut self, len: u64) -> io::Result<u64> {
        self.end_member()?;
        let out = self.out.as_mut().expect("writer present between members");
        let offset = out.stream_position()?;
        out.seek(SeekFrom::Start(offset + len))?;
        Ok(offset)
    }

    /// Closes the current member and gives the output, to write whole members into.
    pub fn raw(&mut self) -> io::Result<&mut W> {
        self.end_member()?;
        Ok(self.out.as_mut().expect("writer present between members"))
    }

    /// Closes the current member and returns where the next one starts.
    pub fn position(&mut self) -> io::Result<u64> {
        self.reserve_member(0)
    }
}

/// Writes one entry as a stored member of its own into `out`: the bytes
/// `TarGzWriter::append_own_member` would write there.
pub fn write_own_member<W: Write>(
    out: W,
    mtime: u64,
    path: &str,
    mode: u32,
    size: u64,
    data: impl Read,
) -> io::Result<W> {
    let mut w = TarGzWriter::new(out, mtime);
    w.append(path, mode, size, Packing::Store, data)?;
    w.into_output()
}

/// Writes one entry as a stored member of its own, the data handed over through `Write`
/// (a verifier's sink): the same bytes as [`write_own_member`].
pub struct OwnMemberWriter<W: Write> {
    member: StoredMember<W>,
    size: u64,
    written: u64,
}

impl<W: Write> OwnMemberWriter<W> {
    /// Starts the member with the entry's header.
    pub fn new(out: W, mtime: u64, path: &str, mode: u32, size: u64) -> io::Result<Self> {
        let mut member = StoredMember::new(out)?;
        write_header(&mut member, path, mode, size, mtime)?;
        Ok(OwnMemberWriter {
            member,
            size,
            written: 0,
        })
    }

    /// Pads the data, closes the member and returns the output; fails unless exactly the
    /// announced size was written.
    pub fn finish(mut self) -> io::Result<W> {
        if self.written != self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} of {} bytes of the entry were written",
                    self.written, self.size
                ),
            ));
        }
        let pad = padding(self.size) as usize;
        self.member.write_all(&[0u8; BLOCK as usize][..pad])?;
        self.member.finish()
    }
}

impl<W: Write> Write for OwnMemberWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.size {
            return Err(io::Error::other("more data than the entry's size"));
        }
        let n = self.member.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.member.flush()
    }
}

/// Bytes of the tar header(s) ferry writes in front of an entry named `path` (512, or more
/// with a PAX record for a long path).
pub fn header_len(path: &str) -> u64 {
    let mut counter = io::sink();
    let mut w = CountingWriter {
        inner: &mut counter,
        count: 0,
    };
    // Writing into a sink cannot fail; a path tar refuses outright gives 0.
    match write_header(&mut w, path, 0o644, 0, 0) {
        Ok(()) => w.count,
        Err(_) => 0,
    }
}

/// Bytes a stored member of its own takes for an entry named `path` of `size` bytes: gzip
/// header, one 5-byte frame per 65,535 bytes of tar content (at least one), the content
/// (headers, data, padding) and the 8-byte trailer.
pub fn stored_entry_len(path: &str, size: u64) -> u64 {
    let content = header_len(path) + size + padding(size);
    let blocks = content.div_ceil(STORED_BLOCK as u64).max(1);
    GZIP_HEADER + STORED_FRAME as u64 * blocks + content + 8
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A writer at a fixed position of a file shared with other writers (`pwrite`), so that
/// members at precomputed offsets can be written concurrently.
pub struct PositionedWriter<'f> {
    file: &'f std::fs::File,
    pos: u64,
}

impl<'f> PositionedWriter<'f> {
    /// Writes start at byte `pos` of `file`.
    pub fn new(file: &'f std::fs::File, pos: u64) -> Self {
        PositionedWriter { file, pos }
    }

    /// Where the next byte goes.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl Write for PositionedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One open gzip member.
enum Member<W: Write> {
    Deflate(flate2::write::GzEncoder<W>),
    Stored(StoredMember<W>),
}

impl<W: Write> Member<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Member::Deflate(enc) => enc.finish(),
            Member::Stored(s) => s.finish(),
        }
    }
}

impl<W: Write> Write for Member<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Member::Deflate(enc) => enc.write(buf),
            Member::Stored(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Member::Deflate(enc) => enc.flush(),
            Member::Stored(s) => s.flush(),
        }
    }
}

/// The largest stored deflate block.
pub const STORED_BLOCK: usize = 65_535;
/// Bytes of a gzip member header as ferry writes it.
pub const GZIP_HEADER: u64 = 10;
/// Bytes of framing in front of every stored deflate block: BFINAL/BTYPE, LEN, NLEN.
pub const STORED_FRAME: usize = 5;

/// The frame of a stored deflate block of `len` bytes.
fn stored_frame(len: u16, last: bool) -> [u8; STORED_FRAME] {
    let mut frame = [u8::from(last), 0, 0, 0, 0];
    frame[1..3].copy_from_slice(&len.to_le_bytes());
    frame[3..5].copy_from_slice(&(!len).to_le_bytes());
    frame
}

/// The data length a stored-block frame announces, or `None` when the bytes are not the
/// frame of a stored block (BTYPE other than `00`, or NLEN not the complement of LEN).
pub fn parse_stored_frame(frame: [u8; STORED_FRAME]) -> Option<u16> {
    let len = u16::from_le_bytes([frame[1], frame[2]]);
    let nlen = u16::from_le_bytes([frame[3], frame[4]]);
    (frame[0] & 0b110 == 0 && len == !nlen).then_some(len)
}

/// Where byte `d` of a stored member's decompressed content is in the file, for a member
/// whose gzip header starts at `member_offset` and whose blocks are laid out as ferry
/// writes them (full 65,535-byte blocks, each after a 5-byte frame, behind a 10-byte
/// header).
pub fn stored_position(member_offset: u64, d: u64) -> u64 {
    let block = STORED_BLOCK as u64;
    let framed = block + STORED_FRAME as u64;
    member_offset + GZIP_HEADER + framed * (d / block) + STORED_FRAME as u64 + d % block
}

/// Bytes of a stored member's content left in the block that holds byte `d`.
pub fn stored_block_left(d: u64) -> usize {
    STORED_BLOCK - (d % STORED_BLOCK as u64) as usize
}

/// A gzip member of stored deflate blocks (RFC 1951 section 3.2.4): each block is a
/// 5-byte frame and up to 65,535 bytes copied verbatim. Written directly because the
/// data is already compressed, and a deflate encoder at level 0 would still copy every
/// byte through its window.
struct StoredMember<W: Write> {
    out: W,
    block: Vec<u8>,
    crc: flate2::Crc,
}

impl<W: Write> StoredMember<W> {
    fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&canonical_header(Packing::Store))?;
        Ok(StoredMember {
            out,
            block: Vec::with_capacity(STORED_BLOCK),
            crc: flate2::Crc::new(),
        })
    }

    fn emit(&mut self, last: bool) -> io::Result<()> {
        self.out
            .write_all(&stored_frame(self.block.len() as u16, last))?;
        self.out.write_all(&self.block)?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        self.emit(true)?;
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for StoredMember<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A full block is only written once more data follows, so that the last block
        // can carry the final-block bit. Block boundaries depend only on the member's
        // bytes, never on how they were split into writes.
        if self.block.len() == STORED_BLOCK && !buf.is_empty() {
            self.emit(false)?;
        }
        if self.block.is_empty() && buf.len() > STORED_BLOCK {
            // Whole blocks straight from the caller's buffer, without a copy.
            let chunk = &buf[..STORED_BLOCK];
            self.out
                .write_all(&stored_frame(STORED_BLOCK as u16, false))?;
            self.out.write_all(chunk)?;
            self.crc.update(chunk);
            return Ok(STORED_BLOCK);
        }
        let n = buf.len().min(STORED_BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Bytes of zero padding after `size` bytes of entry data.
pub fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// Writes a ustar header for a regular file, preceded by a PAX record when the path does
/// not fit the ustar name and prefix fields.
fn write_header(
    w: &mut impl Write,
    path: &str,
    mode: u32,
    size: u64,
    mtime: u64,
) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    if h.set_path(path).is_err() {
        let record = pax_record("path", path);
        let mut x = base_header(0o644, record.len() as u64, mtime, tar::EntryType::XHeader);
        x.set_path("PaxHeader")?;
        x.set_cksum();
        w.write_all(x.as_bytes())?;
        w.write_all(&record)?;
        w.write_all(&[0u8; BLOCK as usize][..padding(record.len() as u64) as usize])?;
        // The ustar name keeps the tail of the path for readers that ignore PAX.
        let mut cut = path.len().saturating_sub(99);
        while !path.is_char_boundary(cut) {
            cut += 1;
        }
        let tail = path[cut..].trim_start_matches('/');
        h.set_path(tail)?;
    }
    let path_bytes = h.as_ustar().expect("ustar").name;
    let mut header = base_header(mode, size, mtime, tar::EntryType::Regular);
    {
        let (src, dst) = (
            h.as_ustar().expect("ustar"),
            header.as_ustar_mut().expect("ustar"),
        );
        dst.name = path_bytes;
        dst.prefix = src.prefix;
    }
    header.set_cksum();
    w.write_all(header.as_bytes())
}

fn base_header(mode: u32, size: u64, mtime: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_entry_type(kind);
    h
}

/// One PAX extended-header record: `LEN key=value\n`, where LEN counts itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// Counts bytes read through it.
pub struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R) -> Self {
        CountingReader { inner, count: 0 }
    }
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Limits on what a reader accepts from untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Decompressed bytes may exceed `max_ratio` times the compressed bytes read so far
    /// only by `ratio_slack` bytes.
    pub max_ratio: u64,
    pub ratio_slack: u64,
    /// Largest single entry.
    pub max_entry_size: u64,
    /// Largest number of entries.
    pub max_entries: u64,
    /// Largest sum of entry sizes.
    pub max_total_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ratio: 200,
            ratio_slack: 16 * 1024 * 1024,
            max_entry_size: 64 << 30,
            max_entries: 200_000,
            max_total_size: 1 << 40,
        }
    }
}

/// Why the gzip chain of a bundle is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("gzip member {member} at byte {offset} does not start with a ferry gzip header (found {found}); the file is corrupt or not a ferry bundle")]
    BadMemberHeader {
        member: u32,
        offset: u64,
        found: String,
    },
    #[error(
        "gzip member {member} at byte {offset} does not start with a gzip header (found {found})"
    )]
    NotGzip {
        member: u32,
        offset: u64,
        found: String,
    },
    #[error("the bundle ends in the middle of a gzip member header or trailer at byte {offset}: the file is truncated")]
    TruncatedHeader { offset: u64 },
    #[error("gzip member {member} is corrupt: its CRC-32 or length does not match its data")]
    BadTrailer { member: u32 },
    #[error("decompression ratio over {max_ratio}:1 after {compressed} compressed bytes ({decompressed} bytes out): refusing a decompression bomb")]
    Bomb {
        max_ratio: u64,
        compressed: u64,
        decompressed: u64,
    },
}

impl From<ContainerError> for io::Error {
    fn from(e: ContainerError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The deflate body of one member, with the running CRC-32 and length of its output.
/// The gzip framing around it is parsed here, not by flate2's gzip reader, because a
/// bundle's headers must be exactly the canonical ones and because the member boundaries
/// (where the head ends, where a stored member starts) are part of the format.
struct Decoder<R> {
    inflate: flate2::bufread::DeflateDecoder<PeekReader<R>>,
    crc: flate2::Crc,
}

/// A buffered reader that can guarantee a number of bytes are buffered (`peek`), which
/// `std::io::BufReader` cannot across a refill; it also counts the bytes it consumed.
pub struct PeekReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    consumed: u64,
}

impl<R: Read> PeekReader<R> {
    pub fn new(inner: R, capacity: usize) -> Self {
        PeekReader {
            inner,
            buf: vec![0; capacity.max(64)],
            pos: 0,
            end: 0,
            consumed: 0,
        }
    }

    /// Bytes handed out so far (the position in the underlying input).
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// Returns at least `n` buffered bytes, fewer only at the end of the input. `n` must
    /// not exceed the capacity.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.pos < n {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            while self.end < n {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(k) => self.end += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }
}

impl<R: Read> Read for PeekReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for PeekReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            loop {
                match self.inner.read(&mut self.buf) {
                    Ok(k) => {
                        self.end = k;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.pos);
        self.pos += n;
        self.consumed += n as u64;
    }
}

/// Where one gzip member starts, and whether it holds stored blocks only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    /// Byte offset of the member's gzip header in the file.
    pub compressed_offset: u64,
    /// Offset in the decompressed stream (the tar stream) where its data starts.
    pub decompressed_offset: u64,
    /// The member was written as stored blocks (its header is the stored one).
    pub stored: bool,
}

/// The members seen so far, shared with whoever reads the tar stream on top.
pub type MemberTable = std::sync::Arc<std::sync::Mutex<Vec<MemberInfo>>>;

/// Which gzip member headers a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// Only the two 10-byte headers ferry writes: a bundle.
    Canonical,
    /// Any RFC 1952 header (with a name, comment, extra field or header CRC): archives
    /// written by other tools, such as packaged Helm charts.
    Any,
}

/// The flag bits of an RFC 1952 header.
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

/// Reads a chain of gzip members as one continuous stream, checking every member's
/// CRC-32 and length, and refusing output that outgrows the input by more than the
/// limits allow.
pub struct MemberReader<R: Read> {
    table: MemberTable,
    state: Option<Decoder<R>>,
    idle: Option<PeekReader<R>>,
    accept: Headers,
    canonical: [[u8; 10]; 2],
    member: u32,
    member_offsets: Vec<u64>,
    decompressed: u64,
    limits: Limits,
}

impl<R: Read> MemberReader<R> {
    /// A reader of a bundle: every member must have one of ferry's canonical headers.
    pub fn new(inner: R, limits: Limits) -> Self {
        Self::with_headers(inner, limits, Headers::Canonical)
    }

    /// A reader of a gzip file written by another tool.
    pub fn foreign(inner: R, limits: Limits) -> Self {
        Self::with_headers(inner, limits, Headers::Any)
    }

    fn with_headers(inner: R, limits: Limits, accept: Headers) -> Self {
        MemberReader {
            state: None,
            idle: Some(PeekReader::new(inner, COPY_BUF)),
            table: MemberTable::default(),
            accept,
            canonical: [
                canonical_header(Packing::Compress),
                canonical_header(Packing::Store),
            ],
            member: 0,
            member_offsets: Vec::new(),
            decompressed: 0,
            limits,
        }
    }

    /// The member table, shared: it fills as members are read.
    pub fn table(&self) -> MemberTable {
        self.table.clone()
    }

    /// Compressed bytes consumed so far.
    pub fn compressed(&self) -> u64 {
        match (&self.state, &self.idle) {
            (Some(d), _) => d.inflate.get_ref().position(),
            (None, Some(r)) => r.position(),
            (None, None) => 0,
        }
    }

    /// Decompressed bytes produced so far.
    pub fn decompressed(&self) -> u64 {
        self.decompressed
    }

    /// Byte offsets at which each gzip member started.
    pub fn member_offsets(&self) -> &[u64] {
        &self.member_offsets
    }

    /// Number of members started so far.
    pub fn members(&self) -> u32 {
        self.member
    }

    /// Starts the next member; `false` at the clean end of the input.
    fn next_member(&mut self) -> io::Result<bool> {
        let mut r = self.idle.take().expect("idle reader between members");
        let offset = r.position();
        let head = r.peek(10)?;
        if head.is_empty() {
            self.idle = Some(r);
            return Ok(false);
        }
        if head.len() < 10 {
            return Err(ContainerError::TruncatedHeader { offset }.into());
        }
        let found = || head[..10].iter().map(|b| format!("{b:02x}")).collect();
        let stored = match self.accept {
            Headers::Canonical => {
                if !self.canonical.iter().any(|h| h[..] == head[..10]) {
                    return Err(ContainerError::BadMemberHeader {
                        member: self.member + 1,
                        offset,
                        found: found(),
                    }
                    .into());
                }
                let stored = head[..10] == self.canonical[1][..];
                r.consume(10);
                stored
            }
            Headers::Any => {
                if head[..3] != [0x1f, 0x8b, 8] || head[3] & 0xe0 != 0 {
                    return Err(ContainerError::NotGzip {
                        member: self.member + 1,
                        offset,
                        found: found(),
                    }
                    .into());
                }
                skip_header(&mut r, offset)?;
                false
            }
        };
        self.member += 1;
        self.member_offsets.push(offset);
        self.table.lock().expect("member table").push(MemberInfo {
            compressed_offset: offset,
            decompressed_offset: self.decompressed,
            stored,
        });
        self.state = Some(Decoder {
            inflate: flate2::bufread::DeflateDecoder::new(r),
            crc: flate2::Crc::new(),
        });
        Ok(true)
    }

    /// Takes back the underlying reader, positioned at the next member boundary. Only
    /// valid between members (after a read returned the end of a member's data).
    pub fn into_inner(self) -> Option<PeekReader<R>> {
        self.idle
    }
}

/// Consumes an RFC 1952 member header whose first 10 bytes are buffered and valid,
/// with its optional fields, checking the header CRC when there is one.
fn skip_header<R: Read>(r: &mut PeekReader<R>, offset: u64) -> io::Result<()> {
    let truncated = || io::Error::from(ContainerError::TruncatedHeader { offset });
    let mut header = r.peek(10)?[..10].to_vec();
    let flags = header[3];
    r.consume(10);
    if flags & FEXTRA != 0 {
        let xlen = r.peek(2)?;
        if xlen.len() < 2 {
            return Err(truncated());
        }
        let n = u16::from_le_bytes([xlen[0], xlen[1]]) as usize + 2;
        let field = r.peek(n)?;
        if field.len() < n {
            return Err(truncated());
        }
        header.extend_from_slice(&field[..n]);
        r.consume(n);
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag == 0 {
            continue;
        }
        // A zero-terminated string; at most one buffer long.
        let text = r.peek(COPY_BUF)?;
        let end = text.iter().position(|b| *b == 0).ok_or_else(truncated)?;
        header.extend_from_slice(&text[..=end]);
        r.consume(end + 1);
    }
    if flags & FHCRC != 0 {
        let crc = r.peek(2)?;
        if crc.len() < 2 {
            return Err(truncated());
        }
        let found = u16::from_le_bytes([crc[0], crc[1]]);
        let mut expected = flate2::Crc::new();
        expected.update(&header);
        if found != expected.sum() as u16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the gzip header at byte {offset} does not match its CRC"),
            ));
        }
        r.consume(2);
    }
    Ok(())
}

impl<R: Read> Read for MemberReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.state.is_none() && !self.next_member()? {
                return Ok(0);
            }
            let dec = self.state.as_mut().expect("member open");
            let n = dec.inflate.read(buf)?;
            if n > 0 {
                dec.crc.update(&buf[..n]);
                self.decompressed += n as u64;
                let compressed = self.compressed();
                let cap = compressed
                    .saturating_mul(self.limits.max_ratio)
                    .saturating_add(self.limits.ratio_slack);
                if self.decompressed > cap {
                    return Err(ContainerError::Bomb {
                        max_ratio: self.limits.max_ratio,
                        compressed,
                        decompressed: self.decompressed,
                    }
                    .into());
                }
                return Ok(n);
            }
            // The deflate stream ended: check the trailer, then go on to the next member.
            let dec = self.state.take().expect("member open");
            let mut r = dec.inflate.into_inner();
            let offset = r.position();
            let trailer = r.peek(8)?;
            if trailer.len() < 8 {
                return Err(ContainerError::TruncatedHeader { offset }.into());
            }
            let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
            let isize = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
            if crc != dec.crc.sum() || isize != dec.crc.amount() {
                return Err(ContainerError::BadTrailer {
                    member: self.member,
                }
                .into());
            }
            r.consume(8);
            self.idle = Some(r);
        }
    }
}

/// What a tar reader accepts besides the `Limits`.
#[derive(Debug, Clone, Copy)]
pub struct TarPolicy {
    pub limits: Limits,
    /// Directories, links, devices and other non-regular entries are skipped; otherwise
    /// (a bundle) they are refused.
    pub skip_non_regular: bool,
    /// A leading `./` is dropped from names (archives made with `tar -C DIR .`).
    pub strip_dot_slash: bool,
    /// Symbolic and hard links are returned (named by safe paths, like regular files)
    /// instead of being skipped or refused: `docker save` shares layers through them.
    pub links: bool,
    /// Limit messages name the command-line flags that raise them.
    pub flags: bool,
}

impl TarPolicy {
    /// A bundle: regular files with exact safe names only.
    pub fn bundle(limits: Limits) -> Self {
        TarPolicy {
            limits,
            skip_non_regular: false,
            strip_dot_slash: false,
            links: false,
            flags: true,
        }
    }

    /// An archive written by another tool: its regular files, named by safe paths.
    pub fn foreign(limits: Limits) -> Self {
        TarPolicy {
            limits,
            skip_non_regular: true,
            strip_dot_slash: true,
            links: false,
            flags: false,
        }
    }

    /// An image archive (`docker save`, `oci-archive`): a foreign archive whose links are
    /// returned too, for the reader to resolve inside the archive.
    pub fn image_archive(limits: Limits) -> Self {
        TarPolicy {
            links: true,
            ..TarPolicy::foreign(limits)
        }
    }
}

/// Why a tar entry is refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The tar or gzip stream could not be read.
    #[error(transparent)]
    Read(io::Error),
    #[error("entry `{entry}`: unsafe path: {reason}")]
    UnsafePath { entry: String, reason: UnsafePath },
    #[error("entry `{entry}` is a {kind}; only regular files are accepted")]
    NotRegular { entry: String, kind: String },
    #[error(transparent)]
    Limit(LimitExceeded),
}

/// An input over one of its limits.
#[derive(Debug, thiserror::Error)]
#[error("{what} exceeds the limit of {limit} ({found}){}", limit_hint(flag))]
pub struct LimitExceeded {
    /// What was measured: `number of entries`, ``size of `NAME` ``, …
    pub what: String,
    pub limit: u64,
    pub found: u64,
    /// The command-line flag that raises the limit; empty for a fixed limit.
    pub flag: &'static str,
}

impl LimitExceeded {
    /// Fails when `found` is over `limit`; `what` is only formatted then.
    pub fn check(
        what: impl FnOnce() -> String,
        limit: u64,
        found: u64,
        flag: &'static str,
    ) -> Result<(), LimitExceeded> {
        if found > limit {
            return Err(LimitExceeded {
                what: what(),
                limit,
                found,
                flag,
            });
        }
        Ok(())
    }
}

/// How to raise a limit, for messages: fixed limits have no flag.
fn limit_hint(flag: &str) -> String {
    if flag.starts_with("--") {
        format!("; raise it with {flag} if the archive is trusted")
    } else {
        "; this limit is fixed".to_string()
    }
}

/// One tar entry whose name is a safe path and whose size is within the limits.
pub struct TarEntry<'a, R: Read> {
    pub name: SafePath,
    pub entry: tar::Entry<'a, R>,
}

/// The entries of a tar stream, checked: every name a `SafePath`, every entry a regular
/// file (others refused or skipped, as the policy says; links returned if it asks), their
/// number and sizes within the limits.
pub struct TarEntries<'a, R: Read> {
    entries: tar::Entries<'a, R>,
    policy: TarPolicy,
    count: u64,
    total: u64,
    pending: Option<TarEntry<'a, R>>,
}

impl<'a, R: Read> TarEntries<'a, R> {
    pub fn new(archive: &'a mut tar::Archive<R>, policy: TarPolicy) -> Result<Self, EntryError> {
        Ok(TarEntries {
            entries: archive.entries().map_err(EntryError::Read)?,
            policy,
            count: 0,
            total: 0,
            pending: None,
        })
    }

    /// The next entry; `None` after the last one.
    pub fn next_entry(&mut self) -> Result<Option<TarEntry<'a, R>>, EntryError> {
        if let Some(e) = self.pending.take() {
            return Ok(Some(e));
        }
        loop {
            let Some(entry) = self.entries.next() else {
                return Ok(None);
            };
            let entry = entry.map_err(EntryError::Read)?;
            let limits = &self.policy.limits;
            let flag = |f: &'static str| if self.policy.flags { f } else { "" };
            self.count += 1;
            LimitExceeded::check(
                || "number of entries".into(),
                limits.max_entries,
                self.count,
                flag("--max-entries"),
            )
            .map_err(EntryError::Limit)?;
            let kind = entry.header().entry_type();
            let regular = kind == tar::EntryType::Regular;
            let link =
                self.policy.links && matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link);
            if !regular && !link && self.policy.skip_non_regular {
                continue;
            }
            let raw = entry.path_bytes();
            let mut bytes: &[u8] = &raw;
            if self.policy.strip_dot_slash {
                while let Some(rest) = bytes.strip_prefix(b"./") {
                    bytes = rest;
                }
            }
            let name = SafePath::from_bytes(bytes).map_err(|reason| EntryError::UnsafePath {
                entry: String::from_utf8_lossy(&raw).escape_debug().to_string(),
                reason,
            })?;
            drop(raw);
            if !regular && !link {
                return Err(EntryError::NotRegular {
                    kind: kind_of(&entry),
                    entry: name.to_string(),
                });
            }
            let size = entry.size();
            LimitExceeded::check(
                || format!("size of `{name}`"),
                limits.max_entry_size,
                size,
                flag("--max-file-size"),
            )
            .map_err(EntryError::Limit)?;
            self.total = self.total.saturating_add(size);
            LimitExceeded::check(
                || "total size".into(),
                limits.max_total_size,
                self.total,
                flag("--max-total-size"),
            )
            .map_err(EntryError::Limit)?;
            return Ok(Some(TarEntry { name, entry }));
        }
    }

    /// Puts an entry back: the next call to `next_entry` returns it.
    pub fn unread(&mut self, entry: TarEntry<'a, R>) {
        debug_assert!(self.pending.is_none(), "one entry at most is put back");
        self.pending = Some(entry);
    }
}

/// What a non-regular entry is, for messages.
fn kind_of<R: Read>(e: &tar::Entry<'_, R>) -> String {
    let link = || {
        e.link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    match e.header().entry_type() {
        tar::EntryType::Directory => "directory".to_string(),
        tar::EntryType::Symlink => format!("symbolic link to `{}`", link()),
        tar::EntryType::Link => format!("hard link to `{}`", link()),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        tar::EntryType::XGlobalHeader => "PAX global header".into(),
        other => format!("entry of type {:?}", other.as_byte() as char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_members_have_the_length_computed_before_writing() {
        let long = format!("bundle/{}/x", "d".repeat(120));
        for (path, size) in [
            ("a/blobs/sha256/00", 0u64),
            ("a/blobs/sha256/01", 1),
            ("a/blobs/sha256/02", 65_535 - 512),
            ("a/blobs/sha256/03", 65_535 * 3 - 512),
            ("a/blobs/sha256/04", 200_000),
            (long.as_str(), 70_000),
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let mut w = TarGzWriter::new(io::Cursor::new(Vec::new()), 0);
            w.append("a/ferry.json", 0o644, 2, Packing::Compress, &b"{}"[..])
                .unwrap();
            let before = {
                w.end_member().unwrap();
                w.out.as_ref().unwrap().get_ref().len() as u64
            };
            w.append_own_member(path, 0o644, size, &data[..]).unwrap();
            let out = w.into_output().unwrap().into_inner();
            assert_eq!(
                out.len() as u64 - before,
                stored_entry_len(path, size),
                "{path} {size}"
            );
            let alone = write_own_member(Vec::new(), 0, path, 0o644, size, &data[..]).unwrap();
            assert_eq!(&out[before as usize..], &alone[..]);
        }
    }

    #[test]
    fn reserved_members_filled_later_give_the_same_bytes() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 13) as u8).collect();
        let mut seq = TarGzWriter::new(Vec::new(), 0);
        seq.append("r/a.txt", 0o644, 5, Packing::Compress, &b"hello"[..])
            .unwrap();
        seq.append_own_member("r/blob", 0o644, data.len() as u64, &data[..])
            .unwrap();
        seq.append("r/z.txt", 0o644, 3, Packing::Compress, &b"bye"[..])
            .unwrap();
        let expected = seq.finish().unwrap();

        let file = tempfile::tempfile().unwrap();
        let mut w = TarGzWriter::new(file.try_clone().unwrap(), 0);
        w.append("r/a.txt", 0o644, 5, Packing::Compress, &b"hello"[..])
            .unwrap();
        let len = stored_entry_len("r/blob", data.len() as u64);
        let at = w.reserve_member(len).unwrap();
        w.append("r/z.txt", 0o644, 3, Packing::Compress, &b"bye"[..])
            .unwrap();
        w.finish().unwrap();
        let pw = PositionedWriter::new(&file, at);
        let pw = write_own_member(pw, 0, "r/blob", 0o644, data.len() as u64, &data[..]).unwrap();
        assert_eq!(pw.position(), at + len);
        let mut got = Vec::new();
        let mut f = file;
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got, expected);
    }

    fn build(entries: &[(&str, Packing, &[u8])]) -> Vec<u8> {
        let mut w = TarGzWriter::new(Vec::new(), 1_700_000_000);
        for (path, packing, data) in entries {
            w.append(path, 0o644, data.len() as u64, *packing, *data)
                .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_through_gnu_compatible_tar() {
        let long = format!("top/{}/file.txt", "d".repeat(150));
        let longer = format!("top/{}", "x/".repeat(200) + "end");
        let accents = format!("top/d/{}.txt", "é".repeat(150));
        let gz = build(&[
            (&accents, Packing::Compress, b"accents"),
            ("top/a.txt", Packing::Compress, b"hello"),
            ("top/b.gz", Packing::Store, b"\x1f\x8b not really"),
            (&long, Packing::Compress, b"long"),
            (&longer, Packing::Compress, b"longer"),
        ]);
        let mut ar = tar::Archive::new(MemberReader::new(&gz[..], Limits::default()));
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                accents,
                "top/a.txt".to_string(),
                "top/b.gz".into(),
                long,
                longer
            ]
        );
    }

    #[test]
    fn packings_make_separate_members() {
        let gz = build(&[
            ("a", Packing::Compress, b"1"),
            ("b", Packing::Store, b"2"),
            ("c", Packing::Compress, b"3"),
        ]);
        let mut r = MemberReader::new(&gz[..], Limits::default());
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(
            r.members(),
            3,
            "three runs; the end-of-archive blocks join the last text member"
        );
    }

    #[test]
    fn refuses_foreign_headers_and_bombs() {
        let mut gz = build(&[("a", Packing::Compress, b"1")]);
        gz[4] ^= 1; // gzip MTIME
        let err = io::copy(
            &mut MemberReader::new(&gz[..], Limits::default()),
            &mut io::sink(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("gzip header"), "{err}");

        let zeros = vec![0u8; 8 << 20];
        let gz = build(&[("z", Packing::Compress, &zeros)]);
        let limits = Limits {
            max_ratio: 100,
            ratio_slack: 0,
            ..Limits::default()
        };
        let err = io::copy(&mut MemberReader::new(&gz[..], limits), &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("decompression bomb"), "{err}");
    }

    #[test]
    fn stored_positions_are_where_the_writer_put_the_bytes() {
        let data: Vec<u8> = (0..3 * STORED_BLOCK + 77)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut w = TarGzWriter::new(Vec::new(), 0);
        w.append("x", 0o644, data.len() as u64, Packing::Store, &data[..])
            .unwrap();
        let file = w.into_output().unwrap();
        // The member starts at 0; its content is the 512-byte header, then the data.
        for d in [0u64, 1, 65_534, 65_535, 65_536, 131_070, 131_071, 196_000] {
            let pos = stored_position(0, 512 + d) as usize;
            assert_eq!(file[pos], data[d as usize], "byte {d}");
        }
        let content = 512 + data.len() as u64 + padding(data.len() as u64);
        for block in 0..4u64 {
            let at = stored_position(0, block * STORED_BLOCK as u64) as usize - STORED_FRAME;
            let frame: [u8; STORED_FRAME] = file[at..at + STORED_FRAME].try_into().unwrap();
            let len = parse_stored_frame(frame).expect("a stored frame");
            let want = (content - block * STORED_BLOCK as u64).min(STORED_BLOCK as u64);
            assert_eq!(u64::from(len), want, "block {block}");
        }
        assert_eq!(stored_block_left(0), STORED_BLOCK);
        assert_eq!(stored_block_left(65_534), 1);
        assert_eq!(parse_stored_frame([0b010, 0, 0, 0xff, 0xff]), None);
        assert_eq!(parse_stored_frame([0, 1, 0, 0xfe, 0xfe]), None);
    }

    #[test]
    fn foreign_members_with_optional_header_fields_are_read() {
        let mut tar = Vec::new();
        {
            let mut b = tar::Builder::new(&mut tar);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_path("./chart/").unwrap();
            h.set_cksum();
            b.append(&h, &b""[..]).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(5);
            h.set_path("./chart/Chart.yaml").unwrap();
            h.set_cksum();
            b.append(&h, &b"name:"[..]).unwrap();
            b.finish().unwrap();
        }
        let mut enc = flate2::GzBuilder::new()
            .filename("chart.tar")
            .comment("a comment")
            .extra(vec![1, 2, 3])
            .mtime(1_700_000_000)
            .write(Vec::new(), Compression::default());
        enc.write_all(&tar).unwrap();
        let gz = enc.finish().unwrap();
        // A canonical reader refuses it; a foreign one reads it.
        let err = io::copy(
            &mut MemberReader::new(&gz[..], Limits::default()),
            &mut io::sink(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ferry gzip header"), "{err}");
        let mut ar = tar::Archive::new(MemberReader::foreign(&gz[..], Limits::default()));
        let mut entries = TarEntries::new(&mut ar, TarPolicy::foreign(Limits::default())).unwrap();
        let e = entries.next_entry().unwrap().unwrap();
        assert_eq!(e.name.as_str(), "chart/Chart.yaml");
        assert!(entries.next_entry().unwrap().is_none());
        // The same tar as a bundle: the directory entry is refused.
        let mut ar = tar::Archive::new(&tar[..]);
        let mut entries = TarEntries::new(&mut ar, TarPolicy::bundle(Limits::default())).unwrap();
        let err = entries.next_entry().err().unwrap();
        assert!(matches!(err, EntryError::UnsafePath { .. }), "{err}");
    }

    #[test]
    fn tar_entries_enforce_names_and_limits() {
        let gz = build(&[
            ("top/a", Packing::Compress, b"12345"),
            ("top/b", Packing::Compress, b"123456"),
        ]);
        let read_all = |limits: Limits| -> Result<Vec<String>, EntryError> {
            let mut ar = tar::Archive::new(MemberReader::new(&gz[..], limits));
            let mut entries = TarEntries::new(&mut ar, TarPolicy::bundle(limits))?;
            let mut names = Vec::new();
            while let Some(e) = entries.next_entry()? {
                names.push(e.name.to_string());
            }
            Ok(names)
        };
        assert_eq!(read_all(Limits::default()).unwrap(), ["top/a", "top/b"]);
        let small = Limits {
            max_entry_size: 5,
            ..Limits::default()
        };
        let err = read_all(small).unwrap_err().to_string();
        assert!(
            err.contains("size of `top/b` exceeds the limit of 5"),
            "{err}"
        );
        let few = Limits {
            max_entries: 1,
            ..Limits::default()
        };
        let err = read_all(few).unwrap_err().to_string();
        assert!(
            err.contains("number of entries exceeds the limit of 1"),
            "{err}"
        );
        let total = Limits {
            max_total_size: 10,
            ..Limits::default()
        };
        let err = read_all(total).unwrap_err().to_string();
        assert!(err.contains("total size exceeds the limit of 10"), "{err}");
    }
}

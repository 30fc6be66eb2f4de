//! The bundle's container: deterministic tar entries inside a chain of gzip members.
//!
//! A bundle is one tar stream cut into gzip members. The head member holds only
//! `ferry.json` (and `ferry.json.sig`) so that signing can replace it without touching the
//! rest. Entries whose data is already compressed go into members of stored (level 0)
//! deflate blocks; everything else is compressed at level 6. `MemberReader` reads such a
//! chain back, checks that every member header is the canonical one ferry writes, and
//! stops decompression bombs.

use flate2::{Compression, GzBuilder};
use std::io::{self, BufRead, Read, Write};

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
            buf: vec![0; COPY_BUF],
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

/// A gzip member of stored deflate blocks (RFC 1951 section 3.2.4): each block is a
/// 5-byte frame and up to 65,535 bytes copied verbatim. Written directly because the
/// data is already compressed, and a deflate encoder at level 0 would still copy every
/// byte through its window.
struct StoredMember<W: Write> {
    out: W,
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> StoredMember<W> {
    fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&canonical_header(Packing::Store))?;
        Ok(StoredMember {
            out,
            block: Vec::with_capacity(STORED_BLOCK),
            crc: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    fn emit(&mut self, last: bool) -> io::Result<()> {
        let n = self.block.len() as u16;
        let mut frame = [u8::from(last), 0, 0, 0, 0];
        frame[1..3].copy_from_slice(&n.to_le_bytes());
        frame[3..5].copy_from_slice(&(!n).to_le_bytes());
        self.out.write_all(&frame)?;
        self.out.write_all(&self.block)?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        self.emit(true)?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.len as u32).to_le_bytes())?;
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
            let mut frame = [0u8, 0xff, 0xff, 0, 0];
            frame[3..5].copy_from_slice(&(!(STORED_BLOCK as u16)).to_le_bytes());
            self.out.write_all(&frame)?;
            self.out.write_all(chunk)?;
            self.crc.update(chunk);
            self.len += STORED_BLOCK as u64;
            return Ok(STORED_BLOCK);
        }
        let n = buf.len().min(STORED_BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.len += n as u64;
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
/// The gzip framing around it is parsed here because the header must be the canonical
/// one and the CRC is computed with crc32fast's SIMD implementation.
struct Decoder<R> {
    inflate: flate2::bufread::DeflateDecoder<PeekReader<R>>,
    crc: crc32fast::Hasher,
    len: u64,
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

    /// Returns at least `n` buffered bytes, fewer only at the end of the input.
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

/// Reads a chain of canonical gzip members as one continuous stream.
pub struct MemberReader<R: Read> {
    table: MemberTable,
    state: Option<Decoder<R>>,
    idle: Option<PeekReader<R>>,
    headers: [[u8; 10]; 2],
    member: u32,
    member_offsets: Vec<u64>,
    decompressed: u64,
    limits: Limits,
}

impl<R: Read> MemberReader<R> {
    pub fn new(inner: R, limits: Limits) -> Self {
        MemberReader {
            state: None,
            idle: Some(PeekReader::new(inner, COPY_BUF)),
            table: MemberTable::default(),
            headers: [
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
        if !self.headers.iter().any(|h| h[..] == head[..10]) {
            let found = head[..10]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>();
            return Err(ContainerError::BadMemberHeader {
                member: self.member + 1,
                offset,
                found,
            }
            .into());
        }
        let stored = head[..10] == self.headers[1][..];
        self.member += 1;
        self.member_offsets.push(offset);
        self.table.lock().expect("member table").push(MemberInfo {
            compressed_offset: offset,
            decompressed_offset: self.decompressed,
            stored,
        });
        r.consume(10);
        self.state = Some(Decoder {
            inflate: flate2::bufread::DeflateDecoder::new(r),
            crc: crc32fast::Hasher::new(),
            len: 0,
        });
        Ok(true)
    }

    /// Takes back the underlying reader, positioned at the next member boundary. Only
    /// valid between members (after a read returned the end of a member's data).
    pub fn into_inner(self) -> Option<PeekReader<R>> {
        self.idle
    }
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
                dec.len += n as u64;
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
            if crc != dec.crc.finalize() || isize != dec.len as u32 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

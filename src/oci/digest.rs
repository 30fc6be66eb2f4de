//! SHA-256 digests: the checked `Digest` type and hashing adapters for readers and writers.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

/// A `sha256:<64 lowercase hex>` content digest, checked at construction.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Builds a digest from 64 lowercase hex characters.
    pub fn from_hex(hex: &str) -> Result<Self, InvalidDigest> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest {
                hex: hex.to_string(),
            })
        } else {
            Err(InvalidDigest(hex.to_string()))
        }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest {
            hex: hex::encode(Sha256::digest(data)),
        }
    }

    /// The 64 hex characters without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Digest::from_hex(hex),
            None => Err(InvalidDigest(s.to_string())),
        }
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
            "description": "A SHA-256 content digest."
        })
    }
}

/// A string that is not a `sha256:` digest of 64 lowercase hex characters.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a sha256 digest (expected `sha256:` and 64 lowercase hex characters)")]
pub struct InvalidDigest(pub String);

/// An incremental SHA-256 that also counts bytes.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Digest {
        Digest {
            hex: hex::encode(self.inner.finalize()),
        }
    }
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }
    /// The digest and byte count of what was read.
    pub fn finish(self) -> (Digest, u64) {
        let len = self.hasher.len();
        (self.hasher.finish(), len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes a whole reader with a large buffer; returns the digest and length.
pub fn hash_reader(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    let len = hasher.len();
    Ok((hasher.finish(), len))
}

/// Hashes on a second thread while the caller goes on reading: buffers travel to the
/// worker and back through bounded channels, so memory stays at `buffers × size`.
pub struct BackgroundHasher {
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

enum Job {
    Data(Vec<u8>),
    Finish(std::sync::mpsc::SyncSender<(Digest, u64)>),
}

impl BackgroundHasher {
    pub fn new(buffers: usize, size: usize) -> Self {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(buffers);
        let (give_back, free) = std::sync::mpsc::sync_channel::<Vec<u8>>(buffers);
        for _ in 0..buffers {
            give_back.send(vec![0u8; size]).expect("channel has room");
        }
        let worker = std::thread::spawn(move || {
            let mut hasher = Hasher::new();
            for job in rx {
                match job {
                    Job::Data(buf) => {
                        hasher.update(&buf);
                        if give_back.send(buf).is_err() {
                            return;
                        }
                    }
                    Job::Finish(reply) => {
                        let done = std::mem::take(&mut hasher);
                        let len = done.len();
                        let _ = reply.send((done.finish(), len));
                    }
                }
            }
        });
        BackgroundHasher {
            jobs: Some(jobs),
            free,
            worker: Some(worker),
        }
    }

    /// A free buffer, full length; waits while the worker is behind.
    pub fn buffer(&self) -> Vec<u8> {
        let mut b = self.free.recv().expect("hasher thread alive");
        let cap = b.capacity();
        b.resize(cap, 0);
        b
    }

    /// Hashes the buffer's contents (its length is what counts) and recycles it.
    pub fn submit(&self, buf: Vec<u8>) {
        self.jobs
            .as_ref()
            .expect("open")
            .send(Job::Data(buf))
            .expect("hasher thread alive");
    }

    /// Returns a buffer without hashing it.
    pub fn give_back(&self, buf: Vec<u8>) {
        let mut b = buf;
        b.clear();
        self.submit(b);
    }

    /// The digest and length of everything submitted since the last finish.
    pub fn finish(&self) -> (Digest, u64) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .expect("open")
            .send(Job::Finish(tx))
            .expect("hasher thread alive");
        rx.recv().expect("hasher thread alive")
    }
}

impl Drop for BackgroundHasher {
    fn drop(&mut self) {
        self.jobs.take();
        // Unblock a worker waiting to hand a buffer back, then wait for it.
        while self.free.try_recv().is_ok() {}
        if let Some(w) = self.worker.take() {
            drop(std::mem::replace(
                &mut self.free,
                std::sync::mpsc::sync_channel(0).1,
            ));
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        for bad in [
            "sha256:E3B0",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:00",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }
}

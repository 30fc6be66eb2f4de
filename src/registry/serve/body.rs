//! Response bodies of `ferry serve`: blobs streamed from where the bundle keeps them.
//!
//! A blocking worker reads the blob (in place from the bundle file, through
//! `IndexedSource`) in 256 KiB chunks and hands them to the connection through a small
//! channel, so a response holds at most a few chunks in memory. A whole blob is hashed as it
//! is sent and its last chunk is held back until the digest matches: when the bytes no
//! longer match (the file changed after it was verified), the body ends in an error, hyper
//! cuts the connection, and the client is left with a short body it cannot mistake for the
//! blob. A part of a blob cannot be hashed on its own; `check_unchanged` guards it instead.

use super::catalog::{Catalog, FileId};
use super::Events;
use crate::oci::digest::{Digest, Hasher};
use crate::registry::push::BlobSource;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Frame;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// The error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response body.
pub type Body = BoxBody<Bytes, BoxError>;

/// Bytes read from the bundle per chunk.
const CHUNK: usize = 256 * 1024;
/// Chunks queued per response.
const QUEUED: usize = 2;
/// How long a client may leave a chunk unread before the response is given up.
pub const STALL: Duration = Duration::from_secs(60);

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// The body half of a channel a worker fills.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data).map_err(|e| Box::new(e) as BoxError)))
    }
}

/// Checks that every file the blob is read from in place is the one verified at start.
pub fn check_unchanged(catalog: &Catalog, digest: &Digest) -> Result<(), String> {
    let Some((bundle, _)) = catalog.blob(digest) else {
        return Ok(());
    };
    let Some(file) = bundle.source.backing_file(digest) else {
        return Ok(());
    };
    let Some(verified) = bundle.files.get(file) else {
        return Ok(());
    };
    match FileId::of(file) {
        Ok(now) if now == *verified => Ok(()),
        Ok(now) => Err(format!(
            "{} changed after it was verified ({}); restart ferry serve to verify it again",
            file.display(),
            verified.differences(&now)
        )),
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// Why sending stopped when the client closed the connection: not worth a log line.
const GONE: &str = "the client went away";

/// Sends chunks to the connection, giving up when the client is gone or stalls.
struct Sender {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    rt: tokio::runtime::Handle,
}

impl Sender {
    fn send(&self, item: Result<Bytes, io::Error>) -> Result<(), String> {
        let sent = self
            .rt
            .block_on(async { tokio::time::timeout(STALL, self.tx.send(item)).await });
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(GONE.to_string()),
            Err(_) => Err(format!("the client read nothing for {} s", STALL.as_secs())),
        }
    }
}

fn channel(work: impl FnOnce(Sender) + Send + 'static) -> Body {
    let (tx, rx) = mpsc::channel(QUEUED);
    let rt = tokio::runtime::Handle::current();
    let sender = Sender { tx, rt: rt.clone() };
    rt.spawn_blocking(move || work(sender));
    ChannelBody { rx }.boxed()
}

/// Reads up to one chunk, insisting on `want` more bytes in all.
fn read_chunk(r: &mut dyn Read, want: u64) -> io::Result<Vec<u8>> {
    let n = want.min(CHUNK as u64) as usize;
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        let got = r.read(&mut buf[filled..])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob ends early",
            ));
        }
        filled += got;
    }
    Ok(buf)
}

/// The whole blob, hashed as it is sent; its last chunk goes only when the digest matches.
pub fn whole(catalog: Arc<Catalog>, events: Arc<Events>, digest: Digest, size: u64) -> Body {
    channel(move |tx| {
        if let Err(why) = send_whole(&catalog, &tx, &digest, size) {
            if why == GONE {
                return;
            }
            let mut line = format!("cut the response of blob {digest}: {why}");
            if let Err(changed) = check_unchanged(&catalog, &digest) {
                line.push_str(&format!("; {changed}"));
            }
            events.event(&line);
            let _ = tx.send(Err(io::Error::other(line)));
        }
    })
}

fn send_whole(catalog: &Catalog, tx: &Sender, digest: &Digest, size: u64) -> Result<(), String> {
    let (bundle, _) = catalog
        .blob(digest)
        .ok_or_else(|| "not in the catalog".to_string())?;
    let mut reader = bundle
        .source
        .open_blob(digest)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let mut hasher = Hasher::new();
    let mut held: Option<Bytes> = None;
    let mut left = size;
    while left > 0 {
        let chunk = read_chunk(&mut reader, left).map_err(|e| format!("cannot read it: {e}"))?;
        left -= chunk.len() as u64;
        hasher.update(&chunk);
        if let Some(previous) = held.replace(Bytes::from(chunk)) {
            tx.send(Ok(previous))?;
        }
    }
    let found = hasher.finish();
    if found != *digest {
        return Err(format!("its bytes no longer match: they hash to {found}"));
    }
    if let Some(last) = held {
        tx.send(Ok(last))?;
    }
    Ok(())
}

/// `len` bytes of a blob from `first` on, read in place.
pub fn part(
    catalog: Arc<Catalog>,
    events: Arc<Events>,
    digest: Digest,
    first: u64,
    len: u64,
) -> Body {
    channel(move |tx| {
        let result = (|| {
            let (bundle, _) = catalog
                .blob(&digest)
                .ok_or_else(|| "not in the catalog".to_string())?;
            let mut reader = bundle
                .source
                .open_range(&digest, first, len)
                .map_err(|e| format!("cannot open it: {e}"))?;
            let mut left = len;
            while left > 0 {
                let chunk =
                    read_chunk(&mut reader, left).map_err(|e| format!("cannot read it: {e}"))?;
                left -= chunk.len() as u64;
                tx.send(Ok(Bytes::from(chunk)))?;
            }
            Ok::<(), String>(())
        })();
        if let Err(why) = result {
            if why == GONE {
                return;
            }
            let line = format!("cut the Range response of blob {digest}: {why}");
            events.event(&line);
            let _ = tx.send(Err(io::Error::other(line)));
        }
    })
}

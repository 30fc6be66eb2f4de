//! Streams a blocking `Read` into request bodies in bounded pieces, hashing as it goes.
//!
//! A blocking task reads fixed-size pieces into a channel of depth 2, so at most a few pieces
//! of one blob are in memory however large the blob is. The SHA-256 of everything read is
//! compared with the expected digest at the end; a mismatch (or a read error) fails the body
//! stream, which aborts the request, and is also kept in a slot so the caller can tell a
//! source error (not retried) from a network error (retried).

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::oci::digest::{Digest, Hasher};

/// Size of one piece handed to the HTTP stack.
pub(crate) const PIECE: usize = 256 * 1024;

/// The source error of a body, if reading failed.
pub(crate) type ErrorSlot = Arc<Mutex<Option<std::io::Error>>>;

/// The read side of a blob being streamed.
pub(crate) struct Pieces {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    pending: Option<std::io::Result<Bytes>>,
    eof: bool,
}

/// Shared handle so that several chunk bodies can take turns on one blob.
pub(crate) type SharedPieces = Arc<tokio::sync::Mutex<Pieces>>;

/// Starts reading `reader` on a blocking thread; its content must hash to `expected`.
pub(crate) fn spawn_reader(
    mut reader: Box<dyn Read + Send>,
    expected: Digest,
) -> (SharedPieces, ErrorSlot) {
    let (tx, rx) = mpsc::channel(2);
    let slot: ErrorSlot = Arc::new(Mutex::new(None));
    let slot2 = slot.clone();
    tokio::task::spawn_blocking(move || {
        let mut hasher = Hasher::new();
        let fail = |e: std::io::Error| {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            *slot2
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
            let _ = tx.blocking_send(Err(copy));
        };
        loop {
            let mut buf = vec![0u8; PIECE];
            let mut filled = 0;
            while filled < PIECE {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return fail(e),
                }
            }
            if filled == 0 {
                let found = hasher.finish();
                if found != expected {
                    fail(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("content hashes to {found}, expected {expected}"),
                    ));
                }
                return;
            }
            buf.truncate(filled);
            hasher.update(&buf);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // the request was dropped
            }
        }
    });
    let pieces = Pieces {
        rx,
        pending: None,
        eof: false,
    };
    (Arc::new(tokio::sync::Mutex::new(pieces)), slot)
}

impl Pieces {
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        if self.eof {
            return None;
        }
        let p = self.rx.recv().await;
        if p.is_none() {
            self.eof = true;
        }
        p
    }

    /// Whether another piece (or an error) is coming.
    pub(crate) async fn has_more(&mut self) -> bool {
        if self.pending.is_none() && !self.eof {
            self.pending = self.rx.recv().await;
            if self.pending.is_none() {
                self.eof = true;
            }
        }
        self.pending.is_some()
    }
}

/// A body stream of at most `limit` bytes taken from `pieces` (`None`: to the end); every
/// piece is reported to `on_bytes` as it is handed to the transport.
pub(crate) fn body_stream(
    pieces: SharedPieces,
    limit: Option<u64>,
    on_bytes: Arc<dyn Fn(u64) + Send + Sync>,
) -> reqwest::Body {
    let stream = futures_util::stream::unfold(
        (pieces, limit.unwrap_or(u64::MAX)),
        move |(pieces, left)| {
            let on_bytes = on_bytes.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let next = pieces.lock().await.next().await?;
                let left = match &next {
                    Ok(b) => {
                        on_bytes(b.len() as u64);
                        left.saturating_sub(b.len() as u64)
                    }
                    Err(_) => 0,
                };
                Some((next, (pieces, left)))
            }
        },
    );
    reqwest::Body::wrap_stream(stream)
}

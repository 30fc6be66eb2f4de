//! Two origins in front of one registry, as a registry with a storage back end or CDN looks:
//! the front (`127.0.0.1:PORT`) forwards to the registry but sends upload sessions
//! (`Location` of `/blobs/uploads/`) and blob downloads (a `307`) to the back
//! (`127.0.0.2:PORT`), which forwards to the same registry. The back stands for a storage
//! service that trusts its signed URLs: it adds the registry's credentials itself, so a
//! client must send it none. Both record the `Authorization` header of every request.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which origin a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The registry's own origin, 127.0.0.1.
    Front,
    /// The other origin, 127.0.0.2.
    Back,
}

/// One request as an origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Where it arrived.
    pub side: Side,
    /// `METHOD PATH`.
    pub request: String,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
}

struct Shared {
    upstream: u16,
    back: u16,
    /// What the back sends the registry as `Authorization`.
    back_auth: Option<String>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// The two listeners; they stop accepting on drop.
pub struct SplitOrigin {
    /// Port of the front on 127.0.0.1.
    pub front: u16,
    /// Port of the back on 127.0.0.2.
    pub back: u16,
    shared: Arc<Shared>,
}

impl SplitOrigin {
    /// Starts both in front of the registry on `127.0.0.1:upstream`; the back presents
    /// `user:password` to it when given.
    pub fn start(upstream: u16, basic: Option<(&str, &str)>) -> SplitOrigin {
        use base64::Engine;
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let back = TcpListener::bind("127.0.0.2:0")
            .expect("127.0.0.2 is a loopback address on Linux; bind it");
        let shared = Arc::new(Shared {
            upstream,
            back: back.local_addr().unwrap().port(),
            back_auth: basic.map(|(u, p)| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                format!("Basic {b64}")
            }),
            seen: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let ports = (front.local_addr().unwrap().port(), shared.back);
        for (listener, side) in [(front, Side::Front), (back, Side::Back)] {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = handle(conn, side, &shared);
                    });
                }
            });
        }
        SplitOrigin {
            front: ports.0,
            back: ports.1,
            shared,
        }
    }

    /// `127.0.0.1:PORT` of the front: the registry's address for the client.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.front)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for SplitOrigin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.front));
        let _ = TcpStream::connect(("127.0.0.2", self.back));
    }
}

fn handle(mut client: TcpStream, side: Side, st: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (head, leftover) = read_head(&mut client)?;
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut authorization = None;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let name = l
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "authorization" => {
                authorization = Some(l.split_once(':').unwrap().1.trim().to_string());
                if side == Side::Front {
                    headers.push(l.to_string());
                }
            }
            "connection" | "keep-alive" => {}
            _ => headers.push(l.to_string()),
        }
    }
    st.seen.lock().unwrap().push(Seen {
        side,
        request: format!("{method} {path}"),
        authorization,
    });
    let back_origin = format!("http://127.0.0.2:{}", st.back);
    if side == Side::Front && method == "GET" && path.contains("/blobs/sha256:") {
        let reply = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {back_origin}{path}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        client.write_all(reply.as_bytes())?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let mut new_head = format!("{request_line}\r\n");
    for h in &headers {
        new_head.push_str(h);
        new_head.push_str("\r\n");
    }
    if side == Side::Back {
        if let Some(a) = &st.back_auth {
            new_head.push_str(&format!("Authorization: {a}\r\n"));
        }
    }
    new_head.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(("127.0.0.1", st.upstream))?;
    up.write_all(new_head.as_bytes())?;
    up.write_all(&leftover)?;
    let mut c2 = client.try_clone()?;
    let mut u2 = up.try_clone()?;
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
    });
    let (resp_head, rest) = read_head(&mut up)?;
    let resp = String::from_utf8_lossy(&resp_head).to_string();
    let mut out = String::new();
    for l in resp.split("\r\n") {
        let is_location = l
            .split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("location"));
        if is_location && l.contains("/blobs/uploads/") {
            let value = l.split_once(':').unwrap().1.trim();
            let at = value.find("/v2/").unwrap_or(0);
            out.push_str(&format!("Location: {back_origin}{}\r\n", &value[at..]));
        } else {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(&rest)?;
    let _ = std::io::copy(&mut up, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
    let _ = pump.join();
    Ok(())
}

fn read_head(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            buf.truncate(i);
            return Ok((buf, rest));
        }
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

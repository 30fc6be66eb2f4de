//! A fault-injecting HTTP/1.1 proxy in front of a plain-HTTP registry.
//!
//! Each client connection carries one request (the proxy forces `Connection: close`). Rules
//! match requests by method and path and inject one fault a given number of times: a reset
//! after N body bytes, a canned status (500/503/429 with `Retry-After`), or a stall. Every
//! request is counted and logged, so tests can prove that a failure caused no retry storm.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward the head and this many body bytes, then reset both connections.
    Reset {
        /// Body bytes forwarded before the reset.
        after_body_bytes: u64,
    },
    /// Read the request, answer this status without contacting the registry.
    Status {
        /// HTTP status code.
        code: u16,
        /// `Retry-After` seconds, if any.
        retry_after: Option<u32>,
    },
    /// Read the head, then say nothing for this long, then close.
    Stall(Duration),
}

/// A fault to inject into matching requests.
#[derive(Debug, Clone)]
pub struct Rule {
    /// HTTP method to match; empty matches any.
    pub method: &'static str,
    /// Substring of the request path to match.
    pub path_contains: String,
    /// The fault.
    pub fault: Fault,
    /// How many matching requests get it.
    pub times: usize,
}

impl Rule {
    /// A rule for `times` requests of `method` whose path contains `path`.
    pub fn new(method: &'static str, path: &str, fault: Fault, times: usize) -> Rule {
        Rule {
            method,
            path_contains: path.to_string(),
            fault,
            times,
        }
    }
}

/// A Bearer-token gate: the proxy plays token server and demands tokens, as registries with
/// token auth do (the registry behind it is anonymous).
#[derive(Debug, Clone)]
pub struct BearerGate {
    /// User name the token endpoint accepts (Basic).
    pub user: String,
    /// Its password.
    pub password: String,
    /// Requests each token is good for (then it "expires"); `None`: unlimited.
    pub token_uses: Option<u64>,
}

struct State {
    upstream: u16,
    port: u16,
    bearer: Option<BearerGate>,
    tokens: AtomicU64,
    /// Issued tokens and their remaining uses.
    issued: Mutex<std::collections::HashMap<String, u64>>,
    rules: Mutex<Vec<Rule>>,
    requests: AtomicU64,
    faults: AtomicU64,
    /// Every request: when its head had arrived, and `METHOD PATH [fault]`.
    log: Mutex<Vec<(Instant, String)>>,
}

/// A running proxy; stops accepting on drop.
pub struct FaultProxy {
    /// Listening port on 127.0.0.1.
    pub port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:upstream` with the given rules.
    pub fn start(upstream: u16, rules: Vec<Rule>) -> FaultProxy {
        Self::start_with(upstream, rules, None)
    }

    /// Starts a proxy that also demands Bearer tokens and serves them at `/token`.
    pub fn start_bearer(upstream: u16, gate: BearerGate) -> FaultProxy {
        Self::start_with(upstream, vec![], Some(gate))
    }

    fn start_with(upstream: u16, rules: Vec<Rule>, bearer: Option<BearerGate>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream,
            port,
            bearer,
            tokens: AtomicU64::new(0),
            issued: Mutex::default(),
            rules: Mutex::new(rules),
            requests: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &st);
                });
            }
        });
        FaultProxy {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Tokens handed out so far.
    pub fn tokens(&self) -> u64 {
        self.state.tokens.load(Ordering::SeqCst)
    }

    /// Faults injected so far.
    pub fn faults(&self) -> u64 {
        self.state.faults.load(Ordering::SeqCst)
    }

    /// `METHOD PATH [fault]` for every request so far.
    pub fn log(&self) -> Vec<String> {
        self.timed_log().into_iter().map(|(_, l)| l).collect()
    }

    /// Every request so far with the moment its head had arrived (an injected status is
    /// answered right after that moment).
    pub fn timed_log(&self) -> Vec<(Instant, String)> {
        self.state.log.lock().unwrap().clone()
    }

    /// Rules that still have injections left.
    pub fn pending_rules(&self) -> Vec<Rule> {
        self.state
            .rules
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.times > 0)
            .cloned()
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn handle(mut client: TcpStream, st: &State) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (head, leftover) = read_head(&mut client)?;
    let arrived = Instant::now();
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut content_length = 0u64;
    let mut authorization = String::new();
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        if name.eq_ignore_ascii_case("authorization") {
            authorization = value.trim().to_string();
            if st.bearer.is_some() {
                continue;
            }
        }
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("keep-alive") {
            headers.push(l.to_string());
        }
    }
    st.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(gate) = &st.bearer {
        if let Some(reply) = bearer_gate(st, gate, &path, &authorization) {
            st.log
                .lock()
                .unwrap()
                .push((arrived, format!("{method} {path} [bearer]")));
            drain(
                &mut client,
                content_length.saturating_sub(leftover.len() as u64),
            );
            client.write_all(reply.as_bytes())?;
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    let fault = {
        let mut rules = st.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| {
                r.times > 0
                    && (r.method.is_empty() || r.method == method)
                    && path.contains(&r.path_contains)
            })
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            })
    };
    st.log.lock().unwrap().push((
        arrived,
        match &fault {
            Some(f) => format!("{method} {path} [{f:?}]"),
            None => format!("{method} {path}"),
        },
    ));
    if fault.is_some() {
        st.faults.fetch_add(1, Ordering::SeqCst);
    }
    let mut new_head = format!("{request_line}\r\n");
    for h in &headers {
        new_head.push_str(h);
        new_head.push_str("\r\n");
    }
    new_head.push_str("Connection: close\r\n\r\n");

    match fault {
        Some(Fault::Status { code, retry_after }) => {
            drain(
                &mut client,
                content_length.saturating_sub(leftover.len() as u64),
            );
            let mut resp = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nConnection: close\r\n"
            );
            if let Some(s) = retry_after {
                resp.push_str(&format!("Retry-After: {s}\r\n"));
            }
            let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}"#;
            resp.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            client.write_all(resp.as_bytes())?;
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Stall(d)) => {
            std::thread::sleep(d);
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Reset { after_body_bytes }) => {
            let mut up = TcpStream::connect(("127.0.0.1", st.upstream))?;
            up.write_all(new_head.as_bytes())?;
            let mut left = after_body_bytes;
            let first = (leftover.len() as u64).min(left) as usize;
            up.write_all(&leftover[..first])?;
            left -= first as u64;
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = client.read(&mut buf[..want])?;
                if n == 0 {
                    break;
                }
                up.write_all(&buf[..n])?;
                left -= n as u64;
            }
            for s in [&client, &up] {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            drop(up);
            drop(client);
        }
        None => {
            let mut up = TcpStream::connect(("127.0.0.1", st.upstream))?;
            up.write_all(new_head.as_bytes())?;
            up.write_all(&leftover)?;
            let mut c2 = client.try_clone()?;
            let mut u2 = up.try_clone()?;
            let pump = std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut u2);
            });
            let _ = std::io::copy(&mut up, &mut client);
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
            let _ = pump.join();
        }
    }
    Ok(())
}

/// Answers token requests and token-less registry requests; `None` lets the request through.
fn bearer_gate(st: &State, gate: &BearerGate, path: &str, authorization: &str) -> Option<String> {
    use base64::Engine;
    let reply = |status: &str, extra: &str, body: &str| {
        Some(format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Connection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    if path.starts_with("/token") {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", gate.user, gate.password))
        );
        if authorization != want {
            return reply("401 Unauthorized", "", r#"{"details":"bad credentials"}"#);
        }
        let n = st.tokens.fetch_add(1, Ordering::SeqCst);
        let token = format!("ferry-test-token-{n}");
        st.issued
            .lock()
            .unwrap()
            .insert(token.clone(), gate.token_uses.unwrap_or(u64::MAX));
        return reply(
            "200 OK",
            "",
            &format!(r#"{{"token":"{token}","expires_in":300}}"#),
        );
    }
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        if let Some(left) = st.issued.lock().unwrap().get_mut(token) {
            if *left > 0 {
                *left -= 1;
                return None;
            }
        }
    }
    let name = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split("/blobs/").next())
        .and_then(|p| p.split("/manifests/").next())
        .filter(|p| !p.is_empty());
    let scope = name
        .map(|n| format!(",scope=\"repository:{n}:pull,push\""))
        .unwrap_or_default();
    let challenge = format!(
        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{}/token\",service=\"ferry-test\"{scope}\r\n",
        st.port
    );
    reply(
        "401 Unauthorized",
        &challenge,
        r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
    )
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

fn drain(s: &mut TcpStream, mut n: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let want = n.min(buf.len() as u64) as usize;
        match s.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(k) => n -= k as u64,
        }
    }
}

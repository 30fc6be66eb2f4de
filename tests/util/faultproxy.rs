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
    /// Forward the request, then this many bytes of the response (head included), then
    /// reset both connections.
    ResetResponse {
        /// Response bytes forwarded before the reset.
        after_bytes: u64,
    },
    /// Forward the request, then this many bytes of the response, then say nothing for
    /// this long, then close.
    StallResponse {
        /// Response bytes forwarded before the stall.
        after_bytes: u64,
        /// How long to say nothing.
        stall: Duration,
    },
    /// Forward the request without its `Range` header (a server that ignores ranges).
    DropRange,
    /// Forward the request, and set this header of the response to this value.
    SetHeader {
        /// Header name.
        name: &'static str,
        /// New value.
        value: String,
    },
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
/// token auth do (the registry behind it is anonymous). It is strict about scopes: each
/// `scope` query parameter of a token request must be one scope (a parameter with several
/// space-separated ones is refused with 400, as strict token services do), a token grants
/// exactly the scopes asked for, and a request needs `repository:NAME:pull` to read, `push`
/// to write, and `pull` on the `from` repository of a mount. A token without the scopes gets
/// a 401 whose challenge lists them, space-separated, as the distribution registry writes it.
#[derive(Debug, Clone)]
pub struct BearerGate {
    /// User name the token endpoint accepts (Basic).
    pub user: String,
    /// Its password.
    pub password: String,
    /// Requests each token is good for (then it "expires"); `None`: unlimited.
    pub token_uses: Option<u64>,
}

/// A request's header lines as (name, value).
type Headers = Vec<(String, String)>;

struct State {
    upstream: u16,
    port: u16,
    bearer: Option<BearerGate>,
    tokens: AtomicU64,
    /// Issued tokens: their remaining uses and granted scopes.
    issued: Mutex<std::collections::HashMap<String, (u64, Vec<String>)>>,
    /// The `scope` parameters of every token request, in order.
    token_scopes: Mutex<Vec<Vec<String>>>,
    /// Every request: `METHOD PATH` and its headers.
    heads: Mutex<Vec<(String, Headers)>>,
    /// Response bytes forwarded to clients.
    response_bytes: AtomicU64,
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
            token_scopes: Mutex::default(),
            heads: Mutex::default(),
            response_bytes: AtomicU64::new(0),
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

    /// The `scope` parameters of every token request so far.
    pub fn token_scopes(&self) -> Vec<Vec<String>> {
        self.state.token_scopes.lock().unwrap().clone()
    }

    /// For every request so far, `METHOD PATH` and the value of header `name`, if sent.
    pub fn header_log(&self, name: &str) -> Vec<(String, Option<String>)> {
        self.state
            .heads
            .lock()
            .unwrap()
            .iter()
            .map(|(r, hs)| {
                let v = hs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
                (r.clone(), v.map(|(_, v)| v.clone()))
            })
            .collect()
    }

    /// Response bytes forwarded from the registry to clients so far.
    pub fn response_bytes(&self) -> u64 {
        self.state.response_bytes.load(Ordering::SeqCst)
    }

    /// Adds a rule while the proxy runs.
    pub fn add_rule(&self, rule: Rule) {
        self.state.rules.lock().unwrap().push(rule);
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
    st.heads.lock().unwrap().push((
        format!("{method} {path}"),
        text.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect(),
    ));
    if let Some(gate) = &st.bearer {
        if let Some(reply) = bearer_gate(st, gate, &method, &path, &authorization) {
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
    let drop_range = matches!(fault, Some(Fault::DropRange));
    for h in &headers {
        if drop_range && h.to_ascii_lowercase().starts_with("range:") {
            continue;
        }
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
        Some(Fault::ResetResponse { after_bytes }) => {
            forward(
                st,
                client,
                &new_head,
                &leftover,
                Some((after_bytes, None)),
                None,
            )?;
        }
        Some(Fault::StallResponse { after_bytes, stall }) => {
            let cut = Some((after_bytes, Some(stall)));
            forward(st, client, &new_head, &leftover, cut, None)?;
        }
        Some(Fault::SetHeader { name, value }) => {
            forward(st, client, &new_head, &leftover, None, Some((name, value)))?;
        }
        None | Some(Fault::DropRange) => {
            forward(st, client, &new_head, &leftover, None, None)?;
        }
    }
    Ok(())
}

/// Forwards one request to the registry and its response back, counting response bytes.
/// `cut`: stop after this many response bytes, then reset (or stall for the duration, then
/// close); `set`: replace one response header.
fn forward(
    st: &State,
    mut client: TcpStream,
    head: &str,
    leftover: &[u8],
    cut: Option<(u64, Option<Duration>)>,
    set: Option<(&'static str, String)>,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(("127.0.0.1", st.upstream))?;
    up.write_all(head.as_bytes())?;
    up.write_all(leftover)?;
    let mut c2 = client.try_clone()?;
    let mut u2 = up.try_clone()?;
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
    });
    let mut sent = 0u64;
    let mut first = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut out = &buf[..n];
        if let (true, Some((name, value))) = (first, &set) {
            pending.extend_from_slice(out);
            let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let text = String::from_utf8_lossy(&pending[..i]).to_string();
            let mut lines: Vec<String> = text
                .split("\r\n")
                .filter(|l| {
                    !l.split(':')
                        .next()
                        .unwrap_or_default()
                        .eq_ignore_ascii_case(name)
                })
                .map(str::to_string)
                .collect();
            lines.push(format!("{name}: {value}"));
            let mut new = lines.join("\r\n").into_bytes();
            new.extend_from_slice(&pending[i..]);
            pending = new;
            first = false;
            out = &pending;
        }
        let take = match cut {
            Some((limit, _)) => (limit.saturating_sub(sent) as usize).min(out.len()),
            None => out.len(),
        };
        if client.write_all(&out[..take]).is_err() {
            break;
        }
        sent += take as u64;
        st.response_bytes.fetch_add(take as u64, Ordering::SeqCst);
        if cut.is_some_and(|(limit, _)| sent >= limit) {
            break;
        }
    }
    match cut {
        Some((_, Some(stall))) => std::thread::sleep(stall),
        Some((_, None)) => {
            for s in [&client, &up] {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
        }
        None => {}
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
    let _ = pump.join();
    Ok(())
}

/// Answers token requests and requests without a token good for them; `None` lets the
/// request through.
fn bearer_gate(
    st: &State,
    gate: &BearerGate,
    method: &str,
    path: &str,
    authorization: &str,
) -> Option<String> {
    use base64::Engine;
    let reply = |status: &str, extra: &str, body: &str| {
        Some(format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Connection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    let url = reqwest::Url::parse(&format!("http://gate.invalid{path}")).unwrap();
    if url.path() == "/token" {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", gate.user, gate.password))
        );
        if authorization != want {
            return reply("401 Unauthorized", "", r#"{"details":"bad credentials"}"#);
        }
        let scopes: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.to_string())
            .collect();
        st.token_scopes.lock().unwrap().push(scopes.clone());
        if let Some(bad) = scopes.iter().find(|s| s.contains(' ')) {
            let body = format!(
                r#"{{"errors":[{{"code":"INVALID_SCOPE","message":"one scope per parameter: {bad:?}"}}]}}"#
            );
            return reply("400 Bad Request", "", &body);
        }
        let n = st.tokens.fetch_add(1, Ordering::SeqCst);
        let token = format!("ferry-test-token-{n}");
        st.issued
            .lock()
            .unwrap()
            .insert(token.clone(), (gate.token_uses.unwrap_or(u64::MAX), scopes));
        return reply(
            "200 OK",
            "",
            &format!(r#"{{"token":"{token}","expires_in":300}}"#),
        );
    }
    let needed = needed_scopes(method, &url);
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        if let Some((left, granted)) = st.issued.lock().unwrap().get_mut(token) {
            if *left > 0 && needed.iter().all(|(n, a)| grants(granted, n, a)) {
                *left -= 1;
                return None;
            }
        }
    }
    let scope: Vec<String> = needed
        .iter()
        .map(|(n, a)| {
            let actions = if *a == "push" { "pull,push" } else { "pull" };
            format!("repository:{n}:{actions}")
        })
        .collect();
    let scope = if scope.is_empty() {
        String::new()
    } else {
        format!(",scope=\"{}\"", scope.join(" "))
    };
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

/// The (repository, action) pairs a registry request needs: `pull` to read, `push` to
/// write, and `pull` on the `from` repository of a cross-repository mount.
fn needed_scopes(method: &str, url: &reqwest::Url) -> Vec<(String, &'static str)> {
    let name = url
        .path()
        .strip_prefix("/v2/")
        .and_then(|p| p.split("/blobs/").next())
        .and_then(|p| p.split("/manifests/").next())
        .filter(|p| !p.is_empty());
    let Some(name) = name else { return vec![] };
    let action = if matches!(method, "GET" | "HEAD") {
        "pull"
    } else {
        "push"
    };
    let mut out = vec![(name.to_string(), action)];
    if let Some((_, from)) = url.query_pairs().find(|(k, _)| k == "from") {
        out.push((from.to_string(), "pull"));
    }
    out
}

/// Whether `granted` scopes allow `action` on repository `name`.
fn grants(granted: &[String], name: &str, action: &str) -> bool {
    granted.iter().any(|s| {
        let Some(rest) = s.strip_prefix("repository:") else {
            return false;
        };
        let Some((n, actions)) = rest.rsplit_once(':') else {
            return false;
        };
        n == name && actions.split(',').any(|a| a == action)
    })
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

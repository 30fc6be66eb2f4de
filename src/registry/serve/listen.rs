//! The server of `ferry serve`: HTTP/1.1 on hyper over tokio, TLS on rustls, optional basic
//! auth from an htpasswd file (bcrypt), and the network posture: loopback by default, no
//! plain HTTP beyond loopback unless asked for, timeouts for clients that send their headers
//! or read their answers too slowly, and a graceful stop on SIGINT and SIGTERM.

use super::catalog::Catalog;
use super::Events;
use crate::oci::digest::Digest;
use base64::Engine;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 512;
/// How long a stop waits for responses under way.
const DRAIN: Duration = Duration::from_secs(30);

/// A certificate chain and its key, PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub htpasswd: Option<PathBuf>,
    /// Listen beyond loopback without TLS.
    pub allow_insecure: bool,
    /// How long a client has to finish its TLS handshake and then each request's headers.
    pub header_timeout: Duration,
}

/// Why the server cannot start (exit code 2: usage or environment).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {addr} without TLS: every node on that network could read the \
         images and any basic-auth password, and anyone on the path could answer in ferry's \
         place; give --tls-cert and --tls-key, listen on 127.0.0.1, or pass \
         --allow-insecure-listen to accept that"
    )]
    Insecure { addr: SocketAddr },
    #[error("{path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Htpasswd {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "cannot listen on {addr}: {source}; is another server using it? pick another with --listen"
    )]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("the server failed: {0}")]
    Runtime(#[from] io::Error),
}

/// The checked TLS and auth settings, read before the (long) verification.
pub struct Prepared {
    tls: Option<Arc<rustls::ServerConfig>>,
    users: Option<HashMap<String, String>>,
}

impl Prepared {
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Checks the network posture and reads the certificate, key and htpasswd file.
pub fn prepare(opts: &ServeOptions) -> Result<Prepared, ServeError> {
    if opts.tls.is_none() && !opts.listen.ip().is_loopback() && !opts.allow_insecure {
        return Err(ServeError::Insecure { addr: opts.listen });
    }
    let tls = opts.tls.as_ref().map(tls_config).transpose()?.map(Arc::new);
    let users = opts.htpasswd.as_deref().map(read_htpasswd).transpose()?;
    Ok(Prepared { tls, users })
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, message: String| ServeError::Tls {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| bad(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad(&files.key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            bad(
                &files.key,
                format!("does not fit the certificate {}: {e}", files.cert.display()),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `user:bcrypt-hash` lines; anything but bcrypt is refused.
fn read_htpasswd(path: &Path) -> Result<HashMap<String, String>, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServeError::Htpasswd {
        path: path.to_path_buf(),
        line: 0,
        message: format!("cannot read it: {e}"),
    })?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| ServeError::Htpasswd {
            path: path.to_path_buf(),
            line: n + 1,
            message,
        };
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| bad("expected USER:HASH".into()))?;
        if !["$2a$", "$2b$", "$2y$", "$2x$"]
            .iter()
            .any(|p| hash.starts_with(p))
        {
            return Err(bad(format!(
                "the entry of {user} is not bcrypt; make it with `htpasswd -B`"
            )));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    if users.is_empty() {
        return Err(ServeError::Htpasswd {
            path: path.to_path_buf(),
            line: 0,
            message: "holds no user".into(),
        });
    }
    Ok(users)
}

/// What every connection shares.
struct State {
    catalog: Arc<Catalog>,
    events: Arc<Events>,
    users: Option<HashMap<String, String>>,
    /// Digests of credentials bcrypt already accepted: bcrypt is slow by design, and clients
    /// send the same header with every request.
    accepted: Mutex<HashSet<Digest>>,
}

/// Serves until SIGINT or SIGTERM. `ready` gets the bound address (a port 0 is resolved).
pub fn serve(
    catalog: Catalog,
    opts: &ServeOptions,
    prepared: Prepared,
    events: Events,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_CONNECTIONS)
        .build()?;
    let std_listener =
        std::net::TcpListener::bind(opts.listen).map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
    std_listener.set_nonblocking(true)?;
    ready(std_listener.local_addr()?);
    let state = Arc::new(State {
        catalog: Arc::new(catalog),
        events: Arc::new(events),
        users: prepared.users,
        accepted: Mutex::new(HashSet::new()),
    });
    let tls = prepared.tls.map(TlsAcceptor::from);
    let timeout = opts.header_timeout;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let stop = stop_signal()?;
        tokio::pin!(stop);
        let signal = loop {
            let slot = tokio::select! {
                s = stop.as_mut() => break s,
                slot = slots.clone().acquire_owned() => slot.map_err(io::Error::other)?,
            };
            let (stream, peer) = tokio::select! {
                s = stop.as_mut() => break s,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        state.events.event(&format!("accept failed: {e}"));
                        continue;
                    }
                },
            };
            let (state, tls, watcher) = (state.clone(), tls.clone(), graceful.watcher());
            tokio::spawn(async move {
                connection(stream, peer, tls, state, watcher, timeout).await;
                drop(slot);
            });
        };
        drop(listener);
        state.events.event(&format!(
            "{signal}: stopped listening; finishing {} open connection(s)",
            graceful.count()
        ));
        if tokio::time::timeout(DRAIN, graceful.shutdown())
            .await
            .is_err()
        {
            state
                .events
                .event("connections still open after 30 s were closed");
        }
        Ok::<(), ServeError>(())
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Resolves to the name of the first of SIGINT and SIGTERM.
fn stop_signal() -> io::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    })
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    watcher: Watcher,
    timeout: Duration,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_io(TokioIo::new(stream), peer, state, watcher, timeout).await,
        Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(s)) => serve_io(TokioIo::new(s), peer, state, watcher, timeout).await,
            Ok(Err(e)) => state
                .events
                .event(&format!("{peer}: TLS handshake refused: {e}")),
            Err(_) => state.events.event(&format!(
                "{peer}: TLS handshake not finished within {} s; closed",
                timeout.as_secs()
            )),
        },
    }
}

async fn serve_io<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    state: Arc<State>,
    watcher: Watcher,
    timeout: Duration,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, peer, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    // Errors here are the client's (a reset, a timeout, a cut body): nothing to report.
    let _ = watcher.watch(conn).await;
}

async fn handle(
    state: &Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<super::body::Body> {
    let (parts, _body) = req.into_parts();
    let req = Request::from_parts(parts, ());
    let (user, response) = match authenticate(state, &req).await {
        Ok(user) => (
            user,
            super::http::answer(&state.catalog, &state.events, &req),
        ),
        Err(response) => ("-".to_string(), response),
    };
    state.events.access(|| {
        let length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        format!(
            "{peer} {user} \"{} {target} {:?}\" {} {length}",
            req.method(),
            req.version(),
            response.status().as_u16()
        )
    });
    response
}

/// The user a request authenticates as (`-` when no htpasswd is set), or the 401 answer.
async fn authenticate(
    state: &State,
    req: &Request<()>,
) -> Result<String, Response<super::body::Body>> {
    let Some(users) = &state.users else {
        return Ok("-".to_string());
    };
    let unauthorized = |message: &str| {
        let mut r = super::http::ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "UNAUTHORIZED",
            message: message.to_string(),
            size: None,
        }
        .response(req.method() == http::Method::HEAD);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ferry serve\""),
        );
        r
    };
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            unauthorized("authentication required: basic auth with a user of the htpasswd file")
        })?;
    let (user, password) = credentials
        .split_once(':')
        .ok_or_else(|| unauthorized("malformed basic credentials"))?;
    let hash = users
        .get(user)
        .ok_or_else(|| unauthorized("unknown user or wrong password"))?;
    let key = Digest::of(format!("{user}\0{password}\0{hash}").as_bytes());
    if state.accepted.lock().is_ok_and(|a| a.contains(&key)) {
        return Ok(user.to_string());
    }
    let (password, hash) = (password.to_string(), hash.clone());
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false);
    if !ok {
        return Err(unauthorized("unknown user or wrong password"));
    }
    if let Ok(mut accepted) = state.accepted.lock() {
        if accepted.len() > 1024 {
            accepted.clear();
        }
        accepted.insert(key);
    }
    Ok(user.to_string())
}

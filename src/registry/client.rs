//! The registry client: one `reqwest` connection pool, auth state and retries for one registry.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::auth::{parse_challenge, Access, Challenge, TokenResponse};
use super::body::{body_stream, spawn_reader, PIECE};
use super::retry::{parse_retry_after, retryable_status};
use super::{resolve_credentials, Credential, CredentialSource, RegistryError, RetryPolicy};
use crate::error_chain::error_chain;
use crate::oci::digest::Digest;

/// How to reach and authenticate to one registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `HOST[:PORT]`, without scheme or path.
    pub registry: String,
    /// Where credentials come from.
    pub credentials: CredentialSource,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Speak plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// Retry policy for 429/5xx/connection failures.
    pub retry: RetryPolicy,
    /// Time allowed to open a TCP connection (and TLS handshake).
    pub connect_timeout: Duration,
    /// Longest silence allowed while waiting for a response; a stalled registry is retried.
    pub read_timeout: Duration,
    /// `None`: every blob goes in one streamed `PUT`. `Some(n)`: `PATCH` chunks of `n` bytes
    /// (rounded up to 256 KiB), then a closing `PUT`.
    pub chunk_size: Option<u64>,
}

impl RegistryOptions {
    /// Options with the defaults: credentials from the usual config files, TLS verified,
    /// default retries, 10 s connect and 60 s read timeouts, monolithic uploads.
    pub fn new(registry: impl Into<String>) -> Self {
        RegistryOptions {
            registry: registry.into(),
            credentials: CredentialSource::Default,
            ca_file: None,
            plain_http: false,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            chunk_size: None,
        }
    }
}

/// Counters of what went over the wire (tests use them to prove idempotence and bounded
/// retries).
#[derive(Debug, Default)]
pub struct RequestStats {
    /// HTTP requests sent, token requests included.
    pub requests: AtomicU64,
    /// Attempts that were retried after a retryable failure.
    pub retries: AtomicU64,
    /// Blob bytes handed to the transport, failed attempts included.
    pub bytes_sent: AtomicU64,
}

/// Opens a blob's content afresh; called once per upload attempt.
pub type BlobOpener<'a> = &'a (dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Send + Sync);

/// Receives the bytes of one blob upload as they go out.
pub trait BlobProgress: Send + Sync {
    /// `n` more bytes were sent.
    fn sent(&self, n: u64);
    /// The upload starts over (a retry); progress so far is void.
    fn restart(&self);
}

/// The result of a cross-repository mount attempt.
#[derive(Debug)]
pub enum MountOutcome {
    /// The registry linked the blob into the repository (201).
    Mounted,
    /// The registry declined and opened an upload session instead (202).
    Upload(Url),
}

/// How one attempt failed.
pub(super) enum Failure {
    Retry {
        err: RegistryError,
        retry_after: Option<Duration>,
    },
    Fatal(RegistryError),
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<Access, String>,
}

/// A client for one registry. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct RegistryClient {
    http: reqwest::Client,
    pub(super) opts: RegistryOptions,
    base: Url,
    cred: Option<Credential>,
    auth: Mutex<AuthState>,
    /// Held while a token is fetched, so that requests that meet the same challenge at once
    /// share one token.
    token_fetch: tokio::sync::Mutex<()>,
    pub(super) stats: Arc<RequestStats>,
}

impl RegistryClient {
    /// Builds the client: HTTP stack, trusted roots, credentials. Does not touch the network.
    pub fn new(opts: RegistryOptions) -> Result<Self, RegistryError> {
        let registry = opts.registry.clone();
        if registry.is_empty() || registry.contains('/') || registry.contains("://") {
            return Err(RegistryError::InvalidRegistry {
                input: registry,
                reason: "expected HOST[:PORT] without scheme or path".into(),
            });
        }
        let scheme = if opts.plain_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{registry}/")).map_err(|e| {
            RegistryError::InvalidRegistry {
                input: registry.clone(),
                reason: e.to_string(),
            }
        })?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(path) = &opts.ca_file {
            let pem = std::fs::read(path).map_err(|e| RegistryError::CaFile {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::CaFile {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(RegistryError::CaFile {
                    path: path.clone(),
                    detail: "no certificate found".into(),
                });
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| RegistryError::Transport {
            method: "build".into(),
            url: base.to_string(),
            detail: error_chain(&e),
        })?;
        let cred = resolve_credentials(&opts.credentials, &registry)?;
        Ok(RegistryClient {
            http,
            opts,
            base,
            cred,
            auth: Mutex::new(AuthState::default()),
            token_fetch: tokio::sync::Mutex::new(()),
            stats: Arc::new(RequestStats::default()),
        })
    }

    /// `HOST[:PORT]` of this registry.
    pub fn registry(&self) -> &str {
        &self.opts.registry
    }

    /// Counters of requests, retries and bytes sent so far.
    pub fn stats(&self) -> Arc<RequestStats> {
        self.stats.clone()
    }

    /// `GET /v2/`: checks that the registry answers, learns its auth scheme and checks the
    /// credentials once, so that a wrong password fails here with one request, not later.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.url("v2/");
        let resp = self
            .with_retry("GET", &url, |_| async {
                let r = self.plain_send(self.http.get(url.clone())).await;
                match r {
                    // Nobody listening is not worth retrying on first contact.
                    Err(e) => match self.classify(&Method::GET, &url, e) {
                        Failure::Retry {
                            err: err @ RegistryError::Unreachable { .. },
                            ..
                        } => Err(Failure::Fatal(err)),
                        f => Err(f),
                    },
                    Ok(r) if r.status() == StatusCode::UNAUTHORIZED => Ok(r),
                    Ok(r) => match self.expect(&Method::GET, &url, r, &[200]).await {
                        Err(Failure::Fatal(RegistryError::Status {
                            status: 400, body, ..
                        })) if body.contains("HTTPS") => {
                            Err(Failure::Fatal(RegistryError::Protocol {
                                method: "GET".into(),
                                url: url.to_string(),
                                detail: format!(
                                    "{body} (the registry speaks HTTPS; drop --plain-http)"
                                ),
                            }))
                        }
                        other => other,
                    },
                }
            })
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(());
        }
        let challenge = challenge_of(&resp);
        let Some(challenge) = challenge else {
            return Err(self.auth_failed(&Method::GET, &url, 401, "no usable WWW-Authenticate"));
        };
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .challenge = Some(challenge.clone());
        match challenge {
            Challenge::Basic => {
                if self.cred.is_none() {
                    return Err(self.auth_failed(
                        &Method::GET,
                        &url,
                        401,
                        "the registry requires credentials and none were given",
                    ));
                }
                let url2 = url.clone();
                self.with_retry("GET", &url, |_| async {
                    self.send(Method::GET, &url2, &Access::none(), |b| b).await
                })
                .await
                .map(|_| ())
            }
            Challenge::Bearer { .. } => self.fetch_token(&Access::none(), None).await,
        }
    }

    /// `HEAD /v2/REPO/blobs/DIGEST`: whether the repository already holds the blob.
    pub async fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        Ok(self.head(&url, &Access::push(repo), None).await?.is_some())
    }

    /// `HEAD /v2/REPO/manifests/REFERENCE`: the digest the registry serves for a tag or
    /// digest, if it has it (and answers it as a sha256 digest).
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let headers = self
            .head(
                &url,
                &Access::push(repo),
                Some(crate::oci::document::MANIFEST_ACCEPT),
            )
            .await?;
        Ok(headers.and_then(|h| {
            h.get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        }))
    }

    /// A `HEAD` request, retried: the response headers when the registry has the object,
    /// `None` when it answers 404 (or another status that is not an error).
    pub(super) async fn head(
        &self,
        url: &Url,
        access: &Access,
        accept: Option<&'static str>,
    ) -> Result<Option<reqwest::header::HeaderMap>, RegistryError> {
        self.with_retry("HEAD", url, |_| async {
            let r = self
                .send(Method::HEAD, url, access, |b| match accept {
                    Some(a) => b.header(reqwest::header::ACCEPT, a),
                    None => b,
                })
                .await;
            match r {
                Ok(r) if r.status().is_success() => Ok(Some(r.headers().clone())),
                Ok(_) => Ok(None),
                Err(Failure::Fatal(RegistryError::Status { status: 404, .. })) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `POST /v2/REPO/blobs/uploads/?mount=DIGEST&from=FROM`. A 202 (not mounted) is not an
    /// error: the registry hands back an upload session to use instead.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome, RegistryError> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let access = Access::mount(repo, from);
        self.with_retry("POST", &url, |_| async {
            let r = self
                .send(Method::POST, &url, &access, |b| b.header(CONTENT_LENGTH, 0))
                .await?;
            if r.status() == StatusCode::CREATED {
                Ok(MountOutcome::Mounted)
            } else {
                Ok(MountOutcome::Upload(self.location(
                    &Method::POST,
                    &url,
                    &r,
                )?))
            }
        })
        .await
    }

    /// `POST /v2/REPO/blobs/uploads/`: opens an upload session.
    pub async fn start_upload(&self, repo: &str) -> Result<Url, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        let access = Access::push(repo);
        self.with_retry("POST", &url, |_| async {
            let r = self
                .send(Method::POST, &url, &access, |b| b.header(CONTENT_LENGTH, 0))
                .await?;
            if r.status() != StatusCode::ACCEPTED {
                return Err(Failure::Fatal(RegistryError::Protocol {
                    method: "POST".into(),
                    url: url.to_string(),
                    detail: format!("expected 202 Accepted, got {}", r.status()),
                }));
            }
            self.location(&Method::POST, &url, &r)
        })
        .await
    }

    /// Uploads one blob, streaming it from `open()`; every attempt re-opens the source and
    /// starts a new session (`session` is used for the first attempt when given, e.g. from a
    /// declined mount). Returns the bytes of the successful attempt.
    pub async fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
        open: BlobOpener<'_>,
        session: Option<Url>,
        progress: Arc<dyn BlobProgress>,
    ) -> Result<u64, RegistryError> {
        let session = Mutex::new(session);
        let access = &Access::push(repo);
        let what = self.url(&format!("v2/{repo}/blobs/uploads/"));
        let op = format!("upload of blob {digest} to");
        self.with_retry(&op, &what, |attempt| {
            let session = session
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let progress = progress.clone();
            async move {
                if attempt > 1 {
                    progress.restart();
                }
                let location = match session {
                    Some(l) => l,
                    None => self.start_upload(repo).await.map_err(Failure::Fatal)?,
                };
                let reader = open().map_err(|source| {
                    Failure::Fatal(RegistryError::Source {
                        digest: digest.clone(),
                        source,
                    })
                })?;
                let (pieces, slot) = spawn_reader(reader, digest.clone());
                let stats = self.stats.clone();
                let sink = progress.clone();
                let on_bytes: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |n: u64| {
                    stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
                    sink.sent(n);
                });
                let result = self
                    .upload_attempt(access, digest, size, location, pieces, on_bytes)
                    .await;
                let source_err = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                match (result, source_err) {
                    (Ok(n), _) => Ok(n),
                    (Err(_), Some(source)) => Err(Failure::Fatal(RegistryError::Source {
                        digest: digest.clone(),
                        source,
                    })),
                    (Err(e), None) => Err(e),
                }
            }
        })
        .await
    }

    async fn upload_attempt(
        &self,
        access: &Access,
        digest: &Digest,
        size: Option<u64>,
        location: Url,
        pieces: super::body::SharedPieces,
        on_bytes: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<u64, Failure> {
        let counted = Arc::new(AtomicU64::new(0));
        let on_bytes = {
            let counted = counted.clone();
            Arc::new(move |n: u64| {
                on_bytes(n);
                counted.fetch_add(n, Ordering::Relaxed);
            }) as Arc<dyn Fn(u64) + Send + Sync>
        };
        let chunk = self
            .opts
            .chunk_size
            .map(|c| c.max(1).div_ceil(PIECE as u64) * PIECE as u64);
        let mut location = location;
        if let Some(chunk) = chunk {
            let mut offset = 0u64;
            while pieces.lock().await.has_more().await {
                let len = size.map(|s| s.saturating_sub(offset).min(chunk));
                let body = body_stream(pieces.clone(), Some(chunk), on_bytes.clone());
                let url = location.clone();
                let mut req = self
                    .http
                    .patch(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream");
                if let Some(len) = len {
                    req = req
                        .header(CONTENT_LENGTH, len)
                        .header("Content-Range", format!("{offset}-{}", offset + len - 1));
                }
                let r = self
                    .send_watched(Method::PATCH, &url, access, req.body(body), &counted)
                    .await;
                let r = self.expect(&Method::PATCH, &url, r?, &[202]).await?;
                location = self.location(&Method::PATCH, &url, &r)?;
                offset = counted.load(Ordering::Relaxed);
            }
            let mut url = location;
            url.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let req = self.http.put(url.clone()).header(CONTENT_LENGTH, 0);
            let r = self.send_once(Method::PUT, &url, access, req).await?;
            self.expect(&Method::PUT, &url, r, &[201]).await?;
        } else {
            let mut url = location;
            url.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let body = body_stream(pieces, None, on_bytes);
            let mut req = self
                .http
                .put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream");
            if let Some(size) = size {
                req = req.header(CONTENT_LENGTH, size);
            }
            let r = self
                .send_watched(Method::PUT, &url, access, req.body(body), &counted)
                .await;
            self.expect(&Method::PUT, &url, r?, &[201]).await?;
        }
        Ok(counted.load(Ordering::Relaxed))
    }

    /// `PUT /v2/REPO/manifests/REFERENCE` with the original bytes; checks that the registry's
    /// `Docker-Content-Digest` equals `expected_digest`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        expected_digest: &Digest,
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let body = bytes::Bytes::copy_from_slice(bytes);
        let access = Access::push(repo);
        let r = self
            .with_retry("PUT", &url, |_| async {
                let body = body.clone();
                self.send(Method::PUT, &url, &access, move |b| {
                    b.header(CONTENT_TYPE, media_type).body(body.clone())
                })
                .await
            })
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(RegistryError::Protocol {
                method: "PUT".into(),
                url: url.to_string(),
                detail: format!("expected 201 Created, got {}", r.status()),
            });
        }
        if let Some(found) = r
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
        {
            if found != expected_digest.to_string() {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry().to_string(),
                    reference: format!("{repo}:{reference}"),
                    expected: expected_digest.to_string(),
                    found: found.to_string(),
                });
            }
        }
        Ok(())
    }

    // ---- plumbing ------------------------------------------------------------------------

    pub(super) fn url(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("registry paths are valid URL paths")
    }

    /// Runs `attempt` until it succeeds, fails fatally, or the policy gives up.
    pub(super) async fn with_retry<T, F, Fut>(
        &self,
        method: &str,
        url: &Url,
        mut attempt: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let max = self.opts.retry.max_attempts.max(1);
        let mut n = 1;
        loop {
            match attempt(n).await {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry { err, retry_after }) => {
                    if n >= max {
                        return Err(RegistryError::RetriesExhausted {
                            method: method.to_string(),
                            url: url.to_string(),
                            attempts: n,
                            last: err.to_string(),
                        });
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.opts.retry.delay(n, retry_after)).await;
                    n += 1;
                }
            }
        }
    }

    /// Sends a request without auth handling (used by ping and the token endpoint).
    async fn plain_send(&self, req: RequestBuilder) -> Result<Response, reqwest::Error> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        req.send().await
    }

    /// One attempt of a replayable request with auth: answers a Bearer challenge by fetching
    /// a token and replaying once. `build` adds headers and body to a fresh builder.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &Url,
        access: &Access,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, Failure> {
        let mut refreshed = false;
        loop {
            let req = build(self.http.request(method.clone(), url.clone()));
            let (req, used) = self.authorize(req, url, access);
            let r = match self.plain_send(req).await {
                Ok(r) => r,
                Err(e) => return Err(self.classify(&method, url, e)),
            };
            if r.status() == StatusCode::UNAUTHORIZED && !refreshed {
                if self.renew_bearer(&r, access, used).await? {
                    refreshed = true;
                    continue;
                }
                if self.cred.is_some()
                    && self
                        .auth
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .challenge
                        .is_none()
                {
                    // First contact without ping: learn Basic and replay with credentials.
                    self.auth
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .challenge = Some(Challenge::Basic);
                    refreshed = true;
                    continue;
                }
            }
            return self.expect(&method, url, r, &[]).await;
        }
    }

    /// On a 401 with a Bearer challenge, adopts the challenge and fetches a token for it;
    /// returns whether it did (a 401 without one is left to the caller).
    /// `used` is the token the refused request carried: when another request has renewed
    /// it meanwhile, the new one is used without another fetch.
    async fn renew_bearer(
        &self,
        r: &Response,
        access: &Access,
        used: Option<String>,
    ) -> Result<bool, Failure> {
        let Some(ch @ Challenge::Bearer { .. }) = challenge_of(r) else {
            return Ok(false);
        };
        let _one_at_a_time = self.token_fetch.lock().await;
        let current = self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tokens
            .get(access)
            .cloned();
        if current.is_some() && current != used {
            return Ok(true);
        }
        let scope = match &ch {
            Challenge::Bearer { scope, .. } => scope.clone(),
            Challenge::Basic => None,
        };
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .challenge = Some(ch);
        self.fetch_token(access, scope.as_deref())
            .await
            .map_err(Failure::Fatal)?;
        Ok(true)
    }

    /// One attempt of a non-replayable (streamed) request with the current auth. A Bearer
    /// challenge (the token expired during a long upload) fetches a new token and makes the
    /// attempt retryable; the caller starts the blob over.
    async fn send_once(
        &self,
        method: Method,
        url: &Url,
        access: &Access,
        req: RequestBuilder,
    ) -> Result<Response, Failure> {
        let (req, used) = self.authorize(req, url, access);
        let r = self
            .plain_send(req)
            .await
            .map_err(|e| self.classify(&method, url, e))?;
        if r.status() == StatusCode::UNAUTHORIZED && self.renew_bearer(&r, access, used).await? {
            return Err(Failure::Retry {
                err: RegistryError::Transport {
                    method: method.to_string(),
                    url: url.to_string(),
                    detail: "the bearer token expired; fetched a new one".into(),
                },
                retry_after: None,
            });
        }
        Ok(r)
    }

    /// [`Self::send_once`] for a streamed body, abandoned (as retryable) when no byte went out
    /// and no answer came for a whole read timeout: a registry that stops reading a body
    /// would otherwise block the write forever, which no read timeout notices.
    async fn send_watched(
        &self,
        method: Method,
        url: &Url,
        access: &Access,
        req: RequestBuilder,
        sent: &AtomicU64,
    ) -> Result<Response, Failure> {
        let fut = self.send_once(method.clone(), url, access, req);
        tokio::pin!(fut);
        let mut last = sent.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                r = &mut fut => return r,
                _ = tokio::time::sleep(self.opts.read_timeout) => {
                    let now = sent.load(Ordering::Relaxed);
                    if now == last {
                        return Err(Failure::Retry {
                            err: RegistryError::Transport {
                                method: method.to_string(),
                                url: url.to_string(),
                                detail: format!(
                                    "no progress for {:?} (stalled registry)",
                                    self.opts.read_timeout
                                ),
                            },
                            retry_after: None,
                        });
                    }
                    last = now;
                }
            }
        }
    }

    /// Adds the credentials `access` needs, but only to a request for the registry's own
    /// origin (scheme, host and port): an upload `Location` or a redirect to a storage back
    /// end or CDN elsewhere gets none, as with the Docker CLI. (reqwest also drops
    /// `Authorization` when it follows a redirect to another origin.)
    /// Returns the request and the Bearer token it carries, if any.
    fn authorize(
        &self,
        req: RequestBuilder,
        url: &Url,
        access: &Access,
    ) -> (RequestBuilder, Option<String>) {
        if url.origin() != self.base.origin() {
            return (req, None);
        }
        let state = self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (&state.challenge, &self.cred) {
            (Some(Challenge::Basic), Some(Credential::UserPassword { username, password })) => {
                (req.basic_auth(username, Some(password)), None)
            }
            (Some(Challenge::Bearer { .. }), _) => match state.tokens.get(access) {
                Some(t) => (req.bearer_auth(t), Some(t.clone())),
                None => (req, None),
            },
            _ => (req, None),
        }
    }

    /// Fetches a Bearer token for `access` from the challenge's realm: every scope of
    /// `access` and of the challenge as a `scope` parameter of its own.
    async fn fetch_token(
        &self,
        access: &Access,
        challenge_scope: Option<&str>,
    ) -> Result<(), RegistryError> {
        let Some(Challenge::Bearer { realm, service, .. }) = self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .challenge
            .clone()
        else {
            return Ok(());
        };
        let scopes = access.scopes_with(challenge_scope);
        let mut url = Url::parse(&realm).map_err(|e| RegistryError::Protocol {
            method: "GET".into(),
            url: realm.clone(),
            detail: format!("bad token realm: {e}"),
        })?;
        let req = match &self.cred {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = Url::parse("http://form.invalid/").expect("a constant URL parses");
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token");
                    q.append_pair("refresh_token", refresh);
                    q.append_pair("client_id", "ferry");
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                }
                self.http
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.query().unwrap_or_default().to_string())
            }
            cred => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                }
                let req = self.http.get(url.clone());
                match cred {
                    Some(Credential::UserPassword { username, password }) => {
                        req.basic_auth(username, Some(password))
                    }
                    _ => req,
                }
            }
        };
        let r = self
            .with_retry("GET", &url, |_| async {
                let req = req
                    .try_clone()
                    .expect("token requests have in-memory bodies");
                match self.plain_send(req).await {
                    Ok(r) => self.expect(&Method::GET, &url, r, &[200]).await,
                    Err(e) => Err(self.classify(&Method::GET, &url, e)),
                }
            })
            .await?;
        let body = r.bytes().await.map_err(|e| RegistryError::Transport {
            method: "GET".into(),
            url: url.to_string(),
            detail: error_chain(&e),
        })?;
        let tok: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                method: "GET".into(),
                url: url.to_string(),
                detail: format!("token response is not JSON: {e}"),
            })?;
        let token = tok.token.or(tok.access_token).unwrap_or_default();
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tokens
            .insert(access.clone(), token);
        Ok(())
    }

    /// Turns a response into success, a retryable failure or a fatal one. `ok` lists the
    /// accepted statuses; empty means any 2xx.
    pub(super) async fn expect(
        &self,
        method: &Method,
        url: &Url,
        r: Response,
        ok: &[u16],
    ) -> Result<Response, Failure> {
        let status = r.status().as_u16();
        let good = if ok.is_empty() {
            r.status().is_success()
        } else {
            ok.contains(&status)
        };
        if good {
            return Ok(r);
        }
        if status == 401 || status == 403 {
            let reason = format!(
                "HTTP {status} on {method} {}",
                url.as_str().split('?').next().unwrap_or_default()
            );
            return Err(Failure::Fatal(self.auth_failed_reason(reason)));
        }
        let retry_after = parse_retry_after(r.headers().get("Retry-After"));
        let body = read_some(r).await;
        let err = RegistryError::Status {
            method: method.to_string(),
            url: url.to_string(),
            status,
            body,
        };
        if retryable_status(status) {
            Err(Failure::Retry { err, retry_after })
        } else {
            Err(Failure::Fatal(err))
        }
    }

    pub(super) fn classify(&self, method: &Method, url: &Url, e: reqwest::Error) -> Failure {
        let detail = error_chain(&e);
        if is_cert_error(&e) {
            return Failure::Fatal(RegistryError::UntrustedCertificate {
                registry: self.registry().to_string(),
                detail,
            });
        }
        if detail.contains("InvalidContentType") || detail.contains("corrupt message") {
            return Failure::Fatal(RegistryError::Transport {
                method: method.to_string(),
                url: url.to_string(),
                detail: format!(
                    "{detail} (does the registry serve plain HTTP? then pass --plain-http)"
                ),
            });
        }
        let err = if e.is_connect() {
            RegistryError::Unreachable {
                registry: self.registry().to_string(),
                url: url.to_string(),
                detail,
            }
        } else {
            RegistryError::Transport {
                method: method.to_string(),
                url: url.to_string(),
                detail,
            }
        };
        Failure::Retry {
            err,
            retry_after: None,
        }
    }

    fn auth_failed(&self, method: &Method, url: &Url, status: u16, why: &str) -> RegistryError {
        self.auth_failed_reason(format!("HTTP {status} on {method} {url}: {why}"))
    }

    fn auth_failed_reason(&self, reason: String) -> RegistryError {
        RegistryError::AuthFailed {
            registry: self.registry().to_string(),
            reason,
        }
    }

    fn location(&self, method: &Method, url: &Url, r: &Response) -> Result<Url, Failure> {
        let loc = r
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Failure::Fatal(RegistryError::Protocol {
                    method: method.to_string(),
                    url: url.to_string(),
                    detail: format!("{} without a Location header", r.status()),
                })
            })?;
        // Relative to the request: a session on another origin stays there.
        url.join(loc).map_err(|e| {
            Failure::Fatal(RegistryError::Protocol {
                method: method.to_string(),
                url: url.to_string(),
                detail: format!("bad Location {loc:?}: {e}"),
            })
        })
    }
}

fn challenge_of(r: &Response) -> Option<Challenge> {
    r.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .find_map(parse_challenge)
}

fn is_cert_error(e: &reqwest::Error) -> bool {
    let chain = error_chain(e);
    chain.contains("certificate") || chain.contains("UnknownIssuer")
}

async fn read_some(r: Response) -> String {
    let text = r.text().await.unwrap_or_default();
    let mut t: String = text.chars().take(400).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    t.trim().to_string()
}

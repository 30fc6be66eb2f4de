//! The read-only OCI Distribution API of `ferry serve`: routing a request path onto the
//! catalog (never onto the filesystem), and the answers, errors in the spec's JSON.

use super::body::{self, Body};
use super::catalog::{Catalog, Lookup, Repo};
use super::Events;
use crate::oci::digest::Digest;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::{Arc, LazyLock};

/// The longest repository name answered (Docker's limit).
pub const MAX_NAME: usize = 255;

/// One path component of a repository name, as the distribution spec writes it.
static COMPONENT: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").expect("a valid pattern")
});
static TAG: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$").expect("a valid pattern")
});

/// Whether `name` is a repository name the spec allows.
pub fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME && name.split('/').all(|c| COMPONENT.is_match(c))
}

/// A spec error: status, code and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The blob's size, for the `Content-Range` of a 416.
    pub size: Option<u64>,
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
        size: None,
    }
}

impl ApiError {
    pub fn response(&self, head_only: bool) -> Response<Body> {
        let text = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": null }]
        })
        .to_string();
        let mut r = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, text.len());
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            r = r.header(header::ALLOW, "GET, HEAD");
        }
        if let Some(size) = self.size {
            r = r.header(header::CONTENT_RANGE, format!("bytes */{size}"));
        }
        let body = if head_only {
            body::empty()
        } else {
            body::full(Bytes::from(text))
        };
        r.body(body)
            .unwrap_or_else(|_| Response::new(body::empty()))
    }
}

/// What a request path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    let (before, reference) = rest.rsplit_once('/')?;
    let (name, kind) = before.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, reference)),
        "blobs" => Some(Route::Blob(name, reference)),
        "referrers" => Some(Route::Referrers(name, reference)),
        _ => None,
    }
}

/// The query parameters ferry reads.
#[derive(Debug, Default)]
struct Query {
    ns: Option<String>,
    n: Option<String>,
    last: Option<String>,
    artifact_type: Option<String>,
}

fn query(q: Option<&str>) -> Query {
    let mut out = Query::default();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        let v = Some(v.into_owned());
        match k.as_ref() {
            "ns" => out.ns = v,
            "n" => out.n = v,
            "last" => out.last = v,
            "artifactType" => out.artifact_type = v,
            _ => {}
        }
    }
    out
}

/// Answers one request (authentication has been checked).
pub fn answer(catalog: &Arc<Catalog>, events: &Arc<Events>, req: &Request<()>) -> Response<Body> {
    let head_only = req.method() == Method::HEAD;
    let mut response = match dispatch(catalog, events, req) {
        Ok(r) => r,
        Err(e) => e.response(head_only),
    };
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

fn dispatch(
    catalog: &Arc<Catalog>,
    events: &Arc<Events>,
    req: &Request<()>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!(
                "{} is not supported: ferry serve is a read-only registry of a signed bundle; \
                 use `ferry load` to push into a registry that accepts writes",
                req.method()
            ),
        ));
    }
    let route = route(path).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "not an OCI Distribution API path (/v2/NAME/manifests/REF, /v2/NAME/blobs/DIGEST, \
             /v2/NAME/tags/list, /v2/_catalog)",
        )
    })?;
    let q = query(req.uri().query());
    let head_only = req.method() == Method::HEAD;
    match route {
        Route::Base => Ok(json_response(b"{}".to_vec(), head_only)),
        Route::Catalog => catalog_list(catalog, &q, head_only),
        Route::Tags(name) => tags_list(catalog, name, &q, head_only),
        Route::Manifest(name, reference) => {
            let repo = repo(catalog, name, &q)?;
            manifest(catalog, repo, name, reference, head_only)
        }
        Route::Blob(name, digest) => {
            let repo = repo(catalog, name, &q)?;
            let digest = parse_digest(digest)?;
            if !repo.digests.contains(&digest) {
                return Err(blob_unknown(name, &digest));
            }
            let range = req
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok());
            blob(catalog, events, &digest, range, head_only)
        }
        Route::Referrers(name, digest) => {
            let repo = repo(catalog, name, &q)?;
            let digest = parse_digest(digest)?;
            referrers(catalog, repo, &digest, &q, head_only)
        }
    }
}

fn blob_unknown(name: &str, digest: &Digest) -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("blob {digest} is not in repository {name}"),
    )
}

fn repo<'c>(catalog: &'c Catalog, name: &str, q: &Query) -> Result<&'c Repo, ApiError> {
    if !valid_name(name) {
        let shown: String = name.chars().take(80).collect();
        return Err(err(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!(
                "`{shown}` is not a repository name: lower-case letters, digits and . _ - \
                 separated by /, at most {MAX_NAME} characters"
            ),
        ));
    }
    catalog.lookup(name, q.ns.as_deref()).map_err(|e| match e {
        Lookup::Unknown => err(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            match &q.ns {
                Some(ns) => format!("repository {name} of registry {ns} is not in the bundle"),
                None => format!("repository {name} is not in the bundle"),
            },
        ),
        Lookup::Ambiguous(both) => err(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!(
                "repository {name} is ambiguous: the bundle has {}; add ?ns=REGISTRY (as \
                 containerd mirrors do) or ask for REGISTRY/{name}",
                both.join(" and ")
            ),
        ),
    })
}

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    let bad = || {
        let shown: String = text.chars().take(80).collect();
        err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("`{shown}` is not a digest: expected sha256: and 64 lower-case hex digits"),
        )
    };
    let hex = text.strip_prefix("sha256:").ok_or_else(bad)?;
    Digest::from_hex(hex).map_err(|_| bad())
}

fn json_response(bytes: Vec<u8>, head_only: bool) -> Response<Body> {
    let len = bytes.len();
    let body = if head_only {
        body::empty()
    } else {
        body::full(Bytes::from(bytes))
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn manifest(
    catalog: &Catalog,
    repo: &Repo,
    name: &str,
    reference: &str,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    let unknown = |what: String| err(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", what);
    let digest = if reference.contains(':') {
        let d = parse_digest(reference)?;
        if !repo.digests.contains(&d) || !catalog.manifests.contains_key(&d) {
            return Err(unknown(format!("manifest {d} is not in repository {name}")));
        }
        d
    } else {
        if !TAG.is_match(reference) {
            let shown: String = reference.chars().take(80).collect();
            return Err(err(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("`{shown}` is neither a tag nor a digest"),
            ));
        }
        repo.tags.get(reference).cloned().ok_or_else(|| {
            unknown(format!(
                "tag {reference} is not in repository {name} (tags: {})",
                repo.tags.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?
    };
    let m = catalog
        .manifests
        .get(&digest)
        .ok_or_else(|| unknown(format!("manifest {digest} is not in the bundle")))?;
    let len = m.bytes.len();
    let body = if head_only {
        body::empty()
    } else {
        body::full(Bytes::copy_from_slice(&m.bytes))
    };
    Response::builder()
        .header(header::CONTENT_TYPE, m.media_type.as_str())
        .header(header::CONTENT_LENGTH, len)
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""))
        .body(body)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()))
}

/// A parsed `Range` header: the first and the last byte wanted.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Not a single byte range ferry answers: the whole blob is sent.
    Ignored,
    Unsatisfiable,
    Bytes(u64, u64),
}

fn parse_range(text: Option<&str>, size: u64) -> Range {
    let Some(spec) = text.and_then(|t| t.trim().strip_prefix("bytes=")) else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    if size == 0 {
        return Range::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let (first, last) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => match num(b) {
            Some(0) => return Range::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            None => return Range::Ignored,
        },
        (false, true) => match num(a) {
            Some(first) => (first, size.saturating_sub(1)),
            None => return Range::Ignored,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(first), Some(last)) if first <= last => (first, last.min(size - 1)),
            _ => return Range::Ignored,
        },
        (true, true) => return Range::Ignored,
    };
    if first >= size {
        return Range::Unsatisfiable;
    }
    Range::Bytes(first, last)
}

fn blob(
    catalog: &Arc<Catalog>,
    events: &Arc<Events>,
    digest: &Digest,
    range: Option<&str>,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    // A manifest asked for as a blob is answered from memory.
    if let Some(m) = catalog.manifests.get(digest) {
        return whole_or_part(Bytes::copy_from_slice(&m.bytes), digest, range, head_only);
    }
    let (_, size) = catalog
        .blob(digest)
        .ok_or_else(|| blob_unknown("the bundle", digest))?;
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""));
    let internal =
        |e: http::Error| err(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string());
    match parse_range(range, size) {
        Range::Unsatisfiable => Err(unsatisfiable(size)),
        Range::Bytes(first, last) => {
            let len = last - first + 1;
            let body = if head_only {
                body::empty()
            } else {
                body::check_unchanged(catalog, digest).map_err(|why| {
                    events.event(&format!("refused a Range response of {digest}: {why}"));
                    err(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", why)
                })?;
                body::part(catalog.clone(), events.clone(), digest.clone(), first, len)
            };
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, len)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {first}-{last}/{size}"),
                )
                .body(body)
                .map_err(internal)
        }
        Range::Ignored => {
            let body = if head_only {
                body::empty()
            } else {
                body::whole(catalog.clone(), events.clone(), digest.clone(), size)
            };
            builder
                .header(header::CONTENT_LENGTH, size)
                .body(body)
                .map_err(internal)
        }
    }
}

fn unsatisfiable(size: u64) -> ApiError {
    ApiError {
        size: Some(size),
        ..err(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UNKNOWN",
            format!("the range is outside the blob, whose size is {size}"),
        )
    }
}

fn whole_or_part(
    bytes: Bytes,
    digest: &Digest,
    range: Option<&str>,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    let size = bytes.len() as u64;
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("Docker-Content-Digest", digest.to_string());
    let (builder, bytes) = match parse_range(range, size) {
        Range::Unsatisfiable => return Err(unsatisfiable(size)),
        Range::Bytes(first, last) => (
            builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{size}"),
            ),
            bytes.slice(first as usize..=last as usize),
        ),
        Range::Ignored => (builder, bytes),
    };
    let len = bytes.len();
    let body = if head_only {
        body::empty()
    } else {
        body::full(bytes)
    };
    builder
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()))
}

/// `n` and `last`: a page of a sorted list, and whether more follow.
fn page<'a>(
    all: impl Iterator<Item = &'a str>,
    q: &Query,
) -> Result<(Vec<&'a str>, bool), ApiError> {
    let n = match &q.n {
        None => usize::MAX,
        Some(text) => text.parse::<usize>().map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("n={text} is not a number"),
            )
        })?,
    };
    let mut items: Vec<&str> = all
        .filter(|s| q.last.as_deref().is_none_or(|last| *s > last))
        .collect();
    let more = items.len() > n;
    items.truncate(n);
    Ok((items, more))
}

fn paged_response(
    value: serde_json::Value,
    next: Option<String>,
    head_only: bool,
) -> Response<Body> {
    let mut r = json_response(value.to_string().into_bytes(), head_only);
    if let Some(link) = next.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LINK, link);
    }
    r
}

fn link(path: &str, n: &Option<String>, last: &str, ns: &Option<String>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(n) = n {
        q.append_pair("n", n);
    }
    q.append_pair("last", last);
    if let Some(ns) = ns {
        q.append_pair("ns", ns);
    }
    format!("<{path}?{}>; rel=\"next\"", q.finish())
}

fn catalog_list(catalog: &Catalog, q: &Query, head_only: bool) -> Result<Response<Body>, ApiError> {
    let (names, more) = page(catalog.names.keys().map(String::as_str), q)?;
    let next = match (more, names.last()) {
        (true, Some(last)) => Some(link("/v2/_catalog", &q.n, last, &None)),
        _ => None,
    };
    Ok(paged_response(
        serde_json::json!({ "repositories": names }),
        next,
        head_only,
    ))
}

fn tags_list(
    catalog: &Catalog,
    name: &str,
    q: &Query,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    let repo = repo(catalog, name, q)?;
    let (tags, more) = page(repo.tags.keys().map(String::as_str), q)?;
    let next = match (more, tags.last()) {
        (true, Some(last)) => Some(link(&format!("/v2/{name}/tags/list"), &q.n, last, &q.ns)),
        _ => None,
    };
    Ok(paged_response(
        serde_json::json!({ "name": name, "tags": tags }),
        next,
        head_only,
    ))
}

/// OCI 1.1 referrers: an index of the manifests whose `subject` is the digest.
fn referrers(
    catalog: &Catalog,
    repo: &Repo,
    digest: &Digest,
    q: &Query,
    head_only: bool,
) -> Result<Response<Body>, ApiError> {
    let mut manifests = Vec::new();
    for d in catalog.referrers.get(digest).into_iter().flatten() {
        let (Some(m), true) = (catalog.manifests.get(d), repo.digests.contains(d)) else {
            continue;
        };
        if q.artifact_type
            .as_ref()
            .is_some_and(|t| m.artifact_type.as_ref() != Some(t))
        {
            continue;
        }
        let mut desc = serde_json::json!({
            "mediaType": m.media_type,
            "digest": d.to_string(),
            "size": m.bytes.len(),
        });
        if let Some(t) = &m.artifact_type {
            desc["artifactType"] = t.clone().into();
        }
        if let Some(a) = &m.annotations {
            desc["annotations"] = a.clone();
        }
        manifests.push(desc);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::document::OCI_INDEX,
        "manifests": manifests,
    });
    let mut r = json_response(index.to_string().into_bytes(), head_only);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::oci::document::OCI_INDEX),
    );
    if q.artifact_type.is_some() {
        r.headers_mut().insert(
            "OCI-Filters-Applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(
            route("/v2/a/manifests/b/manifests/1.0"),
            Some(Route::Manifest("a/manifests/b", "1.0"))
        );
        assert_eq!(
            route("/v2/a/blobs/sha256:x"),
            Some(Route::Blob("a", "sha256:x"))
        );
        assert_eq!(route("/v3/a/blobs/x"), None);
        assert_eq!(route("/v2/a/other/x"), None);
    }

    #[test]
    fn names() {
        for good in ["a", "library/nginx", "a-b/c__d/e.f", "docker.io/x"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(MAX_NAME + 1);
        for bad in ["", "A", "a/../b", "..", "a%2Fb", "a//b", "/a", "a-", &long] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let r = |t: &str| parse_range(Some(t), 100);
        assert_eq!(r("bytes=0-9"), Range::Bytes(0, 9));
        assert_eq!(r("bytes=90-"), Range::Bytes(90, 99));
        assert_eq!(r("bytes=-10"), Range::Bytes(90, 99));
        assert_eq!(r("bytes=-1000"), Range::Bytes(0, 99));
        assert_eq!(r("bytes=50-1000"), Range::Bytes(50, 99));
        assert_eq!(r("bytes=100-"), Range::Unsatisfiable);
        assert_eq!(r("bytes=100-200"), Range::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Range::Unsatisfiable);
        assert_eq!(r("bytes=5-1"), Range::Ignored);
        assert_eq!(r("bytes=0-1,5-6"), Range::Ignored);
        assert_eq!(r("items=0-1"), Range::Ignored);
        assert_eq!(parse_range(None, 100), Range::Ignored);
    }
}

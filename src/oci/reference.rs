//! Image references, registry targets and registry prefixes: one grammar, normalised as Docker
//! does.
//!
//! Every place ferry reads an image name uses [`ImageRef`]: `ferry.yaml` images, image names in
//! layouts and archives, the bundle manifest's references when pushing, and values files.
//! Registries are lower-cased, Docker Hub's aliases (`index.docker.io`, `registry-1.docker.io`)
//! become `docker.io`, and a one-component Docker Hub repository gets its implicit `library/`.
//! A `--registry HOST[:PORT][/PREFIX]` value is a [`Target`], parsed once for pushing and for
//! rewriting values; a `registry:` value in a values file is a [`RegistryPrefix`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::oci::digest::Digest;

/// The placeholder a vendor writes in values files where the customer's registry goes.
pub const PLACEHOLDER: &str = "REGISTRY";

/// Docker Hub's canonical registry name; `index.docker.io` and `registry-1.docker.io` map to it.
pub const DOCKER_HUB: &str = "docker.io";

/// The longest reference read.
const MAX_REFERENCE: usize = 4096;

/// A parsed, normalised image reference (`registry/repository:tag@digest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Registry host (`host[:port]`, lower case), or `None` for the `REGISTRY` placeholder.
    /// `docker.io` when the reference names no registry.
    pub registry: Option<String>,
    /// Repository path inside the registry, e.g. `agent-security/gateway`; Docker Hub's
    /// single-name images get `library/`.
    pub repository: String,
    /// Tag, if one is written.
    pub tag: Option<String>,
    /// Digest (`sha256:<64 hex>`, or another algorithm with a hex encoding), if one is written.
    pub digest: Option<String>,
}

/// Why a string is not an image reference or not a registry target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReference {
    /// Not an image reference.
    #[error("`{value}` is not an image reference ({reason}); expected `registry/path:tag`")]
    Image {
        /// The text as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not a `--registry` value.
    #[error("invalid registry `{value}`: {reason}; expected HOST[:PORT][/PREFIX], e.g. harbor.example.com/mcp-gateway")]
    Target {
        /// The text as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ImageRef {
    /// Parses a reference to a real registry; a name without a registry host (`nginx:1.25`,
    /// `bitnami/redis`) is a Docker Hub reference.
    ///
    /// # Errors
    /// Anything outside the grammar, and the `REGISTRY` placeholder, which names no registry.
    pub fn parse(s: &str) -> Result<ImageRef, BadReference> {
        parse(s, true)
            .and_then(|image| match image.registry {
                Some(_) => Ok(image),
                None => Err(
                    "`REGISTRY` is a placeholder for a values file, not a registry to read from",
                ),
            })
            .map_err(|reason| BadReference::Image {
                value: s.to_string(),
                reason,
            })
    }

    /// The registry host, or `REGISTRY` for the placeholder.
    pub fn host(&self) -> &str {
        self.registry.as_deref().unwrap_or(PLACEHOLDER)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host(), self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parses an image reference, the `REGISTRY` placeholder included. With `allow_implicit`, a
/// name without a registry host (`nginx:1.25`, `bitnami/redis`) is read as a Docker Hub
/// reference; without it, such a name is not a reference.
pub(crate) fn parse_reference(s: &str, allow_implicit: bool) -> Option<ImageRef> {
    parse(s, allow_implicit).ok()
}

fn parse(s: &str, allow_implicit: bool) -> Result<ImageRef, &'static str> {
    if s.is_empty() || s.len() > MAX_REFERENCE {
        return Err("empty or too long");
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => {
            if !valid_digest(d) {
                return Err(
                    "the digest is not `sha256:` and 64 lower-case hex digits (or another algorithm and hex digits)",
                );
            }
            (n, Some(d))
        }
        None => (s, None),
    };
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i + 1..].contains('/') => {
            let tag = &name_tag[i + 1..];
            if !valid_tag(tag) {
                return Err("the tag may hold letters, digits, `_`, `.` and `-` only, and not start with `.` or `-`");
            }
            (&name_tag[..i], Some(tag))
        }
        _ => (name_tag, None),
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if first == PLACEHOLDER => (None, rest),
        Some((first, rest)) if looks_like_host(first) => {
            if !valid_host(first) {
                return Err("the registry must be a host name or address with an optional port");
            }
            (Some(normalise_host(first)), rest)
        }
        _ if allow_implicit => (Some(DOCKER_HUB.to_string()), name),
        _ => return Err("no registry host"),
    };
    if !valid_path(path) {
        return Err(
            "the repository path must be lower-case letters, digits and `.`, `_`, `-` separators between `/`",
        );
    }
    let repository = normalise_path(registry.as_deref(), path);
    Ok(ImageRef {
        registry,
        repository,
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// The name part of a reference: without its `@digest` and `:tag`.
pub(crate) fn name_part(s: &str) -> &str {
    let s = s.split_once('@').map_or(s, |(n, _)| n);
    match s.rfind(':') {
        Some(i) if !s[i + 1..].contains('/') => &s[..i],
        _ => s,
    }
}

/// Lower-cases a host and maps Docker Hub's aliases to `docker.io`.
fn normalise_host(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => lower,
    }
}

/// Adds Docker Hub's implicit `library/` to a one-component repository.
pub(crate) fn normalise_path(registry: Option<&str>, path: &str) -> String {
    if registry == Some(DOCKER_HUB) && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    }
}

/// Whether the first component of a name is a registry host, by the Docker rule: it contains a
/// `.` or a `:`, or is `localhost`, or has an upper-case letter.
fn looks_like_host(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// `domain-component ('.' domain-component)* [':' port]`, or a bracketed IPv6 address with an
/// optional port.
fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        return match after {
            "" => true,
            p => p.strip_prefix(':').is_some_and(valid_port),
        };
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| !valid_port(p)) {
        return false;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| p <= 65535)
}

/// Repository path: components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`.
fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or a run of `-`, always followed by an alphanumeric.
        let sep_start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == sep_start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The digest of a reference: a [`Digest`] (`sha256:` with 64 lower-case hex digits),
/// `sha512:` with 128 lower-case hex digits, or another algorithm name with at least 32 hex
/// digits.
fn valid_digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    match algo {
        "sha256" => d.parse::<Digest>().is_ok(),
        "sha512" => {
            hex.len() == 128
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        _ => {
            !algo.is_empty()
                && algo
                    .bytes()
                    .all(|b| is_alnum(b) || matches!(b, b'+' | b'.' | b'_' | b'-'))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
    }
}

/// `host[:port]` and an optional path after it, as written in a `--registry` or `registry:`
/// value. One trailing `/` is dropped; the path, when there is one, is a repository path.
fn split_registry(s: &str) -> Result<(&str, Option<&str>), &'static str> {
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    let (host, path) = match trimmed.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (trimmed, None),
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    if !valid_host(host) {
        return Err("the host is not a valid host[:port]");
    }
    if path.is_some_and(|p| !valid_path(p)) {
        return Err(
            "the prefix must be lower-case path components ([a-z0-9] with . _ - inside) separated by single `/`",
        );
    }
    Ok((host, path))
}

/// A registry prefix as written in a values file's `registry:` or `imageRegistry:` value:
/// `host[:port][/path]` or `REGISTRY[/path]`. The first component is always the host here,
/// dotted or not, as in a Bitnami `image.registry` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryPrefix {
    /// Normalised host, `None` for the placeholder.
    pub host: Option<String>,
    /// Path components after the host, joined by `/` (may be empty).
    pub path: String,
}

impl RegistryPrefix {
    /// Parses `host[:port][/path]` or `REGISTRY[/path]`; `None` when it is neither.
    pub fn parse(s: &str) -> Option<RegistryPrefix> {
        let (host, path) = split_registry(s).ok()?;
        Some(RegistryPrefix {
            host: (host != PLACEHOLDER).then(|| normalise_host(host)),
            path: path.unwrap_or_default().to_string(),
        })
    }

    /// `PATH/NAME`: the repository a `repository:` value of `name` means below this prefix, as
    /// written (Docker Hub's implicit `library/` is [`normalise_path`]'s to add).
    pub(crate) fn join(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.path)
        }
    }
}

/// The customer's registry that images are pushed to and values are redirected to:
/// `--registry HOST[:PORT][/PREFIX]`.
///
/// `ORIG_REGISTRY/PATH:TAG` maps to `HOST/PREFIX/PATH:TAG`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `host[:port]`, as given (not lower-cased).
    pub host: String,
    /// Repository path prefix, without leading or trailing `/`.
    pub prefix: Option<String>,
}

impl Target {
    /// Parses `HOST[:PORT][/PREFIX]`. One trailing `/` is accepted and dropped.
    ///
    /// # Errors
    /// A scheme (`https://`), an empty or malformed host or port, or a prefix that is not a valid
    /// repository path (lower-case components separated by single `/`).
    pub fn parse(value: &str) -> Result<Self, BadReference> {
        let (host, prefix) = if value.contains("://") {
            Err("a registry has no scheme; drop the `https://` (and use --plain-http for a plain-HTTP registry)")
        } else {
            split_registry(value)
        }
        .map_err(|reason| BadReference::Target {
            value: value.to_string(),
            reason,
        })?;
        Ok(Target {
            host: host.to_string(),
            prefix: prefix.map(str::to_string),
        })
    }

    /// `HOST` or `HOST/PREFIX`: what a registry value becomes.
    pub fn base(&self) -> String {
        self.join("")
    }

    /// `HOST[/PREFIX]/PATH` for a repository path at the original registry (`path` may be empty).
    pub fn join(&self, path: &str) -> String {
        let repository = self.repository(path);
        if repository.is_empty() {
            self.host.clone()
        } else {
            format!("{}/{repository}", self.host)
        }
    }

    /// The repository an image of the original `path` is pushed to: `PREFIX/PATH`, or `PATH`
    /// without a prefix.
    pub fn repository(&self, path: &str) -> String {
        match (&self.prefix, path) {
            (Some(p), "") => p.clone(),
            (Some(p), path) => format!("{p}/{path}"),
            (None, path) => path.to_string(),
        }
    }

    /// If a normalised `host` and `path` already point into this target, the path below the
    /// prefix.
    pub(crate) fn strip<'p>(&self, host: &str, path: &'p str) -> Option<&'p str> {
        if normalise_host(&self.host) != host {
            return None;
        }
        match &self.prefix {
            None => Some(path),
            Some(p) if path == p => Some(""),
            Some(p) => path.strip_prefix(p.as_str())?.strip_prefix('/'),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(s: &str, implicit: bool) -> Option<String> {
        parse_reference(s, implicit).map(|r| r.to_string())
    }

    #[test]
    fn references_normalise_like_docker() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("nginx", true, Some("docker.io/library/nginx")),
            ("nginx", false, None),
            ("nginx:1.25", true, Some("docker.io/library/nginx:1.25")),
            ("bitnami/redis:7", true, Some("docker.io/bitnami/redis:7")),
            ("Index.Docker.io/x", false, Some("docker.io/library/x")),
            ("index.docker.io/x:1", true, Some("docker.io/library/x:1")),
            ("registry-1.docker.io/a/b", true, Some("docker.io/a/b")),
            ("docker.io/nginx", true, Some("docker.io/library/nginx")),
            ("reg.io/team/app:1.4", false, Some("reg.io/team/app:1.4")),
            ("Quay.IO/a/b", true, Some("quay.io/a/b")),
            ("UPPER/case:1", true, Some("upper/case:1")),
            ("localhost:5000/a/b:c", false, Some("localhost:5000/a/b:c")),
            ("127.0.0.1:5000/x", true, Some("127.0.0.1:5000/x")),
            ("[::1]:5000/x:1", true, Some("[::1]:5000/x:1")),
            ("REGISTRY/team/app:1", false, Some("REGISTRY/team/app:1")),
            ("true", true, Some("docker.io/library/true")),
        ];
        for (input, implicit, want) in cases {
            assert_eq!(
                show(input, *implicit).as_deref(),
                *want,
                "{input} (implicit: {implicit})"
            );
        }
        for bad in [
            "REGISTRY",
            "https://example.com/x",
            "example.com/Upper",
            "",
            "a b",
            "a//b",
            "a..b/c",
            "a/-b",
            "a/b:",
            "a/b:.x",
            "a:b:c:d/e",
            "-a.b/c",
            "h:99999/c",
        ] {
            assert_eq!(show(bad, true), None, "{bad}");
        }
        let r = ImageRef::parse("registry.permit.io/agent-security/gateway:1.4.0").unwrap();
        assert_eq!(
            (r.host(), r.repository.as_str(), r.tag.as_deref()),
            (
                "registry.permit.io",
                "agent-security/gateway",
                Some("1.4.0")
            )
        );
        assert!(ImageRef::parse("REGISTRY/a/b:1").is_err());
    }

    #[test]
    fn digests_are_checked_hex() {
        let good = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("quay.io/a/b:1@{good}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(good.as_str()));
        let sha512 = format!("sha512:{}", "0".repeat(128));
        assert!(ImageRef::parse(&format!("quay.io/a/b@{sha512}")).is_ok());
        for bad in [
            format!("sha256:{}", "g".repeat(64)),
            format!("sha256:{}z", "a".repeat(63)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{}", "x".repeat(128)),
            format!("blake3:{}", "q".repeat(64)),
            "sha256:12".to_string(),
            "zz".to_string(),
        ] {
            let reference = format!("quay.io/a/b:1@{bad}");
            assert!(ImageRef::parse(&reference).is_err(), "{reference}");
            assert!(parse_reference(&reference, true).is_none(), "{reference}");
            assert!(parse_reference(&reference, false).is_none(), "{reference}");
        }
    }

    #[test]
    fn components() {
        for ok in ["a", "a-b", "a--b", "a__b", "a.b", "a_b", "0x"] {
            assert!(valid_component(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a___b", "a..b", "A", "a._b"] {
            assert!(!valid_component(bad), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "docker.io",
            "localhost",
            "h:5000",
            "[::1]:5000",
            "[fe80::1]",
            "a-b.c",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "", "-a.b", "a.b-", "a..b", "h:", "h:99999", "h:x", "[::1", "a_b.c",
        ] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn targets() {
        let ok: &[(&str, &str, Option<&str>)] = &[
            ("harbor.company.com", "harbor.company.com", None),
            (
                "harbor.company.com/mcp-gateway",
                "harbor.company.com",
                Some("mcp-gateway"),
            ),
            (
                "harbor.company.com/mcp-gateway/",
                "harbor.company.com",
                Some("mcp-gateway"),
            ),
            (
                "us-central1-docker.pkg.dev/my-project/mcp-gateway",
                "us-central1-docker.pkg.dev",
                Some("my-project/mcp-gateway"),
            ),
            ("127.0.0.1:5000", "127.0.0.1:5000", None),
            ("localhost:5000/a", "localhost:5000", Some("a")),
            (
                "harbor.local:8443/team/mirror/",
                "harbor.local:8443",
                Some("team/mirror"),
            ),
            ("[::1]:5000/x", "[::1]:5000", Some("x")),
            ("[::1]", "[::1]", None),
        ];
        for (input, host, prefix) in ok {
            let t = Target::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (t.host.as_str(), t.prefix.as_deref()),
                (*host, *prefix),
                "{input}"
            );
        }
        for bad in [
            "",
            "/x",
            "https://harbor.io",
            "h:port",
            "h:",
            "h/UPPER",
            "h//x",
            "h/x//",
            "h/a-",
            "h/a..b",
            "h o",
            "h_x:5000",
            "h:70000",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_repository_for_push_and_values() {
        let t = Target::parse("h:5000/p/q").unwrap();
        let r = ImageRef::parse("index.docker.io/nginx:1").unwrap();
        assert_eq!(t.repository(&r.repository), "p/q/library/nginx");
        assert_eq!(t.join(&r.repository), "h:5000/p/q/library/nginx");
        assert_eq!(Target::parse("h").unwrap().repository("a/b"), "a/b");
        assert_eq!(t.base(), "h:5000/p/q");
        assert_eq!(t.strip("h:5000", "p/q/a/b"), Some("a/b"));
        assert_eq!(
            Target::parse("H:5000/p/q")
                .unwrap()
                .strip("h:5000", "p/q/a/b"),
            Some("a/b")
        );
        assert_eq!(t.strip("h:5000", "p/qa/b"), None);
        assert_eq!(t.strip("h:5000", "p/q"), Some(""));
    }

    #[test]
    fn registry_prefixes() {
        let p = RegistryPrefix::parse("Index.Docker.IO/bitnami/").unwrap();
        assert_eq!(
            (p.host.as_deref(), p.path.as_str()),
            (Some("docker.io"), "bitnami")
        );
        let p = RegistryPrefix::parse("REGISTRY").unwrap();
        assert_eq!((p.host, p.path.as_str()), (None, ""));
        let p = RegistryPrefix::parse("docker").unwrap();
        assert_eq!(p.host.as_deref(), Some("docker"));
        for bad in ["", "h//", "h/A", "-h"] {
            assert!(RegistryPrefix::parse(bad).is_none(), "{bad}");
        }
    }
}

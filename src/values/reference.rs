//! Image references and registry prefixes as they appear in values files, parsed and normalised.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The placeholder a vendor writes where the customer's registry goes.
pub const PLACEHOLDER: &str = "REGISTRY";

/// Docker Hub's canonical registry name; `index.docker.io` and `registry-1.docker.io` map to it.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
///
/// `registry` is `None` when the reference starts with the `REGISTRY` placeholder. Registries
/// are lower-cased and Docker Hub aliases become `docker.io`; a one-component Docker Hub
/// repository gets its implicit `library/` prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Registry host (`host[:port]`), or `None` for the `REGISTRY` placeholder.
    pub registry: Option<String>,
    /// Repository path inside the registry, e.g. `agent-security/gateway`.
    pub repository: String,
    /// Tag, if one is written.
    pub tag: Option<String>,
    /// Digest (`sha256:…`), if one is written.
    pub digest: Option<String>,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.registry.as_deref().unwrap_or(PLACEHOLDER))?;
        write!(f, "/{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// An image reference together with how it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub image: ImageRef,
    /// Whether a registry host (or the placeholder) was written, rather than implied.
    pub explicit_registry: bool,
}

/// A registry prefix as written in a `registry:` or `imageRegistry:` value: `host[:port][/path]`
/// or `REGISTRY[/path]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegistryPrefix {
    /// Normalised host, `None` for the placeholder.
    pub host: Option<String>,
    /// Path components after the host, joined by `/` (may be empty).
    pub path: String,
}

/// Parses an image reference. With `allow_implicit`, a name without a registry host
/// (`nginx:1.25`, `bitnami/redis`) is read as a Docker Hub reference; without it, such a name is
/// not a reference.
pub(crate) fn parse_reference(s: &str, allow_implicit: bool) -> Option<Parsed> {
    if s.is_empty() || s.len() > 4096 {
        return None;
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => {
            if !valid_digest(d) {
                return None;
            }
            (n, Some(d))
        }
        None => (s, None),
    };
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i + 1..].contains('/') => {
            let tag = &name_tag[i + 1..];
            if !valid_tag(tag) {
                return None;
            }
            (&name_tag[..i], Some(tag))
        }
        _ => (name_tag, None),
    };
    let (registry, path, explicit) = match name.split_once('/') {
        Some((first, rest)) if first == PLACEHOLDER => (None, rest, true),
        Some((first, rest)) if looks_like_host(first) => {
            if !valid_host(first) {
                return None;
            }
            (Some(normalise_host(first)), rest, true)
        }
        _ if allow_implicit => (Some(DOCKER_HUB.to_string()), name, false),
        _ => return None,
    };
    if !valid_path(path) {
        return None;
    }
    let repository = normalise_path(registry.as_deref(), path);
    Some(Parsed {
        image: ImageRef {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        },
        explicit_registry: explicit,
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

/// Parses a registry prefix (`host[:port][/path]` or `REGISTRY[/path]`). The first component is
/// always the host here, dotted or not, as in a Bitnami `image.registry` value.
pub(crate) fn parse_registry_prefix(s: &str) -> Option<RegistryPrefix> {
    let s = s.strip_suffix('/').unwrap_or(s);
    let (first, path) = s.split_once('/').unwrap_or((s, ""));
    if !path.is_empty() && !valid_path(path) {
        return None;
    }
    let host = if first == PLACEHOLDER {
        None
    } else if valid_host(first) {
        Some(normalise_host(first))
    } else {
        return None;
    };
    Some(RegistryPrefix {
        host,
        path: path.to_string(),
    })
}

/// Lower-cases a host and maps Docker Hub's aliases to `docker.io`.
pub(crate) fn normalise_host(host: &str) -> String {
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
pub(crate) fn valid_host(host: &str) -> bool {
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
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => return valid_port(port),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(port) = port {
        if !valid_port(port) {
            return false;
        }
    }
    !name.is_empty()
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
pub(crate) fn valid_path(path: &str) -> bool {
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

/// `sha256:` with 64 lower-case hex digits, `sha512:` with 128, or another registered-looking
/// algorithm with at least 32 characters of encoded digest.
pub(crate) fn valid_digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    let lower_hex = |h: &str, n: usize| {
        h.len() == n
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match algo {
        "sha256" => lower_hex(hex, 64),
        "sha512" => lower_hex(hex, 128),
        _ => {
            !algo.is_empty()
                && algo
                    .bytes()
                    .all(|b| is_alnum(b) || matches!(b, b'+' | b'.' | b'_' | b'-'))
                && hex.len() >= 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("nginx", true, Some("docker.io/library/nginx")),
            ("nginx", false, None),
            ("nginx:1.25", true, Some("docker.io/library/nginx:1.25")),
            (
                "bitnami/redis:7.2",
                true,
                Some("docker.io/bitnami/redis:7.2"),
            ),
            (
                "Index.Docker.io/nginx",
                false,
                Some("docker.io/library/nginx"),
            ),
            (
                "registry.permit.io/agent-security/gateway:1.4.0",
                false,
                Some("registry.permit.io/agent-security/gateway:1.4.0"),
            ),
            ("localhost:5000/a/b", false, Some("localhost:5000/a/b")),
            (
                "REGISTRY/agent-security/gateway:1.4.0",
                false,
                Some("REGISTRY/agent-security/gateway:1.4.0"),
            ),
            ("REGISTRY", true, Some("docker.io/library/REGISTRY")),
            ("https://example.com/x", true, None),
            ("example.com/Upper", true, None),
            ("a//b", true, None),
            ("a/b:", true, None),
            ("true", true, Some("docker.io/library/true")),
            ("host/a:b@sha256:zz", true, None),
        ];
        for (input, implicit, want) in cases {
            let got = parse_reference(input, *implicit).map(|p| p.image.to_string());
            // "REGISTRY" alone is upper-case and so not a valid repository.
            let want = if *input == "REGISTRY" {
                None
            } else {
                want.map(str::to_string)
            };
            assert_eq!(got, want, "{input}");
        }
        let with_digest = format!("quay.io/a/b:1@{d}");
        assert_eq!(
            parse_reference(&with_digest, false)
                .unwrap()
                .image
                .digest
                .as_deref(),
            Some(d.as_str())
        );
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
}

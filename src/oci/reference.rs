//! Image references (`registry/repository:tag@digest`), parsed and normalised like Docker does.

use std::fmt;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host, with port when given; `docker.io` when the reference names none.
    pub registry: String,
    /// Repository path; Docker Hub's single-name images get `library/`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// A string that is not an image reference.
#[derive(Debug, thiserror::Error)]
#[error("`{reference}` is not an image reference ({reason}); expected `registry/path:tag`")]
pub struct BadReference {
    pub reference: String,
    pub reason: &'static str,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, BadReference> {
        let bad = |reason| BadReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("empty, too long or containing spaces"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !d.starts_with("sha256:") || d.len() != 71 {
                    return Err(bad("the digest is not sha256:<64 hex>"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(bad(
                    "the tag may hold letters, digits, `_`, `.` and `-` only",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let host_ok = match registry.split_once(':') {
            Some((host, port)) => {
                valid_host(host)
                    && !port.is_empty()
                    && port.len() <= 5
                    && port.bytes().all(|b| b.is_ascii_digit())
            }
            None => valid_host(&registry),
        };
        if !host_ok {
            return Err(bad(
                "the registry must be a host name or address with an optional port",
            ));
        }
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let path_ok = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.chars().all(|ch| {
                        ch.is_ascii_lowercase()
                            || ch.is_ascii_digit()
                            || matches!(ch, '.' | '_' | '-')
                    })
            });
        if !path_ok {
            return Err(bad(
                "the repository path must be lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The repository it is pushed to under a registry prefix: `PREFIX/REPOSITORY`, or
    /// `REPOSITORY` without one (`ORIG/PATH:TAG` → `HOST/PREFIX/PATH:TAG`).
    pub fn target_repo(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            self.repository.clone()
        } else {
            format!("{prefix}/{}", self.repository)
        }
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let cases = [
            ("redis:7.2", "docker.io", "library/redis", Some("7.2")),
            ("bitnami/redis", "docker.io", "bitnami/redis", None),
            (
                "registry.permit.io/agent-security/gateway:1.4.0",
                "registry.permit.io",
                "agent-security/gateway",
                Some("1.4.0"),
            ),
            ("localhost:5000/a/b:c", "localhost:5000", "a/b", Some("c")),
            ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None),
        ];
        for (input, reg, repo, tag) in cases {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(
                (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
                (reg, repo, tag),
                "{input}"
            );
        }
        let r = ImageRef::parse("registry.permit.io/agent-security/gateway:1.4.0").unwrap();
        assert_eq!(r.target_repo("mirror/x"), "mirror/x/agent-security/gateway");
        assert_eq!(r.target_repo(""), "agent-security/gateway");
        for bad in [
            "",
            "UPPER/case:1",
            "a:b:c:d/e",
            "x@sha256:12",
            "a b",
            "a/b:",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}

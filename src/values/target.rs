//! The customer's registry that images and values are redirected to: `HOST[:PORT][/PREFIX]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::reference::{valid_host, valid_path};

/// A parsed `--registry HOST[:PORT][/PREFIX]` value.
///
/// `ORIG_REGISTRY/PATH:TAG` maps to `HOST/PREFIX/PATH:TAG`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `host[:port]`, as given (not lower-cased).
    pub host: String,
    /// Repository path prefix, without leading or trailing `/`.
    pub prefix: Option<String>,
}

/// Why a `--registry` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid registry `{value}`: {reason}; expected HOST[:PORT][/PREFIX], e.g. harbor.example.com/mcp-gateway")]
pub struct TargetError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Target {
    /// Parses `HOST[:PORT][/PREFIX]`. One trailing `/` is accepted and dropped.
    ///
    /// # Errors
    /// A scheme (`https://`), an empty or malformed host or port, or a prefix that is not a valid
    /// repository path (lower-case components separated by `/`).
    pub fn parse(value: &str) -> Result<Self, TargetError> {
        let err = |reason| TargetError {
            value: value.to_string(),
            reason,
        };
        if value.contains("://") {
            return Err(err("a registry has no scheme; drop the `https://`"));
        }
        let trimmed = value.strip_suffix('/').unwrap_or(value);
        let (host, prefix) = match trimmed.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (trimmed, None),
        };
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        if !valid_host(host) {
            return Err(err("the host is not a valid host[:port]"));
        }
        if let Some(p) = prefix {
            if !valid_path(p) {
                return Err(err(
                    "the prefix must be lower-case path components ([a-z0-9] with . _ - inside) separated by single `/`",
                ));
            }
        }
        Ok(Target {
            host: host.to_string(),
            prefix: prefix.map(str::to_string),
        })
    }

    /// `HOST` or `HOST/PREFIX`: what a registry value becomes.
    pub fn base(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{}/{}", self.host, p),
            None => self.host.clone(),
        }
    }

    /// `HOST[/PREFIX]/PATH` for a repository path at the original registry (`path` may be empty).
    pub fn join(&self, path: &str) -> String {
        let mut out = self.base();
        if !path.is_empty() {
            out.push('/');
            out.push_str(path);
        }
        out
    }

    /// If `host` and `path` already point into this target, the path below the prefix.
    pub(crate) fn strip<'p>(&self, host: &str, path: &'p str) -> Option<&'p str> {
        if !host.eq_ignore_ascii_case(&self.host) {
            return None;
        }
        match &self.prefix {
            None => Some(path),
            Some(p) => {
                if path == p {
                    Some("")
                } else {
                    path.strip_prefix(p.as_str())?.strip_prefix('/')
                }
            }
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
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

    #[test]
    fn parse_table() {
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
            ("[::1]:5000/x", "[::1]:5000", Some("x")),
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
            "h/UPPER",
            "h//x",
            "h/x//",
            "h o",
            "h:70000",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strip_and_join() {
        let t = Target::parse("h:5000/p/q").unwrap();
        assert_eq!(t.join("a/b"), "h:5000/p/q/a/b");
        assert_eq!(t.strip("H:5000", "p/q/a/b"), Some("a/b"));
        assert_eq!(t.strip("h:5000", "p/qa/b"), None);
        assert_eq!(t.strip("h:5000", "p/q"), Some(""));
    }
}

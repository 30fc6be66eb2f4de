//! `SafePath`: a bundle-relative path that cannot escape the folder it is joined to.

use std::fmt;
use std::path::{Path, PathBuf};

/// A relative, normalised, UTF-8 path made of plain components separated by `/`.
///
/// It has no empty, `.` or `..` components, no leading `/`, no backslashes, no NUL or
/// control characters and at most 4096 bytes, so `dir.join(p)` always stays inside `dir`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafePath(String);

/// Why a path is not a `SafePath`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    #[error("the path is empty")]
    Empty,
    #[error("`{0}` is absolute; bundle paths are relative")]
    Absolute(String),
    #[error("`{0}` has a `..` component that would leave the bundle folder")]
    ParentDir(String),
    #[error("`{0}` has an empty or `.` component; bundle paths are normalised")]
    NotNormal(String),
    #[error("`{0}` contains a backslash, NUL or control character")]
    BadCharacter(String),
    #[error("the path is not valid UTF-8 ({0})")]
    NotUtf8(String),
    #[error("the path is longer than 4096 bytes")]
    TooLong,
}

impl SafePath {
    /// Checks `s` and wraps it.
    pub fn new(s: &str) -> Result<Self, UnsafePath> {
        if s.is_empty() {
            return Err(UnsafePath::Empty);
        }
        if s.len() > 4096 {
            return Err(UnsafePath::TooLong);
        }
        if s.starts_with('/') {
            return Err(UnsafePath::Absolute(s.to_string()));
        }
        if s.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(UnsafePath::BadCharacter(s.escape_debug().to_string()));
        }
        for part in s.split('/') {
            match part {
                ".." => return Err(UnsafePath::ParentDir(s.to_string())),
                "" | "." => return Err(UnsafePath::NotNormal(s.to_string())),
                _ => {}
            }
        }
        Ok(SafePath(s.to_string()))
    }

    /// Checks raw bytes from an archive header.
    pub fn from_bytes(b: &[u8]) -> Result<Self, UnsafePath> {
        match std::str::from_utf8(b) {
            Ok(s) => SafePath::new(s),
            Err(_) => Err(UnsafePath::NotUtf8(
                String::from_utf8_lossy(b).escape_debug().to_string(),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first component.
    pub fn first(&self) -> &str {
        self.0.split('/').next().unwrap_or("")
    }

    /// The path with its first component removed, if anything is left.
    pub fn strip_first(&self) -> Option<SafePath> {
        self.0
            .split_once('/')
            .map(|(_, rest)| SafePath(rest.to_string()))
    }

    /// `self/other`.
    pub fn join(&self, other: &SafePath) -> SafePath {
        SafePath(format!("{}/{}", self.0, other.0))
    }

    /// Joins onto `dir`; the result is always inside `dir`.
    pub fn under(&self, dir: &Path) -> PathBuf {
        dir.join(&self.0)
    }
}

impl fmt::Display for SafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl serde::Serialize for SafePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SafePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SafePath::new(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for SafePath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SafePath".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 4096,
            "pattern": "^(?!/)(?!.*(^|/)\\.{1,2}(/|$))(?!.*//)[^\\\\\\u0000-\\u001f]+$",
            "description": "A relative path with `/` separators and no empty, `.` or `..` components."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        for ok in ["a", "a/b.txt", "images/blobs/sha256/ab", "..a/b..", "a b/c"] {
            assert!(SafePath::new(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", UnsafePath::Empty),
            ("/etc/passwd", UnsafePath::Absolute("/etc/passwd".into())),
            ("a/../../b", UnsafePath::ParentDir("a/../../b".into())),
            ("..", UnsafePath::ParentDir("..".into())),
            ("a//b", UnsafePath::NotNormal("a//b".into())),
            ("./a", UnsafePath::NotNormal("./a".into())),
            ("a/", UnsafePath::NotNormal("a/".into())),
        ];
        for (input, want) in cases {
            assert_eq!(SafePath::new(input).unwrap_err(), want, "{input}");
        }
        assert!(matches!(
            SafePath::new("a\\..\\b"),
            Err(UnsafePath::BadCharacter(_))
        ));
        assert!(matches!(
            SafePath::from_bytes(b"a/\xff"),
            Err(UnsafePath::NotUtf8(_))
        ));
    }
}

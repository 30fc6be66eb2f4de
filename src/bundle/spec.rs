//! The bundle spec `ferry.yaml`: what a release engineer declares, parsed with line numbers.

use crate::bundle::manifest::Destination;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

/// A parsed `ferry.yaml`. Paths in it are relative to the file's folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: Spanned<String>,
    pub version: Spanned<String>,
    #[serde(default)]
    pub readme: Option<Spanned<String>>,
    #[serde(default)]
    pub charts: Vec<Spanned<String>>,
    #[serde(default)]
    pub values: Vec<Spanned<String>>,
    #[serde(default)]
    pub scripts: Vec<Spanned<String>>,
    #[serde(default)]
    pub files: Vec<ExtraFile>,
    #[serde(default)]
    pub images: Vec<ImageSpec>,
    /// Platforms (`os/arch[/variant]`) to keep of every multi-platform image pulled from a
    /// registry, unless the image lists its own; empty keeps every platform.
    #[serde(default)]
    pub platforms: Vec<Spanned<String>>,
    #[serde(default)]
    pub egress: Vec<Destination>,
}

/// An extra file copied into the bundle.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraFile {
    pub src: Spanned<String>,
    /// Path inside the bundle; the source's file name when absent.
    #[serde(default)]
    pub dest: Option<Spanned<String>>,
}

/// An image to carry, and where its bytes come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The image's original reference, `registry/path:tag`.
    #[serde(rename = "ref")]
    pub reference: Spanned<String>,
    /// `oci:DIR[:NAME]`, `oci-archive:FILE[:NAME]`, `docker-archive:FILE[:REF]`, or
    /// `docker://HOST/PATH:TAG[@DIGEST]` to pull from another registry than `ref` names.
    /// Absent: pulled from the registry `ref` names.
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    /// The manifest or index digest the image must have (checked; a registry tag is
    /// resolved to it).
    #[serde(default)]
    pub digest: Option<Spanned<String>>,
    /// Platforms to keep of a multi-platform image pulled from a registry (overrides the
    /// spec-wide `platforms`).
    #[serde(default)]
    pub platforms: Option<Vec<Spanned<String>>>,
}

/// A spec that cannot be used, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read the spec {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}:{line}:{column}: `{field}`: {message}")]
    Field {
        path: PathBuf,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

impl Spec {
    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Spec::parse(&text, path)
    }

    /// Parses spec text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
        serde_saphyr::from_str(text).map_err(|e| SpecError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// Builds a located error for a spec field.
pub fn field_error<T>(
    path: &Path,
    field: &str,
    at: &Spanned<T>,
    message: impl Into<String>,
) -> SpecError {
    SpecError::Field {
        path: path.to_path_buf(),
        line: at.referenced.line() as usize,
        column: at.referenced.column() as usize,
        field: field.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_located() {
        let err = Spec::parse(
            "name: a\nversion: '1'\nimagez: []\n",
            Path::new("ferry.yaml"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ferry.yaml"), "{msg}");
        assert!(msg.contains("imagez"), "{msg}");
        assert!(msg.contains('3'), "line 3 expected in: {msg}");
    }

    #[test]
    fn spans_point_at_values() {
        let s = Spec::parse(
            "name: a\nversion: '1'\nimages:\n  - ref: x/y:1\n    from: oci:d:y\n",
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(s.images[0].from.as_ref().unwrap().referenced.line(), 5);
    }
}

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
    pub charts: Vec<Spanned<ChartSource>>,
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
    /// Image signatures to check at build, for every image that names none of its own.
    #[serde(default)]
    pub verify: Option<VerifySpec>,
}

/// `verify:`: the cosign public key an image's signature must verify under.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// A PKIX public key PEM file (`cosign.pub`), relative to the spec.
    pub key: Spanned<String>,
}

/// Where a chart comes from: a folder or packaged `.tgz` beside the spec,
/// `oci://HOST/PATH/CHART:VERSION`, or a classic chart repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartSource {
    /// A chart folder or a packaged chart, relative to the spec.
    Path(String),
    /// `oci://HOST/PATH/CHART:VERSION`: a chart pushed to a registry (`helm push`).
    Oci(String),
    /// A chart from a classic repository's `index.yaml`.
    Repo {
        repo: String,
        name: String,
        version: String,
    },
}

impl ChartSource {
    /// How the spec writes it, for messages.
    pub fn describe(&self) -> String {
        match self {
            ChartSource::Path(p) | ChartSource::Oci(p) => p.clone(),
            ChartSource::Repo {
                repo,
                name,
                version,
            } => format!("{name} {version} from {repo}"),
        }
    }
}

impl<'de> Deserialize<'de> for ChartSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ChartSourceVisitor)
    }
}

struct ChartSourceVisitor;

impl<'de> serde::de::Visitor<'de> for ChartSourceVisitor {
    type Value = ChartSource;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a chart path, `oci://HOST/PATH/CHART:VERSION`, or `{repo: URL, name: NAME, version: VERSION}`")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ChartSource, E> {
        Ok(if v.starts_with("oci://") {
            ChartSource::Oci(v.to_string())
        } else {
            ChartSource::Path(v.to_string())
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ChartSource, A::Error> {
        use serde::de::Error;
        let (mut repo, mut name, mut version) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "repo" => &mut repo,
                "name" => &mut name,
                "version" => &mut version,
                other => return Err(A::Error::unknown_field(other, &["repo", "name", "version"])),
            };
            *slot = Some(map.next_value::<String>()?);
        }
        Ok(ChartSource::Repo {
            repo: repo.ok_or_else(|| A::Error::missing_field("repo"))?,
            name: name.ok_or_else(|| A::Error::missing_field("name"))?,
            version: version.ok_or_else(|| A::Error::missing_field("version"))?,
        })
    }
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
    /// The key this image's signature must verify under (overrides the spec-wide `verify`).
    #[serde(default)]
    pub verify: Option<VerifySpec>,
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
    fn charts_come_from_paths_registries_and_repositories() {
        let s = Spec::parse(
            "name: a\nversion: '1'\ncharts:\n  - charts/x\n  - oci://r.example/c/x:1.2.0\n  - repo: https://charts.example\n    name: x\n    version: 1.0.0\n",
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(s.charts[0].value, ChartSource::Path("charts/x".into()));
        assert_eq!(
            s.charts[1].value,
            ChartSource::Oci("oci://r.example/c/x:1.2.0".into())
        );
        assert_eq!(s.charts[2].referenced.line(), 6);
        assert!(matches!(&s.charts[2].value, ChartSource::Repo { name, .. } if name == "x"));
        let err = Spec::parse(
            "name: a\nversion: '1'\ncharts:\n  - repo: https://c\n    nam: x\n",
            Path::new("f"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nam"), "{err}");
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

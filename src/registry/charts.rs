//! Helm charts from where they live: an OCI registry (`oci://HOST/PATH/CHART:VERSION`, Helm's
//! OCI artifact) or a classic chart repository (`index.yaml` and packaged `.tgz` files).
//!
//! Either way the packaged chart comes back in memory (charts are small; [`MAX_CHART`] bounds
//! it) with its sha256, checked: against the manifest's layer descriptor for OCI, against the
//! `digest` the repository's index lists for a classic repository. Requests go through a
//! [`RegistryClient`], so retries, TLS options and the credentials rule are the same as for
//! images: credentials go to the repository's own origin only, never to a chart URL on
//! another host.

use std::collections::BTreeMap;

use reqwest::Url;

use super::auth::Access;
use super::{RegistryClient, RegistryError, RegistryOptions};
use crate::oci::digest::Digest;
use crate::oci::document::Document;

/// The config media type of a chart pushed with `helm push`.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
/// The layer media type of the packaged chart in Helm's OCI artifact.
pub const HELM_CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The largest packaged chart ferry fetches.
pub const MAX_CHART: u64 = 32 * 1024 * 1024;
/// The largest `index.yaml` ferry reads (public repositories' indexes reach tens of MiB).
pub const MAX_INDEX: u64 = 64 * 1024 * 1024;

/// A packaged chart fetched from a registry or a chart repository.
#[derive(Debug, Clone)]
pub struct FetchedChart {
    /// The `.tgz` bytes, exactly as served.
    pub bytes: Vec<u8>,
    /// Their sha256 (for OCI, the chart layer's digest).
    pub digest: Digest,
    /// For OCI, the digest of the artifact's manifest.
    pub manifest_digest: Option<Digest>,
    /// Where it came from: the `oci://` reference or the chart's URL.
    pub source: String,
    /// Facts worth telling the user, e.g. that the index lists no digest to check against.
    pub notes: Vec<String>,
}

/// `oci://HOST[:PORT]/PATH/CHART:VERSION`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciChartRef {
    /// `HOST[:PORT]`.
    pub registry: String,
    /// `PATH/CHART`.
    pub repository: String,
    /// The chart version (the tag is this with `+` written as `_`, as `helm push` does).
    pub version: String,
}

impl OciChartRef {
    /// Parses `oci://HOST[:PORT]/PATH/CHART:VERSION`.
    pub fn parse(reference: &str) -> Result<OciChartRef, ChartError> {
        let bad = |reason: &str| ChartError::BadReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        let rest = reference
            .strip_prefix("oci://")
            .ok_or_else(|| bad("expected oci://HOST/PATH/CHART:VERSION"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no repository after the registry host"))?;
        let (repository, version) = path
            .rsplit_once(':')
            .filter(|(r, _)| !r.contains('@'))
            .ok_or_else(|| bad("no :VERSION at the end"))?;
        if registry.is_empty() || repository.is_empty() || version.is_empty() {
            return Err(bad("expected oci://HOST/PATH/CHART:VERSION"));
        }
        if repository.split('/').any(str::is_empty) {
            return Err(bad("empty path component"));
        }
        Ok(OciChartRef {
            registry: registry.to_ascii_lowercase(),
            repository: repository.to_string(),
            version: version.to_string(),
        })
    }

    /// The tag `helm push` gives the version (`+` is not allowed in OCI tags).
    pub fn tag(&self) -> String {
        self.version.replace('+', "_")
    }
}

impl std::fmt::Display for OciChartRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "oci://{}/{}:{}",
            self.registry, self.repository, self.version
        )
    }
}

/// Why a chart could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Talking to the registry or repository failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The chart reference cannot be understood.
    #[error("invalid chart reference {reference:?}: {reason}")]
    BadReference {
        /// What was given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The OCI artifact is not a Helm chart.
    #[error(
        "{reference} is not a Helm chart: {detail}; push charts with `helm push CHART.tgz \
         oci://HOST/PATH`"
    )]
    NotAChart {
        /// The `oci://` reference.
        reference: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The repository's `index.yaml` cannot be read.
    #[error("{url}: not a valid chart repository index: {detail}; check the repository URL")]
    BadIndex {
        /// The index URL.
        url: String,
        /// The parser's message.
        detail: String,
    },
    /// The index has no chart of that name.
    #[error("the chart repository {repo} has no chart {name:?}; it has: {available}")]
    NoSuchChart {
        /// The repository URL.
        repo: String,
        /// The chart name asked for.
        name: String,
        /// The chart names it lists (at most 20 of them).
        available: String,
    },
    /// The index has the chart but not that version.
    #[error(
        "the chart repository {repo} has no version {version} of {name}; available: {available}"
    )]
    NoSuchVersion {
        /// The repository URL.
        repo: String,
        /// The chart name.
        name: String,
        /// The version asked for.
        version: String,
        /// The versions it lists, as listed.
        available: String,
    },
    /// The downloaded chart does not match the digest its index lists.
    #[error(
        "chart {name} {version} downloaded from {url} has sha256 {found}, but the repository \
         index lists {expected}; the file or the index was changed, refusing it"
    )]
    DigestMismatch {
        /// The chart name.
        name: String,
        /// Its version.
        version: String,
        /// The URL it came from.
        url: String,
        /// What the index lists.
        expected: String,
        /// What the bytes hash to.
        found: String,
    },
}

impl ChartError {
    /// The exit code: a digest mismatch is a failed verification (1); everything else is
    /// bad input or the environment (2).
    pub fn exit_code(&self) -> i32 {
        match self {
            ChartError::DigestMismatch { .. } => 1,
            _ => 2,
        }
    }
}

impl RegistryClient {
    /// Fetches the chart `repository:version` that `helm push` put into this registry: the
    /// manifest (config [`HELM_CONFIG`], one [`HELM_CHART_LAYER`] layer), then the layer,
    /// checked against its descriptor's digest and size, at most [`MAX_CHART`] bytes.
    pub async fn fetch_oci_chart(
        &self,
        repository: &str,
        version: &str,
    ) -> Result<FetchedChart, ChartError> {
        let r = OciChartRef {
            registry: self.registry().to_string(),
            repository: repository.to_string(),
            version: version.to_string(),
        };
        let not_chart = |detail: String| ChartError::NotAChart {
            reference: r.to_string(),
            detail,
        };
        let m = self.get_manifest(repository, &r.tag()).await?;
        let manifest = match Document::parse(&m.bytes, Some(&m.media_type)) {
            Ok((_, Document::Manifest(man))) => man,
            Ok((t, Document::Index(_))) => return Err(not_chart(format!("it is an index ({t})"))),
            Err(e) => return Err(not_chart(e.to_string())),
        };
        let config = manifest.config().media_type().to_string();
        if config != HELM_CONFIG {
            return Err(not_chart(format!(
                "its config media type is {config}, expected {HELM_CONFIG}"
            )));
        }
        let layers: Vec<_> = manifest
            .layers()
            .iter()
            .filter(|l| l.media_type().to_string() == HELM_CHART_LAYER)
            .collect();
        let [layer] = layers[..] else {
            return Err(not_chart(format!(
                "it has {} layers of type {HELM_CHART_LAYER}, expected one",
                layers.len()
            )));
        };
        let digest: Digest = layer.digest().to_string().parse().map_err(|_| {
            not_chart(format!(
                "its chart layer digest {} is not sha256",
                layer.digest()
            ))
        })?;
        if layer.size() > MAX_CHART {
            return Err(RegistryError::TooLarge {
                registry: self.registry().to_string(),
                what: format!("chart {r}"),
                limit: MAX_CHART,
            }
            .into());
        }
        let bytes = self.get_blob(repository, &digest, MAX_CHART).await?;
        if bytes.len() as u64 != layer.size() {
            return Err(not_chart(format!(
                "its chart layer has {} bytes, its descriptor says {}",
                bytes.len(),
                layer.size()
            )));
        }
        Ok(FetchedChart {
            bytes,
            digest,
            manifest_digest: Some(m.digest),
            source: r.to_string(),
            notes: Vec::new(),
        })
    }
}

/// Fetches `oci://HOST/PATH/CHART:VERSION` with `opts` (whose `registry` is replaced by the
/// reference's host).
pub async fn fetch_oci_chart(
    opts: &RegistryOptions,
    reference: &str,
) -> Result<FetchedChart, ChartError> {
    let r = OciChartRef::parse(reference)?;
    let mut o = opts.clone();
    o.registry = r.registry.clone();
    let client = RegistryClient::new(o)?;
    client.fetch_oci_chart(&r.repository, &r.version).await
}

/// The parts of `index.yaml` ferry reads.
#[derive(serde::Deserialize)]
struct RepoIndex {
    #[serde(default)]
    entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(serde::Deserialize)]
struct IndexEntry {
    #[serde(default)]
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
}

/// Fetches chart `name` at `version` from the classic chart repository at `repo_url`
/// (`https://…`, or `http://…` for a plain-HTTP one): its `index.yaml` (at most
/// [`MAX_INDEX`] bytes), the entry's first URL resolved against the repository URL, and the
/// `.tgz` (at most [`MAX_CHART`] bytes), checked against the entry's `digest`. `opts` gives
/// the credentials, CA file and retries; its `registry` and `plain_http` are taken from
/// `repo_url`. Credentials go only to the repository's origin.
pub async fn fetch_repo_chart(
    opts: &RegistryOptions,
    repo_url: &str,
    name: &str,
    version: &str,
) -> Result<FetchedChart, ChartError> {
    let bad = |reason: &str| ChartError::BadReference {
        reference: repo_url.to_string(),
        reason: reason.to_string(),
    };
    let mut base = Url::parse(repo_url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(bad("a chart repository URL is http:// or https://"));
    }
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let host = match base.port() {
        Some(p) => format!("{}:{p}", base.host_str().unwrap_or_default()),
        None => base.host_str().unwrap_or_default().to_string(),
    };
    let mut o = opts.clone();
    o.registry = host;
    o.plain_http = base.scheme() == "http";
    let client = RegistryClient::new(o)?;
    let index_url = base.join("index.yaml").map_err(|e| bad(&e.to_string()))?;
    let entry = read_index(&client, &index_url, repo_url, name, version).await?;
    let Some(first) = entry.urls.first() else {
        return Err(ChartError::BadIndex {
            url: index_url.to_string(),
            detail: format!("{name} {version} lists no URL"),
        });
    };
    let url = base.join(first).map_err(|e| ChartError::BadIndex {
        url: index_url.to_string(),
        detail: format!("{name} {version}: bad URL {first:?}: {e}"),
    })?;
    let what = format!("chart {name} {version} at {url}");
    let (_, bytes) = client
        .get_limited(&url, &Access::none(), None, MAX_CHART, &what)
        .await?;
    let digest = Digest::of(&bytes);
    let mut notes = Vec::new();
    match entry
        .digest
        .as_deref()
        .map(|d| d.trim().trim_start_matches("sha256:"))
    {
        Some(listed) if !listed.is_empty() => {
            if !listed.eq_ignore_ascii_case(digest.hex()) {
                return Err(ChartError::DigestMismatch {
                    name: name.to_string(),
                    version: version.to_string(),
                    url: url.to_string(),
                    expected: listed.to_string(),
                    found: digest.hex().to_string(),
                });
            }
        }
        _ => notes.push(format!(
            "the index of {repo_url} lists no digest for {name} {version}, so the download \
             from {url} could not be checked; it has {digest}"
        )),
    }
    Ok(FetchedChart {
        bytes,
        digest,
        manifest_digest: None,
        source: url.to_string(),
        notes,
    })
}

/// Reads the index and picks the entry for `name` `version`.
async fn read_index(
    client: &RegistryClient,
    index_url: &Url,
    repo_url: &str,
    name: &str,
    version: &str,
) -> Result<IndexEntry, ChartError> {
    let what = format!("the index of chart repository {repo_url}");
    let (_, bytes) = client
        .get_limited(index_url, &Access::none(), None, MAX_INDEX, &what)
        .await?;
    let bad = |detail: String| ChartError::BadIndex {
        url: index_url.to_string(),
        detail,
    };
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    // Public indexes have hundreds of thousands of nodes; the defaults are for configs.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 50_000_000;
    budget.max_events = 100_000_000;
    budget.max_total_scalar_bytes = MAX_INDEX as usize;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let index: RepoIndex =
        serde_saphyr::from_str_with_options(&text, options).map_err(|e| bad(e.to_string()))?;
    let mut entries = index.entries;
    let Some(versions) = entries.remove(name) else {
        let names: Vec<&str> = entries.keys().map(String::as_str).take(20).collect();
        return Err(ChartError::NoSuchChart {
            repo: repo_url.to_string(),
            name: name.to_string(),
            available: if names.is_empty() {
                "no charts".into()
            } else {
                names.join(", ")
            },
        });
    };
    let listed: Vec<String> = versions.iter().map(|v| v.version.clone()).collect();
    versions
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| ChartError::NoSuchVersion {
            repo: repo_url.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            available: listed.join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_chart_references() {
        let r = OciChartRef::parse("oci://Reg.example:5000/charts/team/app:1.2.3+build.4").unwrap();
        assert_eq!(
            r,
            OciChartRef {
                registry: "reg.example:5000".into(),
                repository: "charts/team/app".into(),
                version: "1.2.3+build.4".into(),
            }
        );
        assert_eq!(r.tag(), "1.2.3_build.4");
        assert_eq!(
            r.to_string(),
            "oci://reg.example:5000/charts/team/app:1.2.3+build.4"
        );
        for bad in [
            "https://reg/app:1",
            "oci://reg",
            "oci://reg/app",
            "oci:///app:1",
            "oci://reg/:1",
            "oci://reg/app:",
            "oci://reg//app:1",
        ] {
            assert!(OciChartRef::parse(bad).is_err(), "{bad}");
        }
    }
}

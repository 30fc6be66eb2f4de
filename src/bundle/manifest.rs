//! The bundle manifest `ferry.json`: its types, canonical serialisation and checks.

use crate::bundle::safepath::SafePath;
use crate::oci::digest::Digest;
use crate::oci::reference::{BadReference, ImageRef};
use crate::oci::referrers::ReferrerKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The newest bundle format this ferry reads and writes. A bundle is written as version 1
/// unless it needs version 2 (an image carries referrers: `Manifest::needed_version`).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest bundle format this ferry reads (and writes, when nothing needs more).
pub const FORMAT_V1: u32 = 1;
/// The format revision whose delta and part heads (`bundle::partial`) carry a `kind`.
pub const PARTIAL_FORMAT_VERSION: u32 = 2;
/// The manifest's file name inside the bundle's top-level folder.
pub const MANIFEST_NAME: &str = "ferry.json";
/// The manifest signature's file name inside the bundle's top-level folder.
pub const SIGNATURE_NAME: &str = "ferry.json.sig";
/// Where images live inside the bundle's top-level folder (an OCI image layout).
pub const IMAGES_DIR: &str = "images";
/// The largest manifest a reader accepts.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// The manifest of a bundle: what is inside it, and nothing else is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "ferry bundle manifest (ferry.json), format v1 and v2")]
pub struct Manifest {
    /// The bundle format version: 1, or 2 when an image carries `referrers`. Readers refuse
    /// versions they do not know.
    pub format_version: u32,
    /// The bundle's name: letters, digits, `.`, `_` and `-`, starting with a letter or digit.
    pub name: String,
    /// The bundle's version, same alphabet as the name.
    pub version: String,
    /// Creation time, RFC 3339 in UTC, from `SOURCE_DATE_EPOCH` (0 when unset).
    pub created: String,
    /// The version of ferry that wrote the bundle.
    pub ferry_version: String,
    /// Every file of the bundle except `ferry.json` and `ferry.json.sig`, sorted by path.
    pub files: Vec<FileEntry>,
    /// Every image in `images/`, in the order of the spec.
    pub images: Vec<ImageEntry>,
    /// Every Helm chart in `charts/`.
    pub charts: Vec<ChartEntry>,
    /// The outbound destinations the vendor declares the software needs.
    #[serde(default)]
    pub egress: Vec<Destination>,
}

/// One regular file of the bundle.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the bundle's top-level folder.
    pub path: SafePath,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: Mode,
    /// SHA-256 of the content.
    pub digest: Digest,
}

/// The two permission sets a bundle file can have.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum Mode {
    /// `0644`: a regular file.
    #[serde(rename = "0644")]
    Regular,
    /// `0755`: an executable file (scripts).
    #[serde(rename = "0755")]
    Executable,
}

impl Mode {
    pub fn bits(self) -> u32 {
        match self {
            Mode::Regular => 0o644,
            Mode::Executable => 0o755,
        }
    }
    pub fn from_bits(bits: u32) -> Option<Mode> {
        match bits & 0o7777 {
            0o644 => Some(Mode::Regular),
            0o755 => Some(Mode::Executable),
            _ => None,
        }
    }
}

/// One image of the bundle's OCI layout.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageEntry {
    /// The original reference, e.g. `registry.example.com/team/app:1.0`.
    pub reference: String,
    /// The registry host of the original reference.
    pub registry: String,
    /// The repository path of the original reference, without the registry.
    pub repository: String,
    /// The tag of the original reference.
    pub tag: Option<String>,
    /// Digest of the manifest or index, as stored in `images/blobs/sha256/`.
    pub digest: Digest,
    /// Media type of the manifest or index.
    pub media_type: String,
    /// The digest of the upstream index this image was made from, when `platforms:` kept
    /// only some of its platforms: the filtered index is a new document with a new digest
    /// (each platform's manifest keeps its digest; a signature over the upstream index does
    /// not apply to the filtered one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// Non-distributable layers the image's manifests name but the bundle leaves out:
    /// nodes fetch them from their URLs, so inside an air gap the image will not pull.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_distributable: Vec<Digest>,
    /// `os/arch[/variant]` of every platform the image has.
    pub platforms: Vec<String>,
    /// Total bytes of every distinct blob of the image, manifests included.
    pub size: u64,
    /// Signatures, attestations and SBOMs attached to the image (format version 2): each an
    /// OCI manifest in `images/`, with its own descriptor in `images/index.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

/// An artifact attached to an image: by cosign's tag scheme (`tag`) or as an OCI 1.1
/// referrer (its manifest's `subject` is the image).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// What it is.
    pub kind: ReferrerKind,
    /// Digest of its manifest, as stored in `images/blobs/sha256/`.
    pub digest: Digest,
    /// Media type of its manifest.
    pub media_type: String,
    /// Size of its manifest in bytes.
    pub size: u64,
    /// cosign's tag for it in the image's repository (`sha256-HEX.sig`, `.att`, `.sbom`);
    /// absent for an OCI 1.1 referrer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest's `artifactType` (or its config's media type, for an artifact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// For an attestation: the predicate types it states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicate_types: Vec<String>,
    /// For an SBOM: the media type of its document (`application/spdx+json` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom_format: Option<String>,
    /// For a signature: the `sha256:` fingerprints of the public keys it verified under
    /// when the bundle was built (`verify:` of the spec); empty when it was not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified_keys: Vec<String>,
    /// Whether a signature carries a certificate (keyless); carried unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyless: bool,
}

impl Referrer {
    /// Its name in `images/index.json`: `REGISTRY/REPOSITORY:TAG` for a cosign tag, else
    /// `REGISTRY/REPOSITORY@DIGEST`.
    pub fn layout_name(&self, image: &ImageEntry) -> String {
        match &self.tag {
            Some(tag) => format!("{}/{}:{tag}", image.registry, image.repository),
            None => format!("{}/{}@{}", image.registry, image.repository, self.digest),
        }
    }
}

impl ImageEntry {
    /// The original reference, parsed and normalised: what pushing maps to the target registry
    /// and what values files are matched against.
    pub fn image_ref(&self) -> Result<ImageRef, BadReference> {
        ImageRef::parse(&self.reference)
    }
}

/// One Helm chart of the bundle.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChartEntry {
    /// `name` from Chart.yaml.
    pub name: String,
    /// `version` from Chart.yaml.
    pub version: String,
    /// `appVersion` from Chart.yaml, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// The chart folder or packaged `.tgz`, relative to the top-level folder.
    pub path: SafePath,
}

/// An outbound destination, as the vendor declares it (also the shape of an allow rule).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// A short name, e.g. `Permit Platform`.
    pub name: String,
    /// Host names (exact or `*.suffix`), IP addresses or CIDRs.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Ports; empty means any.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Whether the software cannot work without it.
    #[serde(default)]
    pub required: bool,
    /// Why the connection is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// A manifest that is not a valid format-v1 manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("ferry.json is not valid JSON for a bundle manifest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("ferry.json has format version {found}; this ferry reads versions {FORMAT_V1} to {FORMAT_VERSION}{}", if *found > FORMAT_VERSION { ": upgrade ferry" } else { "" })]
    UnsupportedVersion { found: u32 },
    #[error("ferry.json is the head of a {kind} (format version {PARTIAL_FORMAT_VERSION}), not of a complete bundle: {hint}")]
    Partial { kind: String, hint: &'static str },
    #[error("ferry.json: image `{reference}` lists referrers or left-out non-distributable layers, which format version 1 does not have; a version 2 manifest is needed")]
    ReferrersNeedVersion2 { reference: String },
    #[error("ferry.json: {field} `{value}` may only hold letters, digits, `.`, `_` and `-`, starting with a letter or digit")]
    BadName { field: &'static str, value: String },
    #[error("ferry.json lists `{path}` twice")]
    DuplicatePath { path: SafePath },
    #[error("ferry.json lists the reserved path `{path}`")]
    ReservedPath { path: SafePath },
    #[error("ferry.json lists blob `{path}` with digest {digest}: a blob's digest must match its file name")]
    BlobNameMismatch { path: SafePath, digest: Digest },
    #[error("ferry.json lists `{path}` as a file and also files inside it, e.g. `{inside}`")]
    FileIsFolder { path: SafePath, inside: SafePath },
    #[error("ferry.json: image `{reference}` pins a digest but its digest is {digest}")]
    PinMismatch { reference: String, digest: Digest },
    #[error("ferry.json lists files out of order: `{path}` comes after `{previous}`")]
    Unsorted { path: SafePath, previous: SafePath },
}

impl Manifest {
    /// The bundle's top-level folder, `NAME-VERSION`.
    pub fn root(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// Parses and checks manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            format_version: u32,
        }
        let v: Version = serde_json::from_slice(bytes)?;
        // A delta or a part names its kind: it is not a complete bundle, whatever a reader
        // of complete bundles would make of its version.
        #[derive(Deserialize)]
        struct Kind {
            kind: Option<String>,
        }
        let hint = match serde_json::from_slice::<Kind>(bytes)?.kind.as_deref() {
            Some("delta") => Some(("delta bundle", "`ferry merge BASE DELTA -o BUNDLE` rebuilds the release; `ferry verify` and `ferry load` read the delta's .tar.gz as it is")),
            Some("part") => Some(("part of a split bundle", "`ferry join PARTS... -o BUNDLE` rebuilds the release; `ferry verify`, `ferry inspect` and `ferry load` read the part's .tar.gz as it is")),
            _ => None,
        };
        if let Some((kind, hint)) = hint {
            return Err(ManifestError::Partial {
                kind: kind.to_string(),
                hint,
            });
        }
        if !(FORMAT_V1..=FORMAT_VERSION).contains(&v.format_version) {
            return Err(ManifestError::UnsupportedVersion {
                found: v.format_version,
            });
        }
        let m: Manifest = serde_json::from_slice(bytes)?;
        m.check()?;
        Ok(m)
    }

    /// Checks the invariants serde cannot express.
    pub fn check(&self) -> Result<(), ManifestError> {
        check_name("name", &self.name)?;
        check_name("version", &self.version)?;
        let mut seen = BTreeSet::new();
        let mut folders: std::collections::HashMap<&str, &SafePath> = Default::default();
        let mut previous: Option<&SafePath> = None;
        for f in &self.files {
            if f.path.as_str() == MANIFEST_NAME || f.path.as_str() == SIGNATURE_NAME {
                return Err(ManifestError::ReservedPath {
                    path: f.path.clone(),
                });
            }
            if !seen.insert(&f.path) {
                return Err(ManifestError::DuplicatePath {
                    path: f.path.clone(),
                });
            }
            if let Some(p) = previous {
                if p.as_str() > f.path.as_str() {
                    return Err(ManifestError::Unsorted {
                        path: f.path.clone(),
                        previous: p.clone(),
                    });
                }
            }
            previous = Some(&f.path);
            let mut dir = f.path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                folders.entry(parent).or_insert(&f.path);
                dir = parent;
            }
            if let Some(hex) = blob_hex(&f.path) {
                if hex != f.digest.hex() {
                    return Err(ManifestError::BlobNameMismatch {
                        path: f.path.clone(),
                        digest: f.digest.clone(),
                    });
                }
            }
        }
        for img in &self.images {
            if self.format_version < 2
                && (!img.referrers.is_empty() || !img.non_distributable.is_empty())
            {
                return Err(ManifestError::ReferrersNeedVersion2 {
                    reference: img.reference.clone(),
                });
            }
            if let Some((_, pinned)) = img.reference.split_once('@') {
                if pinned != img.digest.to_string() {
                    return Err(ManifestError::PinMismatch {
                        reference: img.reference.clone(),
                        digest: img.digest.clone(),
                    });
                }
            }
        }
        if let Some(f) = self
            .files
            .iter()
            .find(|f| folders.contains_key(f.path.as_str()))
        {
            return Err(ManifestError::FileIsFolder {
                path: f.path.clone(),
                inside: folders[f.path.as_str()].clone(),
            });
        }
        Ok(())
    }

    /// The canonical bytes: pretty JSON with two-space indents and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serialises");
        out.push(b'\n');
        out
    }

    /// The oldest format version that can hold this manifest: 2 when an image carries
    /// referrers or leaves non-distributable layers out (both change what the layout check
    /// expects), else 1.
    pub fn needed_version(&self) -> u32 {
        if self
            .images
            .iter()
            .any(|i| !i.referrers.is_empty() || !i.non_distributable.is_empty())
        {
            FORMAT_VERSION
        } else {
            FORMAT_V1
        }
    }

    /// Total bytes of every listed file.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The hex part of `images/blobs/sha256/<hex>`, if `path` is a blob path.
pub fn blob_hex(path: &SafePath) -> Option<&str> {
    path.as_str().strip_prefix("images/blobs/sha256/")
}

/// Checks a bundle name or version.
pub fn check_name(field: &'static str, value: &str) -> Result<(), ManifestError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ManifestError::BadName {
            field,
            value: value.to_string(),
        })
    }
}

/// The JSON Schema of `ferry.json`, generated from these types.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Manifest);
    let mut s = serde_json::to_string_pretty(&schema).expect("schema serialises");
    s.push('\n');
    s
}

//! OCI documents: the media types ferry knows, and reading image manifests, indexes and the
//! platform of a config into `oci-spec`'s types.
//!
//! Documents are only read here: their bytes are kept and stored or pushed exactly as they
//! came, so every digest survives. ferry writes two documents of its own, both here: the
//! `index.json` of a bundle's image layout, and the manifest of an image from a legacy
//! `docker save` archive (which carries none).

use crate::oci::digest::Digest;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType, Platform};
use serde::de::IgnoredAny;

/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// A Docker schema 2 manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The `Accept` header for a manifest request: every manifest and index type ferry reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// The annotation that names a reference in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd (`ctr import`) reads the image name from.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Manifests, indexes and configs larger than this are refused.
pub const MAX_JSON: u64 = 4 * 1024 * 1024;
/// The `oci-layout` file of an OCI image layout.
pub const OCI_LAYOUT_FILE: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}\n";

/// Whether a document lists other manifests or describes one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OCI image index or a Docker manifest list.
    Index,
    /// An OCI or Docker schema 2 image manifest.
    Manifest,
}

impl Kind {
    /// The kind of a media type, or `None` when ferry does not read documents of that type.
    pub fn of(media_type: &str) -> Option<Kind> {
        match media_type {
            OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
            OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Manifest),
            _ => None,
        }
    }
}

/// A manifest or an index, read into `oci-spec`'s types.
///
/// Docker schema 2 documents have the same shape as the OCI ones; `oci-spec` reads their
/// media types as `MediaType::Other`.
#[derive(Debug, Clone)]
pub enum Document {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// A manifest or index that ferry cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("unsupported media type `{0}` (ferry reads OCI and Docker schema 2 image manifests and indexes)")]
    Unsupported(String),
    #[error("its descriptor says it is `{declared}` but the document says `{found}`")]
    Mismatch { declared: String, found: String },
    #[error("not a valid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// The two fields that decide how a document without a descriptor's media type is read.
#[derive(serde::Deserialize)]
struct Shape {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<IgnoredAny>,
}

impl Document {
    /// Reads a manifest or an index and returns it with its media type.
    ///
    /// `declared` is the media type of the descriptor that points at the document (`None`
    /// or empty when unknown). The media type is the document's own `mediaType`, else the
    /// declared one, else, as for umoci's manifests which have no `mediaType`, the OCI
    /// index type when the document has `manifests` and the OCI manifest type otherwise.
    /// A document whose `mediaType` contradicts its descriptor's is refused.
    pub fn parse(
        bytes: &[u8],
        declared: Option<&str>,
    ) -> Result<(String, Document), DocumentError> {
        let shape: Shape =
            serde_json::from_slice(bytes).map_err(|e| DocumentError::Json(e.to_string()))?;
        let declared = declared.filter(|d| !d.is_empty());
        let media_type = match (shape.media_type, declared) {
            (Some(found), Some(declared)) if found != declared => {
                return Err(DocumentError::Mismatch {
                    declared: declared.to_string(),
                    found,
                })
            }
            (Some(found), _) => found,
            (None, Some(declared)) => declared.to_string(),
            (None, None) if shape.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) => OCI_MANIFEST.to_string(),
        };
        let doc = match Kind::of(&media_type) {
            Some(Kind::Index) => Document::Index(serde_json::from_slice(bytes).map_err(|e| {
                DocumentError::Invalid {
                    what: "image index",
                    detail: e.to_string(),
                }
            })?),
            Some(Kind::Manifest) => {
                Document::Manifest(serde_json::from_slice(bytes).map_err(|e| {
                    DocumentError::Invalid {
                        what: "image manifest",
                        detail: e.to_string(),
                    }
                })?)
            }
            None => return Err(DocumentError::Unsupported(media_type)),
        };
        Ok((media_type, doc))
    }

    /// The manifests an index lists (none for a manifest).
    pub fn manifests(&self) -> &[Descriptor] {
        match self {
            Document::Index(i) => i.manifests(),
            Document::Manifest(_) => &[],
        }
    }
}

/// Reads the `index.json` of an OCI image layout (its `mediaType` is optional).
pub fn read_layout_index(bytes: &[u8]) -> Result<ImageIndex, DocumentError> {
    serde_json::from_slice(bytes).map_err(|e| DocumentError::Invalid {
        what: "image index",
        detail: e.to_string(),
    })
}

/// An annotation of a descriptor.
pub fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Whether a layer may be left out of copies: OCI non-distributable layers, and Docker
/// foreign layers with URLs to fetch them from. Runtimes pull such layers from their URLs.
pub fn is_non_distributable(d: &Descriptor) -> bool {
    let media_type = d.media_type().as_ref();
    media_type.contains("nondistributable")
        || (media_type.contains("foreign") && d.urls().as_ref().is_some_and(|u| !u.is_empty()))
}

/// The names a layout gives an image: its `org.opencontainers.image.ref.name` and
/// `io.containerd.image.name` annotations, in that order.
pub fn names(d: &Descriptor) -> Vec<&str> {
    [REF_NAME, CONTAINERD_NAME]
        .iter()
        .filter_map(|k| annotation(d, k))
        .collect()
}

/// A descriptor's digest as ferry's [`Digest`]: `None` for anything but a well-formed sha256
/// digest.
pub fn digest_of(d: &Descriptor) -> Option<Digest> {
    d.digest().as_ref().parse().ok()
}

/// `OS/ARCH[/VARIANT]`.
pub fn render_platform(p: &Platform) -> String {
    match p.variant() {
        Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os(), p.architecture()),
        _ => format!("{}/{}", p.os(), p.architecture()),
    }
}

/// The platform an image config describes, for configs of the OCI and Docker image config
/// types; `None` for other config types (artifacts).
///
/// An image config holds `architecture`, `os` and `variant` at its top level under the same
/// names as a descriptor's platform, so it is read with `oci-spec`'s `Platform`; the rest of
/// the config is not needed.
pub fn config_platform(
    config_media_type: &str,
    bytes: &[u8],
) -> Result<Option<Platform>, DocumentError> {
    if config_media_type != OCI_CONFIG && config_media_type != DOCKER_CONFIG {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| DocumentError::Invalid {
            what: "image config",
            detail: e.to_string(),
        })
}

/// The OCI media type of a layer from its first bytes: gzip, zstd, or else an uncompressed
/// tar. `None` for bzip2 and xz, which OCI layer media types cannot describe.
pub fn layer_media_type(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(OCI_LAYER_GZIP)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(OCI_LAYER_ZSTD)
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        None
    } else {
        Some(OCI_LAYER_TAR)
    }
}

/// One blob an image manifest refers to.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub media_type: &'static str,
    pub digest: Digest,
    pub size: u64,
}

impl BlobRef {
    fn descriptor(&self) -> Descriptor {
        let digest: oci_spec::image::Digest = self
            .digest
            .to_string()
            .parse()
            .expect("a sha256 digest is an OCI digest");
        Descriptor::new(MediaType::from(self.media_type), self.size, digest)
    }
}

/// The bytes of an OCI image manifest with the given config and layers: compact JSON, no
/// final newline, members in the order `schemaVersion`, `mediaType`, `config`, `layers` and,
/// in each descriptor, `mediaType`, `digest`, `size`.
pub fn image_manifest_bytes(config: &BlobRef, layers: &[BlobRef]) -> Vec<u8> {
    let manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor())
        .layers(layers.iter().map(BlobRef::descriptor).collect::<Vec<_>>())
        .build()
        .expect("every required field is set");
    serde_json::to_vec(&manifest).expect("a manifest serialises")
}

/// One image of a bundle's `images/index.json`.
#[derive(Debug, Clone)]
pub struct LayoutEntry {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The full reference, written as both `io.containerd.image.name` and
    /// `org.opencontainers.image.ref.name`.
    pub name: String,
}

/// The bytes of a bundle's `images/index.json`: pretty-printed, members in a fixed order,
/// and a final newline. Written from fixed structs rather than `oci-spec`'s `ImageIndex`,
/// whose annotations are a `HashMap` and would come out in a different order each time.
pub fn layout_index_bytes(entries: &[LayoutEntry]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Index<'a> {
        schema_version: u32,
        media_type: &'static str,
        manifests: Vec<Entry<'a>>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry<'a> {
        media_type: &'a str,
        digest: String,
        size: u64,
        annotations: Annotations<'a>,
    }
    #[derive(serde::Serialize)]
    struct Annotations<'a> {
        #[serde(rename = "io.containerd.image.name")]
        containerd_name: &'a str,
        #[serde(rename = "org.opencontainers.image.ref.name")]
        ref_name: &'a str,
    }
    let index = Index {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: entries
            .iter()
            .map(|e| Entry {
                media_type: &e.media_type,
                digest: e.digest.to_string(),
                size: e.size,
                annotations: Annotations {
                    containerd_name: &e.name,
                    ref_name: &e.name,
                },
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&index).expect("index serialises");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn manifest(doc: &Document) -> &ImageManifest {
        match doc {
            Document::Manifest(m) => m,
            Document::Index(_) => panic!("read as an index"),
        }
    }

    fn index(doc: &Document) -> &ImageIndex {
        match doc {
            Document::Index(i) => i,
            Document::Manifest(_) => panic!("read as a manifest"),
        }
    }

    #[test]
    fn umoci_manifest_without_media_type() {
        // As `umoci new` + `umoci config` write it: no `mediaType`, no layers.
        let bytes = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":254}},"layers":[]}}"#
        );
        for declared in [Some(OCI_MANIFEST), None, Some("")] {
            let (media_type, doc) = Document::parse(bytes.as_bytes(), declared).unwrap();
            assert_eq!(media_type, OCI_MANIFEST);
            let m = manifest(&doc);
            assert_eq!(m.media_type(), &None);
            assert_eq!(m.config().size(), 254);
            assert!(m.layers().is_empty());
            assert!(doc.manifests().is_empty());
        }
    }

    #[test]
    fn docker_schema2_manifest() {
        // The manifest containers/image synthesises for a docker-archive: Docker config and
        // layer types, `size` before `digest`, no annotations.
        let bytes = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":840,"digest":"{D1}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":21504,"digest":"{D2}"}},{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":17920,"digest":"{D3}"}}]}}"#
        );
        let (media_type, doc) = Document::parse(bytes.as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(media_type, DOCKER_MANIFEST);
        let m = manifest(&doc);
        assert_eq!(
            m.config().media_type(),
            &MediaType::Other(DOCKER_CONFIG.into())
        );
        assert_eq!(m.layers().len(), 2);
        assert_eq!(m.layers()[1].digest().as_ref(), D3);
        assert_eq!(digest_of(&m.layers()[0]).unwrap().to_string(), D2);
        assert_eq!(m.annotations(), &None);
        // Without a descriptor, the document's own media type decides.
        assert_eq!(
            Document::parse(bytes.as_bytes(), None).unwrap().0,
            DOCKER_MANIFEST
        );
    }

    #[test]
    fn docker_manifest_list() {
        let bytes = format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "{DOCKER_LIST}",
   "manifests": [
      {{"mediaType": "{DOCKER_MANIFEST}", "size": 7143, "digest": "{D1}",
        "platform": {{"architecture": "ppc64le", "os": "linux"}}}},
      {{"mediaType": "{DOCKER_MANIFEST}", "size": 7682, "digest": "{D2}",
        "platform": {{"architecture": "arm", "os": "linux", "variant": "v7", "features": ["sse4"]}}}},
      {{"mediaType": "{DOCKER_MANIFEST}", "size": 1024, "digest": "{D3}",
        "platform": {{"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1879", "os.features": ["win32k"]}}}}
   ]
}}"#
        );
        let (media_type, doc) = Document::parse(bytes.as_bytes(), Some(DOCKER_LIST)).unwrap();
        assert_eq!(media_type, DOCKER_LIST);
        let platforms: Vec<String> = index(&doc)
            .manifests()
            .iter()
            .map(|d| render_platform(d.platform().as_ref().unwrap()))
            .collect();
        assert_eq!(
            platforms,
            ["linux/ppc64le", "linux/arm/v7", "windows/amd64"]
        );
        assert_eq!(doc.manifests()[0].media_type().as_ref(), DOCKER_MANIFEST);
    }

    #[test]
    fn oci_index_with_platforms_artifact_type_and_subject() {
        let bytes = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","artifactType":"application/vnd.example.sbom.v1","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":506,"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":507,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}},"artifactType":"application/vnd.example.thing","annotations":{{"{REF_NAME}":"x"}}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D3}","size":10}},"annotations":{{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}}}"#
        );
        let (media_type, doc) = Document::parse(bytes.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(media_type, OCI_INDEX);
        let i = index(&doc);
        assert_eq!(
            i.artifact_type(),
            &Some(MediaType::Other("application/vnd.example.sbom.v1".into()))
        );
        assert_eq!(i.subject().as_ref().unwrap().size(), 10);
        let platforms: Vec<String> = i
            .manifests()
            .iter()
            .map(|d| render_platform(d.platform().as_ref().unwrap()))
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
        assert_eq!(names(&i.manifests()[1]), ["x"]);
    }

    #[test]
    fn oci_manifest_with_artifact_type_subject_and_annotations() {
        let bytes = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2,"data":"e30="}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{D2}","size":3,"urls":["https://example.com/l"],"annotations":{{"a":"b"}}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D3}","size":4}},"annotations":{{"k":"v"}}}}"#
        );
        let (_, doc) = Document::parse(bytes.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        let m = manifest(&doc);
        assert_eq!(m.config().media_type(), &MediaType::EmptyJSON);
        assert_eq!(m.subject().as_ref().unwrap().digest().as_ref(), D3);
        assert_eq!(m.layers()[0].urls().as_ref().unwrap().len(), 1);
        // An artifact's config describes no platform.
        assert!(config_platform("application/vnd.oci.empty.v1+json", b"{}")
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_index_without_media_type_is_read_by_its_shape() {
        // umoci's own index.json has no mediaType either.
        let bytes = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":192,"annotations":{{"{REF_NAME}":"hello"}}}}]}}"#
        );
        let (media_type, doc) = Document::parse(bytes.as_bytes(), None).unwrap();
        assert_eq!(media_type, OCI_INDEX);
        assert_eq!(annotation(&doc.manifests()[0], REF_NAME), Some("hello"));
        let layout = read_layout_index(bytes.as_bytes()).unwrap();
        assert_eq!(layout.media_type(), &None);
        assert_eq!(names(&layout.manifests()[0]), ["hello"]);
    }

    #[test]
    fn refusals() {
        let schema1 = br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws","name":"a","tag":"b","fsLayers":[]}"#;
        assert!(matches!(
            Document::parse(schema1, None),
            Err(DocumentError::Unsupported(_))
        ));
        let oci = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":1}},"layers":[]}}"#
        );
        assert!(matches!(
            Document::parse(oci.as_bytes(), Some(DOCKER_MANIFEST)),
            Err(DocumentError::Mismatch { .. })
        ));
        assert!(matches!(
            Document::parse(oci.as_bytes(), Some(OCI_INDEX)),
            Err(DocumentError::Mismatch { .. })
        ));
        let no_config =
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#);
        let err = Document::parse(no_config.as_bytes(), None).unwrap_err();
        assert!(err.to_string().contains("config"), "{err}");
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:XYZ","size":1}},"layers":[]}}"#
        );
        assert!(matches!(
            Document::parse(bad_digest.as_bytes(), None),
            Err(DocumentError::Invalid { .. })
        ));
        assert!(matches!(
            Document::parse(b"[", None),
            Err(DocumentError::Json(_))
        ));
    }

    #[test]
    fn config_platforms() {
        // A Docker config, with the null fields Docker writes.
        let docker = br#"{"architecture":"arm","config":{"Env":null,"Volumes":null,"ExposedPorts":{"80/tcp":{}}},"container_config":{},"created":"2024-01-01T00:00:00Z","docker_version":"24.0.7","os":"linux","variant":"v7","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let p = config_platform(DOCKER_CONFIG, docker).unwrap().unwrap();
        assert_eq!(render_platform(&p), "linux/arm/v7");
        let oci = br#"{"architecture":"amd64","os":"linux","os.version":"x","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let p = config_platform(OCI_CONFIG, oci).unwrap().unwrap();
        assert_eq!(render_platform(&p), "linux/amd64");
        assert!(config_platform(OCI_CONFIG, br#"{"os":"linux"}"#).is_err());
    }

    #[test]
    fn layer_types_from_first_bytes() {
        assert_eq!(layer_media_type(b"etc/\0\0\0"), Some(OCI_LAYER_TAR));
        assert_eq!(layer_media_type(b""), Some(OCI_LAYER_TAR));
        assert_eq!(layer_media_type(&[0x1f, 0x8b, 8, 0]), Some(OCI_LAYER_GZIP));
        assert_eq!(
            layer_media_type(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(OCI_LAYER_ZSTD)
        );
        assert_eq!(layer_media_type(b"BZh91AY"), None);
        assert_eq!(layer_media_type(&[0xfd, b'7', b'z', b'X', b'Z', 0]), None);
    }

    #[test]
    fn written_manifest_bytes_are_fixed() {
        let config = BlobRef {
            media_type: OCI_CONFIG,
            digest: D1.parse().unwrap(),
            size: 840,
        };
        let layers = [
            BlobRef {
                media_type: OCI_LAYER_TAR,
                digest: D2.parse().unwrap(),
                size: 21504,
            },
            BlobRef {
                media_type: OCI_LAYER_GZIP,
                digest: D3.parse().unwrap(),
                size: 17,
            },
        ];
        let bytes = image_manifest_bytes(&config, &layers);
        let want = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":840}},"layers":[{{"mediaType":"{OCI_LAYER_TAR}","digest":"{D2}","size":21504}},{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{D3}","size":17}}]}}"#
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        let (media_type, doc) = Document::parse(&bytes, Some(OCI_MANIFEST)).unwrap();
        assert_eq!(media_type, OCI_MANIFEST);
        assert_eq!(manifest(&doc).layers().len(), 2);
    }

    #[test]
    fn layout_index_bytes_are_fixed() {
        let bytes = layout_index_bytes(&[LayoutEntry {
            media_type: OCI_MANIFEST.into(),
            digest: D1.parse().unwrap(),
            size: 5,
            name: "example.com/a:1".into(),
        }]);
        let want = format!(
            "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_INDEX}\",\n  \"manifests\": [\n    {{\n      \"mediaType\": \"{OCI_MANIFEST}\",\n      \"digest\": \"{D1}\",\n      \"size\": 5,\n      \"annotations\": {{\n        \"io.containerd.image.name\": \"example.com/a:1\",\n        \"org.opencontainers.image.ref.name\": \"example.com/a:1\"\n      }}\n    }}\n  ]\n}}\n"
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        let index = read_layout_index(&bytes).unwrap();
        assert_eq!(names(&index.manifests()[0]), ["example.com/a:1"; 2]);
    }

    #[test]
    fn accept_header_lists_every_readable_type() {
        let listed: Vec<&str> = MANIFEST_ACCEPT.split(", ").collect();
        assert_eq!(
            listed,
            [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST]
        );
        assert!(listed.iter().all(|t| Kind::of(t).is_some()));
    }
}

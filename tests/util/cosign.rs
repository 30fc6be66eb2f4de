//! cosign's formats made in the harness: ECDSA P-256 keys from `openssl`, simple-signing
//! payloads signed with `openssl dgst -sha256 -sign`, signature manifests as cosign writes
//! them (under `sha256-HEX.sig`), and OCI 1.1 artifacts (an SPDX SBOM with a `subject`)
//! listed under the referrers tag schema's `sha256-HEX` index, pushed to a real registry.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// An ECDSA P-256 key pair made by openssl: `NAME.pem` (PKCS#8 private key) and `NAME.pub`.
pub struct Key {
    pub private: PathBuf,
    pub public: PathBuf,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let bin = super::require_tool("openssl", "openssl");
    let out = Command::new(bin).args(args).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Key {
    pub fn new(dir: &Path, name: &str) -> Key {
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub"));
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            private.to_str().unwrap(),
        ]);
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        Key { private, public }
    }

    /// `openssl dgst -sha256 -sign`: the base64 DER signature cosign writes.
    pub fn sign(&self, data: &[u8]) -> String {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), data).unwrap();
        let der = openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            self.private.to_str().unwrap(),
            tmp.path().to_str().unwrap(),
        ]);
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    /// `openssl dgst -sha256 -verify`: whether `signature_b64` verifies over `data`.
    pub fn openssl_verifies(&self, data: &[u8], signature_b64: &str) -> bool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data"), data).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature_b64)
            .unwrap();
        std::fs::write(dir.path().join("sig"), der).unwrap();
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&self.public)
            .arg("-signature")
            .arg(dir.path().join("sig"))
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
    }
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// cosign's simple-signing payload for `reference` (`HOST/REPO`) at `digest`.
pub fn payload(reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap()
}

/// An OCI layout folder that artifacts are written into and pushed from.
pub struct Artifacts {
    pub dir: tempfile::TempDir,
}

impl Default for Artifacts {
    fn default() -> Self {
        Self::new()
    }
}

impl Artifacts {
    pub fn new() -> Artifacts {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#),
        )
        .unwrap();
        Artifacts { dir }
    }

    /// Adds `digest` to `index.json`, named `name`.
    pub fn name(&self, digest: &str, media_type: &str, name: &str) {
        let path = self.dir.path().join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let size = std::fs::metadata(self.dir.path().join("blobs/sha256").join(&digest[7..]))
            .unwrap()
            .len();
        index["manifests"].as_array_mut().unwrap().push(json!({
            "mediaType": media_type, "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": name}
        }));
        std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Stores a blob; returns (digest, size).
    pub fn put(&self, bytes: &[u8]) -> (String, u64) {
        let d = sha256(bytes);
        std::fs::write(self.dir.path().join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        (d, bytes.len() as u64)
    }

    /// A cosign signature manifest over `payload` with `signature` (base64); returns its
    /// digest and bytes.
    pub fn signature(&self, payload: &[u8], signature: &str) -> (String, Vec<u8>) {
        let (pd, ps) = self.put(payload);
        let config = json!({
            "architecture": "", "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
            "rootfs": {"type": "layers", "diff_ids": [pd]}, "config": {}
        });
        let (cd, cs) = self.put(&serde_json::to_vec(&config).unwrap());
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": SIMPLE_SIGNING, "digest": pd, "size": ps,
                "annotations": {SIGNATURE_ANNOTATION: signature}}]
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        (self.put(&bytes).0, bytes)
    }

    /// A cosign attestation manifest: a DSSE envelope of an in-toto statement about
    /// `subject` with `predicate_type`, annotated as cosign annotates it; returns its digest.
    pub fn attestation(&self, subject: &str, predicate_type: &str) -> String {
        use base64::Engine;
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1", "predicateType": predicate_type,
            "subject": [{"name": "app1", "digest": {"sha256": &subject[7..]}}],
            "predicate": {"builder": {"id": "https://ci.example.com"}}
        });
        let envelope = json!({
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&statement).unwrap()),
            "signatures": [{"keyid": "", "sig": "MEUCIQ"}]
        });
        let (ed, es) = self.put(&serde_json::to_vec(&envelope).unwrap());
        let config = json!({"architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [ed]}});
        let (cd, cs) = self.put(&serde_json::to_vec(&config).unwrap());
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": ed, "size": es,
                "annotations": {"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type}}]
        });
        self.put(&serde_json::to_vec(&m).unwrap()).0
    }

    /// An SPDX SBOM artifact whose subject is the manifest `subject` (of `subject_size`
    /// bytes), and the referrers tag schema's index listing it; returns (sbom digest, index
    /// digest).
    pub fn sbom(&self, subject: &str, subject_size: u64) -> (String, String) {
        let doc = json!({
            "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
            "name": "app1", "documentNamespace": "https://example.com/spdx/app1",
            "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: test"]},
            "packages": [{"SPDXID": "SPDXRef-busybox", "name": "busybox", "versionInfo": "1.36.1",
                "downloadLocation": "NOASSERTION"}]
        });
        let (dd, ds) = self.put(&serde_json::to_vec(&doc).unwrap());
        let (ed, es) = self.put(b"{}");
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": es},
            "layers": [{"mediaType": "application/spdx+json", "digest": dd, "size": ds}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size}
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let (md, ms) = self.put(&bytes);
        let index = json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": ms,
                "artifactType": "application/spdx+json"}]
        });
        let (id, _) = self.put(&serde_json::to_vec(&index).unwrap());
        (md, id)
    }

    /// Pushes `(repo, tag, digest, media type)` manifests (tag empty: by digest) with their
    /// blobs to a plain-HTTP registry, bytes unchanged.
    pub fn push(&self, host: &str, manifests: &[(&str, &str, &str, &str)]) {
        use ferry::registry::push::{self, ImageToPush, LayoutSource, NoProgress, PushOptions};
        let mut registry = ferry::registry::RegistryOptions::new(host);
        registry.plain_http = true;
        let images: Vec<ImageToPush> = manifests
            .iter()
            .map(|(repo, tag, digest, media_type)| ImageToPush {
                source_ref: format!("{host}/{repo}"),
                target_repo: repo.to_string(),
                tag: tag.to_string(),
                digest: digest.parse().unwrap(),
                media_type: media_type.to_string(),
            })
            .collect();
        let source = Arc::new(LayoutSource::open(self.dir.path()).unwrap());
        push::push(
            &PushOptions::new(registry),
            source,
            &images,
            Arc::new(NoProgress),
        )
        .unwrap();
    }
}

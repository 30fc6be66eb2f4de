//! Small OCI image layouts written by hand: two images sharing a layer and a multi-arch index.

use std::path::Path;

use ferry::registry::push::ImageToPush;
use serde_json::json;
use sha2::{Digest, Sha256};

/// An image in a test layout.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// `org.opencontainers.image.ref.name` in the layout.
    pub name: String,
    /// Manifest or index digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Digests of every blob (configs, layers) reachable from it.
    pub blobs: Vec<(String, u64)>,
}

/// A layout written to a folder.
pub struct TestLayout {
    /// Images in `index.json` order.
    pub images: Vec<TestImage>,
}

impl TestLayout {
    /// The images as a push list: `registry.example.com/team/NAME:1.0` to `PREFIX/team/NAME`.
    pub fn to_push(&self, prefix: &str) -> Vec<ImageToPush> {
        self.images
            .iter()
            .map(|i| ImageToPush {
                source_ref: format!("registry.example.com/team/{}:1.0", i.name),
                target_repo: if prefix.is_empty() {
                    format!("team/{}", i.name)
                } else {
                    format!("{prefix}/team/{}", i.name)
                },
                tag: "1.0".to_string(),
                digest: i.digest.parse().expect("a sha256 digest"),
                media_type: i.media_type.clone(),
            })
            .collect()
    }

    /// Distinct blobs over all images with their sizes.
    pub fn unique_blobs(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> =
            self.images.iter().flat_map(|i| i.blobs.clone()).collect();
        all.sort();
        all.dedup();
        all
    }
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn put(root: &Path, bytes: &[u8]) -> (String, u64) {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(root.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}

/// Deterministic incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A gzip layer of `len` noise bytes: (compressed bytes, diff_id).
fn layer(seed: u64, len: usize) -> (Vec<u8>, String) {
    use std::io::Write;
    let raw = noise(seed, len);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (
        gz.finish().unwrap(),
        format!("sha256:{}", hex::encode(Sha256::digest(&raw))),
    )
}

fn manifest(
    root: &Path,
    arch: &str,
    layers: &[(Vec<u8>, String)],
) -> (String, u64, Vec<(String, u64)>) {
    let config = json!({
        "architecture": arch, "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()},
    });
    let (cd, cs) = put(root, &serde_json::to_vec(&config).unwrap());
    let mut blobs = vec![(cd.clone(), cs)];
    let mut descs = Vec::new();
    for (bytes, _) in layers {
        let (d, s) = put(root, bytes);
        blobs.push((d.clone(), s));
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}));
    }
    let m = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs,
    });
    let (d, s) = put(root, &serde_json::to_vec(&m).unwrap());
    (d, s, blobs)
}

/// Writes `app1` and `app2` (sharing a 512 KiB base layer; own layers of 1 MiB and
/// 768 KiB) and `multi` (an index of linux/amd64 and linux/arm64, 256 KiB layer each).
/// `salt` changes every byte so that several layouts do not share blobs.
pub fn write_layout(root: &Path, salt: u64) -> TestLayout {
    std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let s = salt * 100;
    let base = layer(s + 1, 512 * 1024);
    let mut images = Vec::new();
    let mut entries = Vec::new();
    for (name, seed, size) in [("app1", s + 2, 1024 * 1024), ("app2", s + 3, 768 * 1024)] {
        let (d, sz, blobs) = manifest(root, "amd64", &[base.clone(), layer(seed, size)]);
        entries.push(json!({"mediaType": MANIFEST, "digest": d, "size": sz,
            "annotations": {"org.opencontainers.image.ref.name": name}}));
        images.push(TestImage {
            name: name.into(),
            digest: d,
            media_type: MANIFEST.into(),
            blobs,
        });
    }
    let mut children = Vec::new();
    let mut all_blobs = Vec::new();
    for (arch, variant, seed) in [("amd64", None, s + 4), ("arm64", Some("v8"), s + 5)] {
        let (d, sz, blobs) = manifest(root, arch, &[layer(seed, 256 * 1024)]);
        all_blobs.extend(blobs);
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        children
            .push(json!({"mediaType": MANIFEST, "digest": d, "size": sz, "platform": platform}));
    }
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": children});
    let (d, sz) = put(root, &serde_json::to_vec(&index).unwrap());
    entries.push(json!({"mediaType": INDEX, "digest": d, "size": sz,
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}));
    images.push(TestImage {
        name: "multi".into(),
        digest: d,
        media_type: INDEX.into(),
        blobs: all_blobs,
    });
    let top = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries});
    std::fs::write(root.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    TestLayout { images }
}

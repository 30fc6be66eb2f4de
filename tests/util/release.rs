//! A release pair written by the test: `shop` 1.4.0 and 1.4.1, small enough for a test and
//! shaped like a real update. `app` gains a layer on the base it shares with `db`; `tools`
//! keeps its tag `latest` but names new content (a re-pushed tag); `db` is unchanged;
//! 1.4.1's values add a telemetry endpoint, and its preflight script changed.

use super::oci::noise;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The new endpoint 1.4.1's values plant.
pub const NEW_DESTINATION: &str = "telemetry.shop-metrics.io";

/// Layer seeds and sizes: (seed, KiB).
const BASE: (u64, usize) = (1, 384);
const APP_140: (u64, usize) = (2, 256);
const APP_141: (u64, usize) = (5, 1024);
const TOOLS_140: (u64, usize) = (3, 192);
const TOOLS_141: (u64, usize) = (6, 768);
const DB: (u64, usize) = (4, 224);

/// A written release: its spec, and the digests of the layers only it has.
pub struct Release {
    pub spec: PathBuf,
    /// Every blob of the layout: (digest, size).
    pub blobs: Vec<(String, u64)>,
}

fn put(root: &Path, bytes: &[u8], blobs: &mut Vec<(String, u64)>) -> (String, u64) {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(root.join("blobs/sha256").join(&hex), bytes).unwrap();
    let d = (format!("sha256:{hex}"), bytes.len() as u64);
    if !blobs.contains(&d) {
        blobs.push(d.clone());
    }
    d
}

/// A gzip layer of noise: (compressed bytes, diff_id).
fn layer((seed, kib): (u64, usize)) -> (Vec<u8>, String) {
    use std::io::Write;
    let raw = noise(seed, kib * 1024);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (
        gz.finish().unwrap(),
        format!("sha256:{}", hex::encode(Sha256::digest(&raw))),
    )
}

fn image(
    root: &Path,
    layers: &[(u64, usize)],
    blobs: &mut Vec<(String, u64)>,
) -> serde_json::Value {
    let layers: Vec<(Vec<u8>, String)> = layers.iter().map(|l| layer(*l)).collect();
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()},
    });
    let (cd, cs) = put(root, &serde_json::to_vec(&config).unwrap(), blobs);
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|(bytes, _)| {
            let (d, s) = put(root, bytes, blobs);
            json!({"mediaType": LAYER, "digest": d, "size": s})
        })
        .collect();
    let m = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs,
    });
    let (d, s) = put(root, &serde_json::to_vec(&m).unwrap(), blobs);
    json!({"mediaType": MANIFEST, "digest": d, "size": s})
}

/// Writes release `version` ("1.4.0" or "1.4.1") of `shop` into `dir`.
pub fn write(dir: &Path, version: &str) -> Release {
    let new = version != "1.4.0";
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut blobs = Vec::new();
    let app: Vec<(u64, usize)> = if new {
        vec![BASE, APP_140, APP_141]
    } else {
        vec![BASE, APP_140]
    };
    let tools = if new { TOOLS_141 } else { TOOLS_140 };
    let mut entries = Vec::new();
    for (name, layers) in [("app", app), ("tools", vec![tools]), ("db", vec![BASE, DB])] {
        let mut d = image(&layout, &layers, &mut blobs);
        d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        entries.push(d);
    }
    let top = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    let check = if new {
        "curl -fsS \"$REGISTRY/v2/\" >/dev/null\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("scripts/preflight.sh"),
        format!("#!/bin/sh\nset -eu\nkubectl version --client\n{check}"),
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), format!("# shop {version}\n")).unwrap();
    let telemetry = if new {
        format!("  endpoint: https://{NEW_DESTINATION}/v1/ingest\n")
    } else {
        String::new()
    };
    std::fs::write(
        dir.join("values.yaml"),
        format!(
            "image:\n  registry: registry.example.com\n  repository: shop/app\n  tag: \"{version}\"\ndatabase:\n  host: db.shop.svc.cluster.local\ntelemetry:\n  enabled: {new}\n{telemetry}"
        ),
    )
    .unwrap();
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: shop\nversion: {version}\nreadme: README.md\nvalues: [values.yaml]\nscripts: [scripts/preflight.sh]\nimages:\n  - ref: registry.example.com/shop/app:{version}\n    from: oci:layout:app\n  - ref: registry.example.com/shop/tools:latest\n    from: oci:layout:tools\n  - ref: registry.example.com/shop/db:16\n    from: oci:layout:db\n"
        ),
    )
    .unwrap();
    Release { spec, blobs }
}

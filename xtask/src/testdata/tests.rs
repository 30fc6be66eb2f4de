//! Tests of the fixture generator: byte-stability, drift of the committed copy, every digest of
//! every image form, what the spec and chart must contain, and interop with the real `skopeo`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::oci::{sha256_hex, INDEX, LAYER_GZIP, LAYER_TAR, MANIFEST, REF_NAME};
use super::*;

type Files = BTreeMap<String, Vec<u8>>;

fn fixture() -> Fixture {
    generate().expect("the fixture generates")
}

fn by_path(f: &Fixture) -> Files {
    f.files
        .iter()
        .map(|e| (e.path.clone(), e.data.clone()))
        .collect()
}

/// The files under `prefix/`, keyed by the rest of their path.
fn under(files: &Files, prefix: &str) -> Files {
    files
        .iter()
        .filter_map(|(p, d)| {
            p.strip_prefix(&format!("{prefix}/"))
                .map(|rest| (rest.to_string(), d.clone()))
        })
        .collect()
}

/// The regular files of a tar archive.
fn untar(bytes: &[u8]) -> Files {
    let mut out = Files::new();
    let mut ar = tar::Archive::new(bytes);
    for e in ar.entries().expect("archive reads") {
        let mut e = e.expect("entry reads");
        if e.header().entry_type().is_dir() {
            continue;
        }
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        assert!(out.insert(path.clone(), data).is_none(), "duplicate {path}");
    }
    out
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("layer gunzips");
    out
}

/// Checks one descriptor (and, recursively, what it points to) against the blobs of an OCI
/// layout; records every digest reached in `seen`.
fn check_descriptor(layout: &Files, desc: &Value, seen: &mut BTreeMap<String, usize>) {
    let digest = desc["digest"].as_str().expect("descriptor digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let blob = layout
        .get(&format!("blobs/sha256/{hex}"))
        .unwrap_or_else(|| panic!("blob {digest} is missing"));
    assert_eq!(sha256_hex(blob), hex, "blob {digest} has other bytes");
    assert_eq!(
        desc["size"].as_u64(),
        Some(blob.len() as u64),
        "size of {digest}"
    );
    *seen.entry(hex.to_string()).or_default() += 1;
    let media = desc["mediaType"].as_str().expect("descriptor media type");
    match media {
        INDEX => {
            let index = json(blob);
            assert_eq!(index["mediaType"], INDEX);
            for m in index["manifests"].as_array().unwrap() {
                assert!(
                    m["platform"]["architecture"].is_string(),
                    "platform in {digest}"
                );
                check_descriptor(layout, m, seen);
            }
        }
        MANIFEST => {
            let manifest = json(blob);
            assert_eq!(manifest["mediaType"], MANIFEST);
            assert_eq!(manifest["schemaVersion"], 2);
            check_descriptor(layout, &manifest["config"], seen);
            let config_hex = manifest["config"]["digest"].as_str().unwrap()[7..].to_string();
            let config = json(&layout[&format!("blobs/sha256/{config_hex}")]);
            assert_eq!(config["created"], "1970-01-01T00:00:00Z");
            assert_eq!(config["os"], "linux");
            let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
            let layers = manifest["layers"].as_array().unwrap();
            assert_eq!(diff_ids.len(), layers.len(), "diff_ids of {digest}");
            for (layer, diff_id) in layers.iter().zip(diff_ids) {
                check_descriptor(layout, layer, seen);
                let bytes =
                    &layout[&format!("blobs/sha256/{}", &layer["digest"].as_str().unwrap()[7..])];
                let tar = match layer["mediaType"].as_str().unwrap() {
                    LAYER_GZIP => gunzip(bytes),
                    LAYER_TAR => bytes.clone(),
                    other => panic!("unexpected layer media type {other}"),
                };
                assert_eq!(
                    diff_id.as_str().unwrap(),
                    format!("sha256:{}", sha256_hex(&tar))
                );
                assert!(!untar(&tar).is_empty(), "layer of {digest} holds files");
            }
        }
        _ => {}
    }
}

/// Checks a whole OCI image layout; returns ref name → (descriptor digest, descriptor).
fn check_layout(layout: &Files) -> BTreeMap<String, Value> {
    assert_eq!(layout["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = json(&layout["index.json"]);
    assert_eq!(index["schemaVersion"], 2);
    let mut seen = BTreeMap::new();
    let mut refs = BTreeMap::new();
    for desc in index["manifests"].as_array().unwrap() {
        check_descriptor(layout, desc, &mut seen);
        let name = desc["annotations"][REF_NAME].as_str().expect("ref name");
        refs.insert(name.to_string(), desc.clone());
    }
    let blobs: Vec<&String> = layout.keys().filter(|p| p.starts_with("blobs/")).collect();
    assert_eq!(
        blobs.len(),
        seen.len(),
        "every blob is referenced, none twice on disk"
    );
    refs
}

#[test]
fn generation_is_byte_identical() {
    let (a, b) = (by_path(&fixture()), by_path(&fixture()));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        assert!(bytes == &b[path], "{path} differs between two runs");
    }
}

#[test]
fn committed_fixture_is_what_the_generator_makes() {
    let diffs = check(&fixture_dir()).unwrap();
    let listed: Vec<String> = diffs.iter().map(ToString::to_string).collect();
    assert!(
        diffs.is_empty(),
        "testdata/agent-security is stale; run `cargo xtask testdata`:\n{}",
        listed.join("\n")
    );
}

#[test]
fn check_names_every_kind_of_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agent-security");
    write(&dir).unwrap();
    assert_eq!(check(&dir).unwrap(), []);
    fs::write(dir.join("values.yaml"), "changed\n").unwrap();
    fs::remove_file(dir.join("images/redis.docker.tar")).unwrap();
    fs::write(dir.join("stray.txt"), "x").unwrap();
    fs::set_permissions(
        dir.join("scripts/preflight.sh"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut got = check(&dir).unwrap();
    got.sort_by_key(|d| d.to_string());
    let want = [
        Difference::Extra("stray.txt".into()),
        Difference::Missing("images/redis.docker.tar".into()),
        Difference::Mode {
            path: "scripts/preflight.sh".into(),
            expected: 0o755,
            found: 0o644,
        },
        Difference::Content("values.yaml".into()),
    ];
    for w in &want {
        assert!(got.contains(w), "{w:?} not reported in {got:?}");
    }
    assert_eq!(got.len(), want.len(), "{got:?}");
}

#[test]
fn write_refuses_a_foreign_folder() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let err = write(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("refusing"), "{err}");
    assert!(tmp.path().join("precious.txt").exists());
}

#[test]
fn shared_layout_holds_four_images_with_correct_digests() {
    let f = fixture();
    let files = by_path(&f);
    let refs = check_layout(&under(&files, "images/layout"));
    assert_eq!(
        refs.keys().collect::<Vec<_>>(),
        ["consent-service", "gateway", "keycloak-setup", "platform"]
    );
    for info in f.images.iter().filter(|i| i.file == "images/layout") {
        let name = info.from.rsplit(':').next().unwrap();
        assert_eq!(
            refs[name]["digest"].as_str(),
            info.manifest_digest.as_deref(),
            "{name}"
        );
    }
}

#[test]
fn gateway_and_consent_service_share_one_base_layer() {
    let files = by_path(&fixture());
    let layout = under(&files, "images/layout");
    let refs = check_layout(&layout);
    let first_layer = |name: &str| {
        let hex = &refs[name]["digest"].as_str().unwrap()[7..];
        let m = json(&layout[&format!("blobs/sha256/{hex}")]);
        (
            m["layers"][0]["digest"].as_str().unwrap().to_string(),
            m["layers"][1]["digest"].as_str().unwrap().to_string(),
        )
    };
    let (gateway_base, gateway_app) = first_layer("gateway");
    let (consent_base, consent_app) = first_layer("consent-service");
    assert_eq!(gateway_base, consent_base);
    assert_ne!(gateway_app, consent_app);
}

#[test]
fn platform_is_an_amd64_and_arm64_index() {
    let files = by_path(&fixture());
    let layout = under(&files, "images/layout");
    let refs = check_layout(&layout);
    assert_eq!(refs["platform"]["mediaType"], INDEX);
    let hex = &refs["platform"]["digest"].as_str().unwrap()[7..];
    let index = json(&layout[&format!("blobs/sha256/{hex}")]);
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            [&p["os"], &p["architecture"], &p["variant"]]
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
}

#[test]
fn oci_archive_is_a_layout_with_one_ref() {
    let files = by_path(&fixture());
    let archive = untar(&files["images/postgres.oci.tar"]);
    let refs = check_layout(&archive);
    assert_eq!(refs.keys().collect::<Vec<_>>(), ["16.4"]);
}

/// Checks a `docker save` tarball's `manifest.json` against its config and layer files.
fn check_docker_manifest(archive: &Files, reference: &str) -> Value {
    let manifest = json(&archive["manifest.json"]);
    let image = &manifest[0];
    assert_eq!(manifest.as_array().unwrap().len(), 1);
    assert_eq!(image["RepoTags"][0], reference);
    let config_path = image["Config"].as_str().unwrap();
    let config = json(&archive[config_path]);
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = image["Layers"].as_array().unwrap();
    assert_eq!(diff_ids.len(), layers.len());
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let bytes = &archive[layer.as_str().unwrap()];
        assert_eq!(
            diff_id.as_str().unwrap(),
            format!("sha256:{}", sha256_hex(bytes))
        );
        assert!(!untar(bytes).is_empty());
    }
    let repos = json(&archive["repositories"]);
    let (repo, tag) = reference.rsplit_once(':').unwrap();
    assert!(
        repos[repo][tag].is_string(),
        "repositories names {reference}"
    );
    manifest
}

#[test]
fn legacy_docker_archive_has_layer_folders() {
    let files = by_path(&fixture());
    let archive = untar(&files["images/nginx.docker.tar"]);
    let m = check_docker_manifest(&archive, "registry.permit.io/agent-security/nginx:1.25.3");
    let config = m[0]["Config"].as_str().unwrap();
    assert_eq!(
        format!("{}.json", sha256_hex(&archive[config])),
        config,
        "config is named by its digest"
    );
    for layer in m[0]["Layers"].as_array().unwrap() {
        let dir = layer.as_str().unwrap().strip_suffix("/layer.tar").unwrap();
        assert_eq!(archive[&format!("{dir}/VERSION")], b"1.0");
        assert_eq!(json(&archive[&format!("{dir}/json")])["id"], dir);
    }
    assert!(!archive.contains_key("index.json"));
}

#[test]
fn docker25_archive_is_an_oci_layout_plus_manifest_json() {
    let files = by_path(&fixture());
    let archive = untar(&files["images/redis.docker.tar"]);
    let reference = "registry.permit.io/agent-security/redis:7.2.5";
    let m = check_docker_manifest(&archive, reference);
    for path in std::iter::once(&m[0]["Config"]).chain(m[0]["Layers"].as_array().unwrap()) {
        assert!(
            path.as_str().unwrap().starts_with("blobs/sha256/"),
            "{path}"
        );
    }
    let refs = check_layout(&archive);
    let desc = &refs["7.2.5"];
    assert_eq!(desc["annotations"]["io.containerd.image.name"], reference);
}

#[test]
fn spec_and_readme_list_every_image() {
    let f = fixture();
    let files = by_path(&f);
    let spec = String::from_utf8(files["ferry.yaml"].clone()).unwrap();
    let readme = String::from_utf8(files["README.md"].clone()).unwrap();
    assert_eq!(f.images.len(), 7);
    for i in &f.images {
        assert!(
            spec.contains(&format!("  - ref: {}\n    from: {}\n", i.reference, i.from)),
            "ferry.yaml lists {}",
            i.reference
        );
        assert!(
            readme.contains(&i.reference),
            "README lists {}",
            i.reference
        );
        assert!(
            files
                .keys()
                .any(|p| p == &i.file || p.starts_with(&format!("{}/", i.file))),
            "{} exists",
            i.file
        );
    }
    for (path, _, _) in text::FILES {
        if path.starts_with("scripts/") || path.starts_with("charts/") {
            let top = path.split('/').take(2).collect::<Vec<_>>().join("/");
            assert!(spec.contains(&top), "ferry.yaml names {top}");
        }
    }
    assert!(!spec.contains("{images}") && !readme.contains("{images}"));
}

#[test]
fn fixture_stays_small() {
    let f = fixture();
    let total: usize = f.files.iter().map(|e| e.data.len()).sum();
    assert!(total < 1536 * 1024, "fixture is {total} bytes");
    for i in &f.images {
        let size: usize = f
            .files
            .iter()
            .filter(|e| e.path == i.file || e.path.starts_with(&format!("{}/", i.file)))
            .map(|e| e.data.len())
            .sum();
        assert!(size < 256 * 1024, "{} is {size} bytes", i.file);
    }
}

#[test]
fn scripts_are_executable_and_everything_else_is_not() {
    for e in fixture().files {
        let want = if e.path.starts_with("scripts/") {
            0o755
        } else {
            0o644
        };
        assert_eq!(e.mode, want, "{}", e.path);
    }
}

#[test]
fn chart_holds_what_the_egress_audit_must_find() {
    let files = by_path(&fixture());
    let text = |p: &str| String::from_utf8(files[p].clone()).unwrap();
    let t = "charts/agent-security/templates";
    let cases = [
        (
            format!("{t}/platform.yaml"),
            "value: \"https://api.segment.io/v1/batch\"",
        ),
        (
            format!("{t}/platform.yaml"),
            "{{ .Values.platform.oidc.discoveryUrl | quote }}",
        ),
        (
            format!("{t}/gateway.yaml"),
            "default \"https://api.permit.io\"",
        ),
        (
            format!("{t}/gateway.yaml"),
            "{{ .Values.global.permit.apiUrl | quote }}",
        ),
        (
            format!("{t}/nginx.yaml"),
            "proxy_pass http://agent-security-gateway:8080;",
        ),
        (
            format!("{t}/keycloak-setup-job.yaml"),
            "default \"http://keycloak.permit-platform.svc.cluster.local:8080/auth\"",
        ),
        ("values.yaml".into(), "baseDomain: \"mcp.yourcompany.com\""),
        (
            "values.yaml".into(),
            "apiUrl: \"https://permit.yourcompany.com\"",
        ),
        (
            "values.yaml".into(),
            "repository: REGISTRY/agent-security/gateway",
        ),
        ("values.yaml".into(), "registry: REGISTRY"),
        (
            "values.yaml".into(),
            "image: REGISTRY/agent-security/redis:7.2.5",
        ),
        (
            "values.yaml".into(),
            "pdpUrl: \"http://permitio-pdp.permit-platform.svc.cluster.local:7766\"",
        ),
        ("egress-allow.yaml".into(), "hosts: [\"api.segment.io\"]"),
        (
            "scripts/setup-keycloak.sh".into(),
            "https://permit.yourcompany.com/auth",
        ),
    ];
    for (path, needle) in cases {
        assert!(text(&path).contains(needle), "{path} lacks {needle}");
    }
}

/// Opening and closing template actions pair up (`if`/`with`/`range`/`define` … `end`).
#[test]
fn chart_template_blocks_are_balanced() {
    let files = by_path(&fixture());
    for (path, bytes) in files.iter().filter(|(p, _)| p.contains("/templates/")) {
        let text = String::from_utf8(bytes.clone()).unwrap();
        let mut depth = 0i32;
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            let end = rest[start..]
                .find("}}")
                .unwrap_or_else(|| panic!("{path}: unclosed action"));
            let action = rest[start + 2..start + end]
                .trim_matches('-')
                .trim()
                .to_string();
            rest = &rest[start + end + 2..];
            if action.starts_with("/*") {
                assert!(action.ends_with("*/"), "{path}: comment {action}");
                continue;
            }
            match action.split_whitespace().next().unwrap_or("") {
                "if" | "with" | "range" | "define" | "block" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{path}: `end` without a block");
        }
        assert_eq!(depth, 0, "{path}: unclosed block");
    }
}

/// Runs skopeo with `args`; panics with the install command when skopeo is missing.
fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run skopeo ({e}); install it: apt-get install -y skopeo")
        });
    assert!(
        out.status.success(),
        "skopeo {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `oci:images/layout:gateway` → `oci:/abs/dir/images/layout:gateway`.
fn absolute(from: &str, dir: &Path) -> String {
    let (transport, rest) = from.split_once(':').unwrap();
    format!("{transport}:{}/{rest}", dir.display())
}

#[test]
fn skopeo_reads_every_image_with_the_recorded_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agent-security");
    let fixture = write(&dir).unwrap();
    for i in &fixture.images {
        let src = absolute(&i.from, &dir);
        if let Some(digest) = &i.manifest_digest {
            // Through `docker-archive:` skopeo synthesises a Docker v2 manifest from
            // manifest.json; the Docker 25+ form's own OCI manifest is read as an oci-archive.
            let raw_src = match i.from.strip_prefix("docker-archive:") {
                Some(_) => format!(
                    "oci-archive:{}/{}:{}",
                    dir.display(),
                    i.file,
                    i.reference.rsplit(':').next().unwrap()
                ),
                None => src.clone(),
            };
            let raw = skopeo(&["inspect", "--raw", &raw_src]);
            assert_eq!(&format!("sha256:{}", sha256_hex(&raw)), digest, "{raw_src}");
        }
        let config = skopeo(&[
            "inspect",
            "--override-arch",
            "amd64",
            "--config",
            "--raw",
            &src,
        ]);
        assert_eq!(
            format!("sha256:{}", sha256_hex(&config)),
            i.config_digest,
            "{src}"
        );
        // A full copy makes skopeo check every layer against its digest or diff ID.
        let out = tmp.path().join("copies");
        let dest = format!(
            "oci:{}:{}",
            out.display(),
            i.reference.rsplit('/').next().unwrap()
        );
        skopeo(&["copy", "--quiet", "--all", &src, &dest]);
    }
}

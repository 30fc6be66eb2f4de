//! `ferry build` pulling from a real registry: skopeo pushes, ferry builds, ferry loads into
//! a second registry and skopeo reads back the same digests; platforms, the lock, the cache,
//! a corrupt registry and a failed login.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::harness::{ferry, inspect_json};
use crate::util::oci::{write_layout, TestLayout};
use crate::util::registry::{Registry, Setup};
use crate::util::skopeo;

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// A registry holding the test layout's images as `team/NAME:1.0`, pushed by skopeo.
struct Source {
    registry: Registry,
    layout: TestLayout,
    _dir: tempfile::TempDir,
}

impl Source {
    fn start(setup: Setup, salt: u64) -> Source {
        let registry = Registry::start(setup);
        let dir = tempfile::tempdir().unwrap();
        let layout = write_layout(dir.path(), salt);
        let mut creds = Vec::new();
        if let Some(auth) = &registry.auth_file {
            creds = vec![format!("--dest-authfile={}", auth.display())];
        }
        for image in &layout.images {
            let mut args = vec![
                "copy".to_string(),
                "--all".into(),
                "--quiet".into(),
                "--insecure-policy".into(),
                "--dest-tls-verify=false".into(),
            ];
            args.extend(creds.iter().cloned());
            args.push(format!("oci:{}:{}", dir.path().display(), image.name));
            args.push(format!(
                "docker://{}/team/{}:1.0",
                registry.host(),
                image.name
            ));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            skopeo::skopeo(&args);
        }
        Source {
            registry,
            layout,
            _dir: dir,
        }
    }

    fn digest(&self, name: &str) -> String {
        self.layout
            .images
            .iter()
            .find(|i| i.name == name)
            .unwrap()
            .digest
            .clone()
    }

    /// Overwrites every layer the registry stores with other bytes of the same size.
    fn corrupt_layers(&self) {
        for image in &self.layout.images {
            for (digest, size) in &image.blobs {
                if *size < 100_000 {
                    continue; // Configs: the layers are the large ones.
                }
                let hex = &digest[7..];
                let data = self
                    .registry
                    .storage()
                    .join("data/docker/registry/v2/blobs/sha256")
                    .join(&hex[..2])
                    .join(hex)
                    .join("data");
                std::fs::write(&data, vec![0x5a; *size as usize]).unwrap();
            }
        }
    }
}

/// A spec in `dir` pulling from `host`: app1 by its own reference, app2 under another
/// recorded reference, multi whole, and multi filtered to linux/arm64.
fn write_spec(dir: &Path, host: &str) -> PathBuf {
    let spec = dir.join("ferry.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: pulled\nversion: '1.0'\nimages:\n\
             - ref: {host}/team/app1:1.0\n\
             - ref: registry.example.com/team/app2:1.0\n  from: docker://{host}/team/app2:1.0\n\
             - ref: {host}/team/multi:1.0\n\
             - ref: registry.example.com/team/multi-arm:1.0\n  from: docker://{host}/team/multi:1.0\n  platforms: [linux/arm64]\n"
        ),
    )
    .unwrap();
    spec
}

fn build(spec: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    ferry()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--plain-http", "-f"])
        .arg(spec)
        .arg("-o")
        .arg(out)
        .args(extra)
        .assert()
}

#[test]
fn pulled_images_round_trip_through_build_and_load() {
    let a = Source::start(Setup::Plain, 41);
    let b = Registry::start(Setup::Plain);
    let work = tempfile::tempdir().unwrap();
    let spec = write_spec(work.path(), &a.registry.host());
    let bundle = work.path().join("b.tar.gz");
    build(&spec, &bundle, &[]).success();
    ferry().arg("verify").arg(&bundle).assert().success();

    // The lock pins what every tag resolved to, upstream digests included.
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("ferry.lock")).unwrap()).unwrap();
    let locked: Vec<&str> = lock["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        locked,
        [
            a.digest("app1"),
            a.digest("app2"),
            a.digest("multi"),
            a.digest("multi")
        ]
    );

    ferry()
        .args(["load", "--plain-http", "--registry"])
        .arg(b.host())
        .arg(&bundle)
        .assert()
        .success();
    for (path, name) in [
        ("team/app1", "app1"),
        ("team/app2", "app2"),
        ("team/multi", "multi"),
    ] {
        let raw = skopeo::inspect_raw(&format!("{}/{path}:1.0", b.host()));
        assert_eq!(sha256(&raw), a.digest(name), "{path}");
    }
    // The filtered image is a new index holding only arm64; the bundle records its source.
    let raw = skopeo::inspect_raw(&format!("{}/team/multi-arm:1.0", b.host()));
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let platforms: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["arm64"]);
    let m = inspect_json(&bundle);
    let arm = m["manifest"]["images"]
        .as_array()
        .or_else(|| m["images"].as_array())
        .unwrap()
        .iter()
        .find(|i| i["reference"] == "registry.example.com/team/multi-arm:1.0")
        .unwrap()
        .clone();
    assert_eq!(arm["digest"].as_str().unwrap(), sha256(&raw));
    assert_eq!(arm["sourceDigest"].as_str().unwrap(), a.digest("multi"));
    assert_eq!(arm["platforms"], serde_json::json!(["linux/arm64/v8"]));

    // The same lock and inputs give the same bytes.
    let again = work.path().join("again.tar.gz");
    build(&spec, &again, &["--locked"]).success();
    assert_eq!(
        std::fs::read(&bundle).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn a_cached_rebuild_or_a_delta_fetches_no_layer_and_a_corrupt_registry_leaves_nothing() {
    let a = Source::start(Setup::Plain, 43);
    let work = tempfile::tempdir().unwrap();
    let spec = write_spec(work.path(), &a.registry.host());
    let cache = work.path().join("cache");
    let first = work.path().join("first.tar.gz");
    build(&spec, &first, &["--cache", cache.to_str().unwrap()]).success();

    a.corrupt_layers();
    // From the cache, nothing is fetched twice: the registry's bad bytes are never read.
    let cached = work.path().join("cached.tar.gz");
    build(&spec, &cached, &["--cache", cache.to_str().unwrap()]).success();
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&cached).unwrap()
    );
    // Nor does a delta against the first build fetch the layers it holds: it builds from
    // the corrupt registry, and merges back into the first build byte for byte.
    let delta = work.path().join("delta.tar.gz");
    build(&spec, &delta, &["--base", first.to_str().unwrap()]).success();
    let merged = work.path().join("merged.tar.gz");
    ferry()
        .arg("merge")
        .arg(&first)
        .arg(&delta)
        .arg("-o")
        .arg(&merged)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&merged).unwrap()
    );
    std::fs::remove_file(&delta).unwrap();
    std::fs::remove_file(&merged).unwrap();

    // Without it, the bytes do not match their digests: the build fails, leaving no file.
    let bad = work.path().join("bad.tar.gz");
    let out = build(&spec, &bad, &[]).failure().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(!bad.exists());
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".ferry"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A cache file that went bad is read, checked and named, never trusted.
    let layer = &a.layout.images[0]
        .blobs
        .iter()
        .find(|b| b.1 > 100_000)
        .unwrap()
        .0;
    let cached_file = cache.join("blobs/sha256").join(&layer[7..]);
    let len = std::fs::metadata(&cached_file).unwrap().len() as usize;
    std::fs::write(&cached_file, vec![0x33; len]).unwrap();
    let out = build(&spec, &bad, &["--cache", cache.to_str().unwrap()])
        .failure()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains(&layer[7..]) && err.contains("does not match"),
        "{err}"
    );
    assert!(!bad.exists());
}

#[test]
fn a_moved_tag_fails_a_locked_build_naming_the_image() {
    let a = Source::start(Setup::Plain, 47);
    let work = tempfile::tempdir().unwrap();
    let spec = write_spec(work.path(), &a.registry.host());
    build(&spec, &work.path().join("one.tar.gz"), &[]).success();
    // app1:1.0 now points at app2's manifest.
    skopeo::skopeo(&[
        "copy",
        "--quiet",
        "--insecure-policy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/team/app2:1.0", a.registry.host()),
        &format!("docker://{}/team/app1:1.0", a.registry.host()),
    ]);
    let two = work.path().join("two.tar.gz");
    let out = build(&spec, &two, &["--locked"]).failure().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("team/app1:1.0") && err.contains("moved"),
        "{err}"
    );
    assert!(
        err.contains(&a.digest("app1")) && err.contains(&a.digest("app2")),
        "{err}"
    );
    assert!(!two.exists());
}

#[test]
fn a_failed_login_names_the_registry_and_exits_2() {
    let a = Source::start(
        Setup::Basic {
            user: "vendor".into(),
            password: "s3cret".into(),
        },
        53,
    );
    let work = tempfile::tempdir().unwrap();
    let spec = write_spec(work.path(), &a.registry.host());
    let empty = work.path().join("auth.json");
    std::fs::write(&empty, r#"{"auths":{}}"#).unwrap();
    let out = build(
        &spec,
        &work.path().join("x.tar.gz"),
        &["--authfile", empty.to_str().unwrap()],
    )
    .failure()
    .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains(&a.registry.host()), "{err}");
    // With the credentials, the same build works.
    let auth = a.registry.auth_file.clone().unwrap();
    build(
        &spec,
        &work.path().join("y.tar.gz"),
        &["--authfile", auth.to_str().unwrap()],
    )
    .success();
}

/// Two registries that need different settings in one build: one plain HTTP, one TLS with
/// its own CA, each given per host; without its CA the TLS one is refused, naming it.
#[test]
fn per_registry_tls_and_plain_http_settings() {
    let plain = Source::start(Setup::Plain, 59);
    let tls = Registry::start(Setup::Tls);
    let ca = tls.ca_file.clone().unwrap();
    let cert_dir = tls.cert_dir.clone().unwrap();
    skopeo::skopeo(&[
        "copy",
        "--quiet",
        "--insecure-policy",
        "--src-tls-verify=false",
        &format!("--dest-cert-dir={}", cert_dir.display()),
        &format!("docker://{}/team/app2:1.0", plain.registry.host()),
        &format!("docker://{}/team/app2:1.0", tls.host()),
    ]);
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: two\nversion: '1'\nimages:\n- ref: {}/team/app1:1.0\n- ref: {}/team/app2:1.0\n",
            plain.registry.host(),
            tls.host()
        ),
    )
    .unwrap();
    let run = |out: &str, extra: Vec<String>| {
        ferry()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-f"])
            .arg(&spec)
            .arg("-o")
            .arg(work.path().join(out))
            .arg("--plain-http-host")
            .arg(plain.registry.host())
            .args(extra)
            .assert()
    };
    let out = run("no-ca.tar.gz", vec![]).failure().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains(&tls.host()) && err.contains("--ca-file"),
        "{err}"
    );
    run(
        "ok.tar.gz",
        vec![
            "--ca-file".into(),
            format!("{}={}", tls.host(), ca.display()),
        ],
    )
    .success();
    let m = inspect_json(&work.path().join("ok.tar.gz"));
    let text = m.to_string();
    assert!(
        text.contains(&plain.digest("app1")) && text.contains(&plain.digest("app2")),
        "{text}"
    );
}

/// An image with a non-distributable layer (the registry holds only its URL): the build
/// leaves the layer out and says the image will not pull inside an air gap; the bundle
/// verifies and records the digest; `--include-non-distributable` tries to carry it.
#[test]
fn non_distributable_layers_are_left_out_and_named() {
    use ferry::registry::push::{push, ImageToPush, LayoutSource, NoProgress, PushOptions};
    use ferry::registry::{CredentialSource, RegistryOptions};
    let reg = Registry::start(Setup::Plain);
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    };
    let (layer, layer_size) = put(&gz(b"a distributable layer"));
    let foreign = sha256(b"a windows base layer nobody may copy");
    let (config, config_size) =
        put(br#"{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
             "digest": foreign, "size": 1234, "urls": ["https://layers.example.com/base"]},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size},
        ],
    });
    let (digest, _) = put(&serde_json::to_vec(&manifest).unwrap());
    std::fs::write(
        dir.path().join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut o = RegistryOptions::new(reg.host());
    o.plain_http = true;
    o.credentials = CredentialSource::Anonymous;
    push(
        &PushOptions::new(o),
        std::sync::Arc::new(LayoutSource::open(dir.path()).unwrap()),
        &[ImageToPush {
            source_ref: "registry.example.com/team/win:1.0".into(),
            target_repo: "team/win".into(),
            tag: "1.0".into(),
            digest: digest.parse().unwrap(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        }],
        std::sync::Arc::new(NoProgress),
    )
    .unwrap();

    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: win\nversion: '1'\nimages:\n- ref: {}/team/win:1.0\n",
            reg.host()
        ),
    )
    .unwrap();
    let bundle = work.path().join("w.tar.gz");
    let out = build(&spec, &bundle, &[]).success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("team/win:1.0") && err.contains("air gap"),
        "{err}"
    );
    ferry().arg("verify").arg(&bundle).assert().success();
    let m = inspect_json(&bundle).to_string();
    assert!(m.contains(&foreign), "{m}");
    // Carrying it means fetching it: this registry has only its URL.
    let out = build(
        &spec,
        &work.path().join("all.tar.gz"),
        &["--include-non-distributable"],
    )
    .failure()
    .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains(&foreign[7..19]), "{err}");
}

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

//! `ferry load`, `ferry rewrite` and `ferry images check` through the command line, against
//! a real registry, with skopeo as the independent client.

use crate::harness::{
    build_fixture, build_spec, ferry, fixture, oci_manifest_for_legacy, sha256_hex,
};
use crate::util::faultproxy::{Fault, FaultProxy, Rule};
use crate::util::registry::{Registry, Setup};
use crate::util::skopeo::{inspect_raw, pull_all};
use std::process::Command;
use std::time::Duration;

fn load_json(args: &[&str]) -> serde_json::Value {
    let out = ferry()
        .arg("--json")
        .arg("load")
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn fixture_bundle_round_trips_with_digests_and_values() {
    let reg = Registry::start(Setup::Plain);
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    let report = build_fixture(&bundle, 0);
    let values = tmp.path().join("values.yaml");
    std::fs::copy(fixture().join("values.yaml"), &values).unwrap();
    let mine = tmp.path().join("my-values.yaml");
    let target = format!("{}/mirror", reg.host());
    let v = load_json(&[
        bundle.to_str().unwrap(),
        "--registry",
        &target,
        "--plain-http",
        "--values",
        values.to_str().unwrap(),
        "-o",
        mine.to_str().unwrap(),
    ]);
    let pushed = v["report"]["pushed"].as_array().unwrap();
    assert_eq!(pushed.len(), report.manifest.images.len());

    for img in &report.manifest.images {
        let reference = format!(
            "{target}/{}:{}",
            img.repository,
            img.tag.as_deref().unwrap()
        );
        let raw = inspect_raw(&reference);
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw)),
            img.digest.to_string(),
            "{reference}"
        );
        assert!(pushed.iter().any(|p| p["reference"] == reference.as_str()
            && p["digest"] == img.digest.to_string().as_str()));
    }
    // Pull the multi-arch image back whole and compare every blob with the bundle's.
    let extracted = tmp.path().join("x");
    ferry()
        .args(["extract", "-q"])
        .arg(&bundle)
        .arg("-C")
        .arg(&extracted)
        .assert()
        .success();
    let pulled = tmp.path().join("pulled");
    pull_all(
        &format!("{target}/agent-security/platform:1.4.0"),
        &pulled,
        "p",
    );
    let mut compared = 0;
    for e in std::fs::read_dir(pulled.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let ours = extracted
            .join("agent-security-1.4.0/images/blobs/sha256")
            .join(e.file_name());
        assert_eq!(
            std::fs::read(e.path()).unwrap(),
            std::fs::read(&ours).unwrap(),
            "{:?}",
            e.file_name()
        );
        compared += 1;
    }
    assert!(
        compared >= 6,
        "index, two manifests, configs and layers expected, got {compared}"
    );

    // The values now point at the mirror, and nothing else in them changed.
    let text = std::fs::read_to_string(&mine).unwrap();
    assert!(
        text.contains(&format!("{target}/agent-security/gateway")),
        "{text}"
    );
    assert!(!text.contains("REGISTRY/"), "{text}");
    assert_eq!(
        std::fs::read(&values).unwrap(),
        std::fs::read(fixture().join("values.yaml")).unwrap(),
        "-o must leave the input alone"
    );

    // A second load finds everything there and sends nothing.
    let v = load_json(&[
        bundle.to_str().unwrap(),
        "--registry",
        &target,
        "--plain-http",
    ]);
    assert_eq!(v["report"]["bytes_uploaded"], 0, "{v}");
    assert_eq!(
        v["evidence"]["alreadyLoaded"], true,
        "a warm re-load reads only the head: {v}"
    );
    assert_eq!(
        v["report"]["pushed"].as_array().unwrap().len(),
        report.manifest.images.len()
    );
}

#[test]
fn archives_and_folders_load_too() {
    let reg = Registry::start(Setup::Plain);
    let tmp = tempfile::tempdir().unwrap();
    // The legacy docker-archive of the fixture, and the same gzip-compressed like the
    // vendor's images/all-images.tar.gz: the archive holds no manifest, so ferry pushes the
    // OCI manifest it writes for the config and layers skopeo finds in it.
    let docker = fixture().join("images/nginx.docker.tar");
    let want = sha256_hex(&oci_manifest_for_legacy(&crate::util::skopeo::skopeo(&[
        "inspect",
        "--raw",
        &format!("docker-archive:{}", docker.display()),
    ])));
    let gz = tmp.path().join("all-images.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(&docker).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    for (input, prefix) in [(docker.clone(), "plain"), (gz, "gz")] {
        let target = format!("{}/{prefix}", reg.host());
        load_json(&[
            input.to_str().unwrap(),
            "--registry",
            &target,
            "--plain-http",
        ]);
        let raw = inspect_raw(&format!("{target}/agent-security/nginx:1.25.3"));
        assert_eq!(sha256_hex(&raw), want);
    }
    // An extracted bundle folder and a plain OCI layout folder.
    let bundle = tmp.path().join("b.tar.gz");
    let report = build_fixture(&bundle, 0);
    let x = tmp.path().join("x");
    ferry()
        .args(["extract", "-q"])
        .arg(&bundle)
        .arg("-C")
        .arg(&x)
        .assert()
        .success();
    let target = format!("{}/folder", reg.host());
    let v = load_json(&[x.to_str().unwrap(), "--registry", &target, "--plain-http"]);
    assert_eq!(
        v["report"]["pushed"].as_array().unwrap().len(),
        report.manifest.images.len()
    );
    let target = format!("{}/layout", reg.host());
    let layout = x.join("agent-security-1.4.0/images");
    load_json(&[
        layout.to_str().unwrap(),
        "--registry",
        &target,
        "--plain-http",
    ]);
    assert_eq!(
        format!(
            "sha256:{}",
            sha256_hex(&inspect_raw(&format!(
                "{target}/agent-security/gateway:1.4.0"
            )))
        ),
        report.manifest.images[0].digest.to_string()
    );
}

#[test]
fn a_killed_load_resumes_and_sends_only_what_is_missing() {
    let reg = Registry::start(Setup::Plain);
    let tmp = tempfile::tempdir().unwrap();
    // Six images of 2 MiB incompressible layers, so there is something to interrupt.
    let layout = tmp.path().join("layout");
    let images = crate::util::oci::write_layout(&layout, 7);
    let mut spec = String::from("name: big\nversion: '1'\nimages:\n");
    for img in &images.images {
        spec.push_str(&format!(
            "  - ref: example.com/big/{0}:1\n    from: oci:layout:{0}\n",
            img.name
        ));
    }
    std::fs::write(tmp.path().join("ferry.yaml"), spec).unwrap();
    let bundle = tmp.path().join("big.tar.gz");
    let report = build_spec(&tmp.path().join("ferry.yaml"), &bundle, 0);
    let last = report.manifest.images.last().unwrap();
    // Stall the upload of the last image's manifest: everything before it is in.
    let proxy = FaultProxy::start(
        reg.port,
        vec![Rule::new(
            "PUT",
            &format!("manifests/{}", last.digest),
            Fault::Stall(Duration::from_secs(60)),
            1,
        )],
    );
    let target = format!("{}/r", proxy.host());
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("ferry"))
        .args(["load", "-q"])
        .arg(&bundle)
        .args(["--registry", &target, "--plain-http", "--concurrency", "1"])
        .spawn()
        .unwrap();
    // The load either reaches the stalled request (and hangs there) or ends without it.
    while proxy.faults() == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended before it reached the stalled request"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let total: u64 = report
        .manifest
        .files
        .iter()
        .filter(|f| f.path.as_str().starts_with("images/blobs/"))
        .map(|f| f.size)
        .sum();
    let v = load_json(&[
        bundle.to_str().unwrap(),
        "--registry",
        &format!("{}/r", reg.host()),
        "--plain-http",
    ]);
    let sent = v["report"]["bytes_uploaded"].as_u64().unwrap();
    assert!(
        sent < total / 4,
        "the re-run sent {sent} of {total} bytes: it should send only what was missing"
    );
    assert!(v["report"]["blobs_skipped"].as_u64().unwrap() > 0);
    for img in &report.manifest.images {
        let raw = inspect_raw(&format!("{}/r/{}:1", reg.host(), img.repository));
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw)),
            img.digest.to_string()
        );
    }
}

#[test]
fn bad_input_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let b = bundle.to_str().unwrap();

    // Wrong password: an auth error naming the registry, exit 2, quickly.
    let reg = Registry::start(Setup::Basic {
        user: "ferry".into(),
        password: "s3cret".into(),
    });
    // Through a counting proxy: a wrong password must not be retried.
    let proxy = FaultProxy::start(reg.port, vec![]);
    let out = ferry()
        .args([
            "load",
            b,
            "--registry",
            &proxy.host(),
            "--plain-http",
            "--username",
            "ferry",
            "--password-stdin",
        ])
        .write_stdin("wrong\n")
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(msg.contains(&proxy.host()), "{msg}");
    assert!(!msg.contains("wrong"), "the password leaked: {msg}");
    // Each contact asks once without and once with the password; one retried contact alone
    // would make six attempts (the default retry policy).
    assert!(
        proxy.requests() < 6,
        "a wrong password must not be retried: {:#?}",
        proxy.log()
    );
    ferry()
        .args([
            "load",
            "-q",
            b,
            "--registry",
            &reg.host(),
            "--plain-http",
            "--username",
            "ferry",
            "--password-stdin",
        ])
        .write_stdin("s3cret\n")
        .assert()
        .success();

    // Unknown CA: a TLS error that suggests --ca-file; with it, the load works.
    let tls = Registry::start(Setup::Tls);
    let out = ferry()
        .args(["load", b, "--registry", &tls.host()])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&out).contains("--ca-file"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    ferry()
        .args(["load", "-q", b, "--registry", &tls.host(), "--ca-file"])
        .arg(tls.ca_file.as_ref().unwrap())
        .assert()
        .success();

    // Unreachable registry.
    let closed = crate::util::ClosedPort::new();
    let port = closed.port;
    let out = ferry()
        .args([
            "load",
            b,
            "--registry",
            &format!("127.0.0.1:{port}"),
            "--plain-http",
        ])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&out).contains(&format!("127.0.0.1:{port}")),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // A values file with an alias on an image key is refused with its line, before any push.
    let plain = Registry::start(Setup::Plain);
    let values = tmp.path().join("alias.yaml");
    std::fs::write(
        &values,
        "base: &img REGISTRY/agent-security/gateway:1.4.0\ngateway:\n  image: *img\n",
    )
    .unwrap();
    let out = ferry()
        .args([
            "load",
            b,
            "--registry",
            &plain.host(),
            "--plain-http",
            "--values",
        ])
        .arg(&values)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(
        msg.contains("alias.yaml:1:7:") && msg.contains("anchor"),
        "{msg}"
    );
    // A values file that needs an image the bundle lacks fails with exit 1.
    std::fs::write(
        &values,
        "gateway:\n  image: REGISTRY/agent-security/not-shipped:9.9\n",
    )
    .unwrap();
    let out = ferry()
        .args(["images", "check"])
        .arg(&values)
        .arg("--bundle")
        .arg(&bundle)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&out).contains("not-shipped"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    ferry()
        .args([
            "load",
            b,
            "--registry",
            &plain.host(),
            "--plain-http",
            "--values",
        ])
        .arg(&values)
        .assert()
        .code(1);
    let catalog = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/agent-security/gateway:1.4.0", plain.host()),
        ])
        .output()
        .unwrap();
    assert!(
        !catalog.status.success(),
        "nothing may be pushed when the values check fails"
    );
}

#[test]
fn rewrite_command_edits_in_place_and_diffs() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let values = tmp.path().join("values.yaml");
    std::fs::copy(fixture().join("values.yaml"), &values).unwrap();
    let diff = ferry()
        .args(["rewrite"])
        .arg(&values)
        .args(["--registry", "harbor.example.com/mcp", "--bundle"])
        .arg(&bundle)
        .arg("--diff")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let diff = String::from_utf8_lossy(&diff);
    assert!(
        diff.contains("+    repository: harbor.example.com/mcp/agent-security/gateway"),
        "{diff}"
    );
    ferry()
        .args(["rewrite", "-q", "--in-place", "--pin-digests"])
        .arg(&values)
        .args(["--registry", "harbor.example.com/mcp", "--bundle"])
        .arg(&bundle)
        .assert()
        .success();
    let text = std::fs::read_to_string(&values).unwrap();
    assert!(text.contains("sha256:"), "pinned digests expected: {text}");
    ferry()
        .args(["images", "check"])
        .arg(&values)
        .arg("--bundle")
        .arg(&bundle)
        .assert()
        .success();
}

/// `index.docker.io/nginx:1` is Docker Hub's `library/nginx`: the push and the values rewrite
/// send it to the same repository, from a bundle and from an OCI layout alike.
#[test]
fn a_docker_hub_alias_goes_to_one_repository_for_push_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    crate::util::oci::write_layout(&layout, 21);
    std::fs::write(
        tmp.path().join("ferry.yaml"),
        "name: hub\nversion: '1'\nimages:\n  - ref: index.docker.io/nginx:1\n    from: oci:layout:app1\n",
    )
    .unwrap();
    let bundle = tmp.path().join("hub.tar.gz");
    ferry()
        .args(["build", "-q", "-f"])
        .arg(tmp.path().join("ferry.yaml"))
        .arg("-o")
        .arg(&bundle)
        .assert()
        .success();
    // The same image as the only named one of a plain OCI layout.
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut first = index["manifests"][0].clone();
    first["annotations"]["org.opencontainers.image.ref.name"] = "index.docker.io/nginx:1".into();
    index["manifests"] = serde_json::json!([first]);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    for input in [&bundle, &layout] {
        let values = tmp.path().join("values.yaml");
        std::fs::write(&values, "image: index.docker.io/nginx:1\n").unwrap();
        let v = load_json(&[
            input.to_str().unwrap(),
            "--registry",
            "harbor.example.com/mirror",
            "--dry-run",
            "--values",
            values.to_str().unwrap(),
        ]);
        let pushed_to = &v["report"]["plan"]["images"][0]["target"];
        let rewritten_to = &v["values"][0]["edits"][0]["after"];
        assert_eq!(pushed_to, rewritten_to, "{}: {v:#}", input.display());
        assert_eq!(
            pushed_to.as_str(),
            Some("harbor.example.com/mirror/library/nginx:1"),
            "{}",
            input.display()
        );
    }
}

/// A `--registry` value that is no registry target fails before anything is pushed, even when
/// only the values rewrite at the end would have used the prefix.
#[test]
fn a_bad_registry_value_fails_before_any_push() {
    let reg = Registry::start(Setup::Plain);
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let values = tmp.path().join("values.yaml");
    std::fs::copy(fixture().join("values.yaml"), &values).unwrap();
    let before = std::fs::read(&values).unwrap();
    let repositories = reg.storage().join("data/docker/registry/v2/repositories");
    // `PREFIX//` has an empty path component after the one trailing `/` that is allowed;
    // `mirror-` ends in a separator.
    for target in [
        format!("{}/mirror//", reg.host()),
        format!("{}/mirror-", reg.host()),
    ] {
        let out = ferry()
            .arg("load")
            .arg(&bundle)
            .args(["--registry", &target, "--plain-http", "--values"])
            .arg(&values)
            .assert()
            .get_output()
            .clone();
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(
            !repositories.exists(),
            "{target}: images were pushed before the registry value was refused: {msg}"
        );
        assert_eq!(out.status.code(), Some(2), "{target}: {msg}");
        assert!(msg.contains("invalid registry"), "{target}: {msg}");
    }
    assert_eq!(std::fs::read(&values).unwrap(), before);
}

/// A reference whose digest is not hex is no image reference: `build` refuses it, `load`
/// refuses it as an image name, and the values rewrite leaves it alone.
#[test]
fn a_non_hex_digest_is_refused_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    crate::util::oci::write_layout(&layout, 22);
    let bad = format!("registry.example.com/team/app@sha256:{}", "g".repeat(64));

    std::fs::write(
        tmp.path().join("ferry.yaml"),
        format!("name: bad\nversion: '1'\nimages:\n  - ref: {bad}\n    from: oci:layout:app1\n"),
    )
    .unwrap();
    let out = ferry()
        .args(["build", "-q", "-f"])
        .arg(tmp.path().join("ferry.yaml"))
        .arg("-o")
        .arg(tmp.path().join("bad.tar.gz"))
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(msg.contains("is not an image reference"), "{msg}");

    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut first = index["manifests"][0].clone();
    first["annotations"]["org.opencontainers.image.ref.name"] = bad.clone().into();
    index["manifests"] = serde_json::json!([first]);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let out = ferry()
        .arg("load")
        .arg(&layout)
        .args(["--registry", "harbor.example.com/mirror", "--dry-run"])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(msg.contains("is not a full reference"), "{msg}");

    let values = tmp.path().join("values.yaml");
    let text = format!("image: {bad}\nother: {bad}\n");
    std::fs::write(&values, &text).unwrap();
    let out = ferry()
        .arg("rewrite")
        .arg(&values)
        .args(["--registry", "harbor.example.com/mirror"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8_lossy(&out), text);
}

/// `rewrite --diff --json` prints one JSON document that carries the diff.
#[test]
fn rewrite_diff_with_json_prints_one_document() {
    let out = ferry()
        .args(["rewrite", "--diff", "--json"])
        .arg(fixture().join("values.yaml"))
        .args(["--registry", "harbor.example.com/mcp"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    assert_eq!(v["ok"], true);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    let diff = files[0]["diff"].as_str().unwrap();
    assert!(
        diff.contains("+    repository: harbor.example.com/mcp/agent-security/gateway"),
        "{diff}"
    );
    assert!(!files[0]["edits"].as_array().unwrap().is_empty());
}

#[test]
fn an_image_made_by_umoci_builds_verifies_and_loads() {
    crate::harness::require("umoci", "umoci");
    let reg = Registry::start(Setup::Plain);
    let tmp = tempfile::tempdir().unwrap();
    // umoci writes manifests (and its index.json) without a top-level mediaType.
    let layout = tmp.path().join("umoci");
    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, "hello from umoci\n").unwrap();
    let umoci = |args: &[&str]| {
        crate::harness::run(Command::new("umoci").args(args));
    };
    let image = format!("{}:hello", layout.display());
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &image,
        file.to_str().unwrap(),
        "/hello.txt",
    ]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--architecture",
        "amd64",
        "--os",
        "linux",
        "--config.cmd",
        "/bin/true",
    ]);
    umoci(&["gc", "--layout", layout.to_str().unwrap()]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap(),
    )
    .unwrap();
    assert!(manifest.get("mediaType").is_none(), "{manifest}");
    assert!(index.get("mediaType").is_none(), "{index}");

    let spec = tmp.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: umoci\nversion: '1'\nimages:\n  - ref: example.com/u/hello:1\n    from: oci:umoci:hello\n",
    )
    .unwrap();
    let bundle = tmp.path().join("umoci-1.tar.gz");
    let report = build_spec(&spec, &bundle, 0);
    assert_eq!(report.manifest.images[0].digest.to_string(), digest);
    assert_eq!(
        report.manifest.images[0].media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(report.manifest.images[0].platforms, ["linux/amd64"]);
    ferry().arg("verify").arg(&bundle).assert().success();

    let target = format!("{}/u", reg.host());
    load_json(&[
        bundle.to_str().unwrap(),
        "--registry",
        &target,
        "--plain-http",
    ]);
    let raw = inspect_raw(&format!("{target}/u/hello:1"));
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), digest);
}

#[test]
fn an_image_under_a_docker_schema2_manifest_builds_verifies_and_loads_unchanged() {
    // An OCI layout holding the Docker schema 2 manifest containers/image synthesises for
    // the fixture's legacy docker-archive, under its Docker media type: the shape of the
    // `nginx` image in bundles built before ferry wrote OCI manifests for such archives.
    let reg = Registry::start(Setup::Plain);
    let tmp = tempfile::tempdir().unwrap();
    let archive = fixture().join("images/nginx.docker.tar");
    let layout = tmp.path().join("docker-typed");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut ar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            put(&bytes);
        }
    }
    let docker_manifest = crate::util::skopeo::skopeo(&[
        "inspect",
        "--raw",
        &format!("docker-archive:{}", archive.display()),
    ]);
    let (digest, size) = put(&docker_manifest);
    let media_type = "application/vnd.docker.distribution.manifest.v2+json";
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": media_type, "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": "nginx"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();

    let spec = tmp.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: docker\nversion: '1'\nimages:\n  - ref: example.com/d/nginx:1\n    from: oci:docker-typed:nginx\n",
    )
    .unwrap();
    let bundle = tmp.path().join("docker-1.tar.gz");
    let report = build_spec(&spec, &bundle, 0);
    let image = &report.manifest.images[0];
    assert_eq!(image.digest.to_string(), digest);
    assert_eq!(image.media_type, media_type);
    assert_eq!(image.platforms, ["linux/amd64"]);
    ferry().arg("verify").arg(&bundle).assert().success();

    let target = format!("{}/d", reg.host());
    load_json(&[
        bundle.to_str().unwrap(),
        "--registry",
        &target,
        "--plain-http",
    ]);
    let raw = inspect_raw(&format!("{target}/d/nginx:1"));
    assert_eq!(raw, docker_manifest);
}

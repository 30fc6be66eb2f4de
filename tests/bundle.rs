//! Build, inspect, verify and extract on the fixture: interop with skopeo and tar,
//! determinism, and tampering.

use crate::harness::{
    build_fixture, build_spec, ferry, fixture, oci_manifest_for_legacy, require, run, sha256_hex,
    tree, verify,
};
use std::io::Read;
use std::process::Command;

#[test]
fn fixture_builds_verifies_and_extracts_like_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    let report = build_fixture(&bundle, 0);
    assert_eq!(report.manifest.images.len(), 7);
    let evidence = verify(&bundle).expect("fresh bundle verifies");
    assert_eq!(evidence.files_checked, report.manifest.files.len());

    // ferry extract and plain tar -xzf give the same tree, and the folder verifies too.
    let by_ferry = tmp.path().join("ferry");
    let by_tar = tmp.path().join("tar");
    std::fs::create_dir(&by_tar).unwrap();
    ferry()
        .args(["extract", "-q"])
        .arg(&bundle)
        .arg("-C")
        .arg(&by_ferry)
        .assert()
        .success();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&by_tar));
    assert_eq!(tree(&by_ferry), tree(&by_tar));
    verify(&by_tar.join("agent-security-1.4.0")).expect("tar-extracted folder verifies");
    verify(&by_tar).expect("its parent folder verifies too");

    // A changed file in the extracted folder is caught and named.
    let values = by_tar.join("agent-security-1.4.0/values.yaml");
    let mut text = std::fs::read(&values).unwrap();
    text[0] ^= 0x20;
    std::fs::write(&values, text).unwrap();
    let err = verify(&by_tar).unwrap_err().to_string();
    assert!(
        err.contains("values.yaml") && err.contains("sha256"),
        "{err}"
    );
}

#[test]
fn inspect_reads_only_the_first_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    // Cut the bundle right after the head member: inspect still works, verify does not.
    let bytes = std::fs::read(&bundle).unwrap();
    let head_len = member_offsets(&bytes)[1];
    let cut = tmp.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..head_len]).unwrap();
    let v = crate::harness::inspect_json(&cut);
    assert_eq!(v["name"], "agent-security");
    assert_eq!(v["images"].as_array().unwrap().len(), 7);
    let platform = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"].as_str().unwrap().contains("platform"))
        .unwrap();
    assert_eq!(
        platform["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    ferry().arg("verify").arg(&cut).assert().code(1);
}

#[test]
fn builds_are_byte_identical_and_epoch_changes_only_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a.tar.gz"),
        tmp.path().join("b.tar.gz"),
        tmp.path().join("c.tar.gz"),
    );
    build_fixture(&a, 1_700_000_000);
    build_fixture(&b, 1_700_000_000);
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "two builds differ"
    );

    // The environment variable is what the CLI reads.
    let d = tmp.path().join("d.tar.gz");
    ferry()
        .current_dir(fixture())
        .env("SOURCE_DATE_EPOCH", "1800000000")
        .args(["build", "-q", "-o"])
        .arg(&d)
        .assert()
        .success();
    build_fixture(&c, 1_800_000_000);
    assert_eq!(
        std::fs::read(&c).unwrap(),
        std::fs::read(&d).unwrap(),
        "CLI and library builds differ"
    );

    let (ea, ec) = (entries(&a), entries(&c));
    assert_eq!(ea.len(), ec.len());
    for ((pa, ma, da), (pc, mc, dc)) in ea.iter().zip(&ec) {
        assert_eq!(pa, pc);
        assert_eq!((*ma, *mc), (1_700_000_000, 1_800_000_000), "{pa}");
        if pa.ends_with("/ferry.json") {
            let (ta, tc) = (String::from_utf8_lossy(da), String::from_utf8_lossy(dc));
            assert!(ta.contains("\"created\": \"2023-11-14T22:13:20Z\""), "{ta}");
            assert_eq!(
                ta.replace("2023-11-14T22:13:20Z", "X"),
                tc.replace("2027-01-15T08:00:00Z", "X")
            );
        } else {
            assert_eq!(da, dc, "{pa} content changed with the epoch");
        }
    }
}

fn entries(bundle: &std::path::Path) -> Vec<(String, u64, Vec<u8>)> {
    let f = std::fs::File::open(bundle).unwrap();
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().mtime().unwrap(),
                data,
            )
        })
        .collect()
}

#[test]
fn digests_follow_the_rules_for_docker_and_oci_archives() {
    require("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let layout = fixture().join("images/layout");
    let docker = tmp.path().join("gw.docker.tar");
    let oci = tmp.path().join("gw.oci.tar");
    run(Command::new("skopeo")
        .args(["copy", "-q", "--insecure-policy"])
        .arg(format!("oci:{}:gateway", layout.display()))
        .arg(format!(
            "docker-archive:{}:example.com/team/gw:1",
            docker.display()
        )));
    run(Command::new("skopeo")
        .args(["copy", "-q", "--insecure-policy"])
        .arg(format!("oci:{}:platform", layout.display()))
        .arg(format!("oci-archive:{}:platform", oci.display())));
    // A legacy docker-archive carries no manifest: ferry writes an OCI one for the config
    // and layers skopeo finds in it. An oci-archive keeps its own manifest.
    let skopeo_docker = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("docker-archive:{}", docker.display())));
    let want_docker = sha256_hex(&oci_manifest_for_legacy(&skopeo_docker));
    let want_oci = sha256_hex(&run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}:platform", oci.display()))));

    let spec = tmp.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: interop\nversion: '1'\nimages:\n  - ref: example.com/team/gw:1\n    from: docker-archive:gw.docker.tar\n  - ref: example.com/team/platform:2\n    from: oci-archive:gw.oci.tar:platform\n",
    )
    .unwrap();
    let bundle = tmp.path().join("interop.tar.gz");
    let report = build_spec(&spec, &bundle, 0);
    assert_eq!(
        report.manifest.images[0].digest.to_string(),
        format!("sha256:{want_docker}")
    );
    assert_eq!(
        report.manifest.images[0].media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        report.manifest.images[1].digest.to_string(),
        format!("sha256:{want_oci}")
    );
    verify(&bundle).expect("interop bundle verifies");

    // skopeo reads both images from the bundle's layout with the recorded digests, and the
    // config of the docker-archive image (its image ID) is the archive's.
    let out = tmp.path().join("x");
    ferry()
        .args(["extract", "-q"])
        .arg(&bundle)
        .arg("-C")
        .arg(&out)
        .assert()
        .success();
    let images = out.join("interop-1/images");
    for (reference, want) in [
        ("example.com/team/gw:1", &want_docker),
        ("example.com/team/platform:2", &want_oci),
    ] {
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{reference}", images.display())));
        assert_eq!(&sha256_hex(&raw), want, "{reference}");
    }
    let config = |transport: String| {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--config", "--raw"])
            .arg(transport));
        sha256_hex(&out)
    };
    assert_eq!(
        config(format!("oci:{}:example.com/team/gw:1", images.display())),
        config(format!("docker-archive:{}", docker.display()))
    );
}

/// Runs `umoci ARGS…` and returns stdout, failing with its stderr.
fn umoci(args: &[&str]) -> Vec<u8> {
    require("umoci", "umoci");
    run(Command::new("umoci").args(args))
}

#[test]
fn every_image_of_the_fixture_bundle_reads_as_an_oci_layout() {
    require("skopeo", "skopeo");
    require("umoci", "umoci");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    ferry()
        .args(["build", "-q", "-f"])
        .arg(fixture().join("ferry.yaml"))
        .arg("-o")
        .arg(&bundle)
        .assert()
        .success();
    let out = tmp.path().join("x");
    ferry()
        .args(["extract", "-q"])
        .arg(&bundle)
        .arg("-C")
        .arg(&out)
        .assert()
        .success();
    let root = out.join("agent-security-1.4.0");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("ferry.json")).unwrap()).unwrap();
    let images = root.join("images");
    let layout = images.to_str().unwrap();
    let recorded = manifest["images"].as_array().unwrap();
    assert_eq!(recorded.len(), 7);

    // umoci lists every image by its reference.
    let listed = String::from_utf8(umoci(&["ls", "--layout", layout])).unwrap();
    let mut listed: Vec<&str> = listed.lines().collect();
    let mut references: Vec<&str> = recorded
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    references.sort_unstable();
    assert_eq!(listed, references);

    for (n, image) in recorded.iter().enumerate() {
        let reference = image["reference"].as_str().unwrap();
        let digest = image["digest"].as_str().unwrap();
        let is_index = image["mediaType"] == "application/vnd.oci.image.index.v1+json";
        let src = format!("oci:{layout}:{reference}");
        let raw = run(Command::new("skopeo").args(["inspect", "--raw", &src]));
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw)),
            digest,
            "{reference}"
        );
        // A copy makes skopeo read every blob and check it against its digest.
        let dir = tmp.path().join(format!("dir-{n}"));
        let dest = format!("dir:{}", dir.display());
        let mut copy = Command::new("skopeo");
        copy.args(["copy", "-q", "--insecure-policy"]);
        if is_index {
            copy.args(["--all", "--preserve-digests"]);
        }
        run(copy.args([&src, &dest]));
        let copied = std::fs::read(dir.join("manifest.json")).unwrap();
        assert_eq!(
            format!("sha256:{}", sha256_hex(&copied)),
            digest,
            "{reference}"
        );
        // umoci reads image manifests (not indexes): their config, and every layer by its
        // media type when it unpacks them.
        if !is_index {
            let image_arg = format!("{layout}:{reference}");
            let stat: serde_json::Value =
                serde_json::from_slice(&umoci(&["stat", "--json", "--image", &image_arg])).unwrap();
            assert!(
                !stat["history"].as_array().unwrap().is_empty(),
                "{reference}: {stat}"
            );
            let unpacked = tmp.path().join(format!("unpacked-{n}"));
            umoci(&[
                "unpack",
                "--rootless",
                "--image",
                &image_arg,
                unpacked.to_str().unwrap(),
            ]);
            assert!(unpacked.join("rootfs").is_dir(), "{reference}");
        }
    }

    // umoci's garbage collector walks every image, indexes included, and finds every blob
    // in use.
    let blobs = |dir: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let copy = tmp.path().join("gc");
    run(Command::new("cp").arg("-a").arg(&images).arg(&copy));
    umoci(&["gc", "--layout", copy.to_str().unwrap()]);
    assert_eq!(blobs(&copy), blobs(&images));
}

#[test]
fn spec_errors_name_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("ferry.yaml");
    let cases = [
        ("name: a\nversion: '1'\nimagez: []\n", "imagez"),
        (
            "name: a\nversion: '1'\nimages:\n  - ref: Bad Ref\n    from: oci:x:y\n",
            ":4:",
        ),
        (
            "name: a\nversion: '1'\nimages:\n  - ref: a.io/b:1\n    from: docker://a.io/B C:1\n",
            ":5:",
        ),
        ("name: a\nversion: '1'\ncharts:\n  - nowhere\n", ":4:"),
        ("name: 'a b'\nversion: '1'\n", ":1:"),
    ];
    for (text, want) in cases {
        std::fs::write(&spec, text).unwrap();
        let out = ferry()
            .arg("build")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(tmp.path().join("o.tar.gz"))
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        let msg = String::from_utf8_lossy(&out);
        assert!(
            msg.contains("ferry.yaml") && msg.contains(want),
            "for {text:?}: {msg}"
        );
    }
    assert!(
        !tmp.path().join("o.tar.gz").exists(),
        "a failed build leaves no output"
    );
}

#[test]
fn every_flipped_byte_is_rejected_and_located() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let good = std::fs::read(&bundle).unwrap();
    // Every gzip member header byte, the trailer of the last member, and a spread of
    // positions through every member's data (head, text and stored blobs).
    let mut positions: Vec<usize> = member_offsets(&good)
        .iter()
        .flat_map(|&o| o..o + 10)
        .collect();
    positions.extend(good.len() - 8..good.len());
    positions.extend((0..good.len()).step_by(211));
    positions.sort();
    positions.dedup();
    let bad = tmp.path().join("bad.tar.gz");
    for pos in positions {
        let mut bytes = good.clone();
        bytes[pos] ^= 0x01;
        std::fs::write(&bad, &bytes).unwrap();
        let err = match verify(&bad) {
            Ok(_) => panic!("flipping byte {pos} of {} went unnoticed", good.len()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("agent-security-1.4.0/") || err.contains("ferry.json"),
            "byte {pos}: error does not name an entry: {err}"
        );
    }
}

fn member_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        out.push(bytes.len() - rest.len());
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut dec, &mut std::io::sink()).unwrap();
        rest = dec.into_inner();
    }
    assert!(out.len() >= 3, "expected head, text and stored members");
    out
}

#[test]
fn tampered_entries_inside_the_tar_are_named() {
    // Re-pack the decompressed tar after changing one entry's data or header, with
    // correct gzip framing, so only the tar-level checks can catch it.
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&bundle).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let mut offset = 0usize;
    let mut targets = Vec::new();
    while offset + 512 <= raw.len() && raw[offset] != 0 {
        let h = tar::Header::from_byte_slice(&raw[offset..offset + 512]);
        let size = h.entry_size().unwrap() as usize;
        let name = String::from_utf8_lossy(&h.path_bytes()).into_owned();
        targets.push((name, offset, size));
        offset += 512 + size.div_ceil(512) * 512;
    }
    assert!(targets.len() > 40);
    let bad = tmp.path().join("bad.tar.gz");
    for (name, header_at, size) in &targets {
        let mut cases = vec![
            ("header mode", header_at + 100 + 4),
            ("header name", header_at + 3),
        ];
        if *size > 0 {
            cases.push(("data", header_at + 512 + size / 2));
        }
        for (what, pos) in cases {
            let mut t = raw.clone();
            t[pos] ^= 0x04;
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(
                    std::fs::File::create(&bad).unwrap(),
                    flate2::Compression::new(6),
                );
            std::io::Write::write_all(&mut enc, &t).unwrap();
            enc.finish().unwrap();
            let err = verify(&bad)
                .expect_err(&format!("{what} of {name} tampered but accepted"))
                .to_string();
            let short = name.rsplit('/').next().unwrap();
            let previous_or_self = err.contains(short)
                || err.contains("agent-security-1.4.0/")
                || err.contains("ferry.json");
            assert!(previous_or_self, "{what} of {name}: {err}");
        }
    }
}

#[test]
fn exit_codes_and_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    ferry()
        .args(["verify", "/nonexistent/bundle.tar.gz"])
        .assert()
        .code(2);
    ferry().args(["frobnicate"]).assert().code(2);
    let junk = tmp.path().join("junk.tar.gz");
    std::fs::write(&junk, b"not a bundle at all").unwrap();
    let out = ferry()
        .args(["--json", "verify"])
        .arg(&junk)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["error"].as_str().unwrap().contains("not a ferry bundle"),
        "{v}"
    );
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let out = ferry()
        .args(["--json", "verify"])
        .arg(&bundle)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["evidence"]["layout"]["images"], 7);
    assert_eq!(
        v["evidence"]["headCheck"]["authenticity"], "not_checked",
        "{v}"
    );
    let text = ferry()
        .arg("verify")
        .arg(&bundle)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&text).contains("authenticity NOT checked"));
}

#[test]
fn a_corrupt_source_blob_fails_the_build_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    crate::util::oci::write_layout(&layout, 3);
    // Flip a byte in the largest blob (a layer, named by its digest).
    let blobs = layout.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&biggest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&biggest, bytes).unwrap();
    std::fs::write(tmp.path().join("ferry.yaml"), "name: c\nversion: '1'\nimages:\n  - ref: example.com/c/app1:1\n    from: oci:layout:app1\n  - ref: example.com/c/app2:1\n    from: oci:layout:app2\n").unwrap();
    let out = tmp.path().join("c.tar.gz");
    let err = ferry()
        .args(["build", "-f"])
        .arg(tmp.path().join("ferry.yaml"))
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&err);
    assert!(err.contains("does not match its digest"), "{err}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "only the layout and the spec may remain: {left:?}"
    );
}

#[test]
fn packaged_charts_are_checked_and_stored_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let tgz = |name: &str, files: &[(&str, &str)]| {
        let path = tmp.path().join(name);
        let enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        let mut b = tar::Builder::new(enc);
        for (p, text) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, text.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    };
    tgz(
        "web-0.1.0.tgz",
        &[
            (
                "web/Chart.yaml",
                "apiVersion: v2\nname: web\nversion: 0.1.0\nappVersion: '2'\n",
            ),
            ("web/templates/a.yaml", "kind: ConfigMap\n"),
        ],
    );
    tgz("broken-0.1.0.tgz", &[("broken/values.yaml", "a: 1\n")]);
    std::fs::write(
        tmp.path().join("ok.yaml"),
        "name: c\nversion: '1'\ncharts: [web-0.1.0.tgz]\n",
    )
    .unwrap();
    let out = tmp.path().join("c.tar.gz");
    let report = build_spec(&tmp.path().join("ok.yaml"), &out, 0);
    assert_eq!(report.manifest.charts[0].name, "web");
    assert_eq!(report.manifest.charts[0].app_version.as_deref(), Some("2"));
    assert_eq!(
        report.manifest.charts[0].path.as_str(),
        "charts/web-0.1.0.tgz"
    );
    verify(&out).unwrap();
    std::fs::write(
        tmp.path().join("bad.yaml"),
        "name: c\nversion: '1'\ncharts:\n  - broken-0.1.0.tgz\n",
    )
    .unwrap();
    let err = ferry()
        .arg("build")
        .arg("-f")
        .arg(tmp.path().join("bad.yaml"))
        .arg("-o")
        .arg(tmp.path().join("bad.tar.gz"))
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("bad.yaml:4") && err.contains("Chart.yaml"),
        "{err}"
    );
}

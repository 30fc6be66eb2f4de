//! Provenance across the gap: images signed in cosign's format and an SBOM referrer in a real
//! registry are carried by `build`, checked offline by `verify --image-key`, shown by
//! `inspect`, and pushed by `load` with their digests; skopeo and openssl check the result.

use std::path::{Path, PathBuf};

use crate::harness::{ferry, inspect_json};
use crate::util::cosign::{self, Artifacts, Key, OCI_INDEX, OCI_MANIFEST};
use crate::util::oci::write_layout;
use crate::util::registry::{Registry, Setup};
use crate::util::skopeo;

/// A registry with `team/app1:1.0` (signed with `key`, with an SPDX SBOM referrer) and
/// `team/app2:1.0` (with a signature whose payload names app1's digest, when asked for).
struct Signed {
    registry: Registry,
    key: Key,
    other_key: Key,
    app1: String,
    app2: String,
    /// The signature manifest of app1 and its `sha256-HEX.sig` tag.
    sig: String,
    sig_tag: String,
    sbom: String,
    att: String,
    work: tempfile::TempDir,
}

impl Signed {
    fn start(salt: u64, sign_app2_wrongly: bool) -> Signed {
        let registry = Registry::start(Setup::Plain);
        let work = tempfile::tempdir().unwrap();
        let layout_dir = work.path().join("layout");
        let layout = write_layout(&layout_dir, salt);
        for name in ["app1", "app2"] {
            skopeo::skopeo(&[
                "copy",
                "--quiet",
                "--insecure-policy",
                "--dest-tls-verify=false",
                &format!("oci:{}:{name}", layout_dir.display()),
                &format!("docker://{}/team/{name}:1.0", registry.host()),
            ]);
        }
        let digest = |n: &str| {
            let i = layout.images.iter().find(|i| i.name == n).unwrap();
            i.digest.clone()
        };
        let (app1, app2) = (digest("app1"), digest("app2"));
        let app1_size = std::fs::metadata(layout_dir.join("blobs/sha256").join(&app1[7..]))
            .unwrap()
            .len();
        let key = Key::new(work.path(), "cosign");
        let other_key = Key::new(work.path(), "other");
        let host = registry.host();
        let art = Artifacts::new();
        let p = cosign::payload(&format!("{host}/team/app1"), &app1);
        let (sig, _) = art.signature(&p, &key.sign(&p));
        let sig_tag = format!("sha256-{}.sig", &app1[7..]);
        let (sbom, index) = art.sbom(&app1, app1_size);
        let fallback = format!("sha256-{}", &app1[7..]);
        let att = art.attestation(&app1, "https://slsa.dev/provenance/v1");
        let att_tag = format!("sha256-{}.att", &app1[7..]);
        let mut pushes = vec![
            ("team/app1", sig_tag.as_str(), sig.as_str(), OCI_MANIFEST),
            ("team/app1", att_tag.as_str(), att.as_str(), OCI_MANIFEST),
            ("team/app1", fallback.as_str(), index.as_str(), OCI_INDEX),
        ];
        let wrong_tag = format!("sha256-{}.sig", &app2[7..]);
        let wrong;
        if sign_app2_wrongly {
            // A valid signature by the right key, but over app1's digest.
            let p = cosign::payload(&format!("{host}/team/app2"), &app1);
            wrong = art.signature(&p, &key.sign(&p)).0;
            pushes.push((
                "team/app2",
                wrong_tag.as_str(),
                wrong.as_str(),
                OCI_MANIFEST,
            ));
        }
        art.push(&host, &pushes);
        Signed {
            registry,
            key,
            other_key,
            app1,
            app2,
            sig,
            sig_tag,
            sbom,
            att,
            work,
        }
    }

    /// A spec for both images; `verify` is added as it is given (YAML lines).
    fn spec(&self, verify: &str) -> PathBuf {
        let host = self.registry.host();
        let spec = self.work.path().join("ferry.yaml");
        std::fs::write(
            &spec,
            format!(
                "name: signed\nversion: '1.0'\n{verify}images:\n- ref: {host}/team/app1:1.0\n- ref: {host}/team/app2:1.0\n"
            ),
        )
        .unwrap();
        spec
    }

    fn build(
        &self,
        spec: &Path,
        name: &str,
        extra: &[&str],
    ) -> (PathBuf, assert_cmd::assert::Assert) {
        let out = self.work.path().join(name);
        let assert = ferry()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--plain-http", "-f"])
            .arg(spec)
            .arg("-o")
            .arg(&out)
            .args(extra)
            .assert();
        (out, assert)
    }
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).to_string()
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).to_string()
}

fn verify(bundle: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    ferry().arg("verify").arg(bundle).args(args).assert()
}

#[test]
fn signed_images_and_their_sbom_travel_and_verify_with_skopeo_and_openssl() {
    let s = Signed::start(61, false);
    let (bundle, built) = s.build(&s.spec(""), "b.tar.gz", &[]);
    built.success();

    // ferry.json lists them under their image; the bundle is format 2.
    let m: serde_json::Value = inspect_json(&bundle);
    let referrers = &m["images"][0]["referrers"];
    assert_eq!(referrers[0]["kind"], "signature", "{m}");
    assert_eq!(referrers[0]["digest"], s.sig.as_str());
    assert_eq!(referrers[0]["tag"], s.sig_tag.as_str());
    assert_eq!(referrers[1]["kind"], "attestation");
    assert_eq!(
        referrers[1]["predicateTypes"],
        serde_json::json!(["https://slsa.dev/provenance/v1"])
    );
    assert_eq!(referrers[2]["kind"], "sbom");
    assert_eq!(referrers[2]["digest"], s.sbom.as_str());
    assert_eq!(referrers[2]["sbomFormat"], "application/spdx+json");
    let head = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(&bundle)
        .arg("signed-1.0/ferry.json")
        .output()
        .unwrap()
        .stdout;
    let head: serde_json::Value = serde_json::from_slice(&head).unwrap();
    assert_eq!(head["formatVersion"], 2);
    assert!(m["images"][1].get("referrers").is_none(), "{m}");
    let text = stdout(&ferry().arg("inspect").arg(&bundle).assert().success());
    assert!(
        text.contains("signature: key not checked at build"),
        "{text}"
    );
    assert!(text.contains("sbom: SPDX (JSON)"), "{text}");
    assert!(
        text.contains("attestation: https://slsa.dev/provenance/v1"),
        "{text}"
    );

    // Offline: app1's signature holds under the key; app2 carries none.
    let pubkey = s.key.public.to_str().unwrap();
    let ok = verify(&bundle, &["--image-key", pubkey]).success();
    let out = stdout(&ok);
    assert!(
        out.contains(&format!("SIGNED: {}/team/app1:1.0", s.registry.host())),
        "{out}"
    );
    assert!(
        out.contains(&format!("UNSIGNED: {}/team/app2:1.0", s.registry.host())),
        "{out}"
    );
    // The wrong key fails naming the image; so does an unsigned image when signatures are required.
    let bad = verify(
        &bundle,
        &["--image-key", s.other_key.public.to_str().unwrap()],
    )
    .failure()
    .code(1);
    assert!(
        stderr(&bad).contains("team/app1:1.0") && stderr(&bad).contains("no signature verifies"),
        "{}",
        stderr(&bad)
    );
    let unsigned = verify(
        &bundle,
        &["--image-key", pubkey, "--require-image-signatures"],
    )
    .failure()
    .code(1);
    assert!(
        stderr(&unsigned).contains("team/app2:1.0") && stderr(&unsigned).contains("not signed"),
        "{}",
        stderr(&unsigned)
    );

    // Load into a second registry (Debian's distribution 2.8: no referrers API).
    let b = Registry::start(Setup::Plain);
    ferry()
        .args(["load", "--plain-http", "--registry"])
        .arg(b.host())
        .arg(&bundle)
        .assert()
        .success();
    let host = b.host();
    let raw = skopeo::inspect_raw(&format!("{host}/team/app1:1.0"));
    assert_eq!(cosign::sha256(&raw), s.app1);
    let sig_raw = skopeo::inspect_raw(&format!("{host}/team/app1:{}", s.sig_tag));
    assert_eq!(
        cosign::sha256(&sig_raw),
        s.sig,
        "the signature manifest keeps its digest"
    );
    let att_raw = skopeo::inspect_raw(&format!("{host}/team/app1:sha256-{}.att", &s.app1[7..]));
    assert_eq!(cosign::sha256(&att_raw), s.att);
    // Independently: the payload names the image, and openssl verifies the signature.
    let sig_manifest: serde_json::Value = serde_json::from_slice(&sig_raw).unwrap();
    let layer = &sig_manifest["layers"][0];
    let dir = s.work.path().join("sig-copy");
    skopeo::skopeo(&[
        "copy",
        "--quiet",
        "--insecure-policy",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/app1:{}", s.sig_tag),
        &format!("dir:{}", dir.display()),
    ]);
    let payload_digest = layer["digest"].as_str().unwrap();
    let payload = std::fs::read(dir.join(&payload_digest[7..])).unwrap();
    assert_eq!(cosign::sha256(&payload), payload_digest);
    let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        parsed["critical"]["image"]["docker-manifest-digest"],
        s.app1.as_str()
    );
    let signature = layer["annotations"][cosign::SIGNATURE_ANNOTATION]
        .as_str()
        .unwrap();
    assert!(s.key.openssl_verifies(&payload, signature));
    assert!(!s.other_key.openssl_verifies(&payload, signature));
    // The SBOM: listed under the referrers tag schema, its manifest unchanged.
    let index_raw = skopeo::inspect_raw(&format!("{host}/team/app1:sha256-{}", &s.app1[7..]));
    let index: serde_json::Value = serde_json::from_slice(&index_raw).unwrap();
    assert_eq!(index["manifests"][0]["digest"], s.sbom.as_str(), "{index}");
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    let sbom_raw = skopeo::inspect_raw(&format!("{host}/team/app1@{}", s.sbom));
    assert_eq!(cosign::sha256(&sbom_raw), s.sbom);

    // A second load finds everything there; --no-referrers pushes the images only.
    ferry()
        .args(["load", "--plain-http", "--registry"])
        .arg(b.host())
        .arg(&bundle)
        .assert()
        .success();
    let c = Registry::start(Setup::Plain);
    ferry()
        .args(["load", "--plain-http", "--no-referrers", "--registry"])
        .arg(c.host())
        .arg(&bundle)
        .assert()
        .success();
    skopeo::inspect_raw(&format!("{}/team/app1:1.0", c.host()));
    let missing = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/team/app1:{}", c.host(), s.sig_tag))
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn a_signature_over_another_digest_fails_at_build_and_at_verify() {
    let s = Signed::start(67, true);
    let key = s.key.public.display().to_string();
    // Without `verify:` the build carries the bad signature as it is.
    let (bundle, built) = s.build(&s.spec(""), "b.tar.gz", &[]);
    built.success();
    let bad = verify(&bundle, &["--image-key", &key]).failure().code(1);
    let err = stderr(&bad);
    assert!(
        err.contains("team/app2:1.0")
            && err.contains(&format!("not the image's digest {}", s.app2)),
        "{err}"
    );

    // `verify:` checks at build: per image, overriding the spec-wide key.
    let spec = s.spec(&format!("verify:\n  key: {key}\n"));
    let (out, failed) = s.build(&spec, "c.tar.gz", &[]);
    let err = stderr(&failed.failure().code(1));
    assert!(
        err.contains("team/app2:1.0") && err.contains("no signature verifies"),
        "{err}"
    );
    assert!(!out.exists());
    let host = s.registry.host();
    // app1 only, its own key overriding a wrong spec-wide one.
    std::fs::write(
        &spec,
        format!(
            "name: signed\nversion: '1.0'\nverify:\n  key: {}\nimages:\n- ref: {host}/team/app1:1.0\n  verify:\n    key: {key}\n",
            s.other_key.public.display()
        ),
    )
    .unwrap();
    let (ok, built) = s.build(&spec, "d.tar.gz", &[]);
    built.success();
    let m: serde_json::Value = inspect_json(&ok);
    let fingerprint = m["images"][0]["referrers"][0]["verifiedKeys"][0]
        .as_str()
        .unwrap()
        .to_string();
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&s.key.public)
        .output()
        .unwrap()
        .stdout;
    assert_eq!(fingerprint, cosign::sha256(&der), "{m}");
    let text = stdout(&ferry().arg("inspect").arg(&ok).assert().success());
    assert!(
        text.contains(&format!("key {fingerprint} (checked at build)")),
        "{text}"
    );
    // --no-referrers leaves them out: a format 1 bundle, which `verify:` cannot check.
    let (_, refused) = s.build(&spec, "f.tar.gz", &["--no-referrers"]);
    let err = stderr(&refused.failure().code(2));
    assert!(err.contains("--no-referrers"), "{err}");
    let plain = s.spec("");
    let (none, built) = s.build(&plain, "e.tar.gz", &["--no-referrers"]);
    built.success();
    let m: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new("tar")
            .arg("-xzOf")
            .arg(&none)
            .arg("signed-1.0/ferry.json")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(m["formatVersion"], 1);
    assert!(m["images"][0].get("referrers").is_none());
}

#[test]
fn a_tampered_image_is_caught_before_any_signature_is_trusted() {
    let s = Signed::start(71, false);
    let (bundle, built) = s.build(&s.spec(""), "b.tar.gz", &[]);
    built.success();
    let dir = s.work.path().join("x");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(tar.success());
    // app1's manifest blob changed: its digest no longer matches.
    let blob = dir
        .join("signed-1.0/images/blobs/sha256")
        .join(&s.app1[7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let out = verify(&dir, &["--image-key", s.key.public.to_str().unwrap()])
        .failure()
        .code(1);
    let err = stderr(&out);
    assert!(
        err.contains(&s.app1[7..]) && err.contains("the content was changed"),
        "{err}"
    );
    assert!(!err.contains("signature"), "{err}");
}

/// A validator for a schema in `testdata/schemas/`, its `$ref`s resolved to the files beside it
/// (CycloneDX's refer to `spdx.schema.json` and `jsf-0.82.schema.json` under their `$id`s).
fn validator(name: &str) -> jsonschema::Validator {
    let read = |n: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(format!("testdata/schemas/{n}")).unwrap()).unwrap()
    };
    let mut opts = jsonschema::options();
    for n in ["spdx.schema.json", "jsf-0.82.schema.json"] {
        opts = opts.with_resource(
            format!("http://cyclonedx.org/schema/{n}"),
            jsonschema::Resource::from_contents(read(n)),
        );
    }
    opts.build(&read(name)).expect("schema compiles")
}

fn errors(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn the_bundle_sboms_validate_against_cyclonedx_1_6_and_spdx_2_3() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.tar.gz");
    let report = crate::harness::build_fixture(&bundle, 1_700_000_000);
    let m = &report.manifest;
    let sbom = |format: &str| -> serde_json::Value {
        let out = ferry()
            .args(["inspect", "--format", format])
            .arg(&bundle)
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    };
    let cdx = sbom("cyclonedx");
    let cdx_schema = validator("bom-1.6.schema.json");
    assert_eq!(errors(&cdx_schema, &cdx), Vec::<String>::new());
    let spdx = sbom("spdx");
    let spdx_schema = validator("spdx-schema.json");
    assert_eq!(errors(&spdx_schema, &spdx), Vec::<String>::new());
    // The validators are live: a document without its required members fails.
    let mut broken = cdx.clone();
    broken.as_object_mut().unwrap().remove("specVersion");
    assert!(!errors(&cdx_schema, &broken).is_empty());
    let mut broken = spdx.clone();
    broken["packages"][1]["checksums"][0]["algorithm"] = "SHA-256".into();
    assert!(!errors(&spdx_schema, &broken).is_empty());

    // Every image, chart and other file is there with its digest.
    let cdx_text = cdx.to_string();
    let spdx_text = spdx.to_string();
    for img in &m.images {
        assert!(
            cdx_text.contains(img.digest.hex()) && spdx_text.contains(img.digest.hex()),
            "{}",
            img.reference
        );
    }
    let containers = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "container")
        .count();
    assert_eq!(containers, m.images.len());
    for c in &m.charts {
        assert!(
            cdx_text.contains(&format!("\"name\":\"{}\"", c.name)),
            "{}",
            c.name
        );
        assert!(
            spdx_text.contains(&format!("\"versionInfo\":\"{}\"", c.version)),
            "{}",
            c.version
        );
    }
    let script = m
        .files
        .iter()
        .find(|f| f.path.as_str().starts_with("scripts/"))
        .unwrap();
    assert!(cdx_text.contains(script.digest.hex()) && spdx_text.contains(script.digest.hex()));
    // The same bundle gives the same documents.
    assert_eq!(sbom("cyclonedx"), cdx);
}

#[test]
fn sign_refuses_a_corrupted_bundle_and_replaces_a_stale_detached_signature() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.tar.gz");
    crate::harness::build_fixture(&bundle, 1_700_000_000);
    let key = Key::new(dir.path(), "k");
    let sign = |extra: &[&str]| {
        ferry()
            .arg("sign")
            .arg(&bundle)
            .arg("--key")
            .arg(&key.private)
            .args(extra)
            .assert()
    };
    let detached = dir.path().join("b.tar.gz.sig");
    sign(&["--detached"]).success();
    let sig = std::fs::read_to_string(&detached).unwrap();
    assert!(key.openssl_verifies(&std::fs::read(&bundle).unwrap(), &sig));

    // Signing again changes the head, so the old detached signature is removed …
    let out = sign(&[]).success();
    assert!(!detached.exists());
    assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
    // … or rewritten to match.
    sign(&["--detached"]).success();
    let sig = std::fs::read_to_string(&detached).unwrap();
    assert!(key.openssl_verifies(&std::fs::read(&bundle).unwrap(), &sig));

    // A corrupted bundle is never signed, and is left as it is.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&bundle, &bytes).unwrap();
    let out = sign(&["--detached"]).failure().code(1);
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&bundle).unwrap(), bytes);
    assert_eq!(std::fs::read_to_string(&detached).unwrap(), sig);
}

#[test]
fn a_layout_that_holds_signatures_gives_them_to_the_bundle_and_an_extracted_bundle_loads_them() {
    // An OCI layout as `skopeo copy` leaves it after copying an image, its `.sig` tag and its
    // referrers tag schema index: named `app1`, `sha256-HEX.sig` and `sha256-HEX`.
    let art = Artifacts::new();
    let layout = write_layout(art.dir.path(), 73);
    let app1 = layout
        .images
        .iter()
        .find(|i| i.name == "app1")
        .unwrap()
        .digest
        .clone();
    let size = std::fs::metadata(art.dir.path().join("blobs/sha256").join(&app1[7..]))
        .unwrap()
        .len();
    let key = Key::new(art.dir.path(), "cosign");
    let p = cosign::payload("registry.example.com/team/app1", &app1);
    let (sig, _) = art.signature(&p, &key.sign(&p));
    art.name(&sig, OCI_MANIFEST, &format!("sha256-{}.sig", &app1[7..]));
    let (sbom, index) = art.sbom(&app1, size);
    art.name(&index, OCI_INDEX, &format!("sha256-{}", &app1[7..]));

    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("ferry.yaml");
    let pubkey = key.public.display().to_string();
    let layout_dir = art.dir.path().display().to_string();
    let write_spec = |spec_wide: &str, app1_own: &str, extra: &str| {
        let text = format!(
            "name: layout\nversion: '1'\n{spec_wide}images:\n\
             - ref: registry.example.com/team/app1:1.0\n  from: oci:{layout_dir}:app1\n{app1_own}\
             - ref: registry.example.com/team/app2:1.0\n  from: oci:{layout_dir}:app2\n{extra}"
        );
        std::fs::write(&spec, text).unwrap();
    };
    // `verify:` for every image fails naming app2, which has no signature …
    write_spec(&format!("verify:\n  key: {pubkey}\n"), "", "");
    let bundle = work.path().join("b.tar.gz");
    let out = ferry()
        .arg("build")
        .arg("-f")
        .arg(&spec)
        .arg("-o")
        .arg(&bundle)
        .assert()
        .failure()
        .code(1);
    assert!(
        stderr(&out).contains("team/app2:1.0") && stderr(&out).contains("has no signature"),
        "{}",
        stderr(&out)
    );
    // … and with the key for app1 alone the bundle carries its signature and SBOM, once even
    // when app1 is listed under a second tag.
    write_spec(
        "",
        &format!("  verify:\n    key: {pubkey}\n"),
        &format!("- ref: registry.example.com/team/app1:latest\n  from: oci:{layout_dir}:app1\n"),
    );
    ferry()
        .arg("build")
        .arg("-f")
        .arg(&spec)
        .arg("-o")
        .arg(&bundle)
        .assert()
        .success();
    let m: serde_json::Value = inspect_json(&bundle);
    let digests: Vec<&str> = m["images"][0]["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [sig.as_str(), sbom.as_str()], "{m}");
    let latest: Vec<&str> = m["images"][2]["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    assert_eq!(latest, digests);
    assert_eq!(
        m["images"][0]["referrers"][0]["verifiedKeys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    verify(&bundle, &["--image-key", key.public.to_str().unwrap()]).success();
    // umoci, an independent layout reader, reads the bundle's layout with the artifacts in it.
    let dir = work.path().join("x");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap()
        .success());
    let root = dir.join("layout-1");
    let ls = std::process::Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(root.join("images"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.status.success()
            && listed.contains(&format!(
                "registry.example.com/team/app1:sha256-{}.sig",
                &app1[7..]
            )),
        "{listed}"
    );

    // The extracted folder loads with its artifacts.
    let reg = Registry::start(Setup::Plain);
    ferry()
        .args(["load", "--plain-http", "--registry"])
        .arg(reg.host())
        .arg(&dir)
        .assert()
        .success();
    let raw = skopeo::inspect_raw(&format!(
        "{}/team/app1:sha256-{}.sig",
        reg.host(),
        &app1[7..]
    ));
    assert_eq!(cosign::sha256(&raw), sig);
    let raw = skopeo::inspect_raw(&format!("{}/team/app1:sha256-{}", reg.host(), &app1[7..]));
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["manifests"][0]["digest"], sbom.as_str());
}

/// `ferry serve` answers with what the bundle carries beside its images: cosign's
/// signature tag (skopeo reads it through the server) and the referrers API (the SBOM), from
/// the bundle file and from the extracted folder alike.
#[test]
fn serve_answers_signature_tags_and_referrers() {
    use std::io::BufRead;
    let s = Signed::start(67, false);
    let (bundle, built) = s.build(&s.spec(""), "b.tar.gz", &[]);
    built.success();
    let extracted = s.work.path().join("x");
    ferry()
        .arg("extract")
        .arg(&bundle)
        .arg("-C")
        .arg(&extracted)
        .assert()
        .success();
    for input in [bundle.clone(), extracted.join("signed-1.0")] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", "--listen", "127.0.0.1:0", "--json"])
            .arg(&input)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "serve exited: {text}"
            );
            text.push_str(&line);
            if line == "}\n" {
                break;
            }
        }
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let addr = doc["listening"].as_str().unwrap().to_string();
        let repo = format!("{addr}/team/app1");
        let raw = skopeo::inspect_raw(&format!("{repo}:{}", s.sig_tag));
        assert_eq!(cosign::sha256(&raw), s.sig, "{}", input.display());
        let referrers = skopeo::skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{repo}@{}", s.sbom),
        ]);
        assert_eq!(cosign::sha256(&referrers), s.sbom);
        let listed = std::process::Command::new("curl")
            .args([
                "-sf",
                &format!("http://{addr}/v2/team/app1/referrers/{}", s.app1),
            ])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        assert!(listed.contains(&s.sbom), "{listed}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Signatures, attestations and SBOMs travel in a delta and in the parts of a split bundle:
/// loading a delta against a bundle that carried none, or the parts in reverse order, leaves
/// the registry with the signature tag and the referrers index, digests intact.
#[test]
fn referrers_travel_in_deltas_and_in_split_parts() {
    let s = Signed::start(67, false);
    let spec = s.spec("");
    let (bare, built) = s.build(&spec, "bare.tar.gz", &["--no-referrers"]);
    built.success();
    let (full, built) = s.build(&spec, "full.tar.gz", &[]);
    built.success();
    let bare_arg = bare.to_str().unwrap().to_string();
    let (delta, built) = s.build(&spec, "full.delta.tar.gz", &["--base", &bare_arg]);
    built.success();
    let parts = s.work.path().join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    ferry()
        .args(["split", "--max-part-size", "32KiB", "-C"])
        .arg(&parts)
        .arg(&full)
        .assert()
        .success();
    let mut part_files: Vec<PathBuf> = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    part_files.sort();
    assert!(part_files.len() > 2, "{part_files:?}");

    let att_tag = format!("sha256-{}.att", &s.app1[7..]);
    let sig_tag = format!("sha256-{}.sig", &s.app1[7..]);
    let fallback = format!("sha256-{}", &s.app1[7..]);
    let check = |reg: &Registry| {
        let raw = skopeo::inspect_raw(&format!("{}/team/app1:{sig_tag}", reg.host()));
        assert_eq!(
            cosign::sha256(&raw),
            s.sig,
            "the signature tag, digest intact"
        );
        let raw = skopeo::inspect_raw(&format!("{}/team/app1:{fallback}", reg.host()));
        let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let listed: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [s.sbom.as_str()], "{index}");
        let raw = skopeo::inspect_raw(&format!("{}/team/app1:{att_tag}", reg.host()));
        assert_eq!(
            cosign::sha256(&raw),
            s.att,
            "the attestation tag, digest intact"
        );
    };
    let load = |reg: &Registry, input: &Path| {
        ferry()
            .args(["load", "--plain-http", "--registry"])
            .arg(reg.host())
            .arg(input)
            .assert()
            .success();
    };

    // The bare bundle first, then the delta: the delta brings the artifacts.
    let reg = Registry::start(Setup::Plain);
    load(&reg, &bare);
    let missing = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/team/app1:{sig_tag}", reg.host()))
        .output()
        .unwrap();
    assert!(
        !missing.status.success(),
        "the bare bundle carries no signature"
    );
    load(&reg, &delta);
    check(&reg);

    // The parts, last first.
    let reg = Registry::start(Setup::Plain);
    for part in part_files.iter().rev() {
        load(&reg, part);
    }
    check(&reg);
}

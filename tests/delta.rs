//! Delta bundles, split volumes and `ferry diff`, through the command line, on a release
//! pair the test writes (`util::release`): shop 1.4.0 and 1.4.1.

use crate::harness::{ferry, inspect_json};
use crate::util::registry::{Registry, Setup};
use crate::util::release::{self, NEW_DESTINATION};
use crate::util::skopeo::inspect_raw;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The release pair built with ferry: 1.4.0, and 1.4.1 in full.
struct Pair {
    dir: tempfile::TempDir,
    old: PathBuf,
    new: PathBuf,
    new_spec: PathBuf,
    old_release: release::Release,
    new_release: release::Release,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn build(spec: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = ferry()
        .args(["--json", "build", "-f", s(spec), "-o", s(out)])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&o).unwrap()
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let old_release = release::write(&dir.path().join("src-1.4.0"), "1.4.0");
    let new_release = release::write(&dir.path().join("src-1.4.1"), "1.4.1");
    let old = dir.path().join("shop-1.4.0.tar.gz");
    let new = dir.path().join("shop-1.4.1.tar.gz");
    build(&old_release.spec, &old, &[]);
    build(&new_release.spec, &new, &[]);
    Pair {
        old,
        new,
        new_spec: new_release.spec.clone(),
        old_release,
        new_release,
        dir,
    }
}

fn json_of(args: &[&str]) -> serde_json::Value {
    let o = ferry()
        .arg("--json")
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&o).unwrap()
}

/// The digests a delta's head (as `inspect` shows it) lists as omitted, in its order.
fn omitted_digests(head: &serde_json::Value) -> Vec<String> {
    head["omitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["digest"].as_str().unwrap().to_string())
        .collect()
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

#[test]
fn delta_holds_exactly_the_new_blobs_and_merges_to_the_full_build() {
    let p = pair();
    let delta = p.dir.path().join("shop-1.4.1.delta.tar.gz");
    build(&p.new_spec, &delta, &["--base", s(&p.old)]);

    // The blobs 1.4.1 adds: layers and documents 1.4.0 lacks.
    let old: BTreeSet<&String> = p.old_release.blobs.iter().map(|b| &b.0).collect();
    let added: Vec<&(String, u64)> = p
        .new_release
        .blobs
        .iter()
        .filter(|b| !old.contains(&b.0))
        .collect();
    let head = inspect_json(&delta);
    assert_eq!(head["kind"], "delta");
    let omitted: BTreeSet<String> = omitted_digests(&head).into_iter().collect();
    // Every layer the base holds is omitted: the shared base, app's old layer, db's layer.
    let shared_layers: BTreeSet<String> = p
        .new_release
        .blobs
        .iter()
        .filter(|b| old.contains(&b.0) && b.1 > 64 * 1024)
        .map(|b| b.0.clone())
        .collect();
    assert_eq!(omitted, shared_layers);
    // The re-pushed tag's new layer is carried, not dropped by its unchanged reference.
    let new_layers: Vec<&&(String, u64)> = added.iter().filter(|b| b.1 > 64 * 1024).collect();
    assert_eq!(new_layers.len(), 2, "app's new layer and tools' new layer");
    let listing = String::from_utf8(
        std::process::Command::new("tar")
            .args(["-tzf", s(&delta)])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for (d, _) in &new_layers {
        assert!(
            listing.contains(d.trim_start_matches("sha256:")),
            "{d} is in the delta"
        );
    }
    for d in &omitted {
        assert!(
            !listing.contains(d.trim_start_matches("sha256:")),
            "{d} is left out"
        );
    }

    // Size: at most the new blobs plus the text files (the release's ferry.json among
    // them: the delta carries it), plus 1 %.
    let held: u64 = added.iter().map(|b| b.1).sum();
    let text: u64 = [
        "README.md",
        "values.yaml",
        "scripts/preflight.sh",
        "layout/index.json",
    ]
    .iter()
    .map(|f| {
        std::fs::metadata(p.new_spec.parent().unwrap().join(f))
            .unwrap()
            .len()
    })
    .sum::<u64>()
        + release_manifest_len(&p.new);
    let delta_bytes = std::fs::metadata(&delta).unwrap().len();
    let bound = (held + text) as f64 * 1.01;
    assert!(
        (delta_bytes as f64) <= bound,
        "delta {delta_bytes} bytes; new blobs {held} + text {text} + 1 % = {bound}"
    );
    let full_bytes = std::fs::metadata(&p.new).unwrap().len();
    assert!(
        delta_bytes < full_bytes,
        "delta {delta_bytes} bytes of a {full_bytes}-byte release"
    );

    // The delta verifies alone, and against its base.
    let v = json_of(&["verify", s(&delta)]);
    assert_eq!(v["evidence"]["kind"], "delta");
    json_of(&["verify", s(&delta), "--base", s(&p.old)]);

    // Merge gives the full build byte for byte.
    let merged = p.dir.path().join("merged.tar.gz");
    let m = json_of(&["merge", s(&p.old), s(&delta), "-o", s(&merged)]);
    assert!(
        same_bytes(&merged, &p.new),
        "merge is cmp-identical to the full build"
    );
    // What merge reports having proven, without reading its output again, is what a
    // verification of the output finds.
    let v = json_of(&["verify", s(&merged)]);
    for k in [
        "manifestDigest",
        "filesChecked",
        "bytesChecked",
        "blobsChecked",
        "layout",
        "gzipMembers",
    ] {
        assert_eq!(m["merge"]["evidence"][k], v["evidence"][k], "{k}");
    }

    // The build reads no blob the base holds: with every omitted layer of the source layout
    // overwritten past its first bytes, the delta comes out the same.
    let blobs = p.new_spec.parent().unwrap().join("layout/blobs/sha256");
    for d in &omitted {
        let path = blobs.join(d.trim_start_matches("sha256:"));
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[8..] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    let again = p.dir.path().join("again.delta.tar.gz");
    build(&p.new_spec, &again, &["--base", s(&p.old)]);
    assert!(
        same_bytes(&again, &delta),
        "a delta build never reads the blobs its base holds"
    );
}

/// Bytes of a complete bundle's ferry.json.
fn release_manifest_len(bundle: &Path) -> u64 {
    ferry::bundle::head::read(bundle)
        .unwrap()
        .manifest_bytes
        .len() as u64
}

#[test]
fn a_signed_delta_merges_against_the_right_base_only() {
    let p = pair();
    let prefix = p.dir.path().join("vendor");
    ferry()
        .env("COSIGN_PASSWORD", "delta-test-password")
        .args(["keygen", "--output-key-prefix", s(&prefix)])
        .assert()
        .success();
    let key = p.dir.path().join("vendor.key");
    let public = p.dir.path().join("vendor.pub");
    let signed = p.dir.path().join("signed-1.4.1.tar.gz");
    let delta = p.dir.path().join("signed-1.4.1.delta.tar.gz");
    for (out, extra) in [(&signed, vec![]), (&delta, vec!["--base", s(&p.old)])] {
        let o = ferry()
            .env("COSIGN_PASSWORD", "delta-test-password")
            .args([
                "build",
                "-f",
                s(&p.new_spec),
                "-o",
                s(out),
                "--key",
                s(&key),
            ])
            .args(extra)
            .assert()
            .success();
        drop(o);
    }
    // The delta carries the release's signature, checked with the vendor's key.
    let v = json_of(&[
        "verify",
        s(&delta),
        "--key",
        s(&public),
        "--require-signature",
    ]);
    assert!(v["evidence"]["headCheck"]["key"].is_object(), "{v}");
    // Merging yields a signed bundle that verifies, with the signature over the manifest of
    // the full release. (ECDSA is randomised, so the delta's own build signs anew: the merge
    // equals the full bundle the delta's build made, whose head the delta carries.)
    let merged = p.dir.path().join("merged.tar.gz");
    json_of(&[
        "merge",
        s(&p.old),
        s(&delta),
        "-o",
        s(&merged),
        "--key",
        s(&public),
    ]);
    let v = json_of(&[
        "verify",
        s(&merged),
        "--key",
        s(&public),
        "--require-signature",
    ]);
    assert_eq!(
        v["evidence"]["manifestDigest"],
        inspect_json(&delta)["releaseManifestDigest"]
    );
    assert_eq!(
        ferry::bundle::head::read(&merged).unwrap().manifest_bytes,
        ferry::bundle::head::read(&signed).unwrap().manifest_bytes,
        "the same manifest as a full signed build"
    );

    // Against the wrong base (1.4.1 itself lacks nothing, so use a bundle without db's
    // layer: a release built from app alone), the merge fails naming what is missing.
    let other_dir = p.dir.path().join("src-other");
    let other = release::write(&other_dir, "1.4.0");
    let spec = std::fs::read_to_string(&other.spec).unwrap();
    let cut = spec
        .find("  - ref: registry.example.com/shop/db:16")
        .unwrap();
    std::fs::write(&other.spec, &spec[..cut]).unwrap();
    let wrong = p.dir.path().join("wrong.tar.gz");
    build(&other.spec, &wrong, &[]);
    let out = p.dir.path().join("never.tar.gz");
    let a = ferry()
        .args(["merge", s(&wrong), s(&delta), "-o", s(&out)])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let wrong_blobs: BTreeSet<String> = ferry::bundle::inspect::read_manifest(&wrong)
        .unwrap()
        .0
        .files
        .iter()
        .map(|f| f.digest.to_string())
        .collect();
    let db_layer = &omitted_digests(&inspect_json(&delta))
        .into_iter()
        .find(|d| !wrong_blobs.contains(d))
        .unwrap();
    assert!(
        err.contains(db_layer.as_str()),
        "names the missing blob {db_layer}: {err}"
    );
    assert!(!out.exists(), "no output is left behind");
    // `verify --base` finds the same gap.
    let a = ferry()
        .args(["verify", s(&delta), "--base", s(&wrong)])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains(db_layer.as_str()), "{err}");
}

/// Deletes a blob from one repository of a registry (its storage has deletes enabled).
fn delete_blob(reg: &Registry, repo: &str, digest: &str) {
    let status = std::process::Command::new("curl")
        .args(["-fsS", "-X", "DELETE"])
        .arg(format!("http://{}/v2/{repo}/blobs/{digest}", reg.host()))
        .status()
        .unwrap();
    assert!(status.success(), "DELETE of {digest} in {repo}");
}

#[test]
fn loading_a_delta_checks_every_omitted_blob_before_pushing() {
    let p = pair();
    let reg = Registry::start(Setup::Plain);
    let target = format!("{}/site", reg.host());
    let have = p.dir.path().join("have.json");
    json_of(&[
        "load",
        s(&p.old),
        "--registry",
        &target,
        "--plain-http",
        "--have-list",
        s(&have),
    ]);
    // Asking the registry (a dry run: nothing is pushed) gives the same have-list.
    let asked = p.dir.path().join("asked.json");
    json_of(&[
        "load",
        s(&p.old),
        "--registry",
        &target,
        "--plain-http",
        "--dry-run",
        "--have-list",
        s(&asked),
    ]);
    assert_eq!(
        std::fs::read(&asked).unwrap(),
        std::fs::read(&have).unwrap()
    );
    let fresh = p.dir.path().join("fresh.json");
    json_of(&[
        "load",
        s(&p.old),
        "--registry",
        &format!("{}/empty", reg.host()),
        "--plain-http",
        "--dry-run",
        "--have-list",
        s(&fresh),
    ]);
    let fresh: serde_json::Value = serde_json::from_slice(&std::fs::read(&fresh).unwrap()).unwrap();
    assert_eq!(fresh["blobs"].as_array().unwrap().len(), 0, "{fresh}");
    // A delta built against the customer's have-list omits the same blobs as one built
    // against the bundle.
    let delta = p.dir.path().join("shop-1.4.1.delta.tar.gz");
    build(&p.new_spec, &delta, &["--base", s(&p.old)]);
    let from_have = p.dir.path().join("from-have.tar.gz");
    build(&p.new_spec, &from_have, &["--base", s(&have)]);
    assert_eq!(
        inspect_json(&delta)["omitted"],
        inspect_json(&from_have)["omitted"]
    );

    // The registry loses one omitted blob (db's layer, in repository site/shop/db): the load
    // stops before sending anything, naming it.
    let omitted = inspect_json(&delta)["omitted"].as_array().unwrap().clone();
    // The shared base layer (the largest omitted blob) goes from site/shop/db only.
    let db_only = omitted
        .iter()
        .max_by_key(|o| o["size"].as_u64().unwrap())
        .map(|o| o["digest"].as_str().unwrap().to_string())
        .unwrap();
    delete_blob(&reg, "site/shop/db", &db_only);
    let a = ferry()
        .args(["load", s(&delta), "--registry", &target, "--plain-http"])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&db_only) && err.contains("site/shop/db"),
        "{err}"
    );
    assert!(err.contains("nothing was pushed"), "{err}");
    let app = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .arg(format!(
            "http://{}/v2/site/shop/app/manifests/1.4.1",
            reg.host()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&app.stdout),
        "404",
        "app:1.4.1 was not pushed"
    );

    // With the blob back (a re-load of 1.4.0 that writes a have-list, so it runs the whole
    // plan rather than stopping at the tags already there), the delta loads, and the
    // registry serves the digests a load of the full 1.4.1 bundle gives.
    json_of(&[
        "load",
        s(&p.old),
        "--registry",
        &target,
        "--plain-http",
        "--have-list",
        s(&have),
    ]);
    let v = json_of(&["load", s(&delta), "--registry", &target, "--plain-http"]);
    assert_eq!(v["kind"], "delta");
    let full_target = format!("{}/full", reg.host());
    json_of(&[
        "load",
        s(&p.new),
        "--registry",
        &full_target,
        "--plain-http",
    ]);
    for r in ["shop/app:1.4.1", "shop/tools:latest", "shop/db:16"] {
        assert_eq!(
            inspect_raw(&format!("{target}/{r}")),
            inspect_raw(&format!("{full_target}/{r}")),
            "{r}"
        );
    }
}

/// The parts `split` wrote, from its JSON report.
fn parts_of(report: &serde_json::Value) -> Vec<PathBuf> {
    report["split"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p["path"].as_str().unwrap()))
        .collect()
}

/// The part size of the split tests: the release is about 3.6 MB; its largest layer about
/// 1 MB.
const PART: u64 = 1_200_000;

/// `ferry split` of the pair's 1.4.1 into `PART`-sized parts in a folder `parts`: the folder
/// and the command's JSON report.
fn split_new(p: &Pair) -> (PathBuf, serde_json::Value) {
    let dir = p.dir.path().join("parts");
    std::fs::create_dir(&dir).unwrap();
    let report = json_of(&[
        "split",
        s(&p.new),
        "--max-part-size",
        &PART.to_string(),
        "-C",
        s(&dir),
    ]);
    (dir, report)
}

#[test]
fn split_parts_verify_alone_and_join_byte_for_byte() {
    let p = pair();
    let (_, report) = split_new(&p);
    let parts = parts_of(&report);
    assert!(parts.len() >= 3, "{report}");
    for (i, part) in parts.iter().enumerate() {
        let name = part.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            name,
            format!("shop-1.4.1.part{}-of-{}.tar.gz", i + 1, parts.len())
        );
        assert!(
            std::fs::metadata(part).unwrap().len() <= PART,
            "{name} fits"
        );
        let v = json_of(&["verify", s(part)]);
        assert_eq!(v["evidence"]["part"]["index"], i + 1);
        // Plain tar reads every part.
        let tar = std::process::Command::new("tar")
            .args(["-tzf", s(part)])
            .output()
            .unwrap();
        assert!(tar.status.success(), "tar -tzf {name}");
    }

    // Joined from the parts given in reverse order: the original bytes.
    let joined = p.dir.path().join("joined.tar.gz");
    let mut args = vec!["join".to_string()];
    args.extend(parts.iter().rev().map(|p| s(p).to_string()));
    args.extend(["-o".into(), s(&joined).into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    json_of(&args);
    assert!(same_bytes(&joined, &p.new), "join is cmp-identical");

    // `build --max-part-size` writes the same parts.
    let built = p.dir.path().join("built");
    std::fs::create_dir(&built).unwrap();
    let r = build(
        &p.new_spec,
        &built.join("shop-1.4.1.tar.gz"),
        &["--max-part-size", &PART.to_string()],
    );
    let again = parts_of(&r);
    assert_eq!(again.len(), parts.len());
    for (a, b) in again.iter().zip(&parts) {
        assert!(same_bytes(a, b), "{} equals {}", a.display(), b.display());
    }

    // Inspect of a part alone names the parts missing beside it.
    let lonely = p.dir.path().join("lonely");
    std::fs::create_dir(&lonely).unwrap();
    let second = lonely.join(parts[1].file_name().unwrap());
    std::fs::copy(&parts[1], &second).unwrap();
    let v = inspect_json(&second);
    let missing: Vec<u64> = v["partsMissing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=parts.len() as u64).filter(|i| *i != 2).collect();
    assert_eq!(missing, want);
    let text = ferry()
        .args(["inspect", s(&second)])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!("shop-1.4.1.part1-of-{}.tar.gz", parts.len())),
        "{text}"
    );

    // Joining without a part fails naming it.
    let a = ferry()
        .args([
            "join",
            s(&parts[0]),
            s(&parts[2]),
            "-o",
            s(&p.dir.path().join("x.tar.gz")),
        ])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!("shop-1.4.1.part2-of-{}.tar.gz", parts.len())),
        "{err}"
    );
}

#[test]
fn tampering_with_one_part_is_caught_by_that_part_alone() {
    let p = pair();
    let (_, report) = split_new(&p);
    let parts = parts_of(&report);
    // Flip a byte in the middle of the second part (inside a stored layer: its CRC and its
    // digest no longer match).
    let victim = &parts[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(victim, &bytes).unwrap();
    ferry().args(["verify", s(victim)]).assert().code(1);
    for (i, part) in parts.iter().enumerate().filter(|(i, _)| *i != 1) {
        ferry().args(["verify", s(part)]).assert().success();
        assert!(i != 1);
    }
    let joined = p.dir.path().join("joined.tar.gz");
    let mut cmd = ferry();
    cmd.arg("join")
        .args(parts.iter().rev())
        .args(["-o", s(&joined)]);
    let a = cmd.assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(s(victim)),
        "join names the damaged part: {err}"
    );
    assert!(!joined.exists());
}

#[test]
fn loading_parts_in_reverse_order_gives_the_digests_of_a_whole_load() {
    let p = pair();
    let (_, report) = split_new(&p);
    let parts = parts_of(&report);
    let reg = Registry::start(Setup::Plain);
    let by_parts = format!("{}/parts", reg.host());
    let whole = format!("{}/whole", reg.host());
    let mut waited = false;
    for (n, part) in parts.iter().rev().enumerate() {
        let v = json_of(&["load", s(part), "--registry", &by_parts, "--plain-http"]);
        waited |= !v["waiting"].as_array().unwrap().is_empty();
        if n + 1 == parts.len() {
            assert!(
                v["waiting"].as_array().unwrap().is_empty(),
                "after the last part nothing waits: {v}"
            );
        }
    }
    assert!(waited, "some image waited for a later part");
    json_of(&["load", s(&p.new), "--registry", &whole, "--plain-http"]);
    for r in ["shop/app:1.4.1", "shop/tools:latest", "shop/db:16"] {
        assert_eq!(
            inspect_raw(&format!("{by_parts}/{r}")),
            inspect_raw(&format!("{whole}/{r}")),
            "{r}"
        );
    }
}

#[test]
fn diff_names_the_changed_image_the_repushed_tag_and_the_new_destination() {
    let p = pair();
    let v = json_of(&["diff", s(&p.old), s(&p.new)]);
    let images = v["images"].as_array().unwrap();
    let find = |name: &str| {
        images
            .iter()
            .find(|i| i["image"] == format!("registry.example.com/shop/{name}"))
            .unwrap_or_else(|| panic!("{name} in {v}"))
    };
    assert_eq!(find("app")["change"], "changed");
    assert_eq!(
        find("app")["new"]["reference"],
        "registry.example.com/shop/app:1.4.1"
    );
    assert_eq!(find("tools")["change"], "changed");
    assert_eq!(find("tools")["sameTagNewContent"], true);
    assert_eq!(find("db")["change"], "unchanged");
    let egress = v["egress"].as_array().unwrap();
    assert!(
        egress.iter().any(|e| e["change"] == "new"
            && e["destination"]
                .as_str()
                .unwrap()
                .starts_with(NEW_DESTINATION)
            && e["at"].as_str().unwrap().starts_with("values.yaml:")),
        "{v}"
    );
    let values = v["values"].as_array().unwrap();
    assert!(
        values
            .iter()
            .any(|c| c["name"] == "values.yaml: telemetry.endpoint" && c["change"] == "added"),
        "{v}"
    );
    assert_eq!(v["scripts"][0]["name"], "scripts/preflight.sh");
    assert_eq!(v["old"]["signedBy"], "unsigned");

    for format in ["table", "markdown"] {
        let out = ferry()
            .args(["diff", s(&p.old), s(&p.new), "--format", format])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("same tag, new content"), "{format}: {text}");
        assert!(text.contains(NEW_DESTINATION), "{format}: {text}");
    }
}

#[test]
fn readers_of_complete_bundles_refuse_a_part_or_a_delta_clearly() {
    let p = pair();
    let delta = p.dir.path().join("d.tar.gz");
    build(&p.new_spec, &delta, &["--base", s(&p.old)]);
    let a = ferry()
        .args(["extract", s(&delta), "-C", s(&p.dir.path().join("x"))])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("delta bundle") && err.contains("ferry merge"),
        "{err}"
    );
    // What a format-1 reader sees: formatVersion 2, which it refuses before anything else.
    let (bytes, _) = {
        let f = std::fs::File::open(&delta).unwrap();
        let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
        let mut e = a.entries().unwrap();
        let mut first = e.next().unwrap().unwrap();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut first, &mut b).unwrap();
        (b, ())
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["formatVersion"], 2);
    assert_eq!(v["kind"], "delta");
}

#[test]
fn a_layer_larger_than_a_part_gets_a_part_of_its_own() {
    let p = pair();
    let dir = p.dir.path().join("parts");
    std::fs::create_dir(&dir).unwrap();
    let o = ferry()
        .args([
            "split",
            s(&p.new),
            "--max-part-size",
            "600KB",
            "-C",
            s(&dir),
        ])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(err.contains("does not fit a part of 600000 bytes"), "{err}");
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    let over: Vec<&PathBuf> = parts
        .iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 600_000)
        .collect();
    // app's and tools' new layers (about 1 MiB and 770 kB): each alone, each named.
    assert_eq!(over.len(), 2, "{parts:?}");
    assert_eq!(
        err.matches("does not fit a part").count(),
        over.len(),
        "{err}"
    );
    let joined = p.dir.path().join("joined.tar.gz");
    let mut cmd = ferry();
    cmd.arg("join").args(&parts).args(["-o", s(&joined)]);
    cmd.assert().success();
    assert!(same_bytes(&joined, &p.new));

    // A size too small for any part's head is refused, with the size needed.
    let a = ferry()
        .args(["split", s(&p.new), "--max-part-size", "4KiB", "-C", s(&dir)])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("--max-part-size 4096") && err.contains("give a larger size"),
        "{err}"
    );
}

/// A change to a partial head.
type Edit = Box<dyn FnOnce(&mut ferry::bundle::partial::PartialManifest)>;

/// Rewrites the head of a partial file with `edit` applied, keeping every later byte.
fn with_head(
    from: &Path,
    to: &Path,
    edit: impl FnOnce(&mut ferry::bundle::partial::PartialManifest),
) {
    let head = ferry::bundle::partial::peek(from).unwrap().unwrap();
    let mut m = head.manifest.clone();
    edit(&mut m);
    let body = ferry::bundle::partial::head_member_len(from).unwrap();
    let len = std::fs::metadata(from).unwrap().len();
    ferry::bundle::partial::write_file(to, &head.root, head.mtime, &m, |out| {
        ferry::bundle::partial::copy_range(from, body, len - body, out)
    })
    .unwrap();
}

#[test]
fn a_partial_head_that_disagrees_with_the_signed_release_is_refused() {
    let p = pair();
    let delta = p.dir.path().join("d.tar.gz");
    build(&p.new_spec, &delta, &["--base", s(&p.old)]);
    let cases: Vec<(&str, Edit)> = vec![
        (
            "as 0 bytes",
            Box::new(|m| {
                let f = m
                    .files
                    .iter_mut()
                    .find(|f| f.path.as_str() == "values.yaml")
                    .unwrap();
                f.size = 0;
            }),
        ),
        (
            "does not hash to release.manifestDigest",
            Box::new(|m| {
                m.release.manifest_digest = m.files[0].digest.clone();
            }),
        ),
        (
            "is neither held nor omitted",
            Box::new(|m| {
                m.delta.as_mut().unwrap().omitted.pop();
            }),
        ),
    ];
    for (i, (want, edit)) in cases.into_iter().enumerate() {
        let bad = p.dir.path().join(format!("bad{i}.tar.gz"));
        with_head(&delta, &bad, edit);
        let a = ferry().args(["verify", s(&bad)]).assert().code(1);
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(err.contains(want), "{want}: {err}");
    }
    // The unedited head rewritten the same way still verifies: the edits are what fails.
    let same = p.dir.path().join("same.tar.gz");
    with_head(&delta, &same, |_| {});
    assert!(same_bytes(&same, &delta));
}

/// Files in `dir` whose names start with `prefix` (temporary files left behind).
fn leftovers(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect()
}

#[test]
fn a_part_damaged_where_its_run_starts_is_named_and_nothing_is_written() {
    let p = pair();
    let (_, report) = split_new(&p);
    let parts = parts_of(&report);
    // The first byte of the second part's run: the gzip header of its first member, right
    // after the last entry of the first part's run.
    let victim = &parts[1];
    let head = ferry::bundle::partial::peek(victim).unwrap().unwrap();
    let run = head.manifest.part.as_ref().unwrap().length;
    let eoa = ferry::bundle::archive::TarGzWriter::new(Vec::new(), head.mtime)
        .finish()
        .unwrap()
        .len() as u64;
    let mut bytes = std::fs::read(victim).unwrap();
    let at = (bytes.len() as u64 - run - eoa) as usize;
    assert_eq!(
        bytes[at..at + 2],
        [0x1f, 0x8b],
        "a gzip member starts the run"
    );
    bytes[at] ^= 0x40;
    std::fs::write(victim, &bytes).unwrap();

    let joined = p.dir.path().join("joined.tar.gz");
    let mut cmd = ferry();
    cmd.arg("join").args(&parts).args(["-o", s(&joined)]);
    let a = cmd.assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!("{} is damaged", s(victim))),
        "join names the damaged part: {err}"
    );
    assert!(
        !err.contains(&format!("{} is damaged", s(&parts[0]))),
        "not the part before it: {err}"
    );
    assert!(!joined.exists());
    assert_eq!(
        leftovers(p.dir.path(), ".ferry-join-"),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn a_base_whose_wanted_blob_is_damaged_fails_the_merge_and_leaves_nothing() {
    let p = pair();
    let delta = p.dir.path().join("d.tar.gz");
    build(&p.new_spec, &delta, &["--base", s(&p.old)]);
    let omitted = omitted_digests(&inspect_json(&delta));
    // Flip a byte in the middle of the data of a blob the delta leaves out.
    let walked = ferry::bundle::partial::walk(&p.old).unwrap();
    let blob = walked
        .entries
        .iter()
        .find(|e| e.stored && omitted.contains(&e.file.digest.to_string()))
        .unwrap();
    let base = p.dir.path().join("damaged-base.tar.gz");
    let mut bytes = std::fs::read(&p.old).unwrap();
    let at = ferry::bundle::archive::stored_position(blob.member, 512 + blob.file.size / 2);
    bytes[at as usize] ^= 0x40;
    std::fs::write(&base, &bytes).unwrap();

    let out = p.dir.path().join("merged.tar.gz");
    let a = ferry()
        .args(["merge", s(&base), s(&delta), "-o", s(&out)])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(s(&base)) && err.contains(blob.file.digest.hex()),
        "names the base and the blob: {err}"
    );
    assert!(
        err.contains("sha256 is"),
        "the blob's digest differs: {err}"
    );
    assert!(!out.exists());
    assert_eq!(
        leftovers(p.dir.path(), ".ferry-merge-"),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn a_delta_whose_omitted_member_is_misplaced_is_refused() {
    let p = pair();
    let delta = p.dir.path().join("d.tar.gz");
    build(&p.new_spec, &delta, &["--base", s(&p.old)]);
    // The last omitted member moved one byte on: the delta verifies alone (its body is
    // unchanged), but its body can no longer be cut where that member goes.
    let moved = p.dir.path().join("moved.tar.gz");
    with_head(&delta, &moved, |m| {
        let d = m.delta.as_mut().unwrap();
        let last = d.omitted.iter_mut().max_by_key(|o| o.at).unwrap();
        last.at += 1;
    });
    json_of(&["verify", s(&moved)]);
    let out = p.dir.path().join("merged.tar.gz");
    let a = ferry()
        .args(["merge", s(&p.old), s(&moved), "-o", s(&out)])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("not a gzip member boundary between two entries"),
        "{err}"
    );
    assert!(!out.exists());
    // The unmoved delta merges to the release.
    json_of(&["merge", s(&p.old), s(&delta), "-o", s(&out)]);
    assert!(same_bytes(&out, &p.new));
}

//! Delta bundles, split volumes and `ferry diff`, through the command line, on a release
//! pair the test writes (`util::release`): shop 1.4.0 and 1.4.1.

use crate::harness::ferry;
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

/// The head of a delta or part, as `inspect --json` shows it.
fn inspect(path: &Path) -> serde_json::Value {
    json_of(&["inspect", s(path)])
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
    let added: Vec<&(String, u64)> = p.new_release.blobs.iter().filter(|b| !old.contains(&b.0)).collect();
    let head = inspect(&delta);
    assert_eq!(head["kind"], "delta");
    let omitted: BTreeSet<String> = head["omitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["digest"].as_str().unwrap().to_string())
        .collect();
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
        std::process::Command::new("tar").args(["-tzf", s(&delta)]).output().unwrap().stdout,
    )
    .unwrap();
    for (d, _) in &new_layers {
        assert!(listing.contains(d.trim_start_matches("sha256:")), "{d} is in the delta");
    }
    for d in &omitted {
        assert!(!listing.contains(d.trim_start_matches("sha256:")), "{d} is left out");
    }

    // Size: at most the new blobs plus the text files (the release's ferry.json among
    // them: the delta carries it), plus 1 %.
    let held: u64 = added.iter().map(|b| b.1).sum();
    let text: u64 = ["README.md", "values.yaml", "scripts/preflight.sh", "layout/index.json"]
        .iter()
        .map(|f| std::fs::metadata(p.new_spec.parent().unwrap().join(f)).unwrap().len())
        .sum::<u64>()
        + release_manifest_len(&p.new);
    let delta_bytes = std::fs::metadata(&delta).unwrap().len();
    let bound = (held + text) as f64 * 1.01;
    assert!(
        (delta_bytes as f64) <= bound,
        "delta {delta_bytes} bytes; new blobs {held} + text {text} + 1 % = {bound}"
    );
    let full_bytes = std::fs::metadata(&p.new).unwrap().len();
    println!("delta {delta_bytes} bytes of a {full_bytes}-byte release; new blobs {held}, text {text}");

    // The delta verifies alone, and against its base.
    let v = json_of(&["verify", s(&delta)]);
    assert_eq!(v["evidence"]["kind"], "delta");
    json_of(&["verify", s(&delta), "--base", s(&p.old)]);

    // Merge gives the full build byte for byte.
    let merged = p.dir.path().join("merged.tar.gz");
    json_of(&["merge", s(&p.old), s(&delta), "-o", s(&merged)]);
    assert!(same_bytes(&merged, &p.new), "merge is cmp-identical to the full build");
}

/// Bytes of a complete bundle's ferry.json.
fn release_manifest_len(bundle: &Path) -> u64 {
    ferry::bundle::head::read(bundle).unwrap().manifest_bytes.len() as u64
}

//! Shared helpers for bundle tests: temp folders, the built binary, the fixture, tools.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The committed fixture folder.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/agent-security")
}

/// A `ferry` command for the binary under test.
pub fn ferry() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("ferry").expect("ferry binary is built")
}

/// Fails with the install command when an external tool is missing.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "`{tool}` is required by this test: install it with `apt-get install -y {package}` (or run `cargo xtask test`, which installs it)");
}

/// Builds the fixture into `out` with a given SOURCE_DATE_EPOCH, through the library.
pub fn build_fixture(out: &Path, epoch: u64) -> ferry::bundle::build::BuildReport {
    build_spec(&fixture().join("ferry.yaml"), out, epoch)
}

pub fn build_spec(spec: &Path, out: &Path, epoch: u64) -> ferry::bundle::build::BuildReport {
    let opts = ferry::bundle::build::BuildOptions {
        spec: spec.to_path_buf(),
        output: out.to_path_buf(),
        source_date_epoch: epoch,
        progress: ferry::progress::Progress::Hidden,
        remote: None,
        jobs: 4,
        locked: None,
        check: None,
        referrers: true,
        signature_check: None,
        base: None,
    };
    ferry::bundle::build::build(&opts, None)
        .unwrap_or_else(|e| panic!("build of {} failed: {e}", spec.display()))
}

/// `ferry inspect --json BUNDLE`, which must succeed, parsed.
pub fn inspect_json(bundle: &Path) -> serde_json::Value {
    let out = ferry()
        .args(["inspect", "--json"])
        .arg(bundle)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// Verifies through the library with default limits.
pub fn verify(
    path: &Path,
) -> Result<ferry::bundle::verify::Evidence, ferry::bundle::verify::VerifyError> {
    ferry::bundle::verify::verify(&ferry::bundle::verify::VerifyOptions {
        input: path.to_path_buf(),
        limits: Default::default(),
        progress: ferry::progress::Progress::Hidden,
        check_head: None,
    })
}

/// Runs a command and returns stdout, failing the test with stderr when it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// sha256 hex of bytes, computed independently of ferry's own digest code.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The manifest ferry writes for a legacy `docker save` image (bundle-format.md, 8.2),
/// built from the manifest skopeo synthesises for the same archive: the same config and
/// layers under OCI media types (the archive's layers are uncompressed tars).
pub fn oci_manifest_for_legacy(docker_manifest: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(docker_manifest).unwrap();
    let desc = |d: &serde_json::Value, media_type: &str| {
        format!(
            r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
            d["digest"].as_str().unwrap(),
            d["size"].as_u64().unwrap()
        )
    };
    let layers: Vec<String> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| desc(l, "application/vnd.oci.image.layer.v1.tar"))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        desc(&v["config"], "application/vnd.oci.image.config.v1+json"),
        layers.join(",")
    )
    .into_bytes()
}

/// Every file under `dir` as (relative path, mode, content), sorted.
pub fn tree(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let content = if meta.is_file() {
            std::fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        out.push((
            rel,
            meta.permissions().mode() & 0o7777 & if meta.is_dir() { 0 } else { 0o7777 },
            content,
        ));
    }
    out
}

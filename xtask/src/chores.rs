//! The `test`, `demo` and `codegen` chores.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The system tools the tests run, and the Debian packages that provide them.
const TOOLS: [(&str, &str); 5] = [
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("docker-registry", "docker-registry"),
    ("openssl", "openssl"),
    ("htpasswd", "apache2-utils"),
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
fn ensure_tools() -> Result<()> {
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
    }
    if !ok {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

pub fn test() -> Result<ExitCode> {
    ensure_tools()?;
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
    step(
        "cargo test",
        Command::new(&cargo).args(["test", "--workspace"]),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn codegen(check: bool) -> Result<ExitCode> {
    let path = root().join("bundle-spec/manifest.schema.json");
    let want = ferry::bundle::manifest::json_schema();
    if check {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            eprintln!(
                "{} is out of date with src/manifest.rs: run `cargo xtask codegen` and commit it",
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    step(
        "build ferry",
        Command::new(&cargo).args(["build", "--release", "-p", "ferry", "--quiet"]),
    )?;
    let ferry = root().join("target/release/ferry");
    let out = root().join("target/demo");
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
    println!("\nbundle:     {}", bundle.display());
    println!("public key: {}", public.display());
    println!(
        "extracted:  {}",
        dest.join("agent-security-1.4.0").display()
    );
    Ok(ExitCode::SUCCESS)
}

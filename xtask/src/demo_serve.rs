//! The registry steps of `cargo xtask demo`: load the fixture bundle into a throwaway
//! registry, then serve it straight from the bundle file and pull an image back with skopeo.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process stopped with SIGTERM (then killed) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not listen on 127.0.0.1:{port} within 30 s")
}

/// The command `program ARGS`, shown as `name ARGS` with its title.
fn shown(name: &str, program: &str, args: &[&str], title: &str) -> Command {
    println!("\n$ {name} {}", args.join(" "));
    println!("# {title}");
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

fn run(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `ferry load` into a throwaway distribution registry, then `ferry serve` and a pull back.
pub fn steps(ferry: &Path, bundle: &Path, public: &Path, out: &Path) -> Result<()> {
    crate::chores::ensure_tools()?;
    let (ferry, bundle, public) = (
        ferry.to_str().context("a UTF-8 path")?,
        bundle.to_str().context("a UTF-8 path")?,
        public.to_str().context("a UTF-8 path")?,
    );
    let port = free_port()?;
    let data = out.join("registry");
    std::fs::create_dir_all(&data)?;
    let config = out.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: demo\n",
            data.display()
        ),
    )?;
    let _registry = Running(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start docker-registry")?,
    );
    wait_for(port, "docker-registry")?;
    let target = format!("127.0.0.1:{port}/demo");
    let args = [
        "load",
        bundle,
        "--registry",
        &target,
        "--plain-http",
        "--key",
        public,
    ];
    let title = "push every image into a throwaway registry (digests unchanged)";
    run(shown("ferry", ferry, &args, title), "ferry load")?;

    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let args = ["serve", bundle, "--listen", &listen, "--key", public];
    let title = "or serve the images straight from the bundle file (in the background)";
    let _serve = Running(
        shown("ferry", ferry, &args, title)
            .spawn()
            .context("cannot start ferry serve")?,
    );
    wait_for(port, "ferry serve")?;
    let pulled = out.join("pulled");
    let from = format!("docker://{listen}/agent-security/platform:1.4.0");
    let to = format!("oci:{}:platform", pulled.display());
    let args = [
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        from.as_str(),
        to.as_str(),
    ];
    let title = "pull the multi-arch image back from ferry serve";
    run(shown("skopeo", "skopeo", &args, title), "skopeo copy")?;
    let index = std::fs::read_to_string(pulled.join("index.json"))?;
    println!("pulled into {}: {index}", pulled.display());
    Ok(())
}

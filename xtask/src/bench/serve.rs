//! The serve part of `cargo xtask bench`: every blob of the image set fetched with 8 parallel
//! raw `GET`s (one `curl --parallel`) from `ferry serve BUNDLE` and from a CNCF distribution
//! registry holding the same images; the server's start-up against `openssl dgst -sha256`.
//!
//! The registry is started once and the set pushed to it once (untimed, `skopeo copy --all`).
//! `ferry serve` starts anew every round, so its start-up (spawn until `GET /v2/` answers) is
//! timed each round. The servers are measured from `/proc`: CPU as utime+stime of the server
//! process read before and after each fetch, peak RSS as `VmHWM`, reset (`clear_refs`)
//! before each fetch so that it is the fetch's own peak.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{
    mib, time_once, verdict, Case, Environment, ImageSet, Options, Registry, Sample, SetResult,
    RSS_TARGET_MIB,
};

/// Parallel transfers of the client.
const PARALLEL: usize = 8;
/// Target: ferry serve's fetch wall time divided by the registry's, at most this.
const WALL_RATIO_TARGET: f64 = 1.0;
/// Target: ferry serve's CPU-seconds per GB divided by the registry's, at most this.
const CPU_RATIO_TARGET: f64 = 1.0;
/// Target: ferry serve's start-up divided by `openssl dgst -sha256` of the bundle, at most this.
const STARTUP_RATIO_TARGET: f64 = 1.0;

const FERRY_ALL: &str = "every blob, 8 parallel GETs, from ferry serve";
const REGISTRY_ALL: &str = "every blob, 8 parallel GETs, from docker-registry";
const FERRY_BIG: &str = "8 concurrent GETs of the large layers (each twice), from ferry serve";
const REGISTRY_BIG: &str =
    "8 concurrent GETs of the large layers (each twice), from docker-registry";
const STARTUP: &str = "ferry serve start-up (spawn until GET /v2/ answers)";
const OPENSSL: &str = "openssl dgst -sha256 BUNDLE";

/// The `Accept` header of every request: manifests and indexes are asked for by digest.
const ACCEPT: &str =
    "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// Marks the serve section, so that `cargo xtask bench serve` can replace it alone.
const BEGIN: &str = "<!-- serve: begin -->";
const END: &str = "<!-- serve: end -->";
/// Every target row of this part starts so, for the same reason.
const ROW_PREFIX: &str = "| serve: ";

/// One blob to fetch: the repository it is asked under, the endpoint (`blobs`, or
/// `manifests` for a manifest or index, which the distribution registry answers only there),
/// its digest and size.
struct Wanted {
    repo: String,
    endpoint: &'static str,
    digest: String,
    size: u64,
}

/// One fetch, timed each round against one server: the client under GNU time, the server
/// from `/proc`.
struct Fetch {
    case: Case,
    /// The curl config (`url` and `output` per blob), rewritten with the port of the run.
    config: PathBuf,
    wanted: Vec<usize>,
    on_ferry: bool,
    /// Per run: the server's utime+stime during the fetch, seconds.
    server_cpu: Vec<f64>,
    /// Per run: the server's `VmHWM` after the fetch (reset before it), KiB.
    server_hwm_kib: Vec<u64>,
}

impl Fetch {
    fn server_cpu(&self) -> f64 {
        super::median(self.server_cpu.clone())
    }
    /// Server CPU-seconds per 10^9 bytes sent.
    fn cpu_per_gb(&self) -> f64 {
        self.server_cpu() / (self.case.bytes as f64 / 1e9)
    }
    fn server_rss_mib(&self) -> f64 {
        self.server_hwm_kib.iter().copied().max().unwrap_or(0) as f64 / 1024.0
    }
}

/// The serve part: one registry holding the set, the bundle, the fetches timed against both.
pub(super) struct Serve {
    registry: Registry,
    ferry: PathBuf,
    bundle: PathBuf,
    log: PathBuf,
    wanted: Vec<Wanted>,
    fetches: Vec<Fetch>,
    startup: Case,
    openssl: Case,
}

/// What the serve part measured, for the report.
pub(super) struct Report {
    fetches: Vec<Fetch>,
    startup: Case,
    openssl: Case,
    blobs: usize,
}

impl Serve {
    /// Starts the registry, pushes the set (untimed) and checks that both servers answer
    /// every blob with its size.
    pub(super) fn new(
        ferry: &Path,
        base: &Path,
        set: &ImageSet,
        bundle: &Path,
        bundle_bytes: u64,
    ) -> Result<Serve> {
        let dir = base.join("serve");
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        let layout = set.dir.join("images/layout");
        let wanted = blobs_of(&layout, &set.refs)?;
        let registry = Registry::start(&dir.join("registry"))?;
        push(&layout, registry.port, &set.refs)?;

        let big: Vec<usize> = {
            let mut by_size: Vec<usize> = (0..wanted.len()).collect();
            by_size.sort_by_key(|&i| std::cmp::Reverse(wanted[i].size));
            by_size.truncate(super::BIG_IMAGES);
            by_size.iter().chain(by_size.iter()).copied().collect()
        };
        let all: Vec<usize> = (0..wanted.len()).collect();
        let fetch = |name: &str, file: &str, list: &[usize], on_ferry: bool| {
            let config = dir.join(file);
            let bytes = list.iter().map(|&i| wanted[i].size).sum();
            let mut case = Case::new(name, bytes, &[&"curl"]).in_group("serve");
            case.argv = curl_argv(&config);
            let words: Vec<String> = curl_argv(&config)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .map(|a| {
                    if a.contains(' ') {
                        super::shell_quote(&a)
                    } else {
                        a
                    }
                })
                .collect();
            case.display = Some(format!(
                "{}   # {} GETs; the config holds per blob `url = \"http://127.0.0.1:PORT/v2/\
                 bench/NAME/blobs/DIGEST\"` (`manifests/DIGEST` for a manifest or index) and \
                 `output = \"/dev/null\"`",
                words.join(" "),
                list.len()
            ));
            Fetch {
                case,
                config,
                wanted: list.to_vec(),
                on_ferry,
                server_cpu: Vec::new(),
                server_hwm_kib: Vec::new(),
            }
        };
        let fetches = vec![
            fetch(FERRY_ALL, "ferry-all.curl", &all, true),
            fetch(REGISTRY_ALL, "registry-all.curl", &all, false),
            fetch(FERRY_BIG, "ferry-big.curl", &big, true),
            fetch(REGISTRY_BIG, "registry-big.curl", &big, false),
        ];
        let mut startup = Case::new(STARTUP, bundle_bytes, &[]).in_group("serve");
        startup.display = Some(format!(
            "{} --quiet serve {} --listen 127.0.0.1:PORT   # wall: spawn until `GET /v2/` answers \
             200 (polled every 2 ms); RSS: VmHWM; cpu: utime+stime, both from /proc then",
            ferry.display(),
            bundle.display()
        ));
        let openssl = Case::new(
            OPENSSL,
            bundle_bytes,
            &[&"openssl", &"dgst", &"-sha256", &bundle],
        )
        .in_group("serve");
        let serve = Serve {
            registry,
            ferry: ferry.to_path_buf(),
            bundle: bundle.to_path_buf(),
            log: dir.join("ferry-serve.log"),
            wanted,
            fetches,
            startup,
            openssl,
        };
        serve.check()?;
        Ok(serve)
    }

    /// One untimed fetch of every blob from each server, each answer checked for status 200
    /// and the blob's size (the timed runs pass `--fail`, and curl fails on a short body).
    fn check(&self) -> Result<()> {
        let (server, _) = self.start_ferry()?;
        for (port, who) in [
            (server.port, "ferry serve"),
            (self.registry.port, "docker-registry"),
        ] {
            let all = &self.fetches[0];
            write_config(&all.config, port, &self.wanted, &all.wanted)?;
            let out = Command::new("curl")
                .args(&curl_argv(&all.config)[1..])
                .args(["-w", "%{http_code} %{size_download} %{url}\n"])
                .stdin(Stdio::null())
                .output()
                .context("running curl")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut seen = 0;
            for line in text.lines() {
                let f: Vec<&str> = line.splitn(3, ' ').collect();
                let w = self
                    .wanted
                    .iter()
                    .find(|w| f.get(2).is_some_and(|u| u.ends_with(&w.digest)));
                match (f.as_slice(), w) {
                    (["200", n, _], Some(w)) if n.parse::<u64>().ok() == Some(w.size) => seen += 1,
                    _ => bail!("{who} answered `{line}` (want 200 and the blob's size)"),
                }
            }
            if !out.status.success() || seen != self.wanted.len() {
                bail!(
                    "fetching every blob from {who} failed ({}, {seen} of {} answered): {}",
                    out.status,
                    self.wanted.len(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(())
    }

    /// Starts `ferry serve` on a free port; its start-up sample once `/v2/` answers.
    fn start_ferry(&self) -> Result<(Server, Sample)> {
        let port = free_port()?;
        let log = File::options().create(true).append(true).open(&self.log)?;
        let t = Instant::now();
        let child = Command::new(&self.ferry)
            .args(["--quiet", "serve"])
            .arg(&self.bundle)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", self.ferry.display()))?;
        let mut server = Server { child, port };
        while !answers_v2(port) {
            if let Some(st) = server.child.try_wait()? {
                bail!(
                    "ferry serve exited at start ({st}); see {}",
                    self.log.display()
                );
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!("ferry serve did not answer /v2/ within 120 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let wall = t.elapsed().as_secs_f64();
        let pid = server.child.id();
        let sample = Sample {
            wall,
            rss_kib: vm_hwm_kib(pid)?,
            cpu: proc_cpu(pid)?,
            disk: None,
            disk_files: None,
        };
        Ok((server, sample))
    }

    /// One round: `openssl dgst`, ferry serve's start-up and its fetches, the registry's.
    pub(super) fn round(&mut self, round: u32, runs: u32, time_out: &Path) -> Result<()> {
        let s = time_once(&self.openssl, time_out)?;
        log(round, runs, OPENSSL, &s, None);
        self.openssl.samples.push(s);
        let (server, s) = self.start_ferry()?;
        log(round, runs, STARTUP, &s, None);
        self.startup.samples.push(s);
        let registry_port = self.registry.port;
        let registry_pid = self.registry.child.id();
        for f in &mut self.fetches {
            let (port, pid) = if f.on_ferry {
                (server.port, server.child.id())
            } else {
                (registry_port, registry_pid)
            };
            write_config(&f.config, port, &self.wanted, &f.wanted)?;
            fs::write(format!("/proc/{pid}/clear_refs"), "5")
                .with_context(|| format!("resetting the peak RSS of process {pid}"))?;
            let before = proc_cpu(pid)?;
            let s = time_once(&f.case, time_out)?;
            let cpu = proc_cpu(pid)? - before;
            let hwm = vm_hwm_kib(pid)?;
            log(round, runs, &f.case.name, &s, Some((cpu, hwm)));
            f.case.samples.push(s);
            f.server_cpu.push(cpu);
            f.server_hwm_kib.push(hwm);
        }
        drop(server);
        Ok(())
    }

    /// The measurements; stops the registry.
    pub(super) fn into_report(self) -> Report {
        Report {
            blobs: self.wanted.len(),
            fetches: self.fetches,
            startup: self.startup,
            openssl: self.openssl,
        }
    }
}

fn log(round: u32, runs: u32, name: &str, s: &Sample, server: Option<(f64, u64)>) {
    eprint!(
        "bench: serve, run {round}/{runs}: {name:<70} {:>7.2}s  {:>6.1} MiB RSS  {:>6.2}s cpu",
        s.wall,
        s.rss_kib as f64 / 1024.0,
        s.cpu
    );
    match server {
        Some((cpu, hwm)) => eprintln!(
            "  server {cpu:>6.2}s cpu {:>6.1} MiB peak",
            hwm as f64 / 1024.0
        ),
        None => eprintln!(),
    }
}

/// A `ferry serve` process, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether a server on `port` answers `GET /v2/` with 200.
fn answers_v2(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = [0u8; 12];
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head[8..] == b" 200"
}

/// utime+stime of a process (all its threads), seconds.
fn proc_cpu(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let ticks: u64 = f
        .get(11)
        .zip(f.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .context("unexpected /proc/PID/stat")?;
    Ok(ticks as f64 / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)`, through `getconf`.
fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        super::first_line("getconf", &["CLK_TCK"])
            .parse()
            .unwrap_or(100.0)
    })
}

/// `VmHWM` of a process, KiB.
fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

fn curl_argv(config: &Path) -> Vec<std::ffi::OsString> {
    let mut argv: Vec<std::ffi::OsString> = [
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "--parallel",
        "--parallel-immediate",
        "--header",
        ACCEPT,
        "--parallel-max",
    ]
    .iter()
    .map(Into::into)
    .collect();
    argv.push(PARALLEL.to_string().into());
    argv.push("--config".into());
    argv.push(config.into());
    argv
}

fn write_config(path: &Path, port: u16, wanted: &[Wanted], list: &[usize]) -> Result<()> {
    let mut text = String::new();
    for &i in list {
        let w = &wanted[i];
        let _ = writeln!(
            text,
            "url = \"http://127.0.0.1:{port}/v2/{}/{}/{}\"\noutput = \"/dev/null\"",
            w.repo, w.endpoint, w.digest
        );
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Every blob of the layout's images, each once, with the repository it is asked under
/// (`bench/NAME`, as pushed and as the bundle's `registry.example.com/bench/NAME` answers).
fn blobs_of(layout: &Path, refs: &[String]) -> Result<Vec<Wanted>> {
    let read = |digest: &str| -> Result<serde_json::Value> {
        let hex = digest
            .strip_prefix("sha256:")
            .context("not a sha256 digest")?;
        let path = layout.join("blobs/sha256").join(hex);
        Ok(serde_json::from_slice(
            &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )?)
    };
    let index = serde_json::from_slice::<serde_json::Value>(&fs::read(layout.join("index.json"))?)?;
    let mut out: Vec<Wanted> = Vec::new();
    let descriptor = |d: &serde_json::Value| -> Result<(String, u64)> {
        Ok((
            d["digest"]
                .as_str()
                .context("descriptor without digest")?
                .to_string(),
            d["size"].as_u64().context("descriptor without size")?,
        ))
    };
    for m in index["manifests"]
        .as_array()
        .context("index.json without manifests")?
    {
        let name = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or_default();
        if !refs.iter().any(|r| r == name) {
            continue;
        }
        let repo = format!("bench/{name}");
        let mut todo = vec![descriptor(m)?];
        while let Some((digest, size)) = todo.pop() {
            let doc = read(&digest)?;
            for child in doc["manifests"].as_array().into_iter().flatten() {
                todo.push(descriptor(child)?);
            }
            for blob in std::iter::once(&doc["config"])
                .filter(|c| c.is_object())
                .chain(doc["layers"].as_array().into_iter().flatten())
            {
                let (digest, size) = descriptor(blob)?;
                if !out.iter().any(|w| w.digest == digest) {
                    out.push(Wanted {
                        repo: repo.clone(),
                        endpoint: "blobs",
                        digest,
                        size,
                    });
                }
            }
            if !out.iter().any(|w| w.digest == digest) {
                out.push(Wanted {
                    repo: repo.clone(),
                    endpoint: "manifests",
                    digest,
                    size,
                });
            }
        }
    }
    Ok(out)
}

/// `skopeo copy --all` of every image of the layout into the registry on `port`.
fn push(layout: &Path, port: u16, refs: &[String]) -> Result<()> {
    eprintln!("bench: pushing the image set to 127.0.0.1:{port} (skopeo copy --all, untimed)");
    for r in refs {
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet", "--all"])
            .arg("--dest-tls-verify=false")
            .arg(format!("oci:{}:{r}", layout.display()))
            .arg(format!("docker://127.0.0.1:{port}/bench/{r}:1.0"))
            .stdin(Stdio::null())
            .output()
            .context("running skopeo copy")?;
        if !out.status.success() {
            bail!(
                "skopeo copy of {r} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// The serve section of the report, between its markers.
pub(super) fn section(d: &mut String, opts: &Options, env: &Environment, set: &SetResult) {
    let Some(r) = &set.serve else {
        return;
    };
    super::section_head(d, BEGIN, "Serve from the bundle", opts, env, set);
    let _ = writeln!(
        d,
        "`ferry serve` answers from the bundle built above ({}); one `docker-registry serve` on a \
         free 127.0.0.1 port holds the same images, pushed once before the runs with `skopeo \
         copy --all` from the generated layout (untimed), so its storage is warm. Both hold the \
         images as `bench/NAME`. The client is one `curl --parallel --parallel-max {PARALLEL}` \
         per fetch, writing to `/dev/null`: \"every blob\" asks for each of the {} blobs of the \
         five images ({}) once, at most {PARALLEL} at a time — configs and layers at \
         `/v2/bench/NAME/blobs/DIGEST`, manifests and the index at `/manifests/DIGEST` (the \
         distribution registry answers them only there) — so the four large layers run side by side and the small blobs go with them; \"8 concurrent \
         GETs of the large layers\" asks for each large layer twice ({}), so that {PARALLEL} \
         whole-layer responses are under way at once. Before the runs each server \
         answered every blob once with status 200 and its size (untimed); the timed runs pass \
         `--fail`. `ferry serve` starts anew every round: its start-up is the time from spawn \
         until `GET /v2/` answers 200 (polled every 2 ms), which is after the verification pass \
         over the whole bundle; `openssl dgst -sha256` reads the same file. Server figures come \
         from `/proc/PID` of the server process: cpu is utime+stime read before and after each \
         fetch, peak RSS is `VmHWM` after the fetch, reset (`echo 5 > clear_refs`) before it, \
         the largest over the runs. The client's wall, RSS and cpu are GNU time's of curl. \
         Page cache warm; rounds interleaved (openssl, ferry serve's start-up, its two fetches, \
         the registry's).\n",
        mib(set.bundle_bytes),
        r.blobs,
        mib(r.fetches[0].case.bytes),
        mib(r.fetches.get(2).map_or(0, |f| f.case.bytes)),
    );
    let _ = writeln!(
        d,
        "| fetch | wall s median (min–max) | MB/s | client cpu s | server cpu s | server \
         cpu-s per GB | server peak RSS MiB |"
    );
    let _ = writeln!(d, "|---|---|---|---|---|---|---|");
    for f in &r.fetches {
        let c = &f.case;
        let _ = writeln!(
            d,
            "| {} | {:.2} ({:.2}–{:.2}) | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} |",
            c.name,
            c.median(),
            c.min(),
            c.max(),
            c.bytes as f64 / 1e6 / c.median(),
            c.cpu(),
            f.server_cpu(),
            f.cpu_per_gb(),
            f.server_rss_mib()
        );
    }
    let _ = writeln!(d, "\nExact commands:\n\n```sh");
    for f in &r.fetches {
        let _ = writeln!(d, "{}", f.case.command_line(&set.scratch));
    }
    let _ = writeln!(d, "```\n");
    let _ = writeln!(
        d,
        "Start-up, against reading the bundle once (MB/s of the bundle file):\n"
    );
    super::table(d, &[&r.startup, &r.openssl], &set.scratch);
    let _ = writeln!(d, "{END}\n");
}

/// The target rows of this part, each starting with [`ROW_PREFIX`].
pub(super) fn target_rows(d: &mut String, set: &SetResult) {
    let Some(r) = &set.serve else {
        return;
    };
    let find = |name: &str| r.fetches.iter().find(|f| f.case.name == name);
    let (Some(fa), Some(ra)) = (find(FERRY_ALL), find(REGISTRY_ALL)) else {
        return;
    };
    let label = &set.label;
    let wall = fa.case.median() / ra.case.median();
    let _ = writeln!(
        d,
        "{ROW_PREFIX}every blob, {PARALLEL} parallel `GET`s: `ferry serve` ≤ \
         {WALL_RATIO_TARGET:.1}× `docker-registry`'s wall time ({label}) | {wall:.2}× ({:.2} s vs \
         {:.2} s) | server {:.2}× ({:.2} / {:.2} cpu-s) | {} |",
        fa.case.median(),
        ra.case.median(),
        fa.server_cpu() / ra.server_cpu(),
        fa.server_cpu(),
        ra.server_cpu(),
        verdict(wall <= WALL_RATIO_TARGET)
    );
    let cpu = fa.cpu_per_gb() / ra.cpu_per_gb();
    let _ = writeln!(
        d,
        "{ROW_PREFIX}every blob, {PARALLEL} parallel `GET`s: `ferry serve` server CPU-seconds per \
         GB ≤ {CPU_RATIO_TARGET:.1}× `docker-registry`'s ({label}) | — | {cpu:.2}× ({:.2} vs \
         {:.2} cpu-s/GB) | {} |",
        fa.cpu_per_gb(),
        ra.cpu_per_gb(),
        verdict(cpu <= CPU_RATIO_TARGET)
    );
    let (s, o) = (&r.startup, &r.openssl);
    let start = s.median() / o.median();
    let _ = writeln!(
        d,
        "{ROW_PREFIX}`ferry serve` start-up (verification) ≤ {STARTUP_RATIO_TARGET:.1}× `openssl \
         dgst -sha256` of the bundle ({label}) | {start:.2}× ({:.2} s vs {:.2} s) | {:.2}× ({:.2} \
         / {:.2} cpu-s) | {} |",
        s.median(),
        o.median(),
        s.cpu() / o.cpu(),
        s.cpu(),
        o.cpu(),
        verdict(start <= STARTUP_RATIO_TARGET)
    );
    let peak = r
        .fetches
        .iter()
        .filter(|f| f.on_ferry)
        .map(Fetch::server_rss_mib)
        .fold(0.0, f64::max);
    let _ = writeln!(
        d,
        "{ROW_PREFIX}`ferry serve` peak RSS ≤ {RSS_TARGET_MIB:.0} MiB with {PARALLEL} concurrent \
         `GET`s ({label}) | {peak:.1} MiB while serving ({:.1} MiB at start-up, after the \
         verification pass) | — | {} |",
        s.rss_mib(),
        verdict(peak <= RSS_TARGET_MIB)
    );
}

/// Puts a newly rendered serve section and its target rows into an existing report (see
/// [`super::splice_part`]).
pub(super) fn splice(old: &str, section: &str, rows: &str) -> Option<String> {
    super::splice_part(old, (BEGIN, END, ROW_PREFIX), section, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_figures_of_this_process_are_read() {
        let pid = std::process::id();
        assert!(vm_hwm_kib(pid).unwrap() > 0);
        let before = proc_cpu(pid).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(proc_cpu(pid).unwrap() - before >= 0.1);
    }

    #[test]
    fn splice_places_the_serve_section_before_the_targets_and_replaces_it() {
        let old = "# B\n\n<!-- pull: begin -->\np\n<!-- pull: end -->\n\n## Targets\n\n| t | m | c | v |\n|---|---|---|---|\n| pull: a | 1 | — | ok |\n\n<!-- notes -->\nn\n";
        let first = splice(old, &format!("{BEGIN}\n\ns1\n{END}\n\n"), "| serve: r1 |\n").unwrap();
        assert_eq!(
            first,
            format!("# B\n\n<!-- pull: begin -->\np\n<!-- pull: end -->\n\n{BEGIN}\n\ns1\n{END}\n\n## Targets\n\n| t | m | c | v |\n|---|---|---|---|\n| pull: a | 1 | — | ok |\n| serve: r1 |\n\n<!-- notes -->\nn\n")
        );
        let second = splice(
            &first,
            &format!("{BEGIN}\n\ns2\n{END}\n\n"),
            "| serve: r2 |\n",
        )
        .unwrap();
        assert_eq!(second, first.replace("s1", "s2").replace("r1", "r2"));
    }
}

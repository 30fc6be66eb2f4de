//! `cargo xtask bench`: times ferry side by side with `tar -czf`, `tar -xzf` and
//! `openssl dgst -sha256` on a generated image set and writes `BENCHMARKS.md`.
//!
//! The image set is made here, deterministically: an OCI image layout with four images whose
//! main layer is a gzip stream of stored (level 0) blocks around a tar of keystream bytes (so
//! it is incompressible and cheap to make), a small compressible text layer per image, and a
//! two-platform index; next to it a `ferry.yaml` and a tiny chart. Every command runs under
//! `/usr/bin/time -f '%e %M %U %S'`, `--runs` times, rounds interleaved so that every command
//! sees the same machine load; `sync` runs (untimed) before every timed command.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

mod delta;
mod pull;
mod serve;

/// Everything from this line on in `BENCHMARKS.md` is hand-written and kept on rewrite.
const NOTES_MARKER: &str = "<!-- notes: kept when cargo xtask bench rewrites this file -->";
/// Target: `tar -czf` wall time divided by `ferry build` wall time, at least this.
const BUILD_SPEEDUP_TARGET: f64 = 30.0;
/// Target: `ferry verify` wall time divided by `openssl dgst -sha256` wall time, at most this.
const VERIFY_RATIO_TARGET: f64 = 1.5;
/// Target: peak RSS of `ferry build` and `ferry verify`, at most this many MiB.
const RSS_TARGET_MIB: f64 = 64.0;
/// "RSS does not grow": the 4 GiB peak may exceed the 1 GiB peak by at most this factor.
const RSS_GROWTH_SLACK: f64 = 1.10;
/// SOURCE_DATE_EPOCH given to `ferry build`.
const SOURCE_DATE_EPOCH: &str = "1700000000";
/// Number of images with a large incompressible layer.
const BIG_IMAGES: usize = 4;
const MIB: u64 = 1024 * 1024;
const GNU_TIME: &str = "/usr/bin/time";

/// What `cargo xtask bench` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Total size of the large layers, in MiB.
    pub size_mib: u64,
    /// How many times each command runs.
    pub runs: u32,
    /// Also run ferry on a 4 GiB set, to show that peak RSS does not grow with size.
    pub also_4g: bool,
    /// Keep the scratch folder.
    pub keep: bool,
    /// Which parts run.
    pub parts: Parts,
}

/// The parts of the benchmark; all of them run by default, side by side in one run.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    /// build, verify and extract against tar, gzip and openssl.
    pub core: bool,
    /// `ferry sign` (re-sign) against `cp` of the same bundle.
    pub sign: bool,
    /// `ferry load` against `tar -xzf` + `skopeo copy` into loopback registries.
    pub load: bool,
    /// `ferry egress check` of a synthetic 2,000-file chart.
    pub egress: bool,
    /// `ferry build` pulling from a loopback registry against `skopeo copy` + a layout build.
    pub pull: bool,
    /// `ferry serve` against a loopback registry, fetched with parallel `curl`.
    pub serve: bool,
    /// A delta build, `ferry merge` and `ferry join` on a generated release pair.
    pub delta: bool,
}

impl Parts {
    /// Every part when `part` is `None`, else only the named one (`core`, `sign`, `load`,
    /// `egress`, `pull`, `serve`, `delta`).
    pub fn only(part: Option<&str>) -> Parts {
        match part {
            None => Parts {
                core: true,
                sign: true,
                load: true,
                egress: true,
                pull: true,
                serve: true,
                delta: true,
            },
            Some(p) => Parts {
                core: p == "core",
                sign: p == "sign",
                load: p == "load",
                egress: p == "egress",
                pull: p == "pull",
                serve: p == "serve",
                delta: p == "delta",
            },
        }
    }

    fn flags(&self) -> [bool; 7] {
        [
            self.core,
            self.sign,
            self.load,
            self.egress,
            self.pull,
            self.serve,
            self.delta,
        ]
    }

    fn all(&self) -> bool {
        self.flags().iter().all(|&on| on)
    }

    /// `part` and no other part runs.
    fn alone(&self, part: bool) -> bool {
        part && self.flags().iter().filter(|&&on| on).count() == 1
    }

    /// Only the pull part: its section and target rows are spliced into the existing report.
    fn pull_only(&self) -> bool {
        self.alone(self.pull)
    }

    /// Only the serve part: spliced in the same way.
    fn serve_only(&self) -> bool {
        self.alone(self.serve)
    }

    /// Only the delta part: spliced in the same way.
    fn delta_only(&self) -> bool {
        self.alone(self.delta)
    }
}

/// Runs the benchmark, writes `BENCHMARKS.md` and prints the table.
pub fn run(opts: &Options) -> Result<ExitCode> {
    if opts.runs == 0 || opts.size_mib < 4 {
        eprintln!("error: --runs must be at least 1 and --size-mib at least 4");
        return Ok(ExitCode::from(2));
    }
    if !Path::new(GNU_TIME).exists() {
        eprintln!(
            "error: {GNU_TIME} (GNU time) is missing; install it with: apt-get install -y time"
        );
        return Ok(ExitCode::from(2));
    }
    let mut tools = vec![("tar", "tar"), ("gzip", "gzip"), ("openssl", "openssl")];
    if opts.parts.load || opts.parts.pull || opts.parts.serve {
        tools.push(("skopeo", "skopeo"));
        tools.push(("docker-registry", "docker-registry"));
    }
    if opts.parts.serve {
        tools.push(("curl", "curl"));
    }
    if opts.parts.delta {
        tools.push(("cmp", "diffutils"));
    }
    for (tool, pkg) in tools {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("error: `{tool}` is missing; install it with: apt-get install -y {pkg}");
            return Ok(ExitCode::from(2));
        }
    }

    let root = workspace_root();
    eprintln!("bench: cargo build --release -p ferry");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "ferry"])
        .current_dir(&root)
        .status()
        .context("running cargo build --release -p ferry")?;
    if !status.success() {
        bail!("cargo build --release -p ferry failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let ferry = root.join(target).join("release").join("ferry");

    let scratch = std::env::var_os("FERRY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ferry-bench"));
    if scratch.exists() {
        fs::remove_dir_all(&scratch)
            .with_context(|| format!("removing the old scratch folder {}", scratch.display()))?;
    }
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let result = run_in(opts, &root, &ferry, &scratch);
    if opts.keep {
        eprintln!("bench: kept {}", scratch.display());
    } else {
        let _ = fs::remove_dir_all(&scratch);
    }
    result
}

fn run_in(opts: &Options, root: &Path, ferry: &Path, scratch: &Path) -> Result<ExitCode> {
    let load_before = loadavg();
    let mut sets = vec![run_set(opts, ferry, scratch, opts.size_mib, true)?];
    if opts.also_4g && opts.parts.core {
        if !opts.keep {
            let _ = fs::remove_dir_all(scratch.join(format!("{}m", opts.size_mib)));
        }
        sets.push(run_set(opts, ferry, scratch, 4096, false)?);
    }
    let mut env = Environment::probe(ferry);
    env.load_before = load_before;
    env.load_after = loadavg();
    let doc = render(opts, &env, &sets);
    let path = root.join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).ok();
    // `bench pull`, `bench serve` or `bench delta` alone replaces only its section and target
    // rows of the last full report.
    let mut section = String::new();
    let mut rows = String::new();
    let spliced = if opts.parts.pull_only() {
        pull::section(&mut section, opts, &env, &sets[0]);
        pull::target_rows(&mut rows, &sets[0]);
        old.as_deref()
            .and_then(|o| pull::splice(o, &section, &rows))
    } else if opts.parts.serve_only() {
        serve::section(&mut section, opts, &env, &sets[0]);
        serve::target_rows(&mut rows, &sets[0]);
        old.as_deref()
            .and_then(|o| serve::splice(o, &section, &rows))
    } else if opts.parts.delta_only() {
        delta::section(&mut section, opts, &env, &sets[0]);
        delta::target_rows(&mut rows, &sets[0]);
        old.as_deref()
            .and_then(|o| delta::splice(o, &section, &rows))
    } else {
        None
    };
    let whole = spliced.unwrap_or_else(|| keep_notes(&doc, old.as_deref()));
    fs::write(&path, whole).with_context(|| format!("writing {}", path.display()))?;
    println!("{doc}");
    eprintln!("bench: wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------ image set ---

/// A generated image set on disk.
struct ImageSet {
    /// The spec folder: `ferry.yaml`, `charts/`, `images/layout/`.
    dir: PathBuf,
    blobs: usize,
    blob_bytes: u64,
    /// Sum of the sizes of every file in `dir`.
    tree_bytes: u64,
    refs: Vec<String>,
}

/// xoshiro256** keystream: deterministic, incompressible, several GB/s.
struct Keystream {
    s: [u64; 4],
    left: u64,
}

impl Keystream {
    fn new(seed: u64, len: u64) -> Self {
        // splitmix64 to spread the seed over the state.
        let mut z = seed;
        let mut s = [0u64; 4];
        for word in &mut s {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *word = x ^ (x >> 31);
        }
        Keystream { s, left: len }
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }
}

impl Read for Keystream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize & !7;
        let n = if n == 0 {
            (self.left as usize).min(buf.len())
        } else {
            n
        };
        let mut chunks = buf[..n].chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.next().to_le_bytes();
            let len = rest.len();
            rest.copy_from_slice(&w[..len]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An OCI descriptor of a written blob.
struct Blob {
    digest: String,
    size: u64,
}

struct Layout {
    blobs_dir: PathBuf,
    blobs: usize,
    bytes: u64,
}

impl Layout {
    fn put(&mut self, data: &[u8]) -> Result<Blob> {
        let hex = hex::encode(Sha256::digest(data));
        let path = self.blobs_dir.join(&hex);
        if !path.exists() {
            fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
            self.blobs += 1;
            self.bytes += data.len() as u64;
        }
        Ok(Blob {
            digest: format!("sha256:{hex}"),
            size: data.len() as u64,
        })
    }

    /// Writes a gzip layer holding a tar of `files` (path, contents reader, size), returning
    /// the layer blob and its diff ID.
    fn layer(
        &mut self,
        files: Vec<(String, Box<dyn Read>, u64)>,
        level: Compression,
    ) -> Result<(Blob, String)> {
        let tmp = self.blobs_dir.join(".partial");
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let outer = Hashing {
            inner: BufWriter::with_capacity(MIB as usize, file),
            hash: Sha256::new(),
            count: 0,
        };
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(outer, level);
        let inner = Hashing {
            inner: gz,
            hash: Sha256::new(),
            count: 0,
        };
        let mut tar = tar::Builder::new(inner);
        for (path, mut data, size) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, &path, &mut data)?;
        }
        let inner = tar.into_inner()?;
        let diff_id = format!("sha256:{}", hex::encode(inner.hash.finalize()));
        let mut outer = inner.inner.finish()?;
        outer.flush()?;
        let hex = hex::encode(outer.hash.finalize());
        let size = outer.count;
        let path = self.blobs_dir.join(&hex);
        fs::rename(&tmp, &path)?;
        self.blobs += 1;
        self.bytes += size;
        Ok((
            Blob {
                digest: format!("sha256:{hex}"),
                size,
            },
            diff_id,
        ))
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Log-like text of about `len` bytes; compresses roughly 4:1.
fn log_text(seed: u64, len: usize) -> Vec<u8> {
    let mut ks = Keystream::new(seed, u64::MAX);
    let mut out = Vec::with_capacity(len + 128);
    let levels = ["INFO", "DEBUG", "WARN", "INFO", "ERROR"];
    let words = [
        "request",
        "served",
        "upstream",
        "cache",
        "miss",
        "hit",
        "token",
        "refresh",
        "policy",
        "decision",
        "allow",
        "deny",
        "latency_ms",
        "bytes",
        "route",
        "gateway",
    ];
    let mut line = 0u64;
    while out.len() < len {
        let r = ks.next();
        let s = format!(
            "2026-11-26T12:{:02}:{:02}.{:03}Z {} {} {} {} id={:08x} {}={}\n",
            (line / 60) % 60,
            line % 60,
            r % 1000,
            levels[(r >> 10) as usize % levels.len()],
            words[(r >> 14) as usize % words.len()],
            words[(r >> 18) as usize % words.len()],
            words[(r >> 22) as usize % words.len()],
            (r >> 32) as u32,
            words[(r >> 26) as usize % words.len()],
            (r >> 40) % 5000,
        );
        out.extend_from_slice(s.as_bytes());
        line += 1;
    }
    out
}

fn config_json(arch: &str, variant: Option<&str>, diff_ids: &[String]) -> Vec<u8> {
    let mut c = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    if let Some(v) = variant {
        c["variant"] = v.into();
    }
    serde_json::to_vec(&c).expect("json")
}

fn manifest_json(config: &Blob, layers: &[Blob]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| serde_json::json!({ "mediaType": OCI_LAYER, "digest": l.digest, "size": l.size }))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size },
        "layers": layers,
    }))
    .expect("json")
}

fn text_file(path: &str, data: Vec<u8>) -> (String, Box<dyn Read>, u64) {
    let len = data.len() as u64;
    (path.to_string(), Box::new(io::Cursor::new(data)), len)
}

/// Generates the image set for `size_mib` MiB of large layers under `dir`.
fn generate(dir: &Path, size_mib: u64) -> Result<ImageSet> {
    let layout_dir = dir.join("images").join("layout");
    let blobs_dir = layout_dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs_dir)?;
    let mut layout = Layout {
        blobs_dir,
        blobs: 0,
        bytes: 0,
    };
    let mut index = Vec::new();
    let mut refs = Vec::new();
    let payload = size_mib * MIB / BIG_IMAGES as u64;
    for i in 1..=BIG_IMAGES {
        let name = format!("img{i}");
        let (big, big_id) = layout.layer(
            vec![(
                format!("opt/bench/{name}/payload.bin"),
                Box::new(Keystream::new(i as u64, payload)),
                payload,
            )],
            Compression::none(),
        )?;
        let (small, small_id) = layout.layer(
            vec![
                text_file(
                    "etc/bench-release",
                    format!("NAME=bench\nIMAGE={name}\nVERSION=1.0.0\n").into_bytes(),
                ),
                text_file("var/log/bench.log", log_text(100 + i as u64, 256 * 1024)),
            ],
            Compression::default(),
        )?;
        let config = layout.put(&config_json("amd64", None, &[big_id, small_id]))?;
        let manifest = layout.put(&manifest_json(&config, &[big, small]))?;
        index.push(serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": manifest.digest, "size": manifest.size,
            "annotations": { "org.opencontainers.image.ref.name": name },
        }));
        refs.push(name);
    }
    let mut platforms = Vec::new();
    for (n, (arch, variant)) in [("amd64", None), ("arm64", Some("v8"))]
        .into_iter()
        .enumerate()
    {
        let (layer, id) = layout.layer(
            vec![text_file(
                "var/log/multi.log",
                log_text(200 + n as u64, 64 * 1024),
            )],
            Compression::default(),
        )?;
        let config = layout.put(&config_json(arch, variant, &[id]))?;
        let manifest = layout.put(&manifest_json(&config, &[layer]))?;
        let mut platform = serde_json::json!({ "architecture": arch, "os": "linux" });
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        platforms.push(serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": manifest.digest, "size": manifest.size,
            "platform": platform,
        }));
    }
    let multi = layout.put(
        &serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms,
        }))
        .expect("json"),
    )?;
    index.push(serde_json::json!({
        "mediaType": OCI_INDEX, "digest": multi.digest, "size": multi.size,
        "annotations": { "org.opencontainers.image.ref.name": "multi" },
    }));
    refs.push("multi".to_string());
    fs::write(
        layout_dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index,
        }))?,
    )?;
    fs::write(
        layout_dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;

    let chart = dir.join("charts").join("bench");
    fs::create_dir_all(chart.join("templates"))?;
    fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: bench\ndescription: Benchmark chart\ntype: application\nversion: 1.0.0\nappVersion: \"1.0.0\"\n",
    )?;
    fs::write(
        chart.join("values.yaml"),
        "image:\n  registry: REGISTRY\n  tag: \"1.0\"\n",
    )?;
    fs::write(
        chart.join("templates").join("deployment.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: \"{{ .Values.image.registry }}/bench/img1:{{ .Values.image.tag }}\"\n",
    )?;
    let mut spec = String::from(
        "# Generated by `cargo xtask bench`.\nname: bench\nversion: 1.0.0\ncharts:\n  - charts/bench\nimages:\n",
    );
    for r in &refs {
        let _ = writeln!(
            spec,
            "  - ref: registry.example.com/bench/{r}:1.0\n    from: oci:images/layout:{r}"
        );
    }
    fs::write(dir.join("ferry.yaml"), spec)?;

    Ok(ImageSet {
        dir: dir.to_path_buf(),
        blobs: layout.blobs,
        blob_bytes: layout.bytes,
        tree_bytes: tree_size(dir)?,
        refs,
    })
}

fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            total += tree_size(&e.path())?;
        } else {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}

/// Runs `cmd` untimed, its output captured; fails with its stderr.
fn run_quiet(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Copies the regular files of a small folder tree.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        } else {
            fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Hard-links every file of a folder tree into a new tree (copies where linking fails).
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            link_tree(&e.path(), &dest)?;
        } else if fs::hard_link(e.path(), &dest).is_err() {
            fs::copy(e.path(), &dest)
                .with_context(|| format!("copying {} to {}", e.path().display(), dest.display()))?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- timing ---

/// One timed run, as GNU time reports it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    rss_kib: u64,
    cpu: f64,
    /// Peak used space of the sampled file system minus its used space at the start, bytes.
    disk: Option<u64>,
    /// Peak allocated size of the files under the sampled folder minus that at the start.
    disk_files: Option<u64>,
}

/// A command to time, with the untimed preparation before each run.
struct Case {
    name: String,
    /// Bytes per run, for MB/s.
    bytes: u64,
    argv: Vec<OsString>,
    env: Vec<(&'static str, String)>,
    /// Removed before each run (outputs of the previous one).
    clean: Vec<PathBuf>,
    /// Created (empty) before each run.
    mkdir: Option<PathBuf>,
    /// A folder whose file system's used space, and its own files' allocated size, are
    /// sampled during each run.
    disk: Option<PathBuf>,
    /// Its size (file or tree) is reported after the runs.
    output: Option<PathBuf>,
    samples: Vec<Sample>,
    output_bytes: Option<u64>,
    /// Exit codes other than 0 that count as success (`egress check` exits 1 on findings).
    ok_codes: Vec<i32>,
    /// Send stdout to /dev/null instead of reading it.
    stdout_null: bool,
    /// Shown in the report instead of `argv` (e.g. with `PORT` for a fresh port per run).
    display: Option<String>,
    /// Which table it belongs to: `core`, `sign`, `load` or `egress`.
    group: &'static str,
}

impl Case {
    fn new(name: &str, bytes: u64, argv: &[&dyn AsRef<std::ffi::OsStr>]) -> Case {
        Case {
            name: name.to_string(),
            bytes,
            argv: argv.iter().map(|a| a.as_ref().to_os_string()).collect(),
            env: Vec::new(),
            clean: Vec::new(),
            mkdir: None,
            disk: None,
            output: None,
            samples: Vec::new(),
            output_bytes: None,
            ok_codes: Vec::new(),
            stdout_null: false,
            display: None,
            group: "core",
        }
    }

    fn in_group(mut self, group: &'static str) -> Case {
        self.group = group;
        self
    }

    fn median(&self) -> f64 {
        median(self.samples.iter().map(|s| s.wall).collect())
    }
    fn min(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.wall)
            .fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.samples.iter().map(|s| s.wall).fold(0.0, f64::max)
    }
    fn cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| s.cpu).collect())
    }
    /// Peak disk use of the file system: median, min and max over the runs, when sampled.
    fn disk_stats(&self) -> Option<(u64, u64, u64)> {
        self.stats_of(|s| s.disk)
    }
    /// Peak allocated size of the files under the sampled folder: median, min and max.
    fn disk_files_stats(&self) -> Option<(u64, u64, u64)> {
        self.stats_of(|s| s.disk_files)
    }
    fn stats_of(&self, f: impl Fn(&Sample) -> Option<u64>) -> Option<(u64, u64, u64)> {
        let v: Vec<u64> = self.samples.iter().filter_map(f).collect();
        if v.is_empty() {
            return None;
        }
        let med = median(v.iter().map(|&b| b as f64).collect()) as u64;
        Some((med, *v.iter().min()?, *v.iter().max()?))
    }
    fn rss_mib(&self) -> f64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
    fn command_line(&self, scratch: &Path) -> String {
        if let Some(d) = &self.display {
            let root = format!("{}/", workspace_root().to_string_lossy());
            return d
                .replace(scratch.to_string_lossy().as_ref(), "$S")
                .replace(&root, "");
        }
        let mut s = String::new();
        for (k, v) in &self.env {
            let _ = write!(s, "{k}={v} ");
        }
        let words: Vec<String> = self
            .argv
            .iter()
            .map(|a| {
                let a = a.to_string_lossy();
                let p = scratch.to_string_lossy();
                let a = a.replace(p.as_ref(), "$S");
                // Show the ferry binary relative to the workspace.
                let root = workspace_root();
                let root = root.to_string_lossy();
                match a.strip_prefix(root.as_ref()) {
                    Some(rest) => rest.trim_start_matches('/').to_string(),
                    None => a,
                }
            })
            .collect();
        s + &words.join(" ")
    }
}

/// The median (lower middle for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

fn time_once(case: &Case, time_out: &Path) -> Result<Sample> {
    for p in &case.clean {
        if p.is_dir() {
            fs::remove_dir_all(p)?;
        } else if p.exists() {
            fs::remove_file(p)?;
        }
    }
    if let Some(p) = &case.mkdir {
        fs::create_dir_all(p)?;
    }
    Command::new("sync").status().context("running sync")?;
    let mut cmd = Command::new(GNU_TIME);
    cmd.args(["-f", "%e %M %U %S", "-o"])
        .arg(time_out)
        .args(&case.argv)
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    if case.stdout_null {
        cmd.stdout(Stdio::null());
    }
    let sampler = match &case.disk {
        Some(p) => Some(DiskSampler::start(p)?),
        None => None,
    };
    let out = cmd.output();
    let (disk, disk_files) = match sampler.map(DiskSampler::finish).transpose()? {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let out = out.with_context(|| format!("running {GNU_TIME}"))?;
    let accepted = out.status.success()
        || out
            .status
            .code()
            .is_some_and(|c| case.ok_codes.contains(&c));
    if !accepted {
        bail!(
            "`{}` failed ({}):\n{}{}",
            case.command_line(Path::new("/nonexistent")),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = fs::read_to_string(time_out)?;
    // GNU time may prefix lines such as "Command exited with non-zero status"; take the last.
    let line = text.lines().last().unwrap_or("");
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 4 {
        bail!("unexpected GNU time output: {text:?}");
    }
    Ok(Sample {
        wall: f[0].parse()?,
        rss_kib: f[1].parse()?,
        cpu: f[2].parse::<f64>()? + f[3].parse::<f64>()?,
        disk,
        disk_files,
    })
}

/// Used bytes of the file system holding `path` (`statvfs`: blocks minus free blocks). On
/// ext4 the free count already excludes delayed allocations, so unflushed writes count.
fn fs_used(path: &Path) -> Result<u64> {
    let s = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(s.f_blocks.saturating_sub(s.f_bfree) * s.f_frsize)
}

/// Allocated bytes (`st_blocks`) of every file under `dir`; files that vanish while it is
/// read (renamed temporary files) are skipped.
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        match e.path().symlink_metadata() {
            Ok(m) if m.is_dir() => total += allocated(&e.path()),
            Ok(m) => total += m.blocks() * 512,
            Err(_) => {}
        }
    }
    total
}

/// Samples, every [`DISK_SAMPLE_MS`] ms on a thread, the used space of one file system
/// (which other processes share) and the allocated size of the files under one folder on it
/// (which only the benchmark writes).
struct DiskSampler {
    start: (u64, u64),
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<(u64, u64)>>,
}

/// How often the disk sampler reads `statvfs`.
const DISK_SAMPLE_MS: u64 = 20;

impl DiskSampler {
    fn start(dir: &Path) -> Result<DiskSampler> {
        let start = (fs_used(dir)?, allocated(dir));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dir, flag) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut peak = start;
            loop {
                let done = flag.load(std::sync::atomic::Ordering::Relaxed);
                peak.0 = peak.0.max(fs_used(&dir)?);
                peak.1 = peak.1.max(allocated(&dir));
                if done {
                    return Ok(peak);
                }
                std::thread::sleep(std::time::Duration::from_millis(DISK_SAMPLE_MS));
            }
        });
        Ok(DiskSampler {
            start,
            stop,
            thread,
        })
    }

    /// Stops sampling; the peaks minus the values at the start (file system, own files).
    fn finish(self) -> Result<(u64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the disk sampler panicked"))??;
        Ok((
            peak.0.saturating_sub(self.start.0),
            peak.1.saturating_sub(self.start.1),
        ))
    }
}

fn size_of(p: &Path) -> Result<u64> {
    if p.is_dir() {
        tree_size(p)
    } else {
        Ok(fs::metadata(p)?.len())
    }
}

/// The results for one image set.
struct SetResult {
    label: String,
    size_mib: u64,
    blobs: usize,
    blob_bytes: u64,
    tree_bytes: u64,
    bundle_bytes: u64,
    refs: Vec<String>,
    cases: Vec<Case>,
    /// The synthetic chart of the egress part, when it ran.
    chart: Option<ChartStats>,
    /// What the serve part measured, when it ran.
    serve: Option<serve::Report>,
    /// The release pair of the delta part, when it ran.
    delta: Option<delta::Facts>,
    scratch: PathBuf,
}

impl SetResult {
    fn case(&self, name: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.name == name)
    }
    fn group(&self, group: &str) -> Vec<&Case> {
        self.cases.iter().filter(|c| c.group == group).collect()
    }
}

const FERRY_BUILD: &str = "ferry build";
const TAR_CZF: &str = "tar -czf (gzip -6)";
const FERRY_VERIFY: &str = "ferry verify";
const OPENSSL: &str = "openssl dgst -sha256 BUNDLE";

fn run_set(
    opts: &Options,
    ferry: &Path,
    scratch: &Path,
    size_mib: u64,
    full: bool,
) -> Result<SetResult> {
    let base = scratch.join(format!("{size_mib}m"));
    let set_dir = base.join("set");
    eprintln!(
        "bench: generating {size_mib} MiB image set in {}",
        set_dir.display()
    );
    let t = std::time::Instant::now();
    let set = generate(&set_dir, size_mib)?;
    eprintln!(
        "bench:   {} blobs, {:.1} MiB, in {:.1}s",
        set.blobs,
        set.blob_bytes as f64 / MIB as f64,
        t.elapsed().as_secs_f64()
    );
    let out = base.join("out");
    fs::create_dir_all(&out)?;
    let bundle = out.join("bundle.tar.gz");
    let spec = set.dir.join("ferry.yaml");
    let time_out = base.join("time.out");

    // The bundle must exist before the verify/extract cases run: build it once, untimed.
    let mut build = Case::new(
        FERRY_BUILD,
        set.tree_bytes,
        &[&ferry, &"--quiet", &"build", &"-f", &spec, &"-o", &bundle],
    );
    build
        .env
        .push(("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.into()));
    build.clean = vec![bundle.clone()];
    build.output = Some(bundle.clone());
    eprintln!("bench: warm-up build of {}", bundle.display());
    time_once(&build, &time_out)?;
    let bundle_bytes = fs::metadata(&bundle)?.len();

    let core = opts.parts.core;
    let mut cases = Vec::new();
    if core {
        cases.push(build);
    }
    if full && core {
        let tgz = out.join("tree.tar.gz");
        let mut c = Case::new(
            TAR_CZF,
            set.tree_bytes,
            &[&"tar", &"-C", &base, &"-czf", &tgz, &"set"],
        );
        c.clean = vec![tgz.clone()];
        c.output = Some(tgz);
        cases.push(c);
        let tf = out.join("tree.tar");
        let mut c = Case::new(
            "tar -cf (no compression)",
            set.tree_bytes,
            &[&"tar", &"-C", &base, &"-cf", &tf, &"set"],
        );
        c.clean = vec![tf.clone()];
        c.output = Some(tf);
        cases.push(c);
    }
    if core {
        cases.push(Case::new(
            FERRY_VERIFY,
            bundle_bytes,
            &[&ferry, &"--quiet", &"verify", &bundle],
        ));
        cases.push(Case::new(
            OPENSSL,
            bundle_bytes,
            &[&"openssl", &"dgst", &"-sha256", &bundle],
        ));
        let x = out.join("x-ferry");
        let mut c = Case::new(
            "ferry extract",
            bundle_bytes,
            &[&ferry, &"--quiet", &"extract", &bundle, &"-C", &x],
        );
        c.clean = vec![x.clone()];
        c.output = Some(x);
        cases.push(c);
    }
    if full && core {
        let x = out.join("x-tar");
        let mut c = Case::new(
            "tar -xzf BUNDLE",
            bundle_bytes,
            &[&"tar", &"-C", &x, &"-xzf", &bundle],
        );
        c.clean = vec![x.clone()];
        c.mkdir = Some(x.clone());
        c.output = Some(x);
        cases.push(c);
    }

    if full && opts.parts.sign {
        cases.extend(sign_cases(ferry, scratch, &out, &bundle)?);
    }
    let mut chart = None;
    if full && opts.parts.egress {
        let dir = scratch.join("egress").join("chart");
        eprintln!("bench: generating the egress chart in {}", dir.display());
        let stats = generate_chart(&dir, CHART_FILES, CHART_BYTES)?;
        let mut c = Case::new(
            FERRY_EGRESS,
            stats.bytes,
            &[&ferry, &"egress", &"check", &dir, &"--format", &"json"],
        )
        .in_group("egress");
        c.ok_codes = vec![1];
        c.stdout_null = true;
        c.display = Some(format!(
            "{} egress check {} --format json > /dev/null",
            ferry.display(),
            dir.display()
        ));
        cases.push(c);
        chart = Some(stats);
    }
    let mut load = if full && opts.parts.load {
        Some(Load::new(ferry, &base, &bundle, bundle_bytes))
    } else {
        None
    };
    let mut pull = if full && opts.parts.pull {
        Some(pull::Pull::new(ferry, &base, &set, &time_out)?)
    } else {
        None
    };
    let mut serve = if full && opts.parts.serve {
        Some(serve::Serve::new(
            ferry,
            &base,
            &set,
            &bundle,
            bundle_bytes,
        )?)
    } else {
        None
    };

    let mut delta = if full && opts.parts.delta {
        Some(delta::Delta::new(ferry, &base, &set, size_mib, &time_out)?)
    } else {
        None
    };

    for round in 1..=opts.runs {
        if let Some(d) = &mut delta {
            d.round(round, opts.runs, &time_out)?;
        }
        if let Some(l) = &mut load {
            l.round(round, opts.runs, &time_out)?;
        }
        if let Some(p) = &mut pull {
            p.round(round, opts.runs, &time_out)?;
        }
        if let Some(s) = &mut serve {
            s.round(round, opts.runs, &time_out)?;
        }
        for c in &mut cases {
            eprint!(
                "bench: {size_mib} MiB, run {round}/{}: {:<28}",
                opts.runs, c.name
            );
            let s = time_once(c, &time_out)?;
            eprintln!(
                " {:>7.2}s  {:>6.1} MiB RSS  {:>7.2}s cpu",
                s.wall,
                s.rss_kib as f64 / 1024.0,
                s.cpu
            );
            c.samples.push(s);
        }
    }
    if let Some(l) = load {
        cases.extend(l.into_cases());
    }
    if let Some(p) = pull {
        cases.extend(p.into_cases());
    }
    let delta = delta.map(|d| {
        let (c, facts) = d.into_parts();
        cases.extend(c);
        facts
    });
    for c in &mut cases {
        if let Some(p) = &c.output {
            c.output_bytes = Some(size_of(p)?);
        }
    }
    Ok(SetResult {
        label: if size_mib % 1024 == 0 {
            format!("{} GiB", size_mib / 1024)
        } else {
            format!("{size_mib} MiB")
        },
        size_mib,
        blobs: set.blobs,
        blob_bytes: set.blob_bytes,
        tree_bytes: set.tree_bytes,
        bundle_bytes,
        refs: set.refs,
        cases,
        chart,
        serve: serve.map(serve::Serve::into_report),
        delta,
        scratch: scratch.to_path_buf(),
    })
}

// --------------------------------------------------------------------- sign ---

const FERRY_SIGN: &str = "ferry sign (re-sign)";
const CP: &str = "cp BUNDLE";
const CP_MV: &str = "cp BUNDLE tmp && mv tmp over an existing file (control)";
/// Target: `ferry sign` wall time divided by `cp` of the same file, at most this.
const SIGN_RATIO_TARGET: f64 = 2.0;

/// Makes an unencrypted PKCS#8 P-256 key with openssl and a signed copy of the bundle, then
/// returns the re-sign case and the `cp` case it is compared with.
fn sign_cases(ferry: &Path, scratch: &Path, out: &Path, bundle: &Path) -> Result<Vec<Case>> {
    let key = scratch.join("sign.key");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .stdout(Stdio::null())
        .status()
        .context("running openssl genpkey")?;
    if !status.success() {
        bail!("openssl genpkey failed ({status})");
    }
    let signed = out.join("signed.tar.gz");
    fs::copy(bundle, &signed).with_context(|| format!("copying to {}", signed.display()))?;
    let first = Command::new(ferry)
        .arg("--quiet")
        .arg("sign")
        .arg(&signed)
        .arg("--key")
        .arg(&key)
        .output()
        .context("running ferry sign")?;
    if !first.status.success() {
        bail!(
            "ferry sign {} failed ({}): {}",
            signed.display(),
            first.status,
            String::from_utf8_lossy(&first.stderr)
        );
    }
    let bytes = fs::metadata(&signed)?.len();
    let mut s = Case::new(
        FERRY_SIGN,
        bytes,
        &[&ferry, &"--quiet", &"sign", &signed, &"--key", &key],
    )
    .in_group("sign");
    s.output = Some(signed.clone());
    let copy = out.join("copy.tar.gz");
    let mut c = Case::new(CP, bytes, &[&"cp", &signed, &copy]).in_group("sign");
    c.clean = vec![copy.clone()];
    c.output = Some(copy);
    // Control: the same atomic replace that `ferry sign` does (a new file renamed over an
    // existing one). On ext4 (auto_da_alloc) that rename starts writeback of the new file.
    let replaced = out.join("replaced.tar.gz");
    fs::copy(&signed, &replaced)?;
    let script = format!(
        "cp {a} {b}.tmp && mv {b}.tmp {b}",
        a = shell_quote(&signed.to_string_lossy()),
        b = shell_quote(&replaced.to_string_lossy())
    );
    let mut r = Case::new(CP_MV, bytes, &[&"sh", &"-c", &script]).in_group("sign");
    r.display = Some(script);
    r.output = Some(replaced);
    Ok(vec![s, c, r])
}

// ------------------------------------------------------------------- egress ---

const FERRY_EGRESS: &str = "ferry egress check --format json";
/// The synthetic chart: this many files ...
const CHART_FILES: usize = 2000;
/// ... of about this many bytes in all.
const CHART_BYTES: u64 = 50_000_000;
/// Target: `ferry egress check` of that chart, in seconds, below this.
const EGRESS_TARGET_S: f64 = 2.0;

/// What `generate_chart` wrote.
struct ChartStats {
    files: usize,
    bytes: u64,
    lines: usize,
    destinations: usize,
}

/// A Deployment document: 56 lines, 3 destinations (image registry, a `.Values` URL, a
/// literal `host:port`).
fn deployment_doc(f: usize, n: usize, k: usize) -> String {
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{{{ .Release.Name }}}}-w{f}-{n}
  labels:
    app.kubernetes.io/name: w{f}-{n}
    app.kubernetes.io/instance: {{{{ .Release.Name }}}}
    app.kubernetes.io/managed-by: Helm
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: w{f}-{n}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: w{f}-{n}
    spec:
      containers:
        - name: worker
          image: "{{{{ .Values.image.registry }}}}/bench/worker:{{{{ .Values.image.tag }}}}"
          imagePullPolicy: IfNotPresent
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
          env:
            - name: LOG_LEVEL
              value: info
            - name: UPSTREAM_URL
              value: {{{{ .Values.services.svc{k}.url | quote }}}}
            - name: WORKERS
              value: "4"
            - name: DB_ADDR
              value: "db{k}.partner{m}.internal:5432"
            - name: CACHE_TTL
              value: "300"
          resources:
            limits:
              cpu: 500m
              memory: 256Mi
            requests:
              cpu: 100m
              memory: 128Mi
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            initialDelaySeconds: 5
            periodSeconds: 10
          livenessProbe:
            httpGet:
              path: /livez
              port: http
            initialDelaySeconds: 15
          volumeMounts:
            - name: config
              mountPath: /etc/worker
"#,
        m = k % 7
    )
}

/// A ConfigMap document: 60 lines, 3 destinations (an OIDC discovery URL built from values,
/// an nginx `proxy_pass` to an in-cluster service, a telemetry endpoint).
fn configmap_doc(f: usize, n: usize, k: usize) -> String {
    format!(
        r#"---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{{{ .Release.Name }}}}-cm{f}-{n}
  labels:
    app.kubernetes.io/name: cm{f}-{n}
    app.kubernetes.io/instance: {{{{ .Release.Name }}}}
data:
  LOG_FORMAT: json
  FEATURE_FLAGS: "audit,cache,metrics"
  OIDC_DISCOVERY: "https://{{{{ .Values.global.domain }}}}/realms/r{k}/.well-known/openid-configuration"
  RETRY_LIMIT: "5"
  nginx.conf: |
    worker_processes 1;
    events {{
      worker_connections 1024;
    }}
    http {{
      sendfile on;
      keepalive_timeout 65;
      client_max_body_size 10m;
      server {{
        listen 8080;
        location /healthz {{
          return 200;
        }}
        location /api/ {{
          proxy_pass http://backend{k}.ns{m}.svc.cluster.local:8080;
          proxy_set_header Host $host;
          proxy_set_header X-Real-IP $remote_addr;
          proxy_read_timeout 30s;
        }}
        location /static/ {{
          root /usr/share/nginx/html;
          expires 1h;
        }}
      }}
    }}
  worker.yaml: |
    queue:
      name: jobs-{k}
      prefetch: 10
      ackTimeout: 30s
    pool:
      min: 2
      max: 16
    retry:
      initial: 1s
      max: 60s
      factor: 2
    telemetry:
      enabled: true
      interval: 60s
      batch: 100
      endpoint: https://collector{k}.metrics-vendor{m}.com:4318/v1/metrics
    tracing:
      sampler: parentbased_traceidratio
      ratio: 0.1
    logging:
      level: info
      format: json
"#,
        m = k % 5
    )
}

/// Writes a chart of `files` files and about `bytes` bytes under `dir`: `Chart.yaml`, a
/// `values.yaml` of 200 services, and templates of Deployments (three in four files) and
/// ConfigMaps with a destination about every 20 lines.
fn generate_chart(dir: &Path, files: usize, bytes: u64) -> Result<ChartStats> {
    const SERVICES: usize = 200;
    let templates = dir.join("templates");
    fs::create_dir_all(&templates)?;
    let mut stats = ChartStats {
        files: 0,
        bytes: 0,
        lines: 0,
        destinations: 0,
    };
    let mut put = |path: PathBuf, text: String, dests: usize| -> Result<()> {
        stats.files += 1;
        stats.bytes += text.len() as u64;
        stats.lines += text.lines().count();
        stats.destinations += dests;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    put(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: egress-bench\ndescription: Synthetic chart for the egress benchmark\ntype: application\nversion: 1.0.0\nappVersion: \"1.0.0\"\n".into(),
        0,
    )?;
    let mut values = String::from(
        "# Synthetic values for the egress benchmark.\nglobal:\n  domain: permit.yourcompany.com\nimage:\n  registry: registry.yourcompany.com\n  tag: \"1.0.0\"\nservices:\n",
    );
    for k in 0..SERVICES {
        let _ = write!(
            values,
            "  svc{k}:\n    url: https://api{k}.vendor{v}.com/v1\n    timeout: 30s\n    retries: 3\n",
            v = k % 17
        );
    }
    put(dir.join("values.yaml"), values, SERVICES + 2)?;
    let per_file = (bytes / files as u64) as usize;
    let mut k = 0usize;
    for f in 0..files - 2 {
        let configmaps = f % 4 == 3;
        let mut text = String::with_capacity(per_file + 4096);
        let mut n = 0;
        let mut dests = 0;
        while text.len() < per_file {
            k = (k + 1) % SERVICES;
            if configmaps {
                text.push_str(&configmap_doc(f, n, k));
            } else {
                text.push_str(&deployment_doc(f, n, k));
            }
            dests += 3;
            n += 1;
        }
        let kind = if configmaps { "configmaps" } else { "workers" };
        put(templates.join(format!("{f:04}-{kind}.yaml")), text, dests)?;
    }
    Ok(stats)
}

// --------------------------------------------------------------------- load ---

const FERRY_LOAD_COLD: &str = "ferry load (cold)";
const FERRY_LOAD_WARM: &str = "ferry load (warm re-load)";
const TAR_XZF_LOAD: &str = "tar -xzf BUNDLE (pair, step 1)";
const SKOPEO_COLD: &str = "skopeo copy --all, every image (pair, step 2, cold)";
const PAIR_COLD: &str = "tar -xzf + skopeo copy (cold pair)";
const SKOPEO_WARM: &str = "skopeo copy --all, every image (warm)";
/// Target: `ferry load` wall time divided by the compared wall time, at most this.
const LOAD_RATIO_TARGET: f64 = 0.5;
/// Target: peak RSS of `ferry load`, at most this many MiB.
const LOAD_RSS_TARGET_MIB: f64 = 128.0;

/// A throwaway CNCF distribution registry on a free loopback port, killed (and its storage
/// removed) on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Result<Registry> {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        let storage = dir.join("storage");
        fs::create_dir_all(&storage)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: x\n",
                storage.display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker-registry serve (apt-get install -y docker-registry)")?;
        let mut reg = Registry {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let start = std::time::Instant::now();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let _ = s.write_all(
                    b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                );
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).is_ok() && &head[8..] == b" 200" {
                    return Ok(reg);
                }
            }
            if let Ok(Some(st)) = reg.child.try_wait() {
                bail!("docker-registry on 127.0.0.1:{port} exited at start ({st})");
            }
            if start.elapsed().as_secs() > 20 {
                bail!("docker-registry on 127.0.0.1:{port} did not answer /v2/ within 20 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The load part: per round, a fresh registry for ferry (cold, then warm) and a fresh one for
/// the tar + skopeo pair (cold, then warm).
struct Load {
    ferry: PathBuf,
    base: PathBuf,
    bundle: PathBuf,
    ferry_cold: Case,
    ferry_warm: Case,
    tar: Case,
    skopeo_cold: Case,
    pair: Case,
    skopeo_warm: Case,
}

/// The opening of a part's section: its begin marker, its title (with the set's label) and
/// the command line, date and load that measured it.
fn section_head(
    d: &mut String,
    begin: &str,
    title: &str,
    opts: &Options,
    env: &Environment,
    set: &SetResult,
) {
    let _ = writeln!(d, "{begin}\n");
    let _ = writeln!(d, "### {title} ({})\n", set.label);
    let _ = writeln!(
        d,
        "Measured by `{}` ({}; load average {} before the first timed command, {} after the \
         last).\n",
        command_line(opts),
        env.date,
        env.load_before,
        env.load_after
    );
}

/// Double quotes, so that `$S` in the report still expands when pasted (the paths hold no
/// `"`, `$`, `` ` `` or a backslash).
fn shell_quote(s: &str) -> String {
    format!("\"{s}\"")
}

impl Load {
    fn new(ferry: &Path, base: &Path, bundle: &Path, bundle_bytes: u64) -> Load {
        let case = |name: &str| Case::new(name, bundle_bytes, &[]).in_group("load");
        Load {
            ferry: ferry.to_path_buf(),
            base: base.to_path_buf(),
            bundle: bundle.to_path_buf(),
            ferry_cold: case(FERRY_LOAD_COLD),
            ferry_warm: case(FERRY_LOAD_WARM),
            tar: case(TAR_XZF_LOAD),
            skopeo_cold: case(SKOPEO_COLD),
            pair: case(PAIR_COLD),
            skopeo_warm: case(SKOPEO_WARM),
        }
    }

    /// The skopeo script copying every image of the extracted bundle in `x` to `port`.
    fn skopeo_script(x: &Path, port: &str) -> Result<String> {
        let layout = fs::read_dir(x)?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("images"))
            .find(|p| p.join("index.json").is_file())
            .with_context(|| format!("no NAME-VERSION/images/index.json under {}", x.display()))?;
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
        let mut script = String::from("set -e\n");
        for m in index["manifests"].as_array().into_iter().flatten() {
            let Some(r) = m["annotations"]["org.opencontainers.image.ref.name"].as_str() else {
                continue;
            };
            // registry.example.com/bench/img1:1.0 -> bench/img1:1.0
            let path = r.split_once('/').map(|(_, p)| p).unwrap_or(r);
            let _ = writeln!(
                script,
                "skopeo --insecure-policy copy --quiet --all --dest-tls-verify=false {} {}",
                shell_quote(&format!("oci:{}:{r}", layout.display())),
                shell_quote(&format!("docker://127.0.0.1:{port}/s/{path}"))
            );
        }
        Ok(script)
    }

    fn time(case: &mut Case, round: u32, runs: u32, time_out: &Path) -> Result<Sample> {
        eprint!("bench: load, run {round}/{runs}: {:<52}", case.name);
        let s = time_once(case, time_out)?;
        eprintln!(
            " {:>7.2}s  {:>6.1} MiB RSS  {:>7.2}s cpu",
            s.wall,
            s.rss_kib as f64 / 1024.0,
            s.cpu
        );
        case.samples.push(s);
        Ok(s)
    }

    fn round(&mut self, round: u32, runs: u32, time_out: &Path) -> Result<()> {
        {
            let reg = Registry::start(&self.base.join("registry-ferry"))?;
            let target = format!("127.0.0.1:{}/b", reg.port);
            let argv: Vec<OsString> = vec![
                self.ferry.clone().into(),
                "--quiet".into(),
                "load".into(),
                self.bundle.clone().into(),
                "--registry".into(),
                target.into(),
                "--plain-http".into(),
            ];
            let display = format!(
                "{} --quiet load {} --registry 127.0.0.1:PORT/b --plain-http",
                self.ferry.display(),
                self.bundle.display()
            );
            for c in [&mut self.ferry_cold, &mut self.ferry_warm] {
                c.argv = argv.clone();
                c.display = Some(display.clone());
                Self::time(c, round, runs, time_out)?;
            }
        }
        let reg = Registry::start(&self.base.join("registry-skopeo"))?;
        let x = self.base.join("out").join("x-load");
        self.tar.argv = vec![
            "tar".into(),
            "-C".into(),
            x.clone().into(),
            "-xzf".into(),
            self.bundle.clone().into(),
        ];
        self.tar.clean = vec![x.clone()];
        self.tar.mkdir = Some(x.clone());
        let t = Self::time(&mut self.tar, round, runs, time_out)?;
        let script = Self::skopeo_script(&x, &reg.port.to_string())?;
        let display = Self::skopeo_script(&x, "PORT")?
            .trim_start_matches("set -e\n")
            .trim_end()
            .to_string();
        let script_path = self.base.join("skopeo.sh");
        fs::write(&script_path, &script)?;
        for c in [&mut self.skopeo_cold, &mut self.skopeo_warm] {
            c.argv = vec!["sh".into(), script_path.clone().into()];
            c.display = Some(display.clone());
        }
        let s = Self::time(&mut self.skopeo_cold, round, runs, time_out)?;
        self.pair.samples.push(Sample {
            wall: t.wall + s.wall,
            rss_kib: t.rss_kib.max(s.rss_kib),
            cpu: t.cpu + s.cpu,
            disk: None,
            disk_files: None,
        });
        Self::time(&mut self.skopeo_warm, round, runs, time_out)?;
        drop(reg);
        let _ = fs::remove_dir_all(&x);
        Ok(())
    }

    fn into_cases(self) -> Vec<Case> {
        let mut pair = self.pair;
        pair.display = Some(
            "(the two commands above, one after the other; wall and cpu are their sums)".into(),
        );
        vec![
            self.ferry_cold,
            self.tar,
            self.skopeo_cold,
            pair,
            self.ferry_warm,
            self.skopeo_warm,
        ]
    }
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ------------------------------------------------------------------- report ---

/// Facts about the machine and the tools.
struct Environment {
    date: String,
    nproc: String,
    cpu: String,
    mem: String,
    kernel: String,
    tools: Vec<String>,
    /// `/proc/loadavg` (1, 5, 15 min) before the first and after the last timed command.
    load_before: String,
    load_after: String,
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(_) => format!("{cmd}: not found"),
    }
}

impl Environment {
    fn probe(ferry: &Path) -> Environment {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let sha_ni = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni"));
        let mem = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .map(|k| format!("{:.1} GiB", k / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        Environment {
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            nproc: first_line("nproc", &[]),
            cpu: format!(
                "{cpu}{}",
                if sha_ni {
                    " (SHA-NI present)"
                } else {
                    " (no SHA-NI)"
                }
            ),
            mem,
            kernel: first_line("uname", &["-r"]),
            tools: vec![
                first_line(&ferry.to_string_lossy(), &["--version"]),
                first_line("tar", &["--version"]),
                first_line("gzip", &["--version"]),
                first_line("openssl", &["version"]),
                gnu_time_version(),
                first_line("rustc", &["--version"]),
                first_line("skopeo", &["--version"]),
                format!(
                    "docker-registry {}",
                    first_line("dpkg-query", &["-W", "-f", "${Version}", "docker-registry"])
                ),
            ],
            load_before: String::new(),
            load_after: String::new(),
        }
    }
}

/// GNU time as Debian builds it says "UNKNOWN" for its version; ask dpkg then.
fn gnu_time_version() -> String {
    let v = first_line(GNU_TIME, &["--version"]);
    if !v.contains("UNKNOWN") {
        return v;
    }
    match first_line("dpkg-query", &["-W", "-f", "${Version}", "time"]) {
        d if !d.is_empty() && !d.contains("not found") && !d.contains("no packages") => {
            format!("GNU time {d} (Debian package)")
        }
        _ => v,
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB as f64)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**PASS**"
    } else {
        "**FAIL**"
    }
}

/// The `cargo xtask bench …` command line that `opts` stands for.
fn command_line(opts: &Options) -> String {
    let mut cmd = String::from("cargo xtask bench");
    if !opts.parts.all() {
        for (on, name) in [
            (opts.parts.core, "core"),
            (opts.parts.sign, "sign"),
            (opts.parts.load, "load"),
            (opts.parts.egress, "egress"),
            (opts.parts.pull, "pull"),
            (opts.parts.serve, "serve"),
            (opts.parts.delta, "delta"),
        ] {
            if on {
                let _ = write!(cmd, " {name}");
            }
        }
    }
    if opts.size_mib != 1024 {
        let _ = write!(cmd, " --size-mib {}", opts.size_mib);
    }
    let _ = write!(cmd, " --runs {}", opts.runs);
    if opts.also_4g {
        cmd.push_str(" --also-4g");
    }
    cmd
}

fn render(opts: &Options, env: &Environment, sets: &[SetResult]) -> String {
    let mut d = String::new();
    let cmd = command_line(opts);
    let _ = writeln!(d, "# Benchmarks\n");
    let _ = writeln!(
        d,
        "Written by `cargo xtask bench` (xtask/src/bench.rs). Rerunning it rewrites everything \
         above the notes marker at the end; hand-written notes go below that marker.\n"
    );
    let _ = writeln!(d, "- Command: `{cmd}`");
    let _ = writeln!(d, "- Date: {}", env.date);
    let _ = writeln!(
        d,
        "- Machine: `nproc` = {}, CPU `{}`, {} RAM, kernel {}",
        env.nproc, env.cpu, env.mem, env.kernel
    );
    let _ = writeln!(d, "- Tools: {}", env.tools.join("; "));
    let _ = writeln!(
        d,
        "- Load average (`/proc/loadavg`, 1/5/15 min): {} before the first timed command, {} \
         after the last",
        env.load_before, env.load_after
    );
    let _ = writeln!(d);

    let _ = writeln!(d, "## Method\n");
    let _ = writeln!(
        d,
        "The image set is generated by the xtask: an OCI image layout with {BIG_IMAGES} images \
         (`img1`..`img{BIG_IMAGES}`), each with one large layer that is a valid gzip stream of \
         stored (level 0) blocks around a tar of xoshiro256\\*\\* keystream bytes, so it is \
         incompressible, plus a 256 KiB log-text layer (gzip -6); and `multi`, an index of \
         linux/amd64 and linux/arm64/v8 manifests with a 64 KiB text layer each. Next to the \
         layout: a `ferry.yaml` naming the five images and a three-file chart. `tar` archives that \
         same folder (`set/`), so both tools pack the same bytes.\n"
    );
    let _ = writeln!(
        d,
        "Each command ran {} times; rounds are interleaved (every command once, then again) so \
         that all commands see the same load on this shared machine. Every command runs under \
         `/usr/bin/time -f '%e %M %U %S'`: wall is `%e`, peak RSS is `%M` (the largest single \
         process, e.g. `gzip` under `tar -z`), cpu is user+sys of the command and its children. \
         The table shows the median wall time with min–max. **Warm page cache**: nothing is \
         dropped from caches (the data set fits in RAM many times over); outputs go to the page \
         cache and are not fsync'ed; `sync` runs, untimed, before every timed command. MB/s is \
         10^6 bytes per second of the tree (build, `tar -c`) or of the bundle file (verify, \
         `openssl`, extract). `ferry build` runs with `SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}` \
         after one untimed warm-up build; `$S` is the scratch folder (`$FERRY_BENCH_DIR`, \
         default `/tmp/ferry-bench`).\n",
        opts.runs
    );

    for set in sets {
        let _ = writeln!(d, "## {} image set\n", set.label);
        let _ = writeln!(
            d,
            "{} blobs, {} of blobs ({} MiB requested); the tree (`set/`) is {}; the ferry bundle \
             is {}. Images: {}.\n",
            set.blobs,
            mib(set.blob_bytes),
            set.size_mib,
            mib(set.tree_bytes),
            mib(set.bundle_bytes),
            set.refs
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        table(&mut d, &set.group("core"), &set.scratch);
        if !set.group("sign").is_empty() {
            let _ = writeln!(d, "### Re-sign ({})\n", set.label);
            let _ = writeln!(
                d,
                "`ferry sign` re-signs a signed copy of the bundle in place (the key is an \
                 unencrypted PKCS#8 P-256 key made by `openssl genpkey`); `cp` copies the same \
                 file to a new one (removed before each run); the control row copies it and \
                 renames the copy over an existing file, the atomic replace that `ferry sign` \
                 does. MB/s is of the bundle file.\n"
            );
            table(&mut d, &set.group("sign"), &set.scratch);
        }
        if !set.group("load").is_empty() {
            let _ = writeln!(d, "### Load into a loopback registry ({})\n", set.label);
            let _ = writeln!(
                d,
                "Every run starts a new `docker-registry serve` (CNCF distribution) on a new free \
                 127.0.0.1 port with empty temporary storage, once for ferry and once for the \
                 tar + skopeo pair, so each cold push goes to an empty registry and skopeo's \
                 blob-info cache (keyed by registry host and port) cannot short-cut it. The warm \
                 rows push the same images again to the same registry, everything present. Both \
                 registries log only errors and no access log. Peak RSS and cpu are of the \
                 client side only; the registry process is not counted for either tool. MB/s is \
                 of the bundle file. The pair's row is per run the sum of its two steps; its \
                 RSS the larger.\n"
            );
            table(&mut d, &set.group("load"), &set.scratch);
        }
        if !set.group("pull").is_empty() {
            pull::section(&mut d, opts, env, set);
        }
        serve::section(&mut d, opts, env, set);
        if let Some(chart) = &set.chart {
            let _ = writeln!(d, "### Egress check of a synthetic chart\n");
            let _ = writeln!(
                d,
                "A generated chart folder of {} files, {:.1} MB, {} lines: `Chart.yaml`, a \
                 `values.yaml` of 200 services, and templates — three in four files hold \
                 Deployments (registry from `.Values`, an upstream URL `.Values...url | quote`, a \
                 literal `host:port` env var), the others ConfigMaps (an OIDC discovery URL built \
                 from `.Values.global.domain`, an nginx `proxy_pass` to a `*.svc.cluster.local` \
                 service, a telemetry endpoint in an embedded YAML file). About {} destinations, \
                 one every {:.0} lines; the rest is plain YAML. No allow-list, so the check exits 1 \
                 (unknown destinations), which counts as success here. MB/s is of the chart.\n",
                chart.files,
                chart.bytes as f64 / 1e6,
                chart.lines,
                chart.destinations,
                chart.lines as f64 / chart.destinations.max(1) as f64
            );
            table(&mut d, &set.group("egress"), &set.scratch);
        }
        delta::section(&mut d, opts, env, set);
    }

    let _ = writeln!(d, "## Targets\n");
    let _ = writeln!(
        d,
        "Verdicts are by wall-time medians, as the targets are stated. The CPU column gives the \
         same ratio from the median user+sys times, which vary less with the machine's load \
         (load average {} before the run, {} after).\n",
        env.load_before, env.load_after
    );
    let _ = writeln!(d, "| target | measured (wall) | by CPU time | verdict |");
    let _ = writeln!(d, "|---|---|---|---|");
    let first = &sets[0];
    if let (Some(b), Some(t)) = (first.case(FERRY_BUILD), first.case(TAR_CZF)) {
        let r = t.median() / b.median();
        let _ = writeln!(
            d,
            "| build ≥ {BUILD_SPEEDUP_TARGET:.0}× faster than `tar -czf` ({}) | {:.1}× ({:.2} s vs {:.2} s) | {:.1}× ({:.2} / {:.2} cpu-s) | {} |",
            first.label,
            r,
            t.median(),
            b.median(),
            t.cpu() / b.cpu(),
            t.cpu(),
            b.cpu(),
            verdict(r >= BUILD_SPEEDUP_TARGET)
        );
    }
    let ratio_row = |d: &mut String, what: &str, a: &Case, b: &Case, target: f64| {
        let r = a.median() / b.median();
        let _ = writeln!(
            d,
            "| {what} | {r:.2}× ({:.2} s vs {:.2} s) | {} ({:.2} / {:.2} cpu-s) | {} |",
            a.median(),
            b.median(),
            if b.cpu() > 0.0 {
                format!("{:.2}×", a.cpu() / b.cpu())
            } else {
                "—".into()
            },
            a.cpu(),
            b.cpu(),
            verdict(r <= target)
        );
    };
    for set in sets {
        if let (Some(v), Some(o)) = (set.case(FERRY_VERIFY), set.case(OPENSSL)) {
            ratio_row(
                &mut d,
                &format!(
                    "verify ≤ {VERIFY_RATIO_TARGET}× `openssl dgst -sha256` of the bundle ({})",
                    set.label
                ),
                v,
                o,
                VERIFY_RATIO_TARGET,
            );
        }
    }
    if let (Some(s), Some(c)) = (first.case(FERRY_SIGN), first.case(CP)) {
        ratio_row(
            &mut d,
            &format!(
                "re-sign ≤ {SIGN_RATIO_TARGET:.0}× `cp` of the bundle ({})",
                first.label
            ),
            s,
            c,
            SIGN_RATIO_TARGET,
        );
        if let Some(m) = first.case(CP_MV) {
            let _ = writeln!(
                d,
                "| (control, no target) re-sign vs `cp` + `mv` over an existing file ({}) | {:.2}× ({:.2} s vs {:.2} s) | {:.2}× ({:.2} / {:.2} cpu-s) | — |",
                first.label,
                s.median() / m.median(),
                s.median(),
                m.median(),
                s.cpu() / m.cpu(),
                s.cpu(),
                m.cpu()
            );
        }
    }
    if let (Some(f), Some(p)) = (first.case(FERRY_LOAD_COLD), first.case(PAIR_COLD)) {
        ratio_row(
            &mut d,
            &format!(
                "`ferry load` cold ≤ {LOAD_RATIO_TARGET}× `tar -xzf` + `skopeo copy --all` ({})",
                first.label
            ),
            f,
            p,
            LOAD_RATIO_TARGET,
        );
    }
    if let (Some(f), Some(p)) = (first.case(FERRY_LOAD_WARM), first.case(SKOPEO_WARM)) {
        ratio_row(
            &mut d,
            &format!(
                "`ferry load` warm re-load ≤ {LOAD_RATIO_TARGET}× `skopeo copy --all` warm ({})",
                first.label
            ),
            f,
            p,
            LOAD_RATIO_TARGET,
        );
    }
    for set in sets {
        for name in [FERRY_BUILD, FERRY_VERIFY] {
            if let Some(c) = set.case(name) {
                let _ = writeln!(
                    d,
                    "| `{name}` peak RSS ≤ {RSS_TARGET_MIB:.0} MiB ({}) | {:.1} MiB | — | {} |",
                    set.label,
                    c.rss_mib(),
                    verdict(c.rss_mib() <= RSS_TARGET_MIB)
                );
            }
        }
    }
    for name in [FERRY_LOAD_COLD, FERRY_LOAD_WARM] {
        if let Some(c) = first.case(name) {
            let _ = writeln!(
                d,
                "| `{name}` peak RSS ≤ {LOAD_RSS_TARGET_MIB:.0} MiB ({}) | {:.1} MiB | — | {} |",
                first.label,
                c.rss_mib(),
                verdict(c.rss_mib() <= LOAD_RSS_TARGET_MIB)
            );
        }
    }
    if let (Some(c), Some(chart)) = (first.case(FERRY_EGRESS), &first.chart) {
        let _ = writeln!(
            d,
            "| `ferry egress check` of {} files / {:.0} MB < {EGRESS_TARGET_S:.0} s | {:.2} s ({:.2}–{:.2}) | {:.2} cpu-s | {} |",
            chart.files,
            chart.bytes as f64 / 1e6,
            c.median(),
            c.min(),
            c.max(),
            c.cpu(),
            verdict(c.median() < EGRESS_TARGET_S)
        );
    }
    pull::target_rows(&mut d, first);
    serve::target_rows(&mut d, first);
    delta::target_rows(&mut d, first);
    if sets.len() > 1 {
        let (a, b) = (&sets[0], &sets[sets.len() - 1]);
        for name in [FERRY_BUILD, FERRY_VERIFY] {
            if let (Some(x), Some(y)) = (a.case(name), b.case(name)) {
                let _ = writeln!(
                    d,
                    "| `{name}` peak RSS does not grow ({} → {}, ≤ {:.0} % more) | {:.1} → {:.1} MiB | — | {} |",
                    a.label,
                    b.label,
                    (RSS_GROWTH_SLACK - 1.0) * 100.0,
                    x.rss_mib(),
                    y.rss_mib(),
                    verdict(y.rss_mib() <= x.rss_mib() * RSS_GROWTH_SLACK)
                );
            }
        }
    } else if opts.parts.core {
        let _ = writeln!(
            d,
            "| peak RSS does not grow with size (needs `--also-4g`) | not measured | — | — |"
        );
    }
    if sets.len() > 1 {
        let _ = writeln!(
            d,
            "\nThe 4 GiB set runs only ferry and `openssl` (a `tar -czf` of 4 GiB takes over three \
             minutes a run here and adds nothing to the RSS question)."
        );
    }
    d
}

/// Puts a newly rendered part section (between the markers `begin` and `end`) and its target
/// rows (each starting with `row_prefix`) into an existing report: the old section (or, when
/// there is none, the place before `## Targets`) and the old rows are replaced; everything
/// else is kept. `None` when `old` has no targets table.
fn splice_part(
    old: &str,
    (begin, end, row_prefix): (&str, &str, &str),
    section: &str,
    rows: &str,
) -> Option<String> {
    let mut doc = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => {
            let after = old[e + end.len()..].trim_start_matches('\n');
            format!("{}{}{}", &old[..b], section, after)
        }
        _ => {
            let t = old.find("\n## Targets")? + 1;
            format!("{}{}{}", &old[..t], section, &old[t..])
        }
    };
    let kept: Vec<&str> = doc.lines().filter(|l| !l.starts_with(row_prefix)).collect();
    let targets = kept.iter().position(|l| *l == "## Targets")?;
    let head = targets + kept[targets..].iter().position(|l| l.starts_with("|---"))?;
    let end = head
        + kept[head..]
            .iter()
            .take_while(|l| l.starts_with('|'))
            .count();
    let mut lines: Vec<&str> = kept[..end].to_vec();
    lines.extend(rows.lines());
    lines.extend(&kept[end..]);
    doc = lines.join("\n");
    doc.push('\n');
    Some(doc)
}

/// The new generated text followed by the hand-written notes of the old file, if any.
fn keep_notes(generated: &str, old: Option<&str>) -> String {
    let mut out = generated.trim_end().to_string();
    out.push('\n');
    if let Some(notes) = old.and_then(|o| o.find(NOTES_MARKER).map(|i| &o[i..])) {
        out.push('\n');
        out.push_str(notes);
    }
    out
}

/// A table of timed commands followed by their exact command lines.
fn table(d: &mut String, cases: &[&Case], scratch: &Path) {
    if cases.is_empty() {
        return;
    }
    let with_disk = cases.iter().any(|c| c.disk_stats().is_some());
    let _ = writeln!(
        d,
        "| command | wall s median (min–max) | MB/s | peak RSS MiB | cpu s | {}output |",
        if with_disk {
            "peak disk MiB median (min–max): file system / own files | "
        } else {
            ""
        }
    );
    let _ = writeln!(
        d,
        "|---|---|---|---|---|{}---|",
        if with_disk { "---|" } else { "" }
    );
    for c in cases {
        let med = c.median();
        let disk = match (c.disk_stats(), c.disk_files_stats()) {
            (Some((m, lo, hi)), Some((fm, flo, fhi))) => {
                let f = |b: u64| b as f64 / MIB as f64;
                format!(
                    "{:.1} ({:.1}–{:.1}) / {:.1} ({:.1}–{:.1}) | ",
                    f(m),
                    f(lo),
                    f(hi),
                    f(fm),
                    f(flo),
                    f(fhi)
                )
            }
            _ if with_disk => " | ".to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            d,
            "| {} | {:.2} ({:.2}–{:.2}) | {} | {:.1} | {:.2} | {disk}{} |",
            c.name,
            med,
            c.min(),
            c.max(),
            if med > 0.0 {
                format!("{:.0}", c.bytes as f64 / 1e6 / med)
            } else {
                "—".into()
            },
            c.rss_mib(),
            c.cpu(),
            c.output_bytes.map(mib).unwrap_or_default()
        );
    }
    let _ = writeln!(d, "\nExact commands:\n\n```sh");
    for c in cases {
        let _ = writeln!(d, "{}", c.command_line(scratch));
    }
    let _ = writeln!(d, "```\n");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystream_is_deterministic_and_exact_length() {
        let mut a = Vec::new();
        Keystream::new(7, 1001).read_to_end(&mut a).unwrap();
        let mut b = Vec::new();
        Keystream::new(7, 1001).read_to_end(&mut b).unwrap();
        assert_eq!(a.len(), 1001);
        assert_eq!(a, b);
        let mut c = Vec::new();
        Keystream::new(8, 1001).read_to_end(&mut c).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn generated_layers_are_valid_gzip_with_matching_digests() {
        let dir = tempfile::tempdir().unwrap();
        let set = generate(dir.path(), 4).unwrap();
        assert_eq!(set.refs.len(), BIG_IMAGES + 1);
        let blobs = dir.path().join("images/layout/blobs/sha256");
        for e in fs::read_dir(&blobs).unwrap() {
            let p = e.unwrap().path();
            let data = fs::read(&p).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&data)),
                p.file_name().unwrap().to_string_lossy()
            );
            if data.starts_with(b"\x1f\x8b") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&data[..])
                    .read_to_end(&mut out)
                    .unwrap();
                assert!(!out.is_empty());
            }
        }
        // The large layers are stored, not compressed: about the payload size.
        assert!(set.blob_bytes >= 4 * MIB);
    }

    #[test]
    fn notes_below_the_marker_survive_a_rewrite() {
        let old = format!("# Benchmarks\nold table\n\n{NOTES_MARKER}\n## Notes\nkept\n");
        let new = keep_notes("# Benchmarks\nnew table\n", Some(&old));
        assert_eq!(
            new,
            format!("# Benchmarks\nnew table\n\n{NOTES_MARKER}\n## Notes\nkept\n")
        );
        assert_eq!(keep_notes("a\n\n", Some("no marker")), "a\n");
        assert_eq!(keep_notes("a", None), "a\n");
    }

    #[test]
    fn a_part_run_alone_is_spliced_and_every_part_is_a_full_report() {
        for (name, only) in [
            ("pull", Parts::pull_only as fn(&Parts) -> bool),
            ("serve", Parts::serve_only),
            ("delta", Parts::delta_only),
        ] {
            let p = Parts::only(Some(name));
            assert!(only(&p), "{name}");
            assert!(!p.all());
            assert!(!only(&Parts::only(None)), "{name}");
        }
        assert!(Parts::only(None).all());
        assert!(!Parts::only(Some("delta")).pull_only());
        assert!(!Parts::only(Some("core")).delta_only());
    }

    #[test]
    fn median_takes_the_lower_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.0);
    }
}

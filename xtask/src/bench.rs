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
    for (tool, pkg) in [("tar", "tar"), ("gzip", "gzip"), ("openssl", "openssl")] {
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
    let mut sets = vec![run_set(opts, ferry, scratch, opts.size_mib, true)?];
    if opts.also_4g {
        if !opts.keep {
            let _ = fs::remove_dir_all(scratch.join(format!("{}m", opts.size_mib)));
        }
        sets.push(run_set(opts, ferry, scratch, 4096, false)?);
    }
    let env = Environment::probe(ferry);
    let doc = render(opts, &env, &sets);
    let path = root.join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).ok();
    let whole = keep_notes(&doc, old.as_deref());
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

// ------------------------------------------------------------------- timing ---

/// One timed run, as GNU time reports it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    rss_kib: u64,
    cpu: f64,
}

/// A command to time, with the untimed preparation before each run.
struct Case {
    name: String,
    /// Bytes per run, for MB/s.
    bytes: u64,
    argv: Vec<OsString>,
    env: Vec<(&'static str, &'static str)>,
    /// Removed before each run (an output from the previous one).
    clean: Option<PathBuf>,
    /// Created (empty) before each run.
    mkdir: Option<PathBuf>,
    /// Its size (file or tree) is reported after the runs.
    output: Option<PathBuf>,
    samples: Vec<Sample>,
    output_bytes: Option<u64>,
}

impl Case {
    fn new(name: &str, bytes: u64, argv: &[&dyn AsRef<std::ffi::OsStr>]) -> Case {
        Case {
            name: name.to_string(),
            bytes,
            argv: argv.iter().map(|a| a.as_ref().to_os_string()).collect(),
            env: Vec::new(),
            clean: None,
            mkdir: None,
            output: None,
            samples: Vec::new(),
            output_bytes: None,
        }
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
    fn rss_mib(&self) -> f64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
    fn command_line(&self, scratch: &Path) -> String {
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
    if let Some(p) = &case.clean {
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
    let out = Command::new(GNU_TIME)
        .args(["-f", "%e %M %U %S", "-o"])
        .arg(time_out)
        .args(&case.argv)
        .envs(case.env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {GNU_TIME}"))?;
    if !out.status.success() {
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
    })
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
}

impl SetResult {
    fn case(&self, name: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.name == name)
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
    build.env.push(("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH));
    build.clean = Some(bundle.clone());
    build.output = Some(bundle.clone());
    eprintln!("bench: warm-up build of {}", bundle.display());
    time_once(&build, &time_out)?;
    let bundle_bytes = fs::metadata(&bundle)?.len();

    let mut cases = vec![build];
    if full {
        let tgz = out.join("tree.tar.gz");
        let mut c = Case::new(
            TAR_CZF,
            set.tree_bytes,
            &[&"tar", &"-C", &base, &"-czf", &tgz, &"set"],
        );
        c.clean = Some(tgz.clone());
        c.output = Some(tgz);
        cases.push(c);
        let tf = out.join("tree.tar");
        let mut c = Case::new(
            "tar -cf (no compression)",
            set.tree_bytes,
            &[&"tar", &"-C", &base, &"-cf", &tf, &"set"],
        );
        c.clean = Some(tf.clone());
        c.output = Some(tf);
        cases.push(c);
    }
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
    c.clean = Some(x.clone());
    c.output = Some(x);
    cases.push(c);
    if full {
        let x = out.join("x-tar");
        let mut c = Case::new(
            "tar -xzf BUNDLE",
            bundle_bytes,
            &[&"tar", &"-C", &x, &"-xzf", &bundle],
        );
        c.clean = Some(x.clone());
        c.mkdir = Some(x.clone());
        c.output = Some(x);
        cases.push(c);
    }

    for round in 1..=opts.runs {
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
    })
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
            ],
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

fn render(opts: &Options, env: &Environment, sets: &[SetResult]) -> String {
    let mut d = String::new();
    let mut cmd = String::from("cargo xtask bench");
    if opts.size_mib != 1024 {
        let _ = write!(cmd, " --size-mib {}", opts.size_mib);
    }
    let _ = write!(cmd, " --runs {}", opts.runs);
    if opts.also_4g {
        cmd.push_str(" --also-4g");
    }
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
        let _ = writeln!(
            d,
            "| command | wall s median (min–max) | MB/s | peak RSS MiB | cpu s | output |"
        );
        let _ = writeln!(d, "|---|---|---|---|---|---|");
        for c in &set.cases {
            let med = c.median();
            let _ = writeln!(
                d,
                "| {} | {:.2} ({:.2}–{:.2}) | {} | {:.1} | {:.2} | {} |",
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
        let scratch = set_scratch(set);
        for c in &set.cases {
            let _ = writeln!(d, "{}", c.command_line(&scratch));
        }
        let _ = writeln!(d, "```\n");
    }

    let _ = writeln!(d, "## Targets\n");
    let _ = writeln!(d, "| target | measured | verdict |");
    let _ = writeln!(d, "|---|---|---|");
    let first = &sets[0];
    if let (Some(b), Some(t)) = (first.case(FERRY_BUILD), first.case(TAR_CZF)) {
        let r = t.median() / b.median();
        let _ = writeln!(
            d,
            "| build ≥ {BUILD_SPEEDUP_TARGET:.0}× faster than `tar -czf` ({}) | {:.1}× ({:.2} s vs {:.2} s) | {} |",
            first.label,
            r,
            t.median(),
            b.median(),
            verdict(r >= BUILD_SPEEDUP_TARGET)
        );
    }
    for set in sets {
        if let (Some(v), Some(o)) = (set.case(FERRY_VERIFY), set.case(OPENSSL)) {
            let r = v.median() / o.median();
            let _ = writeln!(
                d,
                "| verify ≤ {VERIFY_RATIO_TARGET}× `openssl dgst -sha256` of the bundle ({}) | {:.2}× ({:.2} s vs {:.2} s) | {} |",
                set.label,
                r,
                v.median(),
                o.median(),
                verdict(r <= VERIFY_RATIO_TARGET)
            );
        }
    }
    for set in sets {
        for name in [FERRY_BUILD, FERRY_VERIFY] {
            if let Some(c) = set.case(name) {
                let _ = writeln!(
                    d,
                    "| `{name}` peak RSS ≤ {RSS_TARGET_MIB:.0} MiB ({}) | {:.1} MiB | {} |",
                    set.label,
                    c.rss_mib(),
                    verdict(c.rss_mib() <= RSS_TARGET_MIB)
                );
            }
        }
    }
    if sets.len() > 1 {
        let (a, b) = (&sets[0], &sets[sets.len() - 1]);
        for name in [FERRY_BUILD, FERRY_VERIFY] {
            if let (Some(x), Some(y)) = (a.case(name), b.case(name)) {
                let _ = writeln!(
                    d,
                    "| `{name}` peak RSS does not grow ({} → {}, ≤ {:.0} % more) | {:.1} → {:.1} MiB | {} |",
                    a.label,
                    b.label,
                    (RSS_GROWTH_SLACK - 1.0) * 100.0,
                    x.rss_mib(),
                    y.rss_mib(),
                    verdict(y.rss_mib() <= x.rss_mib() * RSS_GROWTH_SLACK)
                );
            }
        }
    } else {
        let _ = writeln!(
            d,
            "| peak RSS does not grow with size (needs `--also-4g`) | not measured | — |"
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

/// The scratch folder that a set's commands name (the parent of `<size>m/`).
fn set_scratch(set: &SetResult) -> PathBuf {
    set.cases
        .iter()
        .find_map(|c| c.clean.clone())
        .and_then(|p| {
            p.ancestors()
                .find(|a| a.ends_with(format!("{}m", set.size_mib)))
                .and_then(Path::parent)
                .map(Path::to_path_buf)
        })
        .unwrap_or_default()
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
    fn median_takes_the_lower_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.0);
    }
}

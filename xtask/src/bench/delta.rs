//! The delta part of `cargo xtask bench`: a release pair made from the image set, its full
//! bundle against a delta built on the older release, `ferry merge` and `ferry join` against
//! `cp` of the full bundle.
//!
//! Release 1.4.0 is the image set itself (its layout hard-linked); in 1.4.1 one image gains a
//! new layer on top of its own, another is rebuilt under the same tag (its large base layer
//! kept, its top layer replaced), the rest is the same. Both releases are built once, untimed;
//! the parts that `ferry join` reads are cut once, untimed, and the merged and joined bundles
//! are checked once to be the full bundle byte for byte.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use flate2::Compression;

use super::{
    config_json, copy_tree, link_tree, manifest_json, mib, run_quiet, text_file, time_once,
    verdict, Blob, Case, Environment, ImageSet, Keystream, Layout, Options, Registry, Sample,
    SetResult, MIB, OCI_INDEX, SOURCE_DATE_EPOCH,
};

pub(super) const FULL: &str = "ferry build (1.4.1, full bundle)";
pub(super) const DELTA: &str = "ferry build --base 1.4.0.tar.gz (1.4.1, delta)";
pub(super) const MERGE: &str = "ferry merge 1.4.0.tar.gz delta.tar.gz";
pub(super) const CP: &str = "cp --reflink=never full.tar.gz";
pub(super) const CP_SHA: &str =
    "cp --reflink=never full.tar.gz, then openssl dgst -sha256 of the copy";
pub(super) const JOIN: &str = "ferry join PARTS";

/// Target: the delta build's wall time at most this times the changed fraction of the full
/// build's.
const DELTA_SLACK: f64 = 1.2;
/// Target: `ferry merge` wall time divided by `cp` of the full bundle, at most this.
const MERGE_RATIO_TARGET: f64 = 1.5;
/// Target: `ferry join` wall time divided by `cp` of the full bundle, at most this.
const JOIN_RATIO_TARGET: f64 = 1.5;

const OLD: &str = "1.4.0";
const NEW: &str = "1.4.1";
/// The image that gains a layer in 1.4.1 (and a new tag), and that layer's size in percent of
/// the set's large layers.
const GROWN: &str = "img1";
const GROWN_PERCENT: u64 = 7;
/// The image rebuilt under the same tag in 1.4.1, and the size of its new top layer in
/// percent of the set's large layers.
const REBUILT: &str = "img4";
const REBUILT_PERCENT: u64 = 4;
/// `--max-part-size` of the parts `ferry join` reads, per GiB of the set: 300 MiB at the
/// default size, so that a part holds one large layer.
const PART_MIB_PER_GIB: u64 = 300;

/// Marks the delta section, so that `cargo xtask bench delta` can replace it alone.
const BEGIN: &str = "<!-- delta: begin -->";
const END: &str = "<!-- delta: end -->";
/// Every target row of this part starts so, for the same reason.
const ROW_PREFIX: &str = "| delta: ";

/// What the delta part measured besides its timed cases.
pub(super) struct Facts {
    /// Blobs of 1.4.1 that 1.4.0 lacks: how many, and their bytes.
    new_blobs: usize,
    new_bytes: u64,
    /// Bytes of every blob of 1.4.1.
    blob_bytes: u64,
    grown_bytes: u64,
    rebuilt_bytes: u64,
    old_bundle: u64,
    full_bundle: u64,
    delta_bundle: u64,
    part_mib: u64,
    parts: Vec<u64>,
    /// The checks of the parts at this size (untimed).
    split: SplitChecks,
}

impl Facts {
    /// Bytes of blobs in 1.4.1 not in 1.4.0, over the bytes of 1.4.1's full bundle.
    fn fraction(&self) -> f64 {
        self.new_bytes as f64 / self.full_bundle as f64
    }

    /// The text of the full bundle: everything but its blobs (chart, spec, bundle manifest,
    /// tar headers, gzip framing).
    fn text(&self) -> u64 {
        self.full_bundle.saturating_sub(self.blob_bytes)
    }
}

/// The wall (or cpu) time of the delta build over the changed fraction of the full build's:
/// the target holds when this is at most [`DELTA_SLACK`].
fn delta_build_ratio(delta: f64, full: f64, fraction: f64) -> f64 {
    delta / (fraction * full)
}

/// Blobs of `new` that `old` lacks: how many, and their bytes.
fn new_blobs(old: &BTreeMap<String, u64>, new: &BTreeMap<String, u64>) -> (usize, u64) {
    new.iter()
        .filter(|(d, _)| !old.contains_key(*d))
        .fold((0, 0), |(n, b), (_, s)| (n + 1, b + s))
}

/// The delta part: the release pair, its bundles, and the cases timed on them.
pub(super) struct Delta {
    full: Case,
    delta: Case,
    merge: Case,
    cp: Case,
    cp_sha: Case,
    join: Case,
    facts: Facts,
}

impl Delta {
    /// Writes the release pair, builds both releases, the delta, a merge, the parts and a
    /// join (all untimed), and checks that merged and joined are the full bundle.
    pub(super) fn new(
        ferry: &Path,
        base: &Path,
        set: &ImageSet,
        size_mib: u64,
        time_out: &Path,
    ) -> Result<Delta> {
        let dir = base.join("delta");
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        eprintln!(
            "bench: writing releases {OLD} and {NEW} in {}",
            dir.display()
        );
        let rel = make_releases(set, &dir, size_mib)?;
        let out = dir.join("out");
        fs::create_dir_all(&out)?;
        let old_bundle = out.join(format!("{OLD}.tar.gz"));
        let (full, delta, merged, copy, joined) = (
            out.join("full.tar.gz"),
            out.join("delta.tar.gz"),
            out.join("merged.tar.gz"),
            out.join("copy.tar.gz"),
            out.join("joined.tar.gz"),
        );
        let spec = rel.new.join("ferry.yaml");

        let ferry_case = |name: &str, args: &[&dyn AsRef<std::ffi::OsStr>], output: &Path| {
            let mut argv: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&ferry, &"--quiet"];
            argv.extend_from_slice(args);
            let mut c = Case::new(name, 0, &argv).in_group("delta");
            c.env.push(("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.into()));
            c.clean = vec![output.to_path_buf()];
            c.output = Some(output.to_path_buf());
            c
        };
        let old_spec = rel.old.join("ferry.yaml");
        let build_old = ferry_case(
            "ferry build (1.4.0)",
            &[&"build", &"-f", &old_spec, &"-o", &old_bundle],
            &old_bundle,
        );
        let mut full_case = ferry_case(FULL, &[&"build", &"-f", &spec, &"-o", &full], &full);
        let mut delta_case = ferry_case(
            DELTA,
            &[
                &"build",
                &"-f",
                &spec,
                &"--base",
                &old_bundle,
                &"-o",
                &delta,
            ],
            &delta,
        );
        let mut merge_case = ferry_case(
            MERGE,
            &[&"merge", &old_bundle, &delta, &"-o", &merged],
            &merged,
        );
        merge_case.env.clear();
        let mut cp_case =
            Case::new(CP, 0, &[&"cp", &"--reflink=never", &full, &copy]).in_group("delta");
        cp_case.clean = vec![copy.clone()];
        cp_case.output = Some(copy.clone());
        // What a script needs for the same assurance as merge and join: the copy, then one
        // SHA-256 pass over it.
        let script = format!(
            "cp --reflink=never {} {} && openssl dgst -sha256 {} >/dev/null",
            super::shell_quote(&full.display().to_string()),
            super::shell_quote(&copy.display().to_string()),
            super::shell_quote(&copy.display().to_string()),
        );
        let mut cp_sha_case = Case::new(CP_SHA, 0, &[&"sh", &"-c", &script]).in_group("delta");
        cp_sha_case.display = Some(format!(
            "cp --reflink=never {} {} && openssl dgst -sha256 {} >/dev/null",
            full.display(),
            copy.display(),
            copy.display()
        ));
        cp_sha_case.clean = vec![copy.clone()];
        cp_sha_case.output = Some(copy);

        eprintln!("bench: building {OLD}, {NEW} (full and delta) and merging (untimed)");
        for c in [&build_old, &full_case, &delta_case, &merge_case] {
            time_once(c, time_out)?;
        }
        let parts_dir = dir.join("parts");
        fs::create_dir_all(&parts_dir)?;
        let part_mib = (PART_MIB_PER_GIB * size_mib / 1024).max(1);
        eprintln!("bench: ferry split --max-part-size {part_mib}MiB (untimed)");
        run_quiet(
            Command::new(ferry)
                .args(["--quiet", "split"])
                .arg(&full)
                .arg("--max-part-size")
                .arg(format!("{part_mib}MiB"))
                .arg("-C")
                .arg(&parts_dir),
        )?;
        let parts = parts_of(&parts_dir)?;
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"join"];
        args.extend(parts.iter().map(|p| p as &dyn AsRef<std::ffi::OsStr>));
        args.extend([&"-o" as &dyn AsRef<std::ffi::OsStr>, &joined]);
        let mut join_case = ferry_case(JOIN, &args, &joined);
        join_case.env.clear();
        time_once(&join_case, time_out)?;
        same_bytes(&merged, &full, "ferry merge")?;
        same_bytes(&joined, &full, "ferry join")?;
        let split = split_checks(ferry, &dir, &full, &parts)?;

        let full_bundle = fs::metadata(&full)?.len();
        for c in [
            &mut full_case,
            &mut delta_case,
            &mut merge_case,
            &mut cp_case,
            &mut cp_sha_case,
            &mut join_case,
        ] {
            c.bytes = full_bundle;
        }
        let (new_count, new_bytes) = new_blobs(&rel.old_blobs, &rel.new_blobs);
        let facts = Facts {
            new_blobs: new_count,
            new_bytes,
            blob_bytes: rel.new_blobs.values().sum(),
            grown_bytes: rel.grown_bytes,
            rebuilt_bytes: rel.rebuilt_bytes,
            old_bundle: fs::metadata(&old_bundle)?.len(),
            full_bundle,
            delta_bundle: fs::metadata(&delta)?.len(),
            part_mib,
            parts: parts
                .iter()
                .map(|p| fs::metadata(p).map(|m| m.len()))
                .collect::<std::io::Result<_>>()?,
            split,
        };
        eprintln!(
            "bench: changed fraction {} / {} bytes = {:.4} ({} new blobs); delta {} bytes; {} \
             parts; merged and joined are the full bundle byte for byte",
            facts.new_bytes,
            facts.full_bundle,
            facts.fraction(),
            facts.new_blobs,
            facts.delta_bundle,
            facts.parts.len()
        );
        Ok(Delta {
            full: full_case,
            delta: delta_case,
            merge: merge_case,
            cp: cp_case,
            cp_sha: cp_sha_case,
            join: join_case,
            facts,
        })
    }

    /// One round: full build, delta build, merge, cp, cp + SHA-256, join.
    pub(super) fn round(&mut self, round: u32, runs: u32, time_out: &Path) -> Result<()> {
        for c in [
            &mut self.full,
            &mut self.delta,
            &mut self.merge,
            &mut self.cp,
            &mut self.cp_sha,
            &mut self.join,
        ] {
            eprint!("bench: delta, run {round}/{runs}: {:<48}", c.name);
            let s: Sample = time_once(c, time_out)?;
            eprintln!(
                " {:>7.2}s  {:>6.1} MiB RSS  {:>7.2}s cpu",
                s.wall,
                s.rss_kib as f64 / 1024.0,
                s.cpu
            );
            c.samples.push(s);
        }
        Ok(())
    }

    /// The cases, in report order, and the facts of the release pair.
    pub(super) fn into_parts(self) -> (Vec<Case>, Facts) {
        (
            vec![
                self.full,
                self.delta,
                self.merge,
                self.cp,
                self.cp_sha,
                self.join,
            ],
            self.facts,
        )
    }
}

/// What the untimed checks of the parts found.
pub(super) struct SplitChecks {
    /// Parts that `ferry verify` passed, each on its own.
    verified_alone: usize,
    /// The part that was damaged, and the first line `ferry verify` printed about it.
    tampered: (usize, String),
    /// Images whose registry digest after loading the parts last first is the one a load of
    /// the whole bundle gives.
    same_digests: usize,
}

/// At the bench's size: every part verifies alone; a part damaged in the middle fails its own
/// verification (exit 1); loading the parts last first into one registry gives every image
/// the digest a load of the whole bundle gives in another.
fn split_checks(ferry: &Path, dir: &Path, full: &Path, parts: &[PathBuf]) -> Result<SplitChecks> {
    eprintln!(
        "bench: verifying each of the {} parts alone (untimed)",
        parts.len()
    );
    for p in parts {
        run_quiet(Command::new(ferry).args(["--quiet", "verify"]).arg(p))?;
    }
    let k = parts.len() / 2;
    let tampered = dir.join("tampered.tar.gz");
    fs::copy(&parts[k], &tampered)?;
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tampered)?;
        let at = f.metadata()?.len() / 2;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut b)?;
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&[b[0] ^ 0x01])?;
    }
    let out = Command::new(ferry)
        .arg("verify")
        .arg(&tampered)
        .output()
        .context("running ferry verify")?;
    if out.status.code() != Some(1) {
        bail!(
            "ferry verify of part {} with one byte changed exited {:?}, not 1",
            k + 1,
            out.status.code()
        );
    }
    let said = String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string();
    fs::remove_file(&tampered)?;

    eprintln!("bench: loading the whole bundle, and the parts last first (untimed)");
    let whole = Registry::start(&dir.join("registry-whole"))?;
    let pushed_whole = load_digests(ferry, whole.port, &[full.to_path_buf()])?;
    drop(whole);
    let split = Registry::start(&dir.join("registry-parts"))?;
    let reversed: Vec<PathBuf> = parts.iter().rev().cloned().collect();
    let pushed_parts = load_digests(ferry, split.port, &reversed)?;
    drop(split);
    if pushed_whole != pushed_parts || pushed_whole.is_empty() {
        bail!(
            "loading the parts last first gave other images or digests than loading the whole              bundle:\n  whole: {pushed_whole:?}\n  parts: {pushed_parts:?}"
        );
    }
    Ok(SplitChecks {
        verified_alone: parts.len(),
        tampered: (k + 1, said),
        same_digests: pushed_whole.len(),
    })
}

/// `ferry load` of each input in turn into the registry on `port`: every image pushed, as
/// its path and tag (the registry's host left out) with the digest the load reports.
fn load_digests(ferry: &Path, port: u16, inputs: &[PathBuf]) -> Result<BTreeMap<String, String>> {
    let host = format!("127.0.0.1:{port}");
    let mut pushed = BTreeMap::new();
    for input in inputs {
        let out = Command::new(ferry)
            .args([
                "--json",
                "--quiet",
                "load",
                "--plain-http",
                "--registry",
                &host,
            ])
            .arg(input)
            .output()
            .context("running ferry load")?;
        if !out.status.success() {
            bail!(
                "ferry load {} into {host} failed: {}",
                input.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("reading ferry load's JSON for {}", input.display()))?;
        for p in v["report"]["pushed"].as_array().into_iter().flatten() {
            let reference = p["reference"].as_str().unwrap_or_default();
            let path = reference
                .strip_prefix(&format!("{host}/"))
                .unwrap_or(reference);
            let digest = p["digest"].as_str().unwrap_or_default();
            pushed.insert(path.to_string(), digest.to_string());
        }
    }
    Ok(pushed)
}

/// The parts `ferry split` wrote, by part number.
fn parts_of(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts: Vec<(u32, PathBuf)> = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        let number = name
            .split_once(".part")
            .and_then(|(_, rest)| rest.split_once("-of-"))
            .and_then(|(k, _)| k.parse().ok());
        match number {
            Some(k) => parts.push((k, p)),
            None => bail!("{} is not a part that ferry split writes", p.display()),
        }
    }
    if parts.is_empty() {
        bail!("ferry split wrote no parts into {}", dir.display());
    }
    parts.sort();
    Ok(parts.into_iter().map(|(_, p)| p).collect())
}

/// Fails, loudly, unless `a` is byte for byte `full` (`cmp`).
fn same_bytes(a: &Path, full: &Path, what: &str) -> Result<()> {
    let out = Command::new("cmp")
        .arg(a)
        .arg(full)
        .output()
        .context("running cmp (apt-get install -y diffutils)")?;
    if !out.status.success() {
        bail!(
            "{what} did not give the full bundle byte for byte: `cmp {} {}` says: {}{}",
            a.display(),
            full.display(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

// ------------------------------------------------------------- release pair ---

/// The release pair on disk.
struct Releases {
    /// The spec folders (`ferry.yaml`, `charts/`, `images/layout/`).
    old: PathBuf,
    new: PathBuf,
    /// Every blob the images of each release name, digest to size.
    old_blobs: BTreeMap<String, u64>,
    new_blobs: BTreeMap<String, u64>,
    /// Sizes of the layer added to [`GROWN`] and of [`REBUILT`]'s new top layer.
    grown_bytes: u64,
    rebuilt_bytes: u64,
}

/// Writes releases 1.4.0 (the image set) and 1.4.1 under `dir`.
fn make_releases(set: &ImageSet, dir: &Path, size_mib: u64) -> Result<Releases> {
    let old = dir.join(OLD);
    let new = dir.join(NEW);
    for (d, version) in [(&old, OLD), (&new, NEW)] {
        copy_tree(&set.dir.join("charts"), &d.join("charts"))?;
        let chart = d.join("charts/bench/Chart.yaml");
        let text = fs::read_to_string(&chart)?.replace("1.0.0", version);
        fs::write(&chart, text)?;
        if version == NEW {
            // The chart deploys GROWN at `.Values.image.tag`: its new tag.
            let values = d.join("charts/bench/values.yaml");
            let text = fs::read_to_string(&values)?.replace("tag: \"1.0\"", "tag: \"1.1\"");
            fs::write(&values, text)?;
        }
        link_tree(&set.dir.join("images/layout"), &d.join("images/layout"))?;
    }
    let new_layout = new.join("images/layout");
    let mut layout = Layout {
        blobs_dir: new_layout.join("blobs/sha256"),
        blobs: 0,
        bytes: 0,
    };
    let index_path = new_layout.join("index.json");
    let mut index: serde_json::Value = read_json(&index_path)?;

    // GROWN gains a layer on top of its own.
    let grown_bytes = size_mib * MIB * GROWN_PERCENT / 100;
    let (at, mut layers, mut diff_ids) = image_of(&new_layout, &index, GROWN)?;
    let (layer, id) = layout.layer(
        vec![(
            format!("opt/bench/{GROWN}/update.bin"),
            Box::new(Keystream::new(1001, grown_bytes)),
            grown_bytes,
        )],
        Compression::none(),
    )?;
    layers.push(layer);
    diff_ids.push(id);
    let config = layout.put(&config_json("amd64", None, &diff_ids))?;
    let manifest = layout.put(&manifest_json(&config, &layers))?;
    set_descriptor(&mut index, at, &manifest);

    // REBUILT keeps its large base layer; its top layer is new.
    let rebuilt_bytes = size_mib * MIB * REBUILT_PERCENT / 100;
    let (at, mut layers, mut diff_ids) = image_of(&new_layout, &index, REBUILT)?;
    let (layer, id) = layout.layer(
        vec![
            text_file(
                "etc/bench-release",
                format!("NAME=bench\nIMAGE={REBUILT}\nVERSION={NEW}\n").into_bytes(),
            ),
            (
                format!("opt/bench/{REBUILT}/app.bin"),
                Box::new(Keystream::new(1004, rebuilt_bytes)),
                rebuilt_bytes,
            ),
        ],
        Compression::none(),
    )?;
    let top = layers.len() - 1;
    layers[top] = layer;
    diff_ids[top] = id;
    let config = layout.put(&config_json("amd64", None, &diff_ids))?;
    let manifest = layout.put(&manifest_json(&config, &layers))?;
    set_descriptor(&mut index, at, &manifest);
    // The linked index.json is 1.4.0's too: a new file, not a rewrite of the shared one.
    fs::remove_file(&index_path)?;
    fs::write(&index_path, serde_json::to_vec(&index)?)?;

    // Blobs 1.4.1 no longer names leave its layout.
    let new_blobs = referenced(&new_layout)?;
    for e in fs::read_dir(&layout.blobs_dir)? {
        let p = e?.path();
        let digest = format!(
            "sha256:{}",
            p.file_name().unwrap_or_default().to_string_lossy()
        );
        if !new_blobs.contains_key(&digest) {
            fs::remove_file(&p)?;
        }
    }
    let refs: Vec<(String, &str)> = set
        .refs
        .iter()
        .map(|r| {
            (
                format!("{r}:{}", if r == GROWN { "1.1" } else { "1.0" }),
                r.as_str(),
            )
        })
        .collect();
    write_spec(&new.join("ferry.yaml"), NEW, &refs)?;
    let refs: Vec<(String, &str)> = set
        .refs
        .iter()
        .map(|r| (format!("{r}:1.0"), r.as_str()))
        .collect();
    write_spec(&old.join("ferry.yaml"), OLD, &refs)?;
    Ok(Releases {
        old_blobs: referenced(&old.join("images/layout"))?,
        old,
        new,
        new_blobs,
        grown_bytes,
        rebuilt_bytes,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&data).with_context(|| format!("parsing {}", path.display()))
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The image named `name` in a layout's index: its place in `manifests`, its layers and
/// their diff IDs.
fn image_of(
    layout: &Path,
    index: &serde_json::Value,
    name: &str,
) -> Result<(usize, Vec<Blob>, Vec<String>)> {
    let at = index["manifests"]
        .as_array()
        .and_then(|m| {
            m.iter()
                .position(|d| d["annotations"]["org.opencontainers.image.ref.name"] == name)
        })
        .with_context(|| format!("no image {name} in {}", layout.display()))?;
    let digest = index["manifests"][at]["digest"]
        .as_str()
        .unwrap_or_default();
    let manifest = read_json(&blob_path(layout, digest))?;
    let layers = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| Blob {
            digest: l["digest"].as_str().unwrap_or_default().to_string(),
            size: l["size"].as_u64().unwrap_or_default(),
        })
        .collect();
    let config = read_json(&blob_path(
        layout,
        manifest["config"]["digest"].as_str().unwrap_or_default(),
    ))?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d.as_str().unwrap_or_default().to_string())
        .collect();
    Ok((at, layers, diff_ids))
}

/// Points the index entry at `at` to a new manifest, keeping its annotations.
fn set_descriptor(index: &mut serde_json::Value, at: usize, manifest: &Blob) {
    index["manifests"][at]["digest"] = manifest.digest.clone().into();
    index["manifests"][at]["size"] = manifest.size.into();
}

/// Every blob the layout's index names, directly or through indexes and manifests.
fn referenced(layout: &Path) -> Result<BTreeMap<String, u64>> {
    let mut blobs = BTreeMap::new();
    let mut todo = vec![read_json(&layout.join("index.json"))?];
    while let Some(doc) = todo.pop() {
        let descriptors = doc["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(doc.get("config"))
            .chain(doc["layers"].as_array().into_iter().flatten());
        for d in descriptors {
            let (Some(digest), Some(size)) = (d["digest"].as_str(), d["size"].as_u64()) else {
                bail!(
                    "a descriptor without digest or size in {}",
                    layout.display()
                );
            };
            if blobs.insert(digest.to_string(), size).is_some() {
                continue;
            }
            let media = d["mediaType"].as_str().unwrap_or_default();
            if media == super::OCI_MANIFEST || media == OCI_INDEX {
                todo.push(read_json(&blob_path(layout, digest))?);
            }
        }
    }
    Ok(blobs)
}

/// A spec naming `registry.example.com/bench/TAG` for each (tag, layout name).
fn write_spec(path: &Path, version: &str, refs: &[(String, &str)]) -> Result<()> {
    let mut spec = format!(
        "# Generated by `cargo xtask bench delta`.\nname: bench\nversion: {version}\ncharts:\n  - charts/bench\nimages:\n"
    );
    for (tagged, name) in refs {
        let _ = writeln!(
            spec,
            "  - ref: registry.example.com/bench/{tagged}\n    from: oci:images/layout:{name}"
        );
    }
    fs::write(path, spec).with_context(|| format!("writing {}", path.display()))
}

// ------------------------------------------------------------------- report ---

/// The delta section of the report, between its markers.
pub(super) fn section(d: &mut String, opts: &Options, env: &Environment, set: &SetResult) {
    let Some(f) = &set.delta else {
        return;
    };
    super::section_head(d, BEGIN, "Delta, merge and join", opts, env, set);
    let _ = writeln!(
        d,
        "A release pair made from the image set above. Release {OLD} is the set itself (its \
         layout hard-linked, the spec's version {OLD}); in {NEW} `{GROWN}` gains a new layer of \
         {} on top of its own layers (new tag `{GROWN}:1.1`), `{REBUILT}` is rebuilt under the \
         same tag `{REBUILT}:1.0` (its large base layer kept, its top layer replaced by a new \
         one of {}), and the other images are the same; the chart's version follows the \
         release and its values deploy `{GROWN}:1.1`. New layers are incompressible (stored gzip around keystream bytes) like the \
         set's. Blobs of {NEW} not in {OLD}: {} blobs, {} bytes; {NEW}'s full bundle: {} bytes; \
         **changed fraction {:.4}** ({:.2} %). Built once before the runs, untimed: \
         `{OLD}.tar.gz` ({}), the full bundle, the delta, a merge, the parts (`ferry split \
         full.tar.gz --max-part-size {}MiB`: {} parts of {}) and a join; the merged and the \
         joined bundle were then checked with `cmp` to be the full bundle byte for byte. The \
         delta is {} bytes against {} bytes of new blobs and text (text: the full bundle but \
         its blobs, {} bytes). Checked on the parts, untimed: each of the {} parts passes \
         `ferry verify` alone; part {} with one byte changed in its middle fails its own \
         `ferry verify` (exit 1: \"{}\"); and loading the parts last first into one registry \
         gives the {} images the digests a load of the whole bundle gives in another. \
         Before each run the command's output is removed; every input was written or read \
         before, so both sides of a ratio read warm inputs. `ferry build` runs with \
         `SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}`. MB/s is of the full bundle ({}), the release \
         every command stands for.\n",
        mib(f.grown_bytes),
        mib(f.rebuilt_bytes),
        f.new_blobs,
        f.new_bytes,
        f.full_bundle,
        f.fraction(),
        f.fraction() * 100.0,
        mib(f.old_bundle),
        f.part_mib,
        f.parts.len(),
        f.parts
            .iter()
            .map(|&b| mib(b))
            .collect::<Vec<_>>()
            .join(", "),
        f.delta_bundle,
        f.new_bytes + f.text(),
        f.text(),
        f.split.verified_alone,
        f.split.tampered.0,
        f.split.tampered.1.replace('|', "\\|"),
        f.split.same_digests,
        mib(f.full_bundle),
    );
    super::table(d, &set.group("delta"), &set.scratch);
    let _ = writeln!(d, "{END}\n");
}

/// The target rows of this part, each starting with [`ROW_PREFIX`].
pub(super) fn target_rows(d: &mut String, set: &SetResult) {
    let Some(f) = &set.delta else {
        return;
    };
    let (Some(full), Some(delta), Some(merge), Some(cp), Some(join)) = (
        set.case(FULL),
        set.case(DELTA),
        set.case(MERGE),
        set.case(CP),
        set.case(JOIN),
    ) else {
        return;
    };
    let label = &set.label;
    let share = f.fraction();
    let r = delta_build_ratio(delta.median(), full.median(), share);
    let _ = writeln!(
        d,
        "{ROW_PREFIX}delta build ≤ {DELTA_SLACK} × changed fraction ({:.2} %) × full build \
         ({label}) | {:.3}× the full build ({:.2} s vs {:.2} s); limit {:.3}× | {:.3}× ({:.2} / \
         {:.2} cpu-s) | {} |",
        share * 100.0,
        delta.median() / full.median(),
        delta.median(),
        full.median(),
        DELTA_SLACK * share,
        delta.cpu() / full.cpu(),
        delta.cpu(),
        full.cpu(),
        verdict(r <= DELTA_SLACK)
    );
    for (what, c, target) in [
        ("`ferry merge`", merge, MERGE_RATIO_TARGET),
        ("`ferry join`", join, JOIN_RATIO_TARGET),
    ] {
        let r = c.median() / cp.median();
        let _ = writeln!(
            d,
            "{ROW_PREFIX}{what} ≤ {target}× `cp --reflink=never` of the full bundle ({label}) | \
             {r:.2}× ({:.2} s vs {:.2} s) | {:.2}× ({:.2} / {:.2} cpu-s) | {} |",
            c.median(),
            cp.median(),
            c.cpu() / cp.cpu(),
            c.cpu(),
            cp.cpu(),
            verdict(r <= target)
        );
    }
    if let Some(cp_sha) = set.case(CP_SHA) {
        let _ = writeln!(
            d,
            "{ROW_PREFIX}(no target) `ferry merge` / `ferry join` against `cp` + `openssl dgst \
             -sha256` of the copy, the proof a script would need ({label}) | {:.2}× / {:.2}× \
             ({:.2} s / {:.2} s vs {:.2} s) | {:.2}× / {:.2}× | — |",
            merge.median() / cp_sha.median(),
            join.median() / cp_sha.median(),
            merge.median(),
            join.median(),
            cp_sha.median(),
            merge.cpu() / cp_sha.cpu(),
            join.cpu() / cp_sha.cpu(),
        );
    }
    let expected = f.new_bytes + f.text();
    let _ = writeln!(
        d,
        "{ROW_PREFIX}(no target) delta size against new blobs + text ({label}) | {:.3}× ({} vs \
         {} + {} bytes) | — | — |",
        f.delta_bundle as f64 / expected as f64,
        f.delta_bundle,
        f.new_bytes,
        f.text()
    );
    let _ = writeln!(
        d,
        "{ROW_PREFIX}(no target) peak RSS of `ferry merge` / `ferry join` ({label}) | {:.1} / \
         {:.1} MiB | — | — |",
        merge.rss_mib(),
        join.rss_mib()
    );
}

/// Puts a newly rendered delta section and its target rows into an existing report (see
/// [`super::splice_part`]).
pub(super) fn splice(old: &str, section: &str, rows: &str) -> Option<String> {
    super::splice_part(old, (BEGIN, END, ROW_PREFIX), section, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(blobs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        blobs.iter().map(|(d, s)| (d.to_string(), *s)).collect()
    }

    #[test]
    fn the_changed_share_counts_only_blobs_the_base_lacks() {
        let old = map(&[("a", 100), ("b", 50), ("gone", 7)]);
        let new = map(&[("a", 100), ("b", 50), ("c", 30), ("d", 20)]);
        assert_eq!(new_blobs(&old, &new), (2, 50));
        assert_eq!(new_blobs(&new, &new), (0, 0));
        let f = Facts {
            new_blobs: 2,
            new_bytes: 50,
            blob_bytes: 200,
            grown_bytes: 30,
            rebuilt_bytes: 20,
            old_bundle: 180,
            full_bundle: 250,
            delta_bundle: 110,
            part_mib: 1,
            parts: vec![250],
            split: SplitChecks {
                verified_alone: 1,
                tampered: (1, String::new()),
                same_digests: 1,
            },
        };
        assert_eq!(f.fraction(), 0.2);
        assert_eq!(f.text(), 50);
        // 2.4 s for a delta of a fifth of a 10 s build is the limit.
        assert!((delta_build_ratio(2.4, 10.0, 0.2) - DELTA_SLACK).abs() < 1e-9);
        assert!(delta_build_ratio(8.5, 10.0, 0.2) > DELTA_SLACK);
    }

    #[test]
    fn the_release_pair_changes_about_a_tenth_and_names_only_what_its_layout_holds() {
        let dir = tempfile::tempdir().unwrap();
        let set = super::super::generate(&dir.path().join("set"), 20).unwrap();
        let rel = make_releases(&set, &dir.path().join("delta"), 20).unwrap();
        let (n, bytes) = new_blobs(&rel.old_blobs, &rel.new_blobs);
        // Two layers, two configs, two manifests.
        assert_eq!(n, 6);
        let share = bytes as f64 / rel.new_blobs.values().sum::<u64>() as f64;
        assert!((0.09..0.11).contains(&share), "{share}");
        // 1.4.0 is the set, every blob of it still there.
        assert_eq!(
            rel.old_blobs,
            referenced(&set.dir.join("images/layout")).unwrap()
        );
        // 1.4.1's layout holds exactly the blobs its images name, each with its digest.
        let layout = rel.new.join("images/layout");
        let mut on_disk = BTreeMap::new();
        for e in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let p = e.unwrap().path();
            let data = fs::read(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            use sha2::Digest as _;
            assert_eq!(hex::encode(sha2::Sha256::digest(&data)), name);
            on_disk.insert(format!("sha256:{name}"), data.len() as u64);
        }
        assert_eq!(on_disk, rel.new_blobs);
        // The unchanged images are shared, the rebuilt one kept its base layer.
        let old_index = read_json(&set.dir.join("images/layout/index.json")).unwrap();
        let new_index = read_json(&layout.join("index.json")).unwrap();
        let pick = |i: &serde_json::Value, name: &str| {
            i["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == name)
                .unwrap()["digest"]
                .clone()
        };
        for name in ["img2", "img3", "multi"] {
            assert_eq!(pick(&old_index, name), pick(&new_index, name), "{name}");
        }
        for name in [GROWN, REBUILT] {
            assert_ne!(pick(&old_index, name), pick(&new_index, name), "{name}");
        }
        let (_, old_layers, _) =
            image_of(&set.dir.join("images/layout"), &old_index, REBUILT).unwrap();
        let (_, new_layers, ids) = image_of(&layout, &new_index, REBUILT).unwrap();
        assert_eq!(old_layers[0].digest, new_layers[0].digest);
        assert_ne!(old_layers[1].digest, new_layers[1].digest);
        assert_eq!(ids.len(), 2);
        let spec = fs::read_to_string(rel.new.join("ferry.yaml")).unwrap();
        assert!(spec.contains("version: 1.4.1"));
        assert!(spec.contains("registry.example.com/bench/img1:1.1"));
        assert!(spec.contains("registry.example.com/bench/img4:1.0"));
        let values = fs::read_to_string(rel.new.join("charts/bench/values.yaml")).unwrap();
        assert!(values.contains("tag: \"1.1\""), "{values}");
        let template =
            fs::read_to_string(rel.new.join("charts/bench/templates/deployment.yaml")).unwrap();
        assert!(template.contains(&format!("/bench/{GROWN}:{{{{ .Values.image.tag }}}}")));
    }

    #[test]
    fn splice_replaces_the_delta_section_and_rows_only() {
        let old = "# B\n\n<!-- serve: begin -->\ns\n<!-- serve: end -->\n\n## Targets\n\n| t | m | c | v |\n|---|---|---|---|\n| serve: a | 1 | — | ok |\n\n<!-- notes -->\nn\n";
        let first = splice(old, &format!("{BEGIN}\n\nd1\n{END}\n\n"), "| delta: r1 |\n").unwrap();
        assert_eq!(
            first,
            format!("# B\n\n<!-- serve: begin -->\ns\n<!-- serve: end -->\n\n{BEGIN}\n\nd1\n{END}\n\n## Targets\n\n| t | m | c | v |\n|---|---|---|---|\n| serve: a | 1 | — | ok |\n| delta: r1 |\n\n<!-- notes -->\nn\n")
        );
        let second = splice(
            &first,
            &format!("{BEGIN}\n\nd2\n{END}\n\n"),
            "| delta: r2 |\n",
        )
        .unwrap();
        assert_eq!(second, first.replace("d1", "d2").replace("r1", "r2"));
    }
}

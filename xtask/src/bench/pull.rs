//! The pull part of `cargo xtask bench`: `ferry build` pulling the image set straight from a
//! loopback registry, against the pair it replaces (`skopeo copy --all` of every image into an
//! OCI layout, then `ferry build` from that layout), and a rebuild from a warm `--cache`.
//!
//! The registry is started once and the set pushed to it once (untimed, `skopeo copy --all`),
//! so every timed pull reads the same warm storage. Each run samples the used space of the
//! output's file system (`statvfs`, every 20 ms) for the peak-disk target.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::{
    copy_tree, run_quiet, shell_quote, time_once, verdict, Case, Environment, ImageSet, Options,
    Registry, Sample, SetResult, RSS_TARGET_MIB, SOURCE_DATE_EPOCH,
};

pub(super) const PULL_FERRY: &str = "ferry build from the registry";
pub(super) const PULL_SKOPEO: &str =
    "skopeo copy --all to an OCI layout, every image (pair, step 1)";
pub(super) const PULL_LAYOUT: &str = "ferry build from that layout (pair, step 2)";
pub(super) const PULL_PAIR: &str = "skopeo copy + ferry build from the layout (pair)";
pub(super) const PULL_CACHED: &str = "ferry build from the registry, warm --cache (rebuild)";

/// Target: ferry's pull-build wall time divided by the pair's, at most this.
const PAIR_RATIO_TARGET: f64 = 0.6;
/// Target: ferry's pull-build wall time divided by skopeo's copy alone, at most this.
const SKOPEO_RATIO_TARGET: f64 = 1.0;
/// Target: peak disk use of the pull-build, at most the bundle size times this.
const DISK_SLACK: f64 = 1.01;
/// Target: the cached rebuild's wall time divided by a build from a local layout, at most this.
const CACHED_RATIO_TARGET: f64 = 1.2;

/// Marks the pull section, so that `cargo xtask bench pull` can replace it alone.
const BEGIN: &str = "<!-- pull: begin -->";
const END: &str = "<!-- pull: end -->";
/// Every target row of this part starts so, for the same reason.
const ROW_PREFIX: &str = "| pull: ";

/// The pull part: one registry holding the set, the cases timed against it.
pub(super) struct Pull {
    /// Kept running until the cases are taken.
    _registry: Registry,
    ferry: Case,
    skopeo: Case,
    layout: Case,
    pair: Case,
    cached: Case,
}

impl Pull {
    /// Starts the registry, pushes the set, writes both specs and warms the cache (untimed).
    pub(super) fn new(ferry: &Path, base: &Path, set: &ImageSet, time_out: &Path) -> Result<Pull> {
        let dir = base.join("pull");
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        let out = base.join("out");
        fs::create_dir_all(&out)?;
        // Temporary files of every pull command land under `base` too, so the own-files
        // disk figure sees them.
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp)?;
        let tmp_env = tmp.to_string_lossy().into_owned();
        let registry = Registry::start(&dir.join("registry"))?;
        let host = format!("127.0.0.1:{}", registry.port);
        eprintln!("bench: pushing the image set to {host} (skopeo copy --all, untimed)");
        for r in &set.refs {
            run_quiet(
                Command::new("skopeo")
                    .args(["--insecure-policy", "copy", "--quiet", "--all"])
                    .arg("--dest-tls-verify=false")
                    .arg(format!(
                        "oci:{}:{r}",
                        set.dir.join("images/layout").display()
                    ))
                    .arg(format!("docker://{host}/bench/{r}:1.0")),
            )?;
        }

        let from_registry = dir.join("from-registry");
        let from_layout = dir.join("from-layout");
        let images = from_layout.join("images");
        for d in [&from_registry, &from_layout] {
            copy_tree(&set.dir.join("charts"), &d.join("charts"))?;
        }
        write_spec(&from_registry.join("ferry.yaml"), &host, &set.refs, false)?;
        write_spec(&from_layout.join("ferry.yaml"), &host, &set.refs, true)?;
        let lock = from_registry.join("ferry.lock");

        let build = |name: &str, spec: &Path, bundle: &str, extra: &[&str]| {
            let bundle = out.join(bundle);
            let mut argv: Vec<OsString> = vec![
                ferry.into(),
                "--quiet".into(),
                "build".into(),
                "-f".into(),
                spec.into(),
                "-o".into(),
                bundle.clone().into(),
            ];
            argv.extend(extra.iter().map(OsString::from));
            let mut c = Case::new(name, set.blob_bytes, &[]).in_group("pull");
            let shown: Vec<String> = argv
                .iter()
                .map(|a| a.to_string_lossy().replace(&host, "127.0.0.1:PORT"))
                .collect();
            c.display = Some(format!(
                "SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH} TMPDIR={tmp_env} {}",
                shown.join(" ")
            ));
            c.argv = argv;
            c.env.push(("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.into()));
            c.env.push(("TMPDIR", tmp_env.clone()));
            c.clean = vec![bundle.clone(), lock.clone()];
            c.disk = Some(base.to_path_buf());
            c.output = Some(bundle);
            c
        };
        let cache = dir.join("cache");
        let cache_arg = cache.to_string_lossy().into_owned();
        let spec = from_registry.join("ferry.yaml");
        let ferry_case = build(PULL_FERRY, &spec, "pull.tar.gz", &["--plain-http"]);
        let cached = build(
            PULL_CACHED,
            &spec,
            "pull-cached.tar.gz",
            &["--plain-http", "--cache", &cache_arg],
        );
        let mut layout = build(
            PULL_LAYOUT,
            &from_layout.join("ferry.yaml"),
            "pull-layout.tar.gz",
            &[],
        );
        layout.clean.truncate(1);

        let (script, display) = (
            skopeo_script(&host, &images, &set.refs),
            skopeo_script("127.0.0.1:PORT", &images, &set.refs),
        );
        let script_path = dir.join("skopeo-pull.sh");
        fs::write(&script_path, format!("set -e\n{script}"))?;
        let mut skopeo =
            Case::new(PULL_SKOPEO, set.blob_bytes, &[&"sh", &script_path]).in_group("pull");
        skopeo.env.push(("TMPDIR", tmp_env.clone()));
        skopeo.display = Some(
            display
                .lines()
                .map(|l| format!("TMPDIR={tmp_env} {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        skopeo.clean = vec![images.clone()];
        skopeo.disk = Some(base.to_path_buf());
        skopeo.output = Some(images);
        let mut pair = Case::new(PULL_PAIR, set.blob_bytes, &[]).in_group("pull");
        pair.display = Some(
            "(the two commands above, one after the other; wall, cpu and disk are their sums)"
                .into(),
        );

        eprintln!(
            "bench: filling the blob cache {} (untimed)",
            cache.display()
        );
        time_once(&cached, time_out)?;
        Ok(Pull {
            _registry: registry,
            ferry: ferry_case,
            skopeo,
            layout,
            pair,
            cached,
        })
    }

    /// One round: the pull-build, the pair (skopeo, then the layout build), the cached rebuild.
    pub(super) fn round(&mut self, round: u32, runs: u32, time_out: &Path) -> Result<()> {
        time(&mut self.ferry, round, runs, time_out)?;
        let s = time(&mut self.skopeo, round, runs, time_out)?;
        let l = time(&mut self.layout, round, runs, time_out)?;
        self.pair.samples.push(Sample {
            wall: s.wall + l.wall,
            rss_kib: s.rss_kib.max(l.rss_kib),
            cpu: s.cpu + l.cpu,
            disk: s.disk.zip(l.disk).map(|(a, b)| a + b),
            disk_files: s.disk_files.zip(l.disk_files).map(|(a, b)| a + b),
        });
        time(&mut self.cached, round, runs, time_out)?;
        Ok(())
    }

    /// The cases, in report order; stops the registry.
    pub(super) fn into_cases(self) -> Vec<Case> {
        vec![self.ferry, self.skopeo, self.layout, self.pair, self.cached]
    }
}

fn time(case: &mut Case, round: u32, runs: u32, time_out: &Path) -> Result<Sample> {
    eprint!("bench: pull, run {round}/{runs}: {:<62}", case.name);
    let s = time_once(case, time_out)?;
    eprintln!(
        " {:>7.2}s  {:>6.1} MiB RSS  {:>7.2}s cpu  {:>7.1} / {:>7.1} MiB disk",
        s.wall,
        s.rss_kib as f64 / 1024.0,
        s.cpu,
        s.disk.unwrap_or(0) as f64 / super::MIB as f64,
        s.disk_files.unwrap_or(0) as f64 / super::MIB as f64
    );
    case.samples.push(s);
    Ok(s)
}

/// A spec naming every image by its place in the loopback registry: pulled from there (no
/// `from:`), or read from the OCI layout `images/` that skopeo writes next to it.
fn write_spec(path: &Path, host: &str, refs: &[String], from_layout: bool) -> Result<()> {
    let mut spec = String::from(
        "# Generated by `cargo xtask bench pull`.\nname: bench\nversion: 1.0.0\ncharts:\n  - charts/bench\nimages:\n",
    );
    for r in refs {
        let _ = writeln!(spec, "  - ref: {host}/bench/{r}:1.0");
        if from_layout {
            let _ = writeln!(spec, "    from: oci:images:{r}");
        }
    }
    fs::write(path, spec).with_context(|| format!("writing {}", path.display()))
}

/// `skopeo copy --all` of every image from the registry at `host` into the layout `images`.
fn skopeo_script(host: &str, images: &Path, refs: &[String]) -> String {
    let mut script = String::new();
    for r in refs {
        let _ = writeln!(
            script,
            "skopeo --insecure-policy copy --quiet --all --src-tls-verify=false {} {}",
            shell_quote(&format!("docker://{host}/bench/{r}:1.0")),
            shell_quote(&format!("oci:{}:{r}", images.display()))
        );
    }
    script
}

/// The pull section of the report, between its markers.
pub(super) fn section(d: &mut String, opts: &Options, env: &Environment, set: &SetResult) {
    super::section_head(d, BEGIN, "Pull from a loopback registry", opts, env, set);
    let _ = writeln!(
        d,
        "One `docker-registry serve` on a free 127.0.0.1 port holds the image set, pushed once \
         before the runs with `skopeo copy --all` from the generated layout (untimed), so its \
         storage is warm for every pull; the images are `127.0.0.1:PORT/bench/NAME:1.0`. \
         `ferry build` pulls them over plain HTTP (a spec with no `from:`, default \
         `--concurrency 4`) straight into the bundle. The pair it replaces is `skopeo copy \
         --all` of every image into one OCI layout, then `ferry build` from that layout (a spec \
         naming the same references with `from: oci:images:NAME`); its first step is also \
         skopeo's copy alone. The cached rebuild runs `ferry build --cache DIR` against a cache \
         filled by one untimed build before the first round and kept between runs; it still \
         resolves every tag at the registry. Before each run the command's outputs are removed \
         (bundle and `ferry.lock`, or the layout). Peak disk is, per run, the largest used space \
         of the output's file system (`statvfs` every 20 ms) minus its used space at the start \
         (median, min–max); other processes on the machine write to (and delete from) the same \
         file system, so a single run can read high or low. The second figure, own files, is \
         sampled alongside from the allocated blocks of the files under `$S/{}` alone (the set, \
         the registry's storage, the cache, the layout, every output, and `TMPDIR`, which \
         every pull command is given inside it), which only the benchmark writes. The verdict \
         is by the own-files figure: on this shared machine the file system's used space moves \
         by tens of MiB within a few seconds with nothing of the benchmark running, more than \
         the 1 % margin; the file system's figure stays beside it and would show writes outside \
         `$S`. The pair's disk is the sum of its steps (the layout stays \
         while the bundle is built). MB/s is of the image blobs ({}). The registry process is \
         not counted in RSS or cpu.\n",
        set.size_mib.to_string() + "m",
        super::mib(set.blob_bytes)
    );
    super::table(d, &set.group("pull"), &set.scratch);
    let _ = writeln!(d, "{END}\n");
}

/// The target rows of this part, each starting with [`ROW_PREFIX`].
pub(super) fn target_rows(d: &mut String, set: &SetResult) {
    let (Some(f), Some(s), Some(l), Some(p), Some(c)) = (
        set.case(PULL_FERRY),
        set.case(PULL_SKOPEO),
        set.case(PULL_LAYOUT),
        set.case(PULL_PAIR),
        set.case(PULL_CACHED),
    ) else {
        return;
    };
    let label = &set.label;
    let ratio = |d: &mut String, what: String, a: &Case, b: &Case, target: f64| {
        let r = a.median() / b.median();
        let _ = writeln!(
            d,
            "{ROW_PREFIX}{what} | {r:.2}× ({:.2} s vs {:.2} s) | {:.2}× ({:.2} / {:.2} cpu-s) | {} |",
            a.median(),
            b.median(),
            a.cpu() / b.cpu(),
            a.cpu(),
            b.cpu(),
            verdict(r <= target)
        );
    };
    ratio(
        d,
        format!(
            "`ferry build` from a registry ≤ {PAIR_RATIO_TARGET}× `skopeo copy --all` + `ferry \
             build` from the layout ({label})"
        ),
        f,
        p,
        PAIR_RATIO_TARGET,
    );
    ratio(
        d,
        format!(
            "`ferry build` from a registry ≤ {SKOPEO_RATIO_TARGET:.1}× `skopeo copy --all` \
             alone ({label})"
        ),
        f,
        s,
        SKOPEO_RATIO_TARGET,
    );
    if let (Some((disk, lo, hi)), Some((own, own_lo, own_hi)), Some(bundle)) =
        (f.disk_stats(), f.disk_files_stats(), f.output_bytes)
    {
        let limit = bundle as f64 * DISK_SLACK;
        let _ = writeln!(
            d,
            "{ROW_PREFIX}`ferry build` from a registry: peak disk ≤ bundle + {:.0} % ({label}) | \
             own files {} ({}–{}); file system {} ({}–{}); bundle {}, limit {} | — | {} |",
            (DISK_SLACK - 1.0) * 100.0,
            super::mib(own),
            super::mib(own_lo),
            super::mib(own_hi),
            super::mib(disk),
            super::mib(lo),
            super::mib(hi),
            super::mib(bundle),
            super::mib(limit as u64),
            verdict(own as f64 <= limit)
        );
    }
    let _ = writeln!(
        d,
        "{ROW_PREFIX}`ferry build` from a registry: peak RSS ≤ {RSS_TARGET_MIB:.0} MiB ({label}) | \
         {:.1} MiB | — | {} |",
        f.rss_mib(),
        verdict(f.rss_mib() <= RSS_TARGET_MIB)
    );
    ratio(
        d,
        format!(
            "cached rebuild (`--cache`, warm) ≤ {CACHED_RATIO_TARGET}× `ferry build` from a \
             local layout ({label})"
        ),
        c,
        l,
        CACHED_RATIO_TARGET,
    );
}

/// Puts a newly rendered pull section and its target rows into an existing report (see
/// [`super::splice_part`]).
pub(super) fn splice(old: &str, section: &str, rows: &str) -> Option<String> {
    super::splice_part(old, (BEGIN, END, ROW_PREFIX), section, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_the_section_and_rows_and_keeps_the_rest() {
        let old = "# B\n\n## Set\n\ncore\n\n## Targets\n\ntext\n\n| t | m | c | v |\n|---|---|---|---|\n| a | 1 | — | ok |\n\n<!-- notes -->\nn\n";
        let first = splice(
            old,
            &format!("{BEGIN}\n\nsec1\n{END}\n\n"),
            "| pull: r1 | x | — | ok |\n",
        )
        .unwrap();
        assert_eq!(
            first,
            format!("# B\n\n## Set\n\ncore\n\n{BEGIN}\n\nsec1\n{END}\n\n## Targets\n\ntext\n\n| t | m | c | v |\n|---|---|---|---|\n| a | 1 | — | ok |\n| pull: r1 | x | — | ok |\n\n<!-- notes -->\nn\n")
        );
        let second = splice(
            &first,
            &format!("{BEGIN}\n\nsec2\n{END}\n\n"),
            "| pull: r2 | y | — | ok |\n",
        )
        .unwrap();
        assert_eq!(
            second,
            first
                .replace("sec1", "sec2")
                .replace("| pull: r1 | x |", "| pull: r2 | y |")
        );
        assert!(splice("no targets here\n", "s", "r").is_none());
    }
}

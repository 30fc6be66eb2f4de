//! `check`: walk an extracted bundle (or a chart folder), find destinations in values files,
//! chart templates, scripts, configuration and documentation, and classify each.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::classify::{classify, ClusterNames};
use super::fields::{Field, Tracker};
use super::finder::{self, find, key_value, split_comment, LineCtx, MARKER};
use super::phonehomes;
use super::template::{self, Env, Rendered, TNode};
use super::values::{self, Document, Node, Value, Values};
use super::{CheckOptions, Diagnostic, EgressError, Finding, Kind, Report, Source, Verdict};
use crate::bundle::archive::{Limits, MemberReader, TarEntries, TarEntry, TarPolicy};

/// Files larger than this are not read (reported as a diagnostic).
const MAX_FILE: u64 = 32 << 20;
/// Packaged charts inside packaged charts are unpacked this many levels deep; a deeper one
/// is reported and not checked.
pub const MAX_CHART_DEPTH: usize = 3;
/// What unpacking packaged charts may write over the whole check, nested ones included.
const UNPACK_LIMITS: Limits = Limits {
    max_ratio: 200,
    ratio_slack: 16 << 20,
    max_entry_size: MAX_FILE,
    max_entries: 10_000,
    max_total_size: 16 * MAX_FILE,
};
/// Evidence text is cut to this many characters.
const MAX_TEXT: usize = 240;

/// A file to read: where it is, and how it is named in the report.
#[derive(Debug, Clone)]
struct FileRef {
    abs: PathBuf,
    rel: Arc<str>,
}

/// A chart found in the folder.
#[derive(Debug)]
struct Chart {
    /// Display path of the chart folder ("" for the root).
    rel: String,
    name: String,
    /// Index of the parent chart, for subcharts.
    parent: Option<usize>,
    templates: Vec<FileRef>,
    values: Option<FileRef>,
    /// Patterns of the chart's `.helmignore`.
    ignore: Vec<String>,
    /// `version` and `appVersion` of its `Chart.yaml`.
    version: String,
    app_version: String,
}

/// A destination before classification.
#[derive(Debug, Clone)]
struct Raw {
    host: String,
    port: Option<u16>,
    kind: Kind,
    source: Source,
    file: Arc<str>,
    line: usize,
    text: Arc<str>,
    value_path: Option<String>,
    commented: bool,
}

/// What one worker produced.
#[derive(Default)]
struct Out {
    raw: Vec<Raw>,
    diags: Vec<Diagnostic>,
    services: std::collections::BTreeSet<String>,
    /// Ingress and Gateway API host names.
    inbound: std::collections::BTreeSet<String>,
    files: usize,
}

#[derive(Default)]
struct State {
    raw: Vec<Raw>,
    diags: Vec<Diagnostic>,
    files: usize,
    names: ClusterNames,
    /// Lines of every values file read, by display path, for evidence text.
    value_lines: HashMap<String, Vec<String>>,
    /// Files and bytes written by unpacking packaged charts so far.
    unpacked: Unpacked,
}

/// What unpacking packaged charts has used of `UNPACK_LIMITS`.
#[derive(Default)]
struct Unpacked {
    entries: u64,
    bytes: u64,
}

impl State {
    fn absorb(&mut self, out: Out) {
        self.raw.extend(out.raw);
        self.diags.extend(out.diags);
        self.names.services.extend(out.services);
        self.names.inbound.extend(out.inbound);
        self.files += out.files;
    }
}

/// Collect the named templates of one file. Only files that mention `define` are parsed
/// here; parse errors are reported when the file is rendered.
fn parse_phase(f: &FileRef) -> (Vec<(String, Vec<TNode>)>, Out) {
    let mut out = Out::default();
    let Some(src) = read_text(f, &mut out.diags) else {
        return (Vec::new(), out);
    };
    if !src.contains("define") && !src.contains("block") {
        return (Vec::new(), out);
    }
    match template::parse(&src) {
        Ok(t) => (t.defines, out),
        Err(_) => (Vec::new(), out),
    }
}

/// Render one template against its chart's values and scan the output.
fn render_phase(f: &FileRef, env: &Env<'_>) -> Out {
    let mut out = Out {
        files: 1,
        ..Default::default()
    };
    let Some(src) = read_text(f, &mut Vec::new()) else {
        return out;
    };
    let t = match template::parse(&src) {
        Ok(t) => t,
        Err(e) => {
            out.diags.push(Diagnostic {
                file: f.rel.to_string(),
                line: e.line,
                message: format!(
                    "template does not parse: {}; its literal text was still scanned",
                    e.message
                ),
            });
            let ctx = LineCtx {
                yaml: true,
                ..Default::default()
            };
            scan_plain_text(&src, f, Source::Template, ctx, &mut out.raw);
            return out;
        }
    };
    let source = if f.rel.ends_with("NOTES.txt") {
        Source::Doc
    } else {
        Source::Template
    };
    let src_lines: Vec<&str> = src.lines().collect();
    let mut lines = Rendered::default();
    lines.assemble(env.render_scan(&t.nodes));
    // Named templates are scanned where they are defined, too.
    for (_, body) in &t.defines {
        lines.assemble(env.render_scan(body));
    }
    collect_services(&lines, &mut out.services);
    scan_rendered(&lines, f, &src_lines, source, &mut out);
    let mut lits = Vec::new();
    scan_literals(&t.nodes, f, &src_lines, source, &mut lits);
    for (_, body) in &t.defines {
        scan_literals(body, f, &src_lines, source, &mut lits);
    }
    if !lits.is_empty() {
        // Already found in what the line renders (with its port): keep that one.
        let seen: std::collections::HashSet<(usize, &str)> =
            out.raw.iter().map(|r| (r.line, r.host.as_str())).collect();
        lits.retain(|r| !seen.contains(&(r.line, r.host.as_str())));
        out.raw.extend(lits);
    }
    out
}

/// Find and classify every destination under `opts.root`.
pub fn check(opts: &CheckOptions) -> Result<Report, EgressError> {
    if !opts.root.is_dir() {
        return Err(EgressError::NotAFolder {
            path: opts.root.clone(),
        });
    }
    let root = &bundle_root(&opts.root);
    let mut st = State::default();
    // User overlays first: a broken one is a usage error, not a finding.
    let user = load_user_values(opts, &mut st)?;

    let mut temps = Vec::new();
    let files = walk(root, "", 0, &mut temps, &mut st)?;
    let (charts, others) = layout(&files);
    for c in &charts {
        st.names.charts.insert(c.name.clone());
    }

    // Bundle-level values files (`values.yaml` beside `charts/`) overlay every chart.
    let mut bundle_values: Vec<(String, Document)> = Vec::new();
    let mut plain: Vec<(&FileRef, Source)> = Vec::new();
    for (f, src) in &others {
        if *src == Source::Values {
            if let Some(n) = load_values(f, &mut st) {
                bundle_values.push((f.rel.to_string(), n));
            }
        } else {
            plain.push((f, *src));
        }
    }

    let work: Vec<(usize, FileRef)> = charts
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.templates.iter().map(move |f| (i, f.clone())))
        .collect();
    let defines = collect_defines(&work, &mut st);
    let overlays: Vec<&(String, Document)> = bundle_values.iter().chain(user.iter()).collect();
    let merged = merge_values(&charts, &overlays, &mut st);

    // Render and scan templates (in parallel).
    let envs: Vec<Env<'_>> = (0..merged.len())
        .map(|i| env_of(&merged[i], charts.get(i), &defines))
        .collect();
    for out in crate::parallel::par_map(&work, |(i, f)| render_phase(f, &envs[*i])) {
        st.absorb(out);
    }
    for (env, v) in envs.iter().zip(&merged) {
        scan_values_tree(v.root(), ".Values", "", env, &mut st);
        scan_phone_homes(v, &mut st);
    }
    drop(envs);
    let mut seen_comments = std::collections::HashSet::new();
    for v in &merged {
        for rel in &v.files {
            if seen_comments.insert(rel.clone()) {
                scan_value_comments(rel, &mut st);
            }
        }
    }

    for (f, src) in plain {
        scan_file(f, src, &mut st);
    }
    drop(temps);
    Ok(finish(st, opts))
}

/// One chart as [`with_charts`] gives it: the templates Helm renders and their values.
pub(crate) struct ChartView<'a> {
    /// Display path of the chart folder (`mychart`, `mychart/charts/sub`).
    pub rel: &'a str,
    /// `name` of its `Chart.yaml`.
    pub name: &'a str,
    /// Index of the parent chart, for subcharts.
    pub parent: Option<usize>,
    /// Each template (file, display path); `.helmignore`d files left out.
    pub templates: Vec<(&'a Path, &'a str)>,
    /// Its `Chart.yaml` and `values.yaml`.
    pub chart_yaml: Option<&'a Path>,
    pub values: Option<&'a Path>,
    /// Its merged values, named templates and `.Chart` fields.
    pub env: &'a Env<'a>,
}

/// The hook for readers of rendered templates other than the egress check (`ferry images
/// list`): the chart folder or packaged chart `chart` and its subcharts, with `values` layered
/// on the top chart in order (`helm template -f`), handed to `f` with what could not be read.
/// Display paths start with the chart's name, as Helm's `# Source:` lines do.
pub(crate) fn with_charts<R>(
    chart: &Path,
    values: &[PathBuf],
    f: impl FnOnce(&[ChartView<'_>], Vec<Diagnostic>) -> R,
) -> Result<R, EgressError> {
    let mut st = State::default();
    let mut temps = Vec::new();
    let mut root = chart.to_path_buf();
    if chart.is_file() {
        let tmp = tempfile::tempdir().map_err(|source| EgressError::Unpack {
            path: chart.to_path_buf(),
            source,
        })?;
        unpack(chart, tmp.path(), &mut st.unpacked).map_err(|e| EgressError::Unpack {
            path: chart.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        root = std::fs::read_dir(tmp.path())
            .ok()
            .and_then(|mut rd| rd.find_map(|e| e.ok().map(|e| e.path())))
            .unwrap_or_else(|| tmp.path().to_path_buf());
        temps.push(tmp);
    }
    let text =
        std::fs::read_to_string(root.join("Chart.yaml")).map_err(|source| EgressError::Read {
            path: root.join("Chart.yaml"),
            source,
        })?;
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("name:"))
        .map(|n| n.trim().trim_matches(['"', '\'']).to_string())
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .unwrap_or_else(|| "chart".into());
    let opts = CheckOptions {
        root: root.clone(),
        allow: None,
        values: values.to_vec(),
        fail_on: Default::default(),
        declared: Vec::new(),
    };
    let user = load_user_values(&opts, &mut st)?;
    let files = walk(&root, &name, 0, &mut temps, &mut st)?;
    let (charts, _) = layout(&files);
    let work: Vec<(usize, FileRef)> = charts
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.templates.iter().map(move |f| (i, f.clone())))
        .collect();
    let defines = collect_defines(&work, &mut st);
    let overlays: Vec<&(String, Document)> = user.iter().collect();
    let merged = merge_values(&charts, &overlays, &mut st);
    let envs: Vec<Env<'_>> = (0..merged.len())
        .map(|i| env_of(&merged[i], charts.get(i), &defines))
        .collect();
    let views: Vec<ChartView<'_>> = charts
        .iter()
        .zip(&envs)
        .map(|(c, env)| ChartView {
            rel: &c.rel,
            name: &c.name,
            parent: c.parent,
            templates: c.templates.iter().map(|t| (&*t.abs, &*t.rel)).collect(),
            chart_yaml: files
                .iter()
                .find(|f| f.rel.strip_suffix("/Chart.yaml") == Some(c.rel.as_str()))
                .map(|f| &*f.abs),
            values: c.values.as_ref().map(|f| &*f.abs),
            env,
        })
        .collect();
    Ok(f(&views, st.diags))
}

/// The user's `--values` files, read in order; a broken one is a usage error.
fn load_user_values(
    opts: &CheckOptions,
    st: &mut State,
) -> Result<Vec<(String, Document)>, EgressError> {
    let mut user = Vec::new();
    for p in &opts.values {
        let text = std::fs::read_to_string(p).map_err(|source| EgressError::Read {
            path: p.clone(),
            source,
        })?;
        let rel = p.display().to_string();
        let node = values::load(&text).map_err(|e| EgressError::Values {
            path: p.clone(),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        st.value_lines
            .insert(rel.clone(), text.lines().map(str::to_string).collect());
        st.files += 1;
        user.push((rel, node));
    }
    Ok(user)
}

/// Parse every template (in parallel) to collect the named templates, which a chart shares
/// with its subcharts. Templates are parsed again when rendered, so only one file per worker
/// is held in memory at a time.
fn collect_defines(work: &[(usize, FileRef)], st: &mut State) -> HashMap<String, Vec<TNode>> {
    let mut defines: HashMap<String, Vec<TNode>> = HashMap::new();
    for (defs, out) in crate::parallel::par_map(work, |(_, f)| parse_phase(f)) {
        for (name, body) in defs {
            defines.entry(name).or_insert(body);
        }
        st.absorb(out);
    }
    defines
}

/// Merged values per chart: chart values, then the bundle's and the user's (`overlays`); a
/// subchart sees its parent's `<name>:` section and `global:`. Without charts, the overlays
/// alone.
fn merge_values(charts: &[Chart], overlays: &[&(String, Document)], st: &mut State) -> Vec<Values> {
    let mut merged: Vec<Values> = Vec::new();
    for chart in charts {
        let mut v = Values::empty();
        if let Some(f) = chart.values.clone() {
            if let Some(doc) = load_values(&f, st) {
                v.layer(&f.rel, &doc);
            }
        }
        match chart.parent {
            Some(p) => v.layer_parent(&merged[p], &chart.name),
            None => {
                for (rel, doc) in overlays {
                    v.layer(rel, doc);
                }
            }
        }
        merged.push(v);
    }
    if charts.is_empty() && !overlays.is_empty() {
        let mut v = Values::empty();
        for (rel, doc) in overlays {
            v.layer(rel, doc);
        }
        merged.push(v);
    }
    merged
}

/// What rendering a chart's templates needs.
fn env_of<'a>(
    values: &'a Values,
    chart: Option<&'a Chart>,
    defines: &'a HashMap<String, Vec<TNode>>,
) -> Env<'a> {
    Env {
        values,
        defines,
        chart_name: chart.map_or("", |c| c.name.as_str()),
        chart_version: chart.map_or("", |c| c.version.as_str()),
        app_version: chart.map_or("", |c| c.app_version.as_str()),
        cache: Default::default(),
    }
}

fn finish(mut st: State, opts: &CheckOptions) -> Report {
    let allow = opts.allow.as_ref();
    let mut raw = std::mem::take(&mut st.raw);
    // One finding per (file, line, host, port); the most specific shape wins (a registry over
    // a plain host, then one that knows its values path). Workers emit in file order, so this
    // sort sees long sorted runs.
    let rank = |r: &Raw| u8::from(r.kind == Kind::Registry) * 2 + u8::from(r.value_path.is_some());
    let same_file = |a: &Raw, b: &Raw| Arc::ptr_eq(&a.file, &b.file) || a.file == b.file;
    raw.sort_by(|a, b| {
        let files = if Arc::ptr_eq(&a.file, &b.file) {
            std::cmp::Ordering::Equal
        } else {
            a.file.cmp(&b.file)
        };
        files
            .then_with(|| (a.line, &a.host, a.port).cmp(&(b.line, &b.host, b.port)))
            .then_with(|| rank(b).cmp(&rank(a)))
    });
    raw.dedup_by(|b, a| {
        a.line == b.line && a.port == b.port && a.host == b.host && same_file(a, b)
    });
    // Classify each distinct destination once.
    type Judged = (Option<u16>, Verdict, Option<String>);
    let mut memo: HashMap<String, Vec<Judged>> = HashMap::new();
    let mut findings = Vec::with_capacity(raw.len());
    for r in raw {
        let known = memo
            .get(r.host.as_str())
            .and_then(|v| v.iter().find(|(p, _, _)| *p == r.port))
            .map(|(_, v, rule)| (*v, rule.clone()));
        let (verdict, rule) = match known {
            Some(k) => k,
            None => {
                let k = classify(&r.host, r.port, allow, &st.names);
                memo.entry(r.host.clone())
                    .or_default()
                    .push((r.port, k.0, k.1.clone()));
                k
            }
        };
        let host = if r.host.contains(MARKER) {
            finder::shown(&r.host)
        } else {
            r.host
        };
        findings.push(Finding {
            host,
            port: r.port,
            verdict,
            rule,
            file: r.file.to_string(),
            line: r.line,
            text: r.text.to_string(),
            value_path: r.value_path,
            kind: r.kind,
            source: r.source,
            commented: r.commented,
        });
    }
    let mut report = Report {
        findings,
        diagnostics: st.diags,
        declared: opts.declared.clone(),
        allow: opts.allow.clone(),
        ..Default::default()
    };
    report
        .diagnostics
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    report.summarize(&opts.fail_on, st.files);
    report
}

/// `tar -xzf` of a bundle gives one folder `NAME-VERSION/`: when `dir` holds only that
/// folder, check inside it.
fn bundle_root(dir: &Path) -> PathBuf {
    let looks_like_bundle = |d: &Path| d.join("Chart.yaml").exists() || d.join("charts").is_dir();
    if looks_like_bundle(dir) {
        return dir.to_path_buf();
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    match entries.as_slice() {
        [only]
            if only.is_dir()
                && (only.join("ferry.json").exists() || only.join("charts").is_dir()) =>
        {
            only.clone()
        }
        _ => dir.to_path_buf(),
    }
}

/// Walk `dir`, returning files in name order; packaged charts are unpacked beside it.
/// `depth` is the number of packaged charts `dir` is inside.
fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    temps: &mut Vec<tempfile::TempDir>,
    st: &mut State,
) -> Result<Vec<FileRef>, EgressError> {
    let mut out = Vec::new();
    let it = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            !(e.depth() == 1 && prefix.is_empty() && name == "images") && name != ".git"
        });
    for entry in it {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                st.diags.push(Diagnostic {
                    file: prefix.to_string(),
                    line: 0,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let rel_inner = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let rel_inner = rel_inner
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let rel = if prefix.is_empty() {
            rel_inner
        } else {
            format!("{prefix}/{rel_inner}")
        };
        let is_chart_pkg =
            rel.ends_with(".tgz") && (rel.starts_with("charts/") || rel.contains("/charts/"));
        if is_chart_pkg {
            if depth >= MAX_CHART_DEPTH {
                st.diags.push(Diagnostic {
                    file: rel,
                    line: 0,
                    message: format!(
                        "packaged chart nested {} levels deep; packaged charts are unpacked \
                         {MAX_CHART_DEPTH} levels deep at most, so it was not checked",
                        depth + 1
                    ),
                });
                continue;
            }
            let tmp = tempfile::tempdir().map_err(|source| EgressError::Unpack {
                path: entry.path().to_path_buf(),
                source,
            })?;
            match unpack(entry.path(), tmp.path(), &mut st.unpacked) {
                Ok(()) => {
                    let inner = walk(tmp.path(), &rel, depth + 1, temps, st)?;
                    out.extend(inner);
                    temps.push(tmp);
                }
                Err(e) => st.diags.push(Diagnostic {
                    file: rel,
                    line: 0,
                    message: format!(
                        "packaged chart could not be unpacked ({e}); it was not checked"
                    ),
                }),
            }
            continue;
        }
        out.push(FileRef {
            abs: entry.path().to_path_buf(),
            rel: rel.into(),
        });
    }
    Ok(out)
}

/// Unpack a packaged chart through the archive reader: regular files with safe names only,
/// within what is left of `UNPACK_LIMITS` for the whole check.
fn unpack(tgz: &Path, to: &Path, used: &mut Unpacked) -> Result<(), String> {
    if used.entries >= UNPACK_LIMITS.max_entries || used.bytes >= UNPACK_LIMITS.max_total_size {
        return Err(format!(
            "packaged charts have already unpacked {} files and {} bytes in this check, the \
             most one check unpacks is {} files or {} MiB",
            used.entries,
            used.bytes,
            UNPACK_LIMITS.max_entries,
            UNPACK_LIMITS.max_total_size >> 20
        ));
    }
    let f = File::open(tgz).map_err(|e| e.to_string())?;
    let limits = Limits {
        max_entries: UNPACK_LIMITS.max_entries.saturating_sub(used.entries),
        max_total_size: UNPACK_LIMITS.max_total_size.saturating_sub(used.bytes),
        ..UNPACK_LIMITS
    };
    let mut ar = tar::Archive::new(MemberReader::foreign(f, limits));
    let mut entries =
        TarEntries::new(&mut ar, TarPolicy::foreign(limits)).map_err(|e| e.to_string())?;
    while let Some(TarEntry { name, mut entry }) =
        entries.next_entry().map_err(|e| e.to_string())?
    {
        used.entries += 1;
        used.bytes += entry.size();
        let dest = to.join(name.as_str());
        let written = (|| {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = File::create(&dest)?;
            std::io::copy(&mut entry, &mut out)
        })();
        written.map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Sort files into charts and everything else.
fn layout(files: &[FileRef]) -> (Vec<Chart>, Vec<(FileRef, Source)>) {
    let mut charts: Vec<Chart> = Vec::new();
    for f in files {
        let (dir, name) = match f.rel.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n),
            None => (String::new(), &*f.rel),
        };
        if name == "Chart.yaml" {
            let text = std::fs::read_to_string(&f.abs).unwrap_or_default();
            let chart_name = text
                .lines()
                .find_map(|l| l.strip_prefix("name:"))
                .map(|n| n.trim().trim_matches(['"', '\'']).to_string())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| dir.rsplit('/').next().unwrap_or("chart").to_string());
            let ignore = f
                .abs
                .parent()
                .map(|d| helmignore(&d.join(".helmignore")))
                .unwrap_or_default();
            let field = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|n| n.trim().trim_matches(['"', '\'']).to_string())
                    .unwrap_or_default()
            };
            charts.push(Chart {
                ignore,
                version: field("version:"),
                app_version: field("appVersion:"),
                rel: dir,
                name: chart_name,
                parent: None,
                templates: Vec::new(),
                values: None,
            });
        }
    }
    // Parents before children: shorter paths first.
    charts.sort_by_key(|c| {
        (
            c.rel.matches('/').count() + usize::from(!c.rel.is_empty()),
            c.rel.clone(),
        )
    });
    for i in 0..charts.len() {
        charts[i].parent = (0..i)
            .rev()
            .find(|&j| within(&charts[i].rel, &charts[j].rel));
    }
    let mut others = Vec::new();
    for f in files {
        let owner = (0..charts.len())
            .rev()
            .find(|&j| within(&f.rel, &charts[j].rel));
        match owner {
            Some(j) => {
                let inner = inner_path(&f.rel, &charts[j].rel);
                // Helm reads the `.helmignore` of the chart folder it loads, for every file
                // under it, subchart folders included.
                let root = &charts[loaded_from(&charts, j)];
                if helm_ignores(&root.ignore, inner_path(&f.rel, &root.rel)) || not_shipped(inner) {
                    // Not part of the installed chart: `.helmignore`d files, chart-testing
                    // values under `ci/`, helm-docs templates.
                } else if inner.starts_with("templates/") {
                    charts[j].templates.push(f.clone());
                } else if inner == "values.yaml" {
                    charts[j].values = Some(f.clone());
                } else if inner == "Chart.yaml"
                    || inner.ends_with(".md")
                    || schema_file(inner)
                    || inner.ends_with(".txt")
                {
                    others.push((f.clone(), Source::Doc));
                } else if inner == ".helmignore" || inner == "Chart.lock" {
                } else {
                    others.push((f.clone(), source_of(&f.rel)));
                }
            }
            None => {
                let top = !f.rel.contains('/');
                if top && values::is_values_file(Path::new(&*f.rel)) {
                    others.push((f.clone(), Source::Values));
                } else if &*f.rel == "ferry.json" || f.rel.ends_with(".sig") {
                } else {
                    others.push((f.clone(), source_of(&f.rel)));
                }
            }
        }
    }
    (charts, others)
}

/// The patterns of a `.helmignore` file (none when there is no such file).
fn helmignore(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// `path` relative to the chart folder `dir` ("" for the root).
fn inner_path<'p>(path: &'p str, dir: &str) -> &'p str {
    if dir.is_empty() {
        path
    } else {
        &path[dir.len() + 1..]
    }
}

/// The chart whose folder Helm loads when it installs chart `j`: the outermost parent reached
/// through folders only. A chart unpacked from a packaged chart is loaded from its archive,
/// which holds what packaging kept.
fn loaded_from(charts: &[Chart], j: usize) -> usize {
    let mut j = j;
    while let Some(p) = charts[j].parent {
        if inner_path(&charts[j].rel, &charts[p].rel).contains(".tgz/") {
            break;
        }
        j = p;
    }
    j
}

/// Whether `inner` (a path inside a chart) is not part of what the chart installs although
/// Helm packages it: a chart-testing values file under `ci/`, a helm-unittest suite
/// (`tests/*_test.yaml`), or a `*.gotmpl` document.
fn not_shipped(inner: &str) -> bool {
    inner.starts_with("ci/")
        || inner.ends_with(".gotmpl")
        || (inner.starts_with("tests/") && inner.ends_with("_test.yaml"))
}

/// A JSON schema (`values.schema.json`, `*.schema.json`, `*.schema.yaml`): it describes values
/// or configuration, and nothing connects to what it says, so it is read as documentation.
fn schema_file(inner: &str) -> bool {
    let lower = inner.to_ascii_lowercase();
    [".schema.json", ".schema.yaml", ".schema.yml"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Whether Helm leaves `path` (relative to the chart folder it loads) out of the chart, by the
/// rules of that folder's `.helmignore` and Helm's own `templates/.?*`: Helm walks the folder
/// and skips what a rule matches, a folder with everything in it. Rules are shell globs in
/// which `*`, `?` and `[…]` never match `/`; a rule with a `/` matches the path from the chart
/// folder, one without matches the last name; a trailing `/` matches folders only. Negated
/// (`!`) rules are not followed: Helm reads one as "leave out everything it does not match",
/// which no chart that loads can have.
fn helm_ignores(rules: &[String], path: &str) -> bool {
    let mut from = 0;
    loop {
        let slash = path[from..].find('/').map(|i| from + i);
        let prefix = slash.map_or(path, |i| &path[..i]);
        if rules
            .iter()
            .map(String::as_str)
            .chain(["templates/.?*"])
            .any(|rule| rule_matches(rule, prefix, slash.is_some()))
        {
            return true;
        }
        match slash {
            Some(i) => from = i + 1,
            None => return false,
        }
    }
}

/// Whether one `.helmignore` rule matches a path (a folder when `dir`).
fn rule_matches(rule: &str, path: &str, dir: bool) -> bool {
    if rule.starts_with('!') {
        return false;
    }
    let (rule, dir_only) = match rule.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rule, false),
    };
    if dir_only && !dir {
        return false;
    }
    if let Some(r) = rule.strip_prefix('/') {
        glob(r, path)
    } else if rule.contains('/') {
        glob(rule, path)
    } else {
        glob(rule, path.rsplit('/').next().unwrap_or(path))
    }
}

/// A shell glob as Go's `filepath.Match` reads it: `*` (any run of characters but `/`), `?`
/// (one character but `/`), `[…]` classes with ranges and `^`, and `\` escapes.
fn glob(p: &str, s: &str) -> bool {
    let (p, s) = (p.as_bytes(), s.as_bytes());
    let (mut i, mut j) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while j < s.len() {
        if p.get(i) == Some(&b'*') {
            star = Some(i);
            mark = j;
            i += 1;
            continue;
        }
        if let Some(len) = glob_one(&p[i..], s[j]) {
            i += len;
            j += 1;
            continue;
        }
        // Let the last `*` take one more character, unless that is a `/`.
        match star {
            Some(st) if s[mark] != b'/' => {
                mark += 1;
                j = mark;
                i = st + 1;
            }
            _ => return false,
        }
    }
    while p.get(i) == Some(&b'*') {
        i += 1;
    }
    i == p.len()
}

/// The length of the pattern item at the start of `p` when it matches the character `c`.
fn glob_one(p: &[u8], c: u8) -> Option<usize> {
    match *p.first()? {
        b'?' => (c != b'/').then_some(1),
        b'\\' => (p.get(1) == Some(&c)).then_some(2),
        b'[' => {
            let negated = p.get(1) == Some(&b'^');
            let mut k = 1 + usize::from(negated);
            let mut hit = false;
            while let Some(&lo) = p.get(k) {
                if lo == b']' && k > 1 + usize::from(negated) {
                    return (hit != negated && c != b'/').then_some(k + 1);
                }
                let lo = if lo == b'\\' {
                    k += 1;
                    *p.get(k)?
                } else {
                    lo
                };
                if p.get(k + 1) == Some(&b'-') && p.get(k + 2).is_some_and(|h| *h != b']') {
                    let hi = *p.get(k + 2)?;
                    hit |= lo <= c && c <= hi;
                    k += 3;
                } else {
                    hit |= lo == c;
                    k += 1;
                }
            }
            None
        }
        b => (b == c).then_some(1),
    }
}

fn within(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

fn source_of(rel: &str) -> Source {
    let lower = rel.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    if lower.starts_with("scripts/")
        || [".sh", ".bash", ".py", ".ps1", ".zsh"]
            .iter()
            .any(|e| name.ends_with(e))
        || name == "dockerfile"
        || name == "makefile"
    {
        Source::Script
    } else if [".md", ".txt", ".rst", ".adoc", ".html"]
        .iter()
        .any(|e| name.ends_with(e))
        || name.starts_with("license")
        || name.starts_with("notice")
        || name.starts_with("changelog")
    {
        Source::Doc
    } else {
        Source::Config
    }
}

fn read_text(f: &FileRef, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let meta = std::fs::metadata(&f.abs).ok()?;
    if meta.len() > MAX_FILE {
        diags.push(Diagnostic {
            file: f.rel.to_string(),
            line: 0,
            message: format!("larger than {} MiB; not checked", MAX_FILE >> 20),
        });
        return None;
    }
    match std::fs::read(&f.abs) {
        Ok(bytes) if bytes.iter().take(8192).any(|&b| b == 0) => None,
        Ok(bytes) => Some(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        Err(e) => {
            diags.push(Diagnostic {
                file: f.rel.to_string(),
                line: 0,
                message: format!("cannot read: {e}"),
            });
            None
        }
    }
}

fn load_values(f: &FileRef, st: &mut State) -> Option<Document> {
    st.files += 1;
    let text = read_text(f, &mut st.diags)?;
    st.value_lines.insert(
        f.rel.to_string(),
        text.lines().map(str::to_string).collect(),
    );
    match values::load_noting_refusal(&text) {
        Ok((n, refused)) => {
            if let Some(e) = refused {
                st.diags.push(Diagnostic {
                    file: f.rel.to_string(),
                    line: e.line,
                    message: format!(
                        "Helm will not read this values file (column {}: {}); its values were still checked",
                        e.column, e.message
                    ),
                });
            }
            Some(n)
        }
        Err(e) => {
            st.diags.push(Diagnostic {
                file: f.rel.to_string(),
                line: e.line,
                message: format!("values file is not valid YAML (column {}: {}); its text was scanned line by line instead", e.column, e.message),
            });
            scan_plain_text(
                &text,
                f,
                Source::Values,
                LineCtx {
                    yaml: true,
                    ..Default::default()
                },
                &mut st.raw,
            );
            None
        }
    }
}

/// Evidence text: trimmed, credentials redacted, cut to a readable length.
fn evidence(line: &str) -> String {
    let t = finder::redact_tokens(&finder::redact_secrets(&finder::redact(line.trim())));
    if t.chars().count() > MAX_TEXT {
        let mut s: String = t.chars().take(MAX_TEXT).collect();
        s.push('…');
        s
    } else {
        t
    }
}

fn env_name(line: &str) -> Option<&str> {
    let t = line.trim_start().strip_prefix("- ")?.trim_start();
    let v = t.strip_prefix("name:")?.trim();
    Some(v.trim_matches(['"', '\'']))
}

fn scan_values_tree(node: Node<'_>, path: &str, key: &str, env: &Env<'_>, st: &mut State) {
    match node.value() {
        Value::Map(m) => scan_values_map(&m, path, key, env, st),
        Value::Seq(s) => {
            for (i, child) in s.into_iter().enumerate() {
                scan_values_tree(child, &format!("{path}[{i}]"), key, env, st);
            }
        }
        Value::Str(s) => scan_values_str(node, &s, path, key, env, st),
        _ => {}
    }
}

/// A values mapping: image maps are registries; `{name, value}` entries name their value.
fn scan_values_map(
    m: &[(std::borrow::Cow<'_, str>, Node<'_>)],
    path: &str,
    key: &str,
    env: &Env<'_>,
    st: &mut State,
) {
    let v = env.values;
    let get = |k: &str| m.iter().find(|(mk, _)| mk == k).map(|&(_, n)| n);
    // `{registry, repository, tag}` image maps.
    if let (Some(reg), Some(_)) = (get("registry"), get("repository").or_else(|| get("image"))) {
        if let Some(r) = reg.as_text().filter(|r| !r.is_empty()) {
            let (host, port) = finder::image_registry(&format!("{r}/x"))
                .unwrap_or((finder::normalize_host(&r), None));
            push_value(
                &reg,
                &format!("{path}.registry"),
                host,
                port,
                Kind::Registry,
                v,
                st,
            );
        }
        for (k, child) in m {
            if k != "registry" && k != "repository" && k != "image" {
                scan_values_tree(*child, &format!("{path}.{k}"), k, env, st);
            }
        }
        return;
    }
    // `{repository, tag}` image maps without a registry: the repository is a whole
    // reference, on Docker Hub when it names no registry.
    if let (None, Some(repo)) = (get("registry"), get("repository")) {
        let imageish = finder::image_key(key) || get("tag").is_some() || get("digest").is_some();
        if let Some(r) = repo.as_text().filter(|r| imageish && !r.is_empty()) {
            if let Some((host, port)) = finder::image_registry(&r) {
                push_value(
                    &repo,
                    &format!("{path}.repository"),
                    host,
                    port,
                    Kind::Registry,
                    v,
                    st,
                );
                for (k, child) in m {
                    if k != "repository" {
                        scan_values_tree(*child, &format!("{path}.{k}"), k, env, st);
                    }
                }
                return;
            }
        }
    }
    // `{name: X, value: Y}` env entries: X names what Y is.
    let env_name = get("name").and_then(|n| n.as_text());
    for (k, child) in m {
        let key = match (&env_name, k.as_ref()) {
            (Some(n), "value") => n.as_str(),
            _ => k.as_ref(),
        };
        scan_values_tree(*child, &format!("{path}.{k}"), key, env, st);
    }
}

/// A values string: one line, or a block of configuration text scanned line by line.
fn scan_values_str(node: Node<'_>, s: &str, path: &str, key: &str, env: &Env<'_>, st: &mut State) {
    let v = env.values;
    if s.contains('\n') {
        // Embedded configuration may be YAML (an Argo CD `resource.exclusions` list): its
        // own fields decide, as in a rendered object.
        let mut fields = Tracker::default();
        for (i, l) in s.lines().enumerate() {
            let line = node.line() + i + usize::from(node.block());
            if fields.line(l) == Field::NotDestination {
                continue;
            }
            let (code, comment) = split_comment(l);
            for (part, commented) in [(code, false), (comment.unwrap_or(""), true)] {
                let part = part.trim_start_matches('#');
                for h in find(
                    part,
                    LineCtx {
                        yaml: true,
                        shell: true,
                        env_name: None,
                    },
                ) {
                    push_raw(
                        st,
                        v,
                        &node,
                        line,
                        Some(path),
                        h.host,
                        h.port,
                        h.kind,
                        commented,
                    );
                }
            }
        }
        return;
    }
    // Template text inside values (`tpl` strings) is evaluated against the values;
    // what cannot be computed becomes the unresolved marker.
    let s = if s.contains("{{") {
        env.render_text(s).unwrap_or_else(|| blank_actions(s))
    } else {
        s.to_string()
    };
    let synthetic = format!("{}: {s}", if key.is_empty() { "value" } else { key });
    let klen = synthetic.len() - s.len();
    let own = own_address(path, key);
    for h in find(
        &synthetic,
        LineCtx {
            yaml: true,
            ..Default::default()
        },
    ) {
        if own && !h.host.contains(MARKER) {
            st.names.inbound.insert(h.host.clone());
        }
        if h.start >= klen {
            push_raw(
                st,
                v,
                &node,
                node.line(),
                Some(path),
                h.host,
                h.port,
                h.kind,
                false,
            );
        }
    }
}

/// A values key that names the chart's own external address (clients reach the chart there):
/// `externalUrl`, `publicUrl`, `rootUrl` and kin, a top-level or `global` `domain`, and the
/// hosts and domain of an `ingress` section.
fn own_address(path: &str, key: &str) -> bool {
    const OWN: &[&str] = &[
        "externalurl",
        "publicurl",
        "rooturl",
        "root_url",
        "externalhost",
        "externalhostname",
        "publichost",
        "publichostname",
    ];
    let k = key.to_ascii_lowercase();
    let ingress = path.to_ascii_lowercase().contains(".ingress");
    // `domain` names the chart's own address only at the top of the values (Argo CD's
    // `global.domain`) or in an ingress section (`ingressPerReplica.hostDomain`, the domain
    // of per-replica Ingress hosts); elsewhere it is often a third party's (`smtp.domain`).
    let own_domain = k == "domain" && matches!(path, ".Values.domain" | ".Values.global.domain")
        || ingress && matches!(k.as_str(), "domain" | "hostdomain");
    own_domain
        || OWN.contains(&k.as_str())
        || (ingress && matches!(k.as_str(), "host" | "hosts" | "hostname"))
}

/// Known phone-homes of the software the values deploy, at the setting that controls each.
fn scan_phone_homes(v: &Values, st: &mut State) {
    for hit in phonehomes::find(v) {
        let Some(file) = v.files.get(hit.node.file()) else {
            continue;
        };
        let lines = st.value_lines.get(file);
        let mut line = hit.node.line();
        if let (Some(key), Some(lines)) = (&hit.key, lines) {
            // A collection's line is its first entry's; the evidence is its key's line.
            let head = format!("{key}:");
            if let Some(i) = (0..line.min(lines.len())).rev().find(|&i| {
                lines[i]
                    .trim_start()
                    .trim_start_matches("- ")
                    .starts_with(&head)
            }) {
                line = i + 1;
            }
        }
        let source_text = lines
            .and_then(|ls| ls.get(line.wrapping_sub(1)))
            .map(|l| evidence(l))
            .unwrap_or_default();
        let e = hit.entry;
        let text: String = format!("{source_text}  [{} by default; off: {}]", e.purpose, e.off)
            .chars()
            .take(MAX_TEXT)
            .collect();
        st.raw.push(Raw {
            host: e.host.clone(),
            port: Some(e.port),
            kind: Kind::PhoneHome,
            source: Source::Values,
            file: file.as_str().into(),
            line,
            text: text.into(),
            value_path: Some(hit.path),
            commented: false,
        });
    }
}

fn push_value(
    node: &Node<'_>,
    path: &str,
    host: String,
    port: Option<u16>,
    kind: Kind,
    v: &Values,
    st: &mut State,
) {
    push_raw(
        st,
        v,
        node,
        node.line(),
        Some(path),
        host,
        port,
        kind,
        false,
    );
}

#[allow(clippy::too_many_arguments)]
fn push_raw(
    st: &mut State,
    v: &Values,
    node: &Node<'_>,
    line: usize,
    path: Option<&str>,
    host: String,
    port: Option<u16>,
    kind: Kind,
    commented: bool,
) {
    let Some(file) = v.files.get(node.file()) else {
        return;
    };
    let text = st
        .value_lines
        .get(file)
        .and_then(|ls| ls.get(line.wrapping_sub(1)))
        .map(|l| evidence(l))
        .unwrap_or_default();
    st.raw.push(Raw {
        host,
        port,
        kind,
        source: Source::Values,
        file: file.as_str().into(),
        line,
        text: text.into(),
        value_path: path.map(str::to_string),
        commented,
    });
}

fn scan_value_comments(rel: &str, st: &mut State) {
    let Some(lines) = st.value_lines.get(rel) else {
        return;
    };
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let (_, Some(comment)) = split_comment(l) else {
            continue;
        };
        let body = comment.trim_start_matches('#').trim_start();
        for h in find(
            body,
            LineCtx {
                yaml: true,
                ..Default::default()
            },
        ) {
            found.push(Raw {
                host: h.host,
                port: h.port,
                kind: h.kind,
                source: Source::Values,
                file: rel.into(),
                line: i + 1,
                text: evidence(l).into(),
                value_path: None,
                commented: true,
            });
        }
    }
    st.raw.extend(found);
}

/// Scan the rendered lines of one template.
fn scan_rendered(lines: &Rendered, f: &FileRef, src: &[&str], source: Source, o: &mut Out) {
    let mut prev_env: Option<&str> = None;
    let mut fields = Tracker::default();
    let out = &mut o.raw;
    for rl in lines.lines() {
        let ctx = LineCtx {
            yaml: true,
            shell: false,
            env_name: prev_env,
        };
        let field = fields.line(rl.text);
        if field == Field::NotDestination {
            prev_env = env_name(rl.text);
            continue;
        }
        let hits = find(rl.text, ctx);
        if field == Field::Inbound {
            inbound_names(rl.text, &hits, &mut o.inbound);
        }
        // Most lines have neither a hit nor an unresolved action: no comment split for them.
        if hits.is_empty() && !rl.text.contains(MARKER) {
            prev_env = env_name(rl.text);
            continue;
        }
        let code_len = split_comment(rl.text).0.len();
        let marker = rl.text[..code_len].find(MARKER);
        if hits.is_empty() && marker.is_none() {
            prev_env = env_name(rl.text);
            continue;
        }
        // Evidence is the template's own line, shared by every finding on it.
        let text: Arc<str> = src
            .get(rl.line.wrapping_sub(1))
            .map(|l| evidence(l))
            .unwrap_or_default()
            .into();
        let mut covered = Vec::new();
        for h in hits {
            let segs = || {
                rl.segs
                    .iter()
                    .filter(|s| s.start < h.end && h.start < s.end)
            };
            let path = segs().find_map(|s| rl.path(s)).map(str::to_string);
            // Unresolved only when what could not be computed is in the host itself: an
            // unknown tag leaves `quay.io/app:{{?}}` on `quay.io`.
            let span = rl.text[h.start..h.end]
                .to_ascii_lowercase()
                .find(h.host.as_str())
                .map(|i| (h.start + i, h.start + i + h.host.len()));
            let unresolved = span.is_some_and(|(a, b)| {
                rl.segs
                    .iter()
                    .any(|s| s.unresolved && s.start < b && a < s.end)
            });
            let commented =
                h.start >= code_len || segs().all(|s| s.commented) && segs().next().is_some();
            let mut host = h.host;
            if unresolved && !host.contains(MARKER) {
                host.push(MARKER);
            }
            covered.push((h.start, h.end));
            out.push(Raw {
                host,
                port: h.port,
                kind: h.kind,
                source,
                file: f.rel.clone(),
                line: rl.line,
                text: text.clone(),
                value_path: path,
                commented,
            });
        }
        // An unresolved action in a place that names a destination is reported, not skipped.
        if let Some(pos) = marker {
            if !covered.iter().any(|(s, e)| *s <= pos && pos < *e) {
                if let Some((key, value, _)) = key_value(rl.text, ctx) {
                    let hostish = finder::host_like_key(key)
                        || finder::image_key(key)
                        || (key == "value" && prev_env.is_some_and(finder::host_like_key));
                    if hostish && value.contains(MARKER) {
                        let path = rl
                            .segs
                            .iter()
                            .find(|s| s.unresolved)
                            .and_then(|s| rl.path(s))
                            .map(str::to_string);
                        out.push(Raw {
                            host: finder::redact_tokens(&finder::redact(value))
                                .chars()
                                .take(120)
                                .collect(),
                            port: None,
                            kind: if finder::image_key(key) {
                                Kind::Registry
                            } else {
                                Kind::Host
                            },
                            source,
                            file: f.rel.clone(),
                            line: rl.line,
                            text: text.clone(),
                            value_path: path,
                            commented: false,
                        });
                    }
                }
            }
        }
        prev_env = env_name(rl.text);
    }
}

/// Destinations written as string literals inside template actions, such as the registry in
/// `default "docker.io" .image.registry`: what the template renders when a value is empty.
fn scan_literals(nodes: &[TNode], f: &FileRef, src: &[&str], source: Source, out: &mut Vec<Raw>) {
    for node in nodes {
        let (exprs, children): (Vec<(&str, usize)>, Vec<&[TNode]>) = match node {
            TNode::Action { expr, line } => (vec![(expr.as_str(), *line)], Vec::new()),
            TNode::If { branches } => (
                Vec::new(),
                branches.iter().map(|(_, b)| b.as_slice()).collect(),
            ),
            TNode::With {
                body, otherwise, ..
            }
            | TNode::Range {
                body, otherwise, ..
            } => (Vec::new(), vec![body.as_slice(), otherwise.as_slice()]),
            TNode::Text { .. } | TNode::Comment { .. } => (Vec::new(), Vec::new()),
        };
        for (expr, line) in exprs {
            if !expr.contains('"') {
                continue;
            }
            for lit in string_literals(expr) {
                if lit.contains(['%', '{', '$']) || lit.is_empty() {
                    continue;
                }
                let synthetic = format!("value: {lit}");
                let ctx = LineCtx {
                    yaml: true,
                    ..Default::default()
                };
                for h in find(&synthetic, ctx) {
                    let text = src
                        .get(line.wrapping_sub(1))
                        .map(|l| evidence(l))
                        .unwrap_or_default();
                    out.push(Raw {
                        host: h.host,
                        port: h.port,
                        kind: h.kind,
                        source,
                        file: f.rel.clone(),
                        line,
                        text: text.into(),
                        value_path: None,
                        commented: false,
                    });
                }
            }
        }
        for c in children {
            scan_literals(c, f, src, source, out);
        }
    }
}

/// The double-quoted string literals of a template action, except the template names that
/// `include`, `template`, `define` and `block` take (`include "app.config.cm" .`).
fn string_literals(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.char_indices();
    while let Some((at, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        let before = expr[..at].trim_end();
        let names_template = ["include", "template", "define", "block"]
            .iter()
            .any(|w| before.ends_with(w));
        let mut lit = String::new();
        let mut closed = false;
        while let Some((_, d)) = chars.next() {
            match d {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        lit.push(e);
                    }
                }
                '"' => {
                    closed = true;
                    break;
                }
                d => lit.push(d),
            }
        }
        if closed && !names_template {
            out.push(lit);
        }
    }
    out
}

/// The host names on an inbound line: every hit, and the whole value (`"*.apps.example.org"`).
fn inbound_names(
    text: &str,
    hits: &[finder::Hit],
    inbound: &mut std::collections::BTreeSet<String>,
) {
    for h in hits {
        if !h.host.contains(MARKER) {
            inbound.insert(h.host.clone());
        }
    }
    let ctx = LineCtx {
        yaml: true,
        ..Default::default()
    };
    if let Some((_, v, _)) = key_value(text, ctx) {
        let v = v.trim_matches(['[', ']', '"', '\'']).to_ascii_lowercase();
        if !v.is_empty() && !v.contains(MARKER) && !v.contains(char::is_whitespace) {
            inbound.insert(v);
        }
    }
}

/// Remember the names of rendered `kind: Service` objects.
fn collect_services(lines: &Rendered, services: &mut std::collections::BTreeSet<String>) {
    let mut is_service = false;
    let mut in_meta = false;
    let mut name: Option<String> = None;
    let mut flush = |is_service: bool, name: &mut Option<String>| {
        if let (true, Some(n)) = (is_service, name.take()) {
            if !n.contains(MARKER) && !n.is_empty() {
                services.insert(n.to_ascii_lowercase());
            }
        }
        *name = None;
    };
    for rl in lines.lines() {
        let t = rl.text.trim_end();
        if t == "---" {
            flush(is_service, &mut name);
            is_service = false;
            in_meta = false;
            continue;
        }
        if t == "kind: Service" {
            is_service = true;
        } else if t == "metadata:" {
            in_meta = true;
        } else if !t.starts_with(' ') {
            in_meta = false;
        } else if in_meta && name.is_none() {
            if let Some(n) = t.strip_prefix("  name:") {
                name = Some(n.trim().trim_matches(['"', '\'']).to_string());
            }
        }
    }
    flush(is_service, &mut name);
}

fn comment_style(rel: &str) -> bool {
    let lower = rel.to_ascii_lowercase();
    ![
        ".md", ".json", ".js", ".ts", ".html", ".xml", ".go", ".java", ".rs", ".c", ".h",
    ]
    .iter()
    .any(|e| lower.ends_with(e))
}

fn ctx_for(rel: &str, source: Source) -> LineCtx<'static> {
    let lower = rel.to_ascii_lowercase();
    match source {
        Source::Script => LineCtx {
            shell: true,
            ..Default::default()
        },
        Source::Doc => LineCtx::default(),
        _ if lower.ends_with(".yaml") || lower.ends_with(".yml") => LineCtx {
            yaml: true,
            ..Default::default()
        },
        _ if lower.ends_with(".env")
            || lower.ends_with(".properties")
            || lower.ends_with(".ini") =>
        {
            LineCtx {
                shell: true,
                ..Default::default()
            }
        }
        _ => LineCtx::default(),
    }
}

/// Scan a script, config or doc file line by line, without holding it whole.
fn scan_file(f: &FileRef, source: Source, st: &mut State) {
    st.files += 1;
    let Ok(meta) = std::fs::metadata(&f.abs) else {
        return;
    };
    if meta.len() > MAX_FILE {
        st.diags.push(Diagnostic {
            file: f.rel.to_string(),
            line: 0,
            message: format!("larger than {} MiB; not checked", MAX_FILE >> 20),
        });
        return;
    }
    let Ok(file) = File::open(&f.abs) else { return };
    let mut r = BufReader::with_capacity(64 << 10, file);
    if r.fill_buf()
        .map(|b| b.iter().take(8192).any(|&c| c == 0))
        .unwrap_or(true)
    {
        return;
    }
    let ctx = ctx_for(&f.rel, source);
    let comments = comment_style(&f.rel);
    let schema = schema_file(&f.rel);
    let mut buf = Vec::new();
    let mut n = 0;
    let mut prev_env: Option<String> = None;
    let mut fields = Tracker::default();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        n += 1;
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if ctx.yaml && source != Source::Doc && fields.line(line) == Field::NotDestination {
            continue;
        }
        let c = LineCtx {
            env_name: prev_env.as_deref(),
            ..ctx
        };
        let ids = if schema {
            schema_id_spans(line)
        } else {
            Vec::new()
        };
        scan_line(line, n, f, source, c, comments, &ids, &mut st.raw);
        if ctx.yaml {
            prev_env = env_name(line).map(str::to_string);
        }
    }
}

/// Byte ranges of the values of JSON-schema identifier keys on a line of a schema file:
/// `$schema`, `$id` and draft-04's `id`, in JSON (`"$id": "…"`, several on one line) or YAML
/// (`$id: …`). They name a schema; nothing fetches them to install anything. A `$ref` is not
/// one: Helm may fetch a remote `$ref` when it validates values against the schema.
fn schema_id_spans(line: &str) -> Vec<(usize, usize)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    for (colon, _) in line.match_indices(':') {
        let mut e = colon;
        while e > 0 && b[e - 1] == b' ' {
            e -= 1;
        }
        let (key, start) = match b[..e].last() {
            Some(&q @ (b'"' | b'\'')) => match line[..e - 1].rfind(char::from(q)) {
                Some(open) => (&line[open + 1..e - 1], open),
                None => continue,
            },
            _ => {
                let s = line[..e]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '$' || c == '_'))
                    .map_or(0, |i| i + 1);
                (&line[s..e], s)
            }
        };
        // The key starts the line, a list item or a JSON member.
        let before = line[..start].trim_end();
        if !matches!(key, "$schema" | "$id" | "id")
            || !(before.is_empty() || before.ends_with(['{', ',', '-']))
        {
            continue;
        }
        let v = colon
            + 1
            + b[colon + 1..]
                .iter()
                .take_while(|c| matches!(c, b' ' | b'\t'))
                .count();
        let end = match b.get(v) {
            Some(&q @ (b'"' | b'\'')) => line[v + 1..]
                .find(char::from(q))
                .map_or(line.len(), |i| v + 2 + i),
            // A property named `id` (its value a schema object) is not an identifier.
            Some(b'{' | b'[') | None => continue,
            Some(_) => line[v..]
                .find([',', '}', ' '])
                .map_or(line.len(), |i| v + i),
        };
        out.push((v, end));
    }
    out
}

fn scan_plain_text(text: &str, f: &FileRef, source: Source, ctx: LineCtx<'_>, out: &mut Vec<Raw>) {
    for (i, line) in text.lines().enumerate() {
        // Without a parse, template actions are blanked out rather than guessed.
        let cleaned;
        let line = if line.contains("{{") {
            cleaned = blank_actions(line);
            cleaned.as_str()
        } else {
            line
        };
        scan_line(line, i + 1, f, source, ctx, true, &[], out);
    }
}

fn blank_actions(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        match rest[i..].find("}}") {
            Some(j) => {
                out.push(MARKER);
                rest = &rest[i + j + 2..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Scan one line; a hit inside one of the `skip` byte ranges is not a destination.
#[allow(clippy::too_many_arguments)]
fn scan_line(
    line: &str,
    n: usize,
    f: &FileRef,
    source: Source,
    ctx: LineCtx<'_>,
    comments: bool,
    skip: &[(usize, usize)],
    out: &mut Vec<Raw>,
) {
    let mut hits = find(line, ctx);
    hits.retain(|h| !skip.iter().any(|(a, b)| *a <= h.start && h.end <= *b));
    if hits.is_empty() {
        return;
    }
    let code_len = if comments {
        split_comment(line).0.len()
    } else {
        line.len()
    };
    let text: Arc<str> = evidence(line).into();
    for h in hits {
        out.push(Raw {
            host: h.host,
            port: h.port,
            kind: h.kind,
            source,
            file: f.rel.clone(),
            line: n,
            text: text.clone(),
            value_path: None,
            commented: h.start >= code_len,
        });
    }
}

/// A verdict for tests and callers that classify a single host.
pub fn classify_host(host: &str, port: Option<u16>, opts: &CheckOptions) -> Verdict {
    classify(host, port, opts.allow.as_ref(), &ClusterNames::default()).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_are_not_literals_to_scan() {
        assert_eq!(
            string_literals(r#"include "argo-cd.config.cm" . | default "registry.example.io""#),
            ["registry.example.io"]
        );
        assert!(string_literals(r#"template "app.fullname" ."#).is_empty());
    }

    #[test]
    fn test_suites_and_ci_values_are_not_part_of_the_chart() {
        for inner in [
            "ci/ha-values.yaml",
            "tests/deployment_test.yaml",
            "README.md.gotmpl",
        ] {
            assert!(not_shipped(inner), "{inner}");
        }
        for inner in ["templates/tests/e2e.yaml", "tests/data.json", "values.yaml"] {
            assert!(!not_shipped(inner) && !helm_ignores(&[], inner), "{inner}");
        }
    }

    /// `.helmignore` rules as Helm's `pkg/ignore` applies them while it walks a chart folder.
    #[test]
    fn helmignore_rules_match_as_helm_walks_the_folder() {
        let rules: Vec<String> = [
            "test/",
            "*.tmp",
            "/docs/*.md",
            "files/*.json",
            "secret-[0-9].yaml",
            "!keep.tmp",
        ]
        .map(String::from)
        .to_vec();
        for path in [
            "test/e2e/data.json",
            "charts/api/test/e2e/data.json",
            "a/b/x.tmp",
            "docs/setup.md",
            "files/a.json",
            "secret-1.yaml",
            "templates/.hidden.yaml",
        ] {
            assert!(helm_ignores(&rules, path), "{path}");
        }
        for path in [
            "test",
            "tests/e2e/data.json",
            "docs/sub/setup.md",
            "charts/api/docs/setup.md",
            "files/sub/a.json",
            "secret-x.yaml",
            "keep.md",
            "charts/api/templates/.hidden.yaml",
        ] {
            assert!(!helm_ignores(&rules, path), "{path}");
        }
    }

    #[test]
    fn schema_identifiers_are_located() {
        let spans = |l: &str| {
            schema_id_spans(l)
                .into_iter()
                .map(|(a, b)| l[a..b].to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            spans(
                r#"{"$schema": "https://json-schema.org/draft-07/schema#", "$id": "https://s.acme.io/v.json", "properties": {"id": {"default": "https://x.acme.io"}}}"#
            ),
            [
                "\"https://json-schema.org/draft-07/schema#\"",
                "\"https://s.acme.io/v.json\""
            ]
        );
        assert_eq!(
            spans("id: https://s.acme.io/cfg"),
            ["https://s.acme.io/cfg"]
        );
        assert_eq!(
            spans("  $id: 'https://s.acme.io/c'  # c"),
            ["'https://s.acme.io/c'"]
        );
        assert!(spans("url: https://x.acme.io/id: 1").is_empty());
        assert!(spans(r#""$ref": "https://s.acme.io/other.json""#).is_empty());
    }
}

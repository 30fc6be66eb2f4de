//! `ferry diff OLD NEW`: what changed between two releases, for the people who re-approve
//! each one: images (digest, platforms, size; a tag that now names other content is called
//! out), charts and their versions, values keys added and removed, egress destinations new
//! and gone (from each bundle's own egress audit), scripts, and who signed each.
//!
//! Images, charts, scripts and signers come from the heads. Values and egress need the text
//! files: each bundle is verified in one streaming pass that writes every file outside
//! `images/` into a temporary folder (layers are hashed and dropped).

use crate::bundle::manifest::{FileEntry, ImageEntry, Manifest};
use crate::bundle::verify::{self, EntryPlace, HeadCheck, Sink, VerifyError, VerifyOptions};
use crate::egress;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a diff could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("egress audit of {path}: {message}")]
    Egress { path: PathBuf, message: String },
}

impl DiffError {
    /// 1 when a bundle fails its checks, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            DiffError::Verify(e) => e.exit_code(),
            _ => 2,
        }
    }
}

/// One release as the diff sees it.
pub struct Side<'a> {
    pub path: PathBuf,
    pub check_head: Option<&'a HeadCheck<'a>>,
}

/// How an image changed.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageChange {
    /// `registry/repository`.
    pub image: String,
    /// `added`, `removed`, `changed` or `unchanged`.
    pub change: &'static str,
    pub old: Option<ImageSide>,
    pub new: Option<ImageSide>,
    /// The tag is the same but names other content: a re-pushed tag.
    pub same_tag_new_content: bool,
}

/// One side of an image.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageSide {
    pub reference: String,
    pub digest: String,
    pub platforms: Vec<String>,
    pub size: u64,
}

/// A chart, file or key that changed.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub name: String,
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// An egress destination new or gone.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct EgressChange {
    pub destination: String,
    pub change: &'static str,
    /// Where the audit found it (file:line), on the side where it exists.
    pub at: String,
    pub verdict: String,
}

/// Who signed one side.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Signer {
    pub release: String,
    pub manifest_digest: String,
    /// `unsigned`, `signed (not checked: no --key)`, or the key that verified it.
    pub signed_by: String,
}

/// The whole diff.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub old: Signer,
    pub new: Signer,
    pub images: Vec<ImageChange>,
    pub charts: Vec<Change>,
    pub values: Vec<Change>,
    pub egress: Vec<EgressChange>,
    pub scripts: Vec<Change>,
    /// Other files whose content changed, were added or removed.
    pub files: Vec<Change>,
}

/// Writes the text files (everything outside `images/`) of a verified bundle.
struct TextSink {
    dir: PathBuf,
}

impl Sink for TextSink {
    fn start(&mut self, _: &Manifest, _: &[u8], _: Option<&[u8]>, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn open(&mut self, entry: &FileEntry, _: EntryPlace) -> io::Result<Box<dyn Write + '_>> {
        if entry.path.as_str().starts_with("images/") {
            return Ok(Box::new(io::sink()));
        }
        let to = self.dir.join(entry.path.as_str());
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(Box::new(io::BufWriter::new(File::create(to)?)))
    }
    fn close(&mut self, _: &FileEntry, _: u64) -> io::Result<()> {
        Ok(())
    }
}

/// One side, verified, with its text files in a temporary folder.
struct Read {
    manifest: Manifest,
    signer: Signer,
    dir: tempfile::TempDir,
}

fn read(side: &Side, progress: crate::progress::Progress) -> Result<Read, DiffError> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-diff-")
        .tempdir()
        .map_err(|source| DiffError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let file = File::open(&side.path).map_err(|source| VerifyError::Open {
        path: side.path.clone(),
        source,
    })?;
    let mut sink = TextSink {
        dir: dir.path().to_path_buf(),
    };
    let opts = VerifyOptions {
        input: side.path.clone(),
        limits: Default::default(),
        progress,
        check_head: side.check_head,
    };
    let evidence = verify::stream(file, &opts, Some(&mut sink))?;
    let (manifest, _) = crate::bundle::inspect::read_manifest(&side.path)?;
    let signed_by = match evidence.head_check.as_ref().and_then(|v| v.get("key")) {
        Some(key) => format!(
            "{} ({})",
            key.get("path").and_then(|p| p.as_str()).unwrap_or("?"),
            key.get("fingerprint")
                .and_then(|p| p.as_str())
                .unwrap_or("?")
        ),
        None if evidence.signature_present => "signed (not checked: no --key)".into(),
        None => "unsigned".into(),
    };
    Ok(Read {
        signer: Signer {
            release: format!("{} {}", manifest.name, manifest.version),
            manifest_digest: evidence.manifest_digest.to_string(),
            signed_by,
        },
        manifest,
        dir,
    })
}

/// Compares two releases (bundle files).
pub fn diff(
    old: &Side,
    new: &Side,
    progress: crate::progress::Progress,
) -> Result<Diff, DiffError> {
    let a = read(old, progress)?;
    let b = read(new, progress)?;
    Ok(Diff {
        images: images(&a.manifest.images, &b.manifest.images),
        charts: charts(&a.manifest, &b.manifest),
        values: values(&a, &b),
        egress: egress_changes(&a, &b, &old.path, &new.path)?,
        scripts: files(&a.manifest, &b.manifest, |p| p.starts_with("scripts/")),
        files: files(&a.manifest, &b.manifest, |p| {
            !p.starts_with("scripts/") && !p.starts_with("images/") && !p.starts_with("charts/")
        }),
        old: a.signer,
        new: b.signer,
    })
}

fn image_side(i: &ImageEntry) -> ImageSide {
    ImageSide {
        reference: i.reference.clone(),
        digest: i.digest.to_string(),
        platforms: i.platforms.clone(),
        size: i.size,
    }
}

/// Images matched by registry and repository (by reference when a repository is there twice).
fn images(old: &[ImageEntry], new: &[ImageEntry]) -> Vec<ImageChange> {
    let key = |all: &[ImageEntry], i: &ImageEntry| {
        let repo = format!("{}/{}", i.registry, i.repository);
        let twice = all
            .iter()
            .filter(|o| o.registry == i.registry && o.repository == i.repository)
            .count()
            > 1;
        if twice {
            i.reference.clone()
        } else {
            repo
        }
    };
    let a: BTreeMap<String, &ImageEntry> = old.iter().map(|i| (key(old, i), i)).collect();
    let b: BTreeMap<String, &ImageEntry> = new.iter().map(|i| (key(new, i), i)).collect();
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .map(|n| {
            let (o, x) = (a.get(n), b.get(n));
            let change = match (o, x) {
                (None, _) => "added",
                (_, None) => "removed",
                (Some(o), Some(x)) if o.digest == x.digest && o.reference == x.reference => {
                    "unchanged"
                }
                _ => "changed",
            };
            ImageChange {
                image: n.clone(),
                change,
                same_tag_new_content: matches!((o, x), (Some(o), Some(x)) if o.tag.is_some() && o.tag == x.tag && o.digest != x.digest),
                old: o.map(|i| image_side(i)),
                new: x.map(|i| image_side(i)),
            }
        })
        .collect()
}

fn change(name: String, old: Option<String>, new: Option<String>) -> Option<Change> {
    let change = match (&old, &new) {
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        (Some(a), Some(b)) if a != b => "changed",
        _ => return None,
    };
    Some(Change {
        name,
        change,
        old,
        new,
    })
}

fn charts(a: &Manifest, b: &Manifest) -> Vec<Change> {
    let va: BTreeMap<&str, &str> = a
        .charts
        .iter()
        .map(|c| (c.name.as_str(), c.version.as_str()))
        .collect();
    let vb: BTreeMap<&str, &str> = b
        .charts
        .iter()
        .map(|c| (c.name.as_str(), c.version.as_str()))
        .collect();
    let names: BTreeSet<&&str> = va.keys().chain(vb.keys()).collect();
    names
        .into_iter()
        .filter_map(|n| {
            change(
                n.to_string(),
                va.get(n).map(|v| v.to_string()),
                vb.get(n).map(|v| v.to_string()),
            )
        })
        .collect()
}

/// Files of one area, by content digest.
fn files(a: &Manifest, b: &Manifest, area: impl Fn(&str) -> bool) -> Vec<Change> {
    let of = |m: &Manifest| -> BTreeMap<String, String> {
        m.files
            .iter()
            .filter(|f| area(f.path.as_str()))
            .map(|f| (f.path.to_string(), f.digest.to_string()))
            .collect()
    };
    let (fa, fb) = (of(a), of(b));
    let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    names
        .into_iter()
        .filter_map(|n| change(n.clone(), fa.get(n).cloned(), fb.get(n).cloned()))
        .collect()
}

/// Whether a bundle path is a values file: `*values*.yaml|yml` at the top level or in a chart.
fn is_values(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.contains("values") && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Every key path of a values file (`a.b.c`; list items as `a[]`).
fn keys(path: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let Ok(v) = serde_saphyr::from_str::<serde_json::Value>(&text) else {
        return out;
    };
    fn walk(v: &serde_json::Value, at: &str, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    out.insert(p.clone());
                    walk(v, &p, out);
                }
            }
            serde_json::Value::Array(items) => {
                for i in items {
                    walk(i, &format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }
    walk(&v, "", &mut out);
    out
}

fn values(a: &Read, b: &Read) -> Vec<Change> {
    let paths: BTreeSet<&str> = a
        .manifest
        .files
        .iter()
        .chain(&b.manifest.files)
        .map(|f| f.path.as_str())
        .filter(|p| is_values(p) && !p.starts_with("images/"))
        .collect();
    let mut out = Vec::new();
    for p in paths {
        let ka = keys(&a.dir.path().join(p));
        let kb = keys(&b.dir.path().join(p));
        for k in kb.difference(&ka) {
            out.push(Change {
                name: format!("{p}: {k}"),
                change: "added",
                old: None,
                new: None,
            });
        }
        for k in ka.difference(&kb) {
            out.push(Change {
                name: format!("{p}: {k}"),
                change: "removed",
                old: None,
                new: None,
            });
        }
    }
    out
}

/// Destinations (`host[:port]`) of a bundle's own egress audit, with the first place each is
/// found and its verdict.
fn destinations(r: &Read, path: &Path) -> Result<BTreeMap<String, (String, String)>, DiffError> {
    let report = egress::check(&egress::CheckOptions {
        root: r.dir.path().to_path_buf(),
        declared: r.manifest.egress.clone(),
        ..Default::default()
    })
    .map_err(|e| DiffError::Egress {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for f in report.findings.iter().filter(|f| !f.commented) {
        let dest = match f.port {
            Some(p) => format!("{}:{p}", f.host),
            None => f.host.clone(),
        };
        out.entry(dest).or_insert_with(|| {
            (
                format!("{}:{}", f.file, f.line),
                f.verdict.as_str().to_string(),
            )
        });
    }
    Ok(out)
}

fn egress_changes(
    a: &Read,
    b: &Read,
    pa: &Path,
    pb: &Path,
) -> Result<Vec<EgressChange>, DiffError> {
    let da = destinations(a, pa)?;
    let db = destinations(b, pb)?;
    let mut out = Vec::new();
    for (d, (at, verdict)) in &db {
        if !da.contains_key(d) {
            out.push(EgressChange {
                destination: d.clone(),
                change: "new",
                at: at.clone(),
                verdict: verdict.clone(),
            });
        }
    }
    for (d, (at, verdict)) in &da {
        if !db.contains_key(d) {
            out.push(EgressChange {
                destination: d.clone(),
                change: "gone",
                at: at.clone(),
                verdict: verdict.clone(),
            });
        }
    }
    Ok(out)
}

impl Diff {
    /// Whether anything but the signatures differs.
    pub fn is_empty(&self) -> bool {
        self.images.iter().all(|i| i.change == "unchanged")
            && self.charts.is_empty()
            && self.values.is_empty()
            && self.egress.is_empty()
            && self.scripts.is_empty()
            && self.files.is_empty()
    }

    /// The plain-text report.
    pub fn table(&self) -> String {
        self.render(false)
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        self.render(true)
    }

    fn render(&self, md: bool) -> String {
        let mut s = String::new();
        let head = |s: &mut String, t: &str| {
            if md {
                s.push_str(&format!("\n## {t}\n\n"));
            } else {
                s.push_str(&format!("\n{}\n", t.to_uppercase()));
            }
        };
        let item = |s: &mut String, t: String| {
            s.push_str(if md { "- " } else { "  " });
            s.push_str(&t);
            s.push('\n');
        };
        s.push_str(&if md {
            format!("# {} → {}\n", self.old.release, self.new.release)
        } else {
            format!("{} -> {}\n", self.old.release, self.new.release)
        });
        head(&mut s, "Signed by");
        for side in [&self.old, &self.new] {
            item(
                &mut s,
                format!(
                    "{}: {} (manifest {})",
                    side.release, side.signed_by, side.manifest_digest
                ),
            );
        }
        head(&mut s, "Images");
        for i in self.images.iter().filter(|i| i.change != "unchanged") {
            item(&mut s, image_line(i));
        }
        for (title, list) in [
            ("Charts", &self.charts),
            ("Values keys", &self.values),
            ("Scripts", &self.scripts),
            ("Other files", &self.files),
        ] {
            head(&mut s, title);
            for c in list {
                let detail = match (&c.old, &c.new) {
                    (Some(o), Some(n)) => format!(" {o} -> {n}"),
                    _ => String::new(),
                };
                item(&mut s, format!("{} {}{detail}", c.change, c.name));
            }
        }
        head(&mut s, "Egress destinations");
        for e in &self.egress {
            item(
                &mut s,
                format!("{} {} ({}, {})", e.change, e.destination, e.at, e.verdict),
            );
        }
        s
    }
}

fn image_line(i: &ImageChange) -> String {
    let side = |x: &ImageSide| {
        format!(
            "{} {} [{}] {} bytes",
            x.reference,
            x.digest,
            x.platforms.join(", "),
            x.size
        )
    };
    match (&i.old, &i.new) {
        (Some(o), Some(n)) => format!(
            "changed {}: {} -> {}{}",
            i.image,
            side(o),
            side(n),
            if i.same_tag_new_content {
                " (same tag, new content: re-pushed)"
            } else {
                ""
            }
        ),
        (None, Some(n)) => format!("added {}", side(n)),
        (Some(o), None) => format!("removed {}", side(o)),
        (None, None) => String::new(),
    }
}

//! The images charts deploy (`ferry images list`): every `image:` the templates render, found
//! by rendering them with the egress module's template reader, and whether Helm renders each
//! one with the values given.
//!
//! Every branch is rendered. An image on the path the values select is
//! [`Need::Required`]; one only in branches the values switch off (an `if` that is false, a
//! `with` of an empty value, a subchart whose `condition` is false) is [`Need::Conditional`];
//! one behind a condition that cannot be computed offline (`lookup`, a function the reader
//! does not evaluate), with no condition on its way known to be false, is [`Need::Undecided`]:
//! listed to be shipped, never a reason for a build to fail.

mod bundle;
mod defaults;
mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::bundle::manifest::ImageEntry;
use crate::egress::finder::{MARKER, MARKER_SHOWN};
use crate::egress::scan::{with_charts, ChartView};
use crate::egress::template::{self, Reach};
use crate::egress::{Diagnostic, EgressError};
use crate::oci::reference::{parse_reference, ImageRef};
use crate::values::{check_coverage, find_images, ImageUse};

pub use bundle::{check_charts, BundleChartsError, ChartsCheck};
pub use defaults::template_defaults;

/// Whether an image is deployed with the values given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Need {
    /// Helm renders it with these values.
    Required,
    /// Behind a condition that cannot be computed offline; none on its way is known false.
    Undecided,
    /// Only in branches these values switch off.
    Conditional,
}

impl Need {
    fn of(reach: Reach) -> Need {
        match reach {
            Reach::Taken => Need::Required,
            Reach::Undecided => Need::Undecided,
            Reach::Off => Need::Conditional,
        }
    }

    /// The kebab-case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Required => "required",
            Need::Undecided => "undecided",
            Need::Conditional => "conditional",
        }
    }
}

/// A template line that renders an image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    /// The template, as Helm's `# Source:` names it (`mychart/templates/deployment.yaml`,
    /// `mychart/charts/sub/templates/x.yaml`).
    pub file: String,
    /// 1-based line of the `image:` key.
    pub line: usize,
}

/// One image the charts would deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartImage {
    /// The normalised reference as Helm renders it (`registry/path:tag[@digest]`; `REGISTRY`
    /// for the placeholder).
    #[serde(serialize_with = "as_text")]
    pub reference: ImageRef,
    /// The most a place that renders it needs it.
    pub need: Need,
    /// Why it is not required (empty when it is).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The chart whose template renders it (the first location's).
    pub chart: String,
    /// Every template line that renders it, those that need it most first.
    pub locations: Vec<Location>,
    /// Whether a values key writes it at every location, so `ferry rewrite` moves it to a
    /// mirror; `false` for a reference composed in the template alone (a hard-coded image, or
    /// a template default used because the values give none).
    pub values_key: bool,
    /// The tag is the chart's `appVersion` (the values give none).
    pub app_version_tag: bool,
}

/// An `image:` line whose reference cannot be computed offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unresolved {
    /// Where.
    pub location: Location,
    /// What it renders to, `{{?}}` for each part that cannot be computed.
    pub text: String,
    /// Whether Helm renders the line with these values.
    pub need: Need,
}

/// What [`chart_images`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChartImages {
    /// Every image, required first, then undecided, then conditional; by reference within.
    pub images: Vec<ChartImage>,
    /// Lines that render an image ferry cannot name.
    pub unresolved: Vec<Unresolved>,
}

/// Why the images of a chart cannot be listed (bad input: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The chart path does not exist.
    #[error("{path}: no such file or folder; give a chart folder (with Chart.yaml) or a packaged chart (.tgz)")]
    NoChart {
        /// The path given.
        path: PathBuf,
    },
    /// A folder without `Chart.yaml`.
    #[error(
        "{path}: not a chart, it has no Chart.yaml; give a chart folder or a packaged chart (.tgz)"
    )]
    NotAChart {
        /// The path given.
        path: PathBuf,
    },
    /// A chart file that does not parse or cannot be read; Helm would not render it either.
    #[error("{file}:{line}: {message}")]
    Chart {
        /// The file, as Helm's `# Source:` names it.
        file: String,
        /// 1-based line (0 for the whole file).
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// A values file or packaged chart could not be read.
    #[error(transparent)]
    Read(#[from] EgressError),
    /// A values file that the values check cannot read (invalid YAML, an image behind an alias).
    #[error(transparent)]
    Values(#[from] crate::values::RewriteError),
}

fn as_text<S: Serializer>(r: &ImageRef, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

/// How ferry reads an `image:` value: Docker's normalisation, `REGISTRY` allowed as the
/// placeholder of a registry, Docker Hub when no registry is named.
pub fn reference(value: &str) -> Option<ImageRef> {
    parse_reference(value, true)
}

/// The images `charts` (chart folders or packaged `.tgz` charts, each with its subcharts)
/// deploy, with `values` layered on each chart in order as `helm template -f` does.
///
/// # Errors
/// [`ImagesError`] when a chart or values file is missing or does not parse.
pub fn chart_images(charts: &[PathBuf], values: &[PathBuf]) -> Result<ChartImages, ImagesError> {
    let mut sites = Vec::new();
    let mut unresolved = Vec::new();
    for chart in charts {
        if !chart.exists() {
            return Err(ImagesError::NoChart {
                path: chart.clone(),
            });
        }
        if chart.is_dir() && !chart.join("Chart.yaml").is_file() {
            return Err(ImagesError::NotAChart {
                path: chart.clone(),
            });
        }
        let (s, u) = with_charts(chart, values, |views, diags| collect(views, diags, values))??;
        sites.extend(s);
        unresolved.extend(u);
    }
    unresolved.sort_by(|a: &Unresolved, b| (a.need, &a.location).cmp(&(b.need, &b.location)));
    Ok(ChartImages {
        images: merge(sites),
        unresolved,
    })
}

/// One place an image is rendered.
struct Site {
    reference: ImageRef,
    reach: Reach,
    reason: String,
    chart: String,
    location: Location,
    values_key: bool,
    app_version_tag: bool,
}

type Found = (Vec<Site>, Vec<Unresolved>);

/// The images of one chart and its subcharts; templates are rendered on worker threads.
fn collect(
    views: &[ChartView<'_>],
    diags: Vec<Diagnostic>,
    user: &[PathBuf],
) -> Result<Found, ImagesError> {
    if let Some(d) = diags.into_iter().next() {
        return Err(ImagesError::Chart {
            file: d.file,
            line: d.line,
            message: d.message,
        });
    }
    let written = values_images(views, user);
    let gates = dependency_gates(views);
    // Helm renders neither partials (`_*.tpl`), `NOTES.txt` nor a library chart's templates
    // into manifests.
    let work: Vec<(usize, &Path, &str)> = views
        .iter()
        .enumerate()
        .filter(|(_, v)| !is_library(v))
        .flat_map(|(i, v)| v.templates.iter().map(move |(abs, rel)| (i, *abs, *rel)))
        .filter(|(_, _, rel)| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            !name.starts_with('_') && name != "NOTES.txt"
        })
        .collect();
    let (mut sites, mut unresolved) = (Vec::new(), Vec::new());
    for found in crate::parallel::par_map(&work, |&(i, abs, rel)| {
        template_images(&views[i], &gates[i], abs, rel, &written)
    }) {
        let (s, u) = found?;
        sites.extend(s);
        unresolved.extend(u);
    }
    Ok((sites, unresolved))
}

/// Whether the chart is a library chart (`type: library`), which renders nothing itself.
fn is_library(view: &ChartView<'_>) -> bool {
    view.chart_yaml
        .and_then(|y| std::fs::read_to_string(y).ok())
        .and_then(|text| {
            let tree = crate::values::tree::Tree::parse(&text).ok()?;
            let root = *tree.roots.first()?;
            let kind = tree.get(root, "type")?;
            tree.scalar(kind).map(|(v, _)| v == "library")
        })
        .unwrap_or(false)
}

/// The images one template renders; `gate` is whether its chart is rendered at all.
fn template_images(
    view: &ChartView<'_>,
    (gate, why): &(Reach, String),
    abs: &Path,
    rel: &str,
    written: &[ImageRef],
) -> Result<Found, ImagesError> {
    let located = |line, message| ImagesError::Chart {
        file: rel.to_string(),
        line,
        message,
    };
    let src = std::fs::read_to_string(abs)
        .map_err(|e| located(0, format!("cannot read the template: {e}")))?;
    let t = template::parse(&src)
        .map_err(|e| located(e.line, format!("template does not parse: {}", e.message)))?;
    let (mut sites, mut unresolved) = (Vec::new(), Vec::new());
    for l in render::image_lines(&view.env.render_reach(&t.nodes)) {
        let reach = l.reach.max(*gate);
        let location = Location {
            file: rel.to_string(),
            line: l.line,
        };
        let parsed = (!l.value.contains(MARKER))
            .then(|| reference(&l.value))
            .flatten();
        let Some(r) = parsed else {
            if reach != Reach::Off {
                let text = l.value.replace(MARKER, MARKER_SHOWN);
                let need = Need::of(reach);
                unresolved.push(Unresolved {
                    location,
                    text,
                    need,
                });
            }
            continue;
        };
        let app = view.env.app_version;
        // The tag is the appVersion, and no values file writes it for this image.
        let app_version_tag = !app.is_empty()
            && r.tag.as_deref().map(|t| t.trim_start_matches('v'))
                == Some(app.trim_start_matches('v'))
            && !written
                .iter()
                .any(|w| w.tag == r.tag && same_repository(w, &r));
        sites.push(Site {
            values_key: !l.literal && written.iter().any(|w| same_repository(w, &r)),
            reason: reason(reach, why),
            reference: r,
            reach,
            chart: view.name.to_string(),
            location,
            app_version_tag,
        });
    }
    Ok((sites, unresolved))
}

/// Why an image at `reach` is not required.
fn reason(reach: Reach, gate: &str) -> String {
    match reach {
        Reach::Taken => String::new(),
        _ if !gate.is_empty() => gate.to_string(),
        Reach::Undecided => "rendered behind a condition that cannot be computed offline \
                             (`lookup`, or a function ferry does not evaluate); listed so that \
                             it is shipped"
            .into(),
        Reach::Off => "only in a branch the values switch off".into(),
    }
}

/// The images the values files (the charts' own and the user's) write, as `ferry rewrite`
/// finds them.
fn values_images(views: &[ChartView<'_>], user: &[PathBuf]) -> Vec<ImageRef> {
    let files = views
        .iter()
        .filter_map(|v| v.values)
        .chain(user.iter().map(PathBuf::as_path));
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        // A values file that `ferry rewrite` refuses controls nothing it can move.
        if let Ok(uses) = find_images(&text, f) {
            out.extend(uses.into_iter().map(|u| u.reference));
        }
    }
    out
}

/// Whether a values image and a rendered one are the same repository (a registry written in
/// the path, `global.imageRegistry` or the `REGISTRY` placeholder aside).
pub(crate) fn same_repository(written: &ImageRef, rendered: &ImageRef) -> bool {
    let (w, r) = (&written.repository, &rendered.repository);
    let last = |s: &str| s.rsplit('/').next().map(str::to_string);
    w == r
        || r.ends_with(&format!("/{w}"))
        || w.ends_with(&format!("/{r}"))
        || (written.registry.is_none() && last(w) == last(r))
}

/// For each chart, whether its parent renders it: a dependency's `condition` in the parent's
/// `Chart.yaml` (the first of its comma-separated values paths that is set decides), and the
/// reason when it does not.
fn dependency_gates(views: &[ChartView<'_>]) -> Vec<(Reach, String)> {
    let mut gates: Vec<(Reach, String)> = Vec::with_capacity(views.len());
    for view in views {
        let Some(p) = view.parent else {
            gates.push((Reach::Taken, String::new()));
            continue;
        };
        let (parent_reach, parent_why) = gates[p].clone();
        let parent = &views[p];
        let own = parent
            .chart_yaml
            .and_then(|y| std::fs::read_to_string(y).ok())
            .and_then(|text| condition(&text, view))
            .map_or((Reach::Taken, String::new()), |cond| {
                condition_reach(&cond, parent)
            });
        let reach = parent_reach.max(own.0);
        let why = if parent_reach > own.0 {
            parent_why
        } else {
            own.1
        };
        gates.push((reach, why));
    }
    gates
}

/// The `condition` of the dependency of a parent's `Chart.yaml` that `view` is.
fn condition(chart_yaml: &str, view: &ChartView<'_>) -> Option<String> {
    let tree = crate::values::tree::Tree::parse(chart_yaml).ok()?;
    let root = *tree.roots.first()?;
    let deps = tree.get(root, "dependencies")?;
    let folder = view.rel.rsplit('/').next().unwrap_or(view.rel);
    let folder = folder.split('-').next().unwrap_or(folder);
    (0..)
        .map_while(|i| tree.item(deps, i))
        .find(|&d| {
            let field = |k| tree.get(d, k).and_then(|n| tree.scalar(n)).map(|(v, _)| v);
            field("name") == Some(view.name) || field("name") == Some(folder)
        })
        .and_then(|d| tree.get(d, "condition"))
        .and_then(|n| tree.scalar(n))
        .map(|(v, _)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Whether a dependency `condition` lets Helm render the subchart, with the parent's values.
fn condition_reach(cond: &str, parent: &ChartView<'_>) -> (Reach, String) {
    for path in cond.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let value = parent.env.render_text(&format!("{{{{ .Values.{path} }}}}"));
        match value.as_deref().map(str::trim) {
            Some("") => continue,
            Some("false") => {
                return (
                    Reach::Off,
                    format!("subchart disabled: its condition `{path}` is false"),
                )
            }
            Some(_) => return (Reach::Taken, String::new()),
            None => {
                return (
                    Reach::Undecided,
                    format!("subchart condition `{path}` cannot be computed offline"),
                )
            }
        }
    }
    (Reach::Taken, String::new())
}

/// One entry per reference: the most any place needs it, its places in that order.
fn merge(sites: Vec<Site>) -> Vec<ChartImage> {
    let mut by_ref: BTreeMap<String, Vec<Site>> = BTreeMap::new();
    for s in sites {
        by_ref.entry(s.reference.to_string()).or_default().push(s);
    }
    let mut out: Vec<ChartImage> = by_ref
        .into_values()
        .filter_map(|mut sites| {
            sites.sort_by(|a, b| (a.reach, &a.location).cmp(&(b.reach, &b.location)));
            sites.dedup_by(|a, b| a.location == b.location);
            let first = sites.first()?;
            Some(ChartImage {
                reference: first.reference.clone(),
                need: Need::of(first.reach),
                reason: first.reason.clone(),
                chart: first.chart.clone(),
                values_key: sites.iter().all(|s| s.values_key),
                app_version_tag: first.app_version_tag,
                locations: sites.iter().map(|s| s.location.clone()).collect(),
            })
        })
        .collect();
    out.sort_by_key(|a| (a.need, a.reference.to_string()));
    out
}

/// The images of `images` that `bundle` lacks: (required ones, the others). An image matches
/// a bundle image as a values image does in `ferry images check` (the `REGISTRY`
/// placeholder, Docker's normalisation, digest before tag, an appVersion tag with or without
/// its `v`). Only the first list should fail a build: undecided and conditional images are
/// guesses.
pub fn missing_from<'i>(
    images: &'i [ChartImage],
    bundle: &[ImageEntry],
) -> (Vec<&'i ChartImage>, Vec<&'i ChartImage>) {
    let (mut required, mut others) = (Vec::new(), Vec::new());
    for image in images {
        let coverage = check_coverage(&[image_use(image)], bundle);
        if coverage.is_complete() {
            continue;
        }
        if image.need == Need::Required {
            required.push(image);
        } else {
            others.push(image);
        }
    }
    (required, others)
}

/// A chart image as the values coverage check reads an image use.
pub fn image_use(image: &ChartImage) -> ImageUse {
    let at = image.locations.first();
    ImageUse {
        file: PathBuf::from(at.map_or("", |l| l.file.as_str())),
        line: at.map_or(0, |l| l.line),
        column: 1,
        path: image.chart.clone(),
        reference: image.reference.clone(),
        raw: image.reference.to_string(),
        app_version: image
            .app_version_tag
            .then(|| image.reference.tag.clone())
            .flatten(),
    }
}

/// The `images:` block of a `ferry.yaml` for `found`: required images, then undecided ones
/// (shipped, with why), then conditional ones commented out with why; images no values key
/// writes carry a note that `ferry rewrite` cannot move them.
pub fn spec_block(found: &ChartImages) -> String {
    let mut out = String::from("images:\n");
    for image in &found.images {
        let at = image
            .locations
            .first()
            .map(|l| format!("{}:{}", l.file, l.line))
            .unwrap_or_default();
        let mut notes = vec![format!("{} at {at}", image.need.as_str())];
        if !image.reason.is_empty() {
            notes.push(image.reason.clone());
        }
        if !image.values_key {
            notes
                .push("no values key writes it: `ferry rewrite` cannot move it to a mirror".into());
        }
        out.push_str(&format!("  # {}\n", notes.join("; ")));
        let hash = if image.need == Need::Conditional {
            "# "
        } else {
            ""
        };
        out.push_str(&format!("  {hash}- ref: {}\n", image.reference));
    }
    for u in &found.unresolved {
        out.push_str(&format!(
            "  # {} image at {}:{} cannot be computed offline: {}\n",
            u.need.as_str(),
            u.location.file,
            u.location.line,
            u.text
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_match_across_registry_spellings() {
        let r = |s: &str| reference(s).unwrap();
        assert!(same_repository(
            &r("REGISTRY/acme/api:1"),
            &r("docker.io/acme/api:2")
        ));
        assert!(same_repository(
            &r("bitnami/redis"),
            &r("docker.io/bitnami/redis:7")
        ));
        assert!(same_repository(
            &r("acme/api"),
            &r("quay.io/mirror/acme/api:1")
        ));
        assert!(!same_repository(&r("acme/api"), &r("acme/web")));
    }
}

//! Image coverage: which images a values file refers to, and whether the bundle has each one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sites::{self, Field, MapSite};
use super::tree::Tree;
use super::{normalised, RewriteError, Source};
use crate::bundle::manifest::ImageEntry;
use crate::oci::reference::{name_part, normalise_path, ImageRef, RegistryPrefix};

/// One place a values file refers to an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUse {
    /// The values file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Where in the document, e.g. `gateway.image`.
    pub path: String,
    /// The reference, normalised; for an image map, the image the chart would pull.
    pub reference: ImageRef,
    /// The text as written: the scalar, or the map's fields as `{registry: …, repository: …}`.
    pub raw: String,
    /// Set when the values write no tag or digest for this image map and the tag is the chart's
    /// `appVersion` (given to [`find_chart_images`]), as chart templates default it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

/// An image use the bundle covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covered {
    /// The use.
    pub image_use: ImageUse,
    /// The bundle image it resolves to, as the bundle manifest lists it.
    pub image: ImageEntry,
    /// `false` when the use names no tag or digest (the chart picks one, usually its
    /// appVersion), so only the repository could be matched.
    pub exact: bool,
}

/// Why an image use is not covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissingReason {
    /// No bundle image has this registry and repository.
    NotInBundle,
    /// The repository is in the bundle, but not with this tag; the tags it has.
    TagNotInBundle {
        /// Tags the bundle has for the repository.
        available: Vec<String>,
    },
    /// The repository is in the bundle, but not with this digest.
    DigestNotInBundle,
}

/// An image use the bundle does not cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// The use.
    pub image_use: ImageUse,
    /// What did not match.
    pub reason: MissingReason,
}

/// The result of [`check_coverage`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Uses the bundle covers.
    pub found: Vec<Covered>,
    /// Uses the bundle does not cover: each one would be an ImagePullBackOff after install.
    pub missing: Vec<Missing>,
}

impl Coverage {
    /// Whether every use is covered.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Lists every image a values file refers to (see `bundle-spec/rewrite.md` for where images are
/// looked for).
///
/// # Errors
/// [`RewriteError::Parse`] for invalid YAML; [`RewriteError::Ambiguous`] where an image is hidden
/// behind an alias, anchor or block scalar.
pub fn find_images(text: &str, file: &Path) -> Result<Vec<ImageUse>, RewriteError> {
    Ok(collect(text, file)?.into_iter().map(|(u, _)| u).collect())
}

/// Every image use, each with whether it is an image map.
fn collect(text: &str, file: &Path) -> Result<Vec<(ImageUse, bool)>, RewriteError> {
    let src = Source::new(text, file);
    let tree = src.parse()?;
    let found = sites::find(text, &tree).map_err(|r| src.ambiguous(r.offset, r.reason))?;
    let mut uses = Vec::with_capacity(found.refs.len() + found.maps.len());
    for site in &found.refs {
        let raw = tree.scalar(site.node).map_or("", |(v, _)| v).to_string();
        let u = make_use(
            &src,
            tree.nodes[site.node].start,
            &site.path,
            site.image.clone(),
            raw,
        );
        uses.push((u, false));
    }
    for site in &found.maps {
        let (reference, raw) = map_reference(&tree, site);
        let u = make_use(
            &src,
            tree.nodes[site.repository.key].start,
            &site.path,
            reference,
            raw,
        );
        uses.push((u, true));
    }
    uses.sort_by_key(|(u, _)| (u.line, u.column));
    Ok(uses)
}

/// [`find_images`] for the values of a chart whose `appVersion` is known: an image map without
/// a tag or digest gets the `appVersion` as its tag (marked in [`ImageUse::app_version`]), the
/// tag the chart's templates fall back to.
///
/// # Errors
/// As [`find_images`].
pub fn find_chart_images(
    text: &str,
    file: &Path,
    app_version: Option<&str>,
) -> Result<Vec<ImageUse>, RewriteError> {
    let mut uses = collect(text, file)?;
    if let Some(version) = app_version {
        for (u, map) in &mut uses {
            if *map && u.reference.tag.is_none() && u.reference.digest.is_none() {
                u.reference.tag = Some(version.to_string());
                u.app_version = Some(version.to_string());
            }
        }
    }
    Ok(uses.into_iter().map(|(u, _)| u).collect())
}

fn make_use(
    src: &Source<'_>,
    offset: usize,
    path: &str,
    reference: ImageRef,
    raw: String,
) -> ImageUse {
    let (line, column) = src.lines.position(src.text, offset);
    ImageUse {
        file: src.file.to_path_buf(),
        line,
        column,
        path: path.to_string(),
        reference,
        raw,
        app_version: None,
    }
}

fn value<'t>(tree: &'t Tree<'_>, field: Option<Field>) -> Option<&'t str> {
    let (v, style) = tree.scalar(field?.value)?;
    if v.is_empty() || sites::plain_null(v, style) {
        None
    } else {
        Some(v)
    }
}

/// The image an image map makes the chart pull.
fn map_reference(tree: &Tree<'_>, site: &MapSite) -> (ImageRef, String) {
    let repo_value = value(tree, Some(site.repository)).unwrap_or("");
    let registry_value = value(tree, site.registry);
    let mut raw = String::from("{");
    for (name, v) in [
        ("registry", registry_value),
        (site.name_key, Some(repo_value)),
        (
            "repository",
            site.full.as_ref().and_then(|(f, _)| value(tree, Some(*f))),
        ),
        ("tag", value(tree, site.tag)),
        ("digest", value(tree, site.digest)),
    ] {
        if let Some(v) = v {
            if raw.len() > 1 {
                raw.push_str(", ");
            }
            raw.push_str(name);
            raw.push_str(": ");
            raw.push_str(v);
        }
    }
    raw.push('}');
    // The document's `global.imageRegistry`, Bitnami style, overrides a map's `registry`.
    let prefix = site
        .global
        .clone()
        .or_else(|| registry_value.and_then(RegistryPrefix::parse));
    let mut reference = match (&site.full, prefix) {
        (Some((_, full)), _) => full.clone(),
        (None, Some(p)) => {
            let joined = p.join(name_part(repo_value));
            ImageRef {
                repository: normalise_path(p.host.as_deref(), &joined),
                registry: p.host,
                tag: site.repo.tag.clone(),
                digest: site.repo.digest.clone(),
            }
        }
        (None, None) => site.repo.clone(),
    };
    if let Some(tag) = value(tree, site.tag) {
        reference.tag = Some(tag.to_string());
    }
    if let Some(d) = value(tree, site.digest) {
        reference.digest = Some(d.to_string());
    }
    (reference, raw)
}

/// Matches each use against the bundle's images.
///
/// A use matches a bundle image with the same registry (any registry for the `REGISTRY`
/// placeholder) and repository, and then the same digest if it names one, else the same tag if
/// it names one. A use with neither is covered by any image of the repository (`exact: false`).
/// Values already rewritten for a mirror (`HOST/PREFIX/PATH`) match the bundle image `PATH`.
pub fn check_coverage(uses: &[ImageUse], images: &[ImageEntry]) -> Coverage {
    let norm: Vec<(&ImageEntry, (String, String))> = images
        .iter()
        .zip(normalised(images))
        .filter_map(|(k, n)| Some((k, n?)))
        .collect();
    let mut out = Coverage::default();
    for u in uses {
        let r = &u.reference;
        let mut same_repo: Vec<&ImageEntry> = norm
            .iter()
            .filter(|(_, (h, p))| {
                *p == r.repository && r.registry.as_ref().is_none_or(|rh| rh == h)
            })
            .map(|(k, _)| *k)
            .collect();
        if same_repo.is_empty() {
            // Values already rewritten for a mirror: HOST/PREFIX/PATH is the bundle's PATH.
            same_repo = norm
                .iter()
                .filter(|(_, (_, p))| {
                    r.repository == *p || r.repository.ends_with(&format!("/{p}"))
                })
                .map(|(k, _)| *k)
                .collect();
        }
        let (hit, exact, reason) = if same_repo.is_empty() {
            (None, false, MissingReason::NotInBundle)
        } else if let Some(d) = &r.digest {
            (
                same_repo
                    .iter()
                    .find(|k| k.digest.to_string() == *d)
                    .copied(),
                true,
                MissingReason::DigestNotInBundle,
            )
        } else if let Some(t) = &r.tag {
            let available = same_repo.iter().filter_map(|k| k.tag.clone()).collect();
            // An appVersion tag is also written with or without a leading `v` by templates.
            let variant = u.app_version.as_ref().map(|_| match t.strip_prefix('v') {
                Some(bare) => bare.to_string(),
                None => format!("v{t}"),
            });
            let has = |tag: &String| same_repo.iter().find(|k| k.tag.as_ref() == Some(tag));
            (
                has(t).or_else(|| variant.as_ref().and_then(has)).copied(),
                true,
                MissingReason::TagNotInBundle { available },
            )
        } else {
            (
                same_repo.first().copied(),
                false,
                MissingReason::NotInBundle,
            )
        };
        match hit {
            Some(k) => out.found.push(Covered {
                image_use: u.clone(),
                image: k.clone(),
                exact,
            }),
            None => out.missing.push(Missing {
                image_use: u.clone(),
                reason,
            }),
        }
    }
    out
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let u = &self.image_use;
        write!(
            f,
            "{}:{}:{}: {} ({}) ",
            u.file.display(),
            u.line,
            u.column,
            u.reference,
            u.path
        )?;
        match &self.reason {
            MissingReason::NotInBundle => f.write_str("is not in the bundle"),
            MissingReason::TagNotInBundle { available } if u.app_version.is_some() => write!(
                f,
                "is not in the bundle with the chart's appVersion as its tag (the values give no tag); it has {}",
                if available.is_empty() {
                    "no tag".to_string()
                } else {
                    available.join(", ")
                }
            ),
            MissingReason::TagNotInBundle { available } if available.is_empty() => {
                f.write_str("is in the bundle only without a tag")
            }
            MissingReason::TagNotInBundle { available } => write!(
                f,
                "is not in the bundle with this tag; it has {}",
                available.join(", ")
            ),
            MissingReason::DigestNotInBundle => {
                f.write_str("is not in the bundle with this digest")
            }
        }
    }
}

//! The images a chart renders from its template defaults for the image maps of a values file
//! that are left empty (`registry:` and `repository:` null, Traefik's `image:` map), found by
//! rendering the chart three times with ferry's template engine:
//!
//! 1. with the values as they are: every image and the template lines that render it;
//! 2. with a probe overlay that sets each map's `registry` to its own sentinel
//!    (`ferry-probe-N.invalid`): the lines whose image takes that registry are the lines the
//!    map feeds, and the image those lines render in pass 1 is the map's default;
//! 3. with the fill overlay (`registry` the mirror, the name the default's normalised path, and
//!    a test digest where the map has a `digest` key): the fill is kept only when those lines
//!    now render the mirror's image with the default's path and tag.
//!
//! The values rewrite (`values::rewrite_chart`) writes the fills; this module only finds them,
//! because `values` may not import the template engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{chart_images, ChartImages, Location};
use crate::oci::reference::{ImageRef, Target};
use crate::values::{DefaultImage, NullMap, TemplateDefault};

/// The registry that marks map `i` in the probe rendering.
fn sentinel(i: usize) -> String {
    format!("ferry-probe-{i}.invalid")
}

/// The digest written into maps with a `digest` key in the fill check, to see whether the
/// chart renders it.
const TEST_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// For each of `maps` (the null maps of `values`, a values file of `chart`), the image the chart
/// renders by default and whether filling the map with `target` and that image's path makes the
/// chart render the mirror's image; or why the map cannot be filled.
pub fn template_defaults(
    chart: &Path,
    values: &Path,
    maps: &[NullMap],
    target: &Target,
) -> Vec<TemplateDefault> {
    let found = match probe(chart, values, maps, target) {
        Ok(found) => found,
        Err(e) => {
            let reason = format!(
                "its `registry` and name are empty, so the chart's templates choose the image, \
                 and rendering the chart to find that image failed: {e}; write the image's \
                 registry and repository in the map"
            );
            vec![Err(reason); maps.len()]
        }
    };
    maps.iter()
        .zip(found)
        .map(|(m, found)| TemplateDefault {
            path: m.path.clone(),
            found,
        })
        .collect()
}

type Found = Vec<Result<DefaultImage, String>>;

/// A map's default image and the template lines it feeds, or why there is none.
type Probed = Result<(ImageRef, BTreeSet<Location>), String>;

fn probe(chart: &Path, values: &Path, maps: &[NullMap], target: &Target) -> Result<Found, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary folder: {e}"))?;
    let render = |overlay: Option<(&str, Value)>| -> Result<ChartImages, String> {
        let mut files = vec![values.to_path_buf()];
        if let Some((name, value)) = overlay {
            let file = dir.path().join(name);
            std::fs::write(&file, value.to_string())
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            files.push(file);
        }
        chart_images(&[PathBuf::from(chart)], &files).map_err(|e| e.to_string())
    };
    let base = render(None)?;
    let mut overlay = Value::Object(Map::new());
    for (i, m) in maps.iter().enumerate() {
        if let Some(keys) = &m.keys {
            set(&mut overlay, keys, [("registry", sentinel(i))]);
        }
    }
    let probed = render(Some(("probe.yaml", overlay)))?;
    let mut found: Vec<Probed> = maps
        .iter()
        .enumerate()
        .map(|(i, m)| default_of(i, m, &base, &probed))
        .collect();
    let mut fill = Value::Object(Map::new());
    for (m, f) in maps.iter().zip(&found) {
        if let (Some(keys), Ok((d, _))) = (&m.keys, f) {
            let mut fields = vec![
                ("registry", target.base()),
                (m.name_key, d.repository.clone()),
            ];
            if m.has_digest {
                fields.push(("digest", TEST_DIGEST.to_string()));
            }
            set(&mut fill, keys, fields);
        }
    }
    let filled = render(Some(("fill.yaml", fill)))?;
    Ok(found
        .drain(..)
        .zip(maps)
        .map(|(f, m)| {
            let (image, lines) = f?;
            check_fill(m, image, &lines, &filled, target)
        })
        .collect())
}

/// Sets `fields` in the map at `keys` of a values overlay, creating the maps on the way.
fn set<'k>(
    overlay: &mut Value,
    keys: &[String],
    fields: impl IntoIterator<Item = (&'k str, String)>,
) {
    let mut at = overlay;
    for k in keys {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else { return };
        at = map
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    if let Value::Object(map) = at {
        for (k, v) in fields {
            map.insert(k.to_string(), Value::String(v));
        }
    }
}

/// The lines map `i` feeds (those whose image takes its sentinel registry in the probe) and
/// the one image they render with the map empty.
fn default_of(i: usize, map: &NullMap, base: &ChartImages, probed: &ChartImages) -> Probed {
    if map.keys.is_none() {
        return Err(
            "its `registry` and name are empty, so the chart's templates choose the image, and \
             the map is inside a list, which ferry cannot set apart to find that image; write \
             the image's registry and repository in the map"
                .into(),
        );
    }
    let mark = sentinel(i);
    let lines: BTreeSet<Location> = probed
        .images
        .iter()
        .filter(|c| c.reference.registry.as_deref() == Some(mark.as_str()))
        .flat_map(|c| c.locations.iter().cloned())
        .collect();
    if lines.is_empty() {
        return Err(
            "its `registry` and name are empty, and no image the chart renders takes its \
             registry from this map (with `registry` set, every rendered image stays the same); \
             if it is an image, write its registry and repository in the map"
                .into(),
        );
    }
    let defaults: Vec<&ImageRef> = base
        .images
        .iter()
        .filter(|c| c.locations.iter().any(|l| lines.contains(l)))
        .map(|c| &c.reference)
        .collect();
    match defaults.as_slice() {
        [one] => Ok(((*one).clone(), lines)),
        [] => Err(format!(
            "its `registry` and name are empty, and the template lines it feeds ({}) render no \
             image ferry can name with the map empty; write the image's registry and repository \
             in the map",
            at(&lines)
        )),
        many => Err(format!(
            "its `registry` and name are empty, and the template lines it feeds ({}) render \
             several images with the map empty ({}); write the image's registry and repository \
             in the map",
            at(&lines),
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `file:line` of each location, comma-separated.
fn at(lines: &BTreeSet<Location>) -> String {
    lines
        .iter()
        .map(|l| format!("{}:{}", l.file, l.line))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keeps a fill when every line the map feeds renders, with it, the mirror's image with the
/// default's path and tag.
fn check_fill(
    map: &NullMap,
    default: ImageRef,
    lines: &BTreeSet<Location>,
    filled: &ChartImages,
    target: &Target,
) -> Result<DefaultImage, String> {
    let rendered: Vec<&ImageRef> = filled
        .images
        .iter()
        .filter(|c| c.locations.iter().any(|l| lines.contains(l)))
        .map(|c| &c.reference)
        .collect();
    let mirrored = ImageRef::parse(&target.join(&default.repository)).ok();
    // The test digest is in the map only to see whether the chart renders it; a chart that
    // renders a digest in place of the tag (Traefik) renders the tag once it is gone.
    let test_digest = |r: &ImageRef| map.has_digest && r.digest.as_deref() == Some(TEST_DIGEST);
    let same = |r: &ImageRef| {
        mirrored
            .as_ref()
            .is_some_and(|m| r.registry == m.registry && r.repository == m.repository)
            && (r.tag == default.tag || (r.tag.is_none() && test_digest(r)))
    };
    let want = format!(
        "{}{}",
        target.join(&default.repository),
        default
            .tag
            .as_deref()
            .map(|t| format!(":{t}"))
            .unwrap_or_default()
    );
    match rendered.as_slice() {
        [r] if same(r) => Ok(DefaultImage {
            digest_rendered: test_digest(r) && r.tag == default.tag,
            location: at(lines),
            image: default,
        }),
        _ => Err(format!(
            "its `registry` and name are empty, so the chart renders {default} ({}), but with \
             `registry: {}` and `{}: {}` in the map it renders {} instead of {want}; write the \
             image's registry and repository in the map",
            at(lines),
            target.base(),
            map.name_key,
            default.repository,
            if rendered.is_empty() {
                "no image ferry can name".to_string()
            } else {
                rendered
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        )),
    }
}

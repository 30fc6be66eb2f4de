//! `ferry rewrite` and `ferry images check`: values files against a bundle and a registry.

use super::usage;
use crate::exit::Outcome;
use crate::printer::Printer;
use ferry::bundle::inspect;
use ferry::images::{ChartsCheck, Need};
use ferry::load;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The arguments of `ferry rewrite`.
pub struct RewriteArgs<'a> {
    pub values: &'a [PathBuf],
    pub registry: &'a str,
    pub bundle: Option<&'a Path>,
    pub pin_digests: bool,
    pub output: Option<&'a Path>,
    pub in_place: bool,
    pub diff: bool,
}

pub fn rewrite(a: &RewriteArgs, p: &mut Printer) -> anyhow::Result<Outcome> {
    if a.values.len() > 1 && !a.in_place && !a.diff {
        return Err(usage("several values files need --in-place or --diff"));
    }
    if a.output.is_some() && a.values.len() != 1 {
        return Err(usage("-o/--output takes exactly one values file"));
    }
    let target = ferry::oci::reference::Target::parse(a.registry)?;
    let images = match a.bundle {
        Some(b) => {
            let (m, _) = inspect::read_manifest(b)?;
            load::check_images(a.values, &m.images)?;
            m.images
        }
        None => Vec::new(),
    };
    let outcomes = load::rewrite_values(
        a.values,
        &ferry::values::RewriteOptions {
            target,
            images,
            pin_digests: a.pin_digests,
        },
    )?;
    let mut files = Vec::new();
    for o in &outcomes {
        let diff = a
            .diff
            .then(|| ferry::values::unified_diff(&o.file, &o.before, &o.after));
        let written = if a.in_place {
            Some(o.file.as_path())
        } else {
            a.output
        };
        match (&diff, written) {
            (Some(d), _) => p.data(|out| out.write_all(d.as_bytes()))?,
            (None, Some(dest)) => load::write_atomically(dest, &o.after)?,
            (None, None) => p.data(|out| out.write_all(o.after.as_bytes()))?,
        }
        if written.is_some() {
            p.note(format_args!(
                "{}: {} image references rewritten",
                o.file.display(),
                o.edits.len()
            ))?;
        }
        edit_notes(&o.file, &o.edits, p)?;
        unmoved_notes(&o.file, &o.unmoved, p)?;
        for note in &o.stays {
            p.note(format_args!("{}: {note}", o.file.display()))?;
        }
        let mut file =
            json!({ "file": o.file, "edits": o.edits, "unmoved": o.unmoved, "stays": o.stays });
        match (diff, written) {
            (Some(d), _) => file["diff"] = d.into(),
            (None, Some(dest)) => file["written"] = json!(dest),
            (None, None) => file["text"] = o.after.clone().into(),
        }
        files.push(file);
    }
    p.document(&json!({ "ok": true, "files": files }))?;
    Ok(Outcome::Ok)
}

/// The edits a rewrite made for another reason than redirecting an image (a chart's image
/// check turned off for the mirror), each with why, as notes.
pub fn edit_notes(
    file: &Path,
    edits: &[ferry::values::Edit],
    p: &mut Printer,
) -> anyhow::Result<()> {
    for e in edits {
        if let Some(note) = &e.note {
            p.note(format_args!(
                "{}:{}: {}: {note}",
                file.display(),
                e.line,
                e.path
            ))?;
        }
    }
    Ok(())
}

/// The image maps a rewrite left as they were, each with why, as notes.
pub fn unmoved_notes(
    file: &Path,
    unmoved: &[ferry::values::Unmoved],
    p: &mut Printer,
) -> anyhow::Result<()> {
    for u in unmoved {
        p.note(format_args!(
            "{}:{}: {}: not rewritten: {}",
            file.display(),
            u.line,
            u.path,
            u.reason
        ))?;
    }
    Ok(())
}

/// The images the values name, and, when the bundle carries charts, the images its charts
/// render with these values (tags from `appVersion`, images written in templates), against
/// the bundle's images.
pub fn images_check(values: &[PathBuf], bundle: &Path, p: &mut Printer) -> anyhow::Result<Outcome> {
    let (m, _) = inspect::read_manifest(bundle)?;
    let charts = ferry::images::check_charts(bundle, &m, values)?;
    let coverage = match &charts {
        Some(c) => {
            chart_notes(c, p)?;
            if !c.missing.is_empty() {
                return Err(load::ValuesError::Missing(c.missing.clone()).into());
            }
            c.coverage.clone()
        }
        None => load::check_images(values, &m.images)?,
    };
    p.document(&json!({ "ok": true, "coverage": coverage, "charts": charts }))?;
    if let Some(c) = &charts {
        let required = c.images.images.iter().filter(|i| i.need == Need::Required);
        p.line(format_args!(
            "{} images the bundle's charts deploy with these values, all in the bundle",
            required.count()
        ))?;
    }
    // With charts, a values image the bundle lacks was judged by the rendering (a noted
    // conditional image, or a tag the chart does not use).
    for c in &coverage.found {
        p.line(format_args!(
            "ok  {}:{}  {}  ->  {}",
            c.image_use.file.display(),
            c.image_use.line,
            c.image_use.raw,
            c.image.reference
        ))?;
    }
    if coverage.missing.is_empty() {
        p.line(format_args!(
            "{} image references, all in the bundle",
            coverage.found.len()
        ))?;
    } else {
        p.line(format_args!(
            "{} image references in the bundle; {} not, which the charts do not deploy with \
             these values",
            coverage.found.len(),
            coverage.missing.len()
        ))?;
    }
    Ok(Outcome::Ok)
}

/// What rendering the bundle's charts found that does not fail the check: images only other
/// values would pull, images no values key writes, lines ferry cannot compute.
fn chart_notes(c: &ChartsCheck, p: &mut Printer) -> anyhow::Result<()> {
    for m in &c.missing_if_enabled {
        p.note(format_args!(
            "not in the bundle, needed only with other values: {m}"
        ))?;
    }
    for i in c.images.images.iter().filter(|i| !i.values_key) {
        let at = i.locations.first();
        p.note(format_args!(
            "{}:{}: {} is written in the template, not by a values key: `ferry rewrite` cannot \
             move it to a mirror",
            at.map_or("", |l| l.file.as_str()),
            at.map_or(0, |l| l.line),
            i.reference
        ))?;
    }
    for u in &c.images.unresolved {
        p.note(format_args!(
            "{}:{}: {} image cannot be computed offline: {}",
            u.location.file,
            u.location.line,
            u.need.as_str(),
            u.text
        ))?;
    }
    Ok(())
}

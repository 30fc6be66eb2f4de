//! The charts a bundle carries, rendered to check its images (`ferry images check --bundle`):
//! the images Helm would deploy, with the tags it would use, against the bundle's images.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{chart_images, image_use, same_repository, ChartImage, ChartImages, ImagesError, Need};
use crate::bundle::manifest::{FileEntry, Manifest};
use crate::bundle::verify::{self, EntryPlace, Sink, VerifyError, VerifyOptions};
use crate::values::{check_coverage, find_chart_images, Coverage};

/// What rendering a bundle's charts found about its images.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChartsCheck {
    /// Every image the charts deploy.
    pub images: ChartImages,
    /// Required images the bundle lacks, each as the values check words it (file:line,
    /// reference, why): an ImagePullBackOff after install.
    pub missing: Vec<String>,
    /// Undecided and conditional images the bundle lacks: pulled only when the values change
    /// or a condition ferry cannot compute holds.
    pub missing_if_enabled: Vec<String>,
    /// The values files' own image references against the bundle (what `ferry images check`
    /// reports without charts). A missing one that a chart renders is judged by the rendering
    /// above (its tag, whether it is needed); one no chart renders is in `missing` too.
    #[serde(skip)]
    pub coverage: Coverage,
}

/// Renders the charts of `bundle` (a `.tar.gz`, verified on the way, or an extracted folder)
/// with `values` layered on each (values files only; a chart folder given as values is left
/// out), and checks the images against the manifest's. `None` when it carries no chart.
///
/// # Errors
/// The bundle does not verify, or a chart or values file cannot be read.
pub fn check_charts(
    bundle: &Path,
    manifest: &Manifest,
    values: &[PathBuf],
) -> Result<Option<ChartsCheck>, BundleChartsError> {
    if manifest.charts.is_empty() {
        return Ok(None);
    }
    let tmp = tempfile::tempdir().map_err(|source| VerifyError::Io {
        path: bundle.to_path_buf(),
        source,
    })?;
    let root = if bundle.is_dir() {
        verify::find_root(bundle)?
    } else {
        let file = File::open(bundle).map_err(|source| VerifyError::Open {
            path: bundle.to_path_buf(),
            source,
        })?;
        let opts = VerifyOptions {
            input: bundle.to_path_buf(),
            limits: Default::default(),
            progress: crate::progress::Progress::Hidden,
            check_head: None,
        };
        let mut sink = ChartsSink { to: tmp.path() };
        verify::stream(file, &opts, Some(&mut sink))?;
        tmp.path().to_path_buf()
    };
    let charts: Vec<PathBuf> = manifest
        .charts
        .iter()
        .map(|c| root.join(c.path.as_str()))
        .collect();
    let overlays: Vec<PathBuf> = values.iter().filter(|v| v.is_file()).cloned().collect();
    let images = chart_images(&charts, &overlays)?;
    let (mut missing, mut missing_if_enabled) = (Vec::new(), Vec::new());
    for image in &images.images {
        let coverage = check_coverage(&[image_use(image)], &manifest.images);
        for m in &coverage.missing {
            let line = describe(image, &m.to_string());
            if image.need == Need::Required {
                missing.push(line);
            } else {
                missing_if_enabled.push(line);
            }
        }
    }
    let coverage = values_coverage(values, manifest)?;
    for m in &coverage.missing {
        // A values file layered on the charts is judged by what they render from it; a chart
        // folder given as values is not layered, and keeps its own check.
        let r = &m.image_use.reference;
        let rendered = overlays.contains(&m.image_use.file)
            && images
                .images
                .iter()
                .any(|i| same_repository(r, &i.reference));
        if !rendered {
            missing.push(m.to_string());
        }
    }
    Ok(Some(ChartsCheck {
        images,
        missing,
        missing_if_enabled,
        coverage,
    }))
}

/// The values check of `ferry images check`: every image reference the values files (or
/// charts' values) write, against the bundle.
fn values_coverage(values: &[PathBuf], manifest: &Manifest) -> Result<Coverage, ImagesError> {
    let mut uses = Vec::new();
    for f in values {
        let chart = crate::values::locate(f);
        let text = std::fs::read_to_string(&chart.values).map_err(|e| ImagesError::Chart {
            file: chart.values.display().to_string(),
            line: 0,
            message: format!("cannot read the values file: {e}"),
        })?;
        uses.extend(find_chart_images(
            &text,
            &chart.values,
            chart.app_version.as_deref(),
        )?);
    }
    Ok(check_coverage(&uses, &manifest.images))
}

/// The values check's wording, with what rendering adds: the tag is the appVersion, no values
/// key writes it, or why it is not required.
fn describe(image: &ChartImage, base: &str) -> String {
    let mut line = base.to_string();
    if image.app_version_tag {
        line.push_str(" (the tag is the chart's appVersion: the values give none)");
    }
    if !image.values_key {
        line.push_str(" (written in the template: no values key can point it elsewhere)");
    }
    if image.need != Need::Required {
        line.push_str(&format!(" ({}: {})", image.need.as_str(), image.reason));
    }
    line
}

/// Why a bundle's charts could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum BundleChartsError {
    /// The bundle did not verify or could not be read.
    #[error(transparent)]
    Bundle(#[from] VerifyError),
    /// A chart or values file could not be read.
    #[error(transparent)]
    Images(#[from] ImagesError),
}

impl BundleChartsError {
    /// 1 for a bundle that fails verification, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            BundleChartsError::Bundle(v) => v.exit_code(),
            BundleChartsError::Images(_) => 2,
        }
    }
}

/// Writes the verified `charts/` entries of a bundle under `to`; the rest is only checked.
struct ChartsSink<'p> {
    to: &'p Path,
}

impl Sink for ChartsSink<'_> {
    fn start(&mut self, _: &Manifest, _: &[u8], _: Option<&[u8]>, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn open(&mut self, entry: &FileEntry, _: EntryPlace) -> io::Result<Box<dyn Write + '_>> {
        let path = entry.path.as_str();
        if !path.starts_with("charts/") {
            return Ok(Box::new(io::sink()));
        }
        let dest = self.to.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(Box::new(File::create(dest)?))
    }
    fn close(&mut self, _: &FileEntry, _: u64) -> io::Result<()> {
        Ok(())
    }
}

//! Values files that belong to a chart: where the values file is, and the chart's `appVersion`,
//! the tag a chart's templates use when an image map gives none.

use std::path::{Path, PathBuf};

use super::tree::Tree;

/// A values file and what its chart says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartValues {
    /// The values file to read.
    pub values: PathBuf,
    /// The `appVersion` of the chart the values belong to, when known.
    pub app_version: Option<String>,
    /// The chart folder (with its `Chart.yaml`) the values belong to, when there is one.
    pub chart: Option<PathBuf>,
}

/// Where the values of `path` are: a chart folder gives its `values.yaml` and its `Chart.yaml`'s
/// `appVersion`; a values file gives itself and the `appVersion` of a `Chart.yaml` beside it, if
/// there is one, and that chart's folder. A `Chart.yaml` that cannot be read or has no
/// `appVersion` gives none.
pub fn locate(path: &Path) -> ChartValues {
    let (values, dir) = if path.is_dir() {
        (path.join("values.yaml"), path.to_path_buf())
    } else {
        let dir = crate::bundle::build::folder_of(path).to_path_buf();
        (path.to_path_buf(), dir)
    };
    let chart_yaml = std::fs::read_to_string(dir.join("Chart.yaml")).ok();
    let app_version = chart_yaml.as_deref().and_then(app_version);
    ChartValues {
        values,
        app_version,
        chart: chart_yaml.is_some().then_some(dir),
    }
}

/// The `appVersion` of a `Chart.yaml`, when it is a non-empty scalar.
pub fn app_version(chart_yaml: &str) -> Option<String> {
    let tree = Tree::parse(chart_yaml).ok()?;
    let root = *tree.roots.first()?;
    let (value, _) = tree.scalar(tree.get(root, "appVersion")?)?;
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_version_is_read_as_written() {
        assert_eq!(
            app_version("apiVersion: v2\nname: x\nappVersion: \"1.27\"\n").as_deref(),
            Some("1.27")
        );
        assert_eq!(
            app_version("appVersion: v2.12.3\n").as_deref(),
            Some("v2.12.3")
        );
        assert_eq!(app_version("name: x\n"), None);
        assert_eq!(app_version("appVersion: \"\"\n"), None);
        assert_eq!(app_version("appVersion: [\n"), None);
    }
}

//! `cargo xtask testdata`: generates the `testdata/agent-security/` fixture (a vendor installer
//! modelled on the seed install guide) and, with `--check`, proves the committed copy is exactly
//! what the generator makes.
//!
//! Everything is produced from code: text files from [`text::FILES`], images from
//! [`images::build`]. No network, no Docker, no clock: two runs give byte-identical trees.

mod images;
mod oci;
mod text;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use images::ImageInfo;
use oci::TarEntry;

/// The first line of the generated `ferry.yaml`; a folder is only ever replaced when its
/// `ferry.yaml` starts with it, so a mistyped `--dir` cannot wipe an unrelated folder.
const SPEC_MARKER: &str = "# ferry bundle spec for the Permit MCP Gateway";

/// The committed fixture: `<workspace>/testdata/agent-security`.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .join("testdata")
        .join("agent-security")
}

/// What the generator produces: every file (path relative to the fixture root, mode, bytes)
/// and a description of every image.
#[derive(Debug)]
pub struct Fixture {
    /// Files sorted by path.
    pub files: Vec<TarEntry>,
    /// Images in `ferry.yaml` order.
    pub images: Vec<ImageInfo>,
}

/// Builds the whole fixture in memory (it is well under 1.5 MiB).
pub fn generate() -> Result<Fixture> {
    let built = images::build()?;
    let mut files: BTreeMap<String, TarEntry> = BTreeMap::new();
    for (path, mode, text) in text::FILES {
        let text = match *path {
            "ferry.yaml" => text.replace("{images}", &spec_images(&built.info)),
            "README.md" => text.replace("{images}", &readme_images(&built.info)),
            _ => text.to_string(),
        };
        files.insert(
            path.to_string(),
            TarEntry {
                path: path.to_string(),
                mode: *mode,
                data: text.into_bytes(),
            },
        );
    }
    for f in built.files {
        files.insert(f.path.clone(), f);
    }
    Ok(Fixture {
        files: files.into_values().collect(),
        images: built.info,
    })
}

/// The `images:` list of `ferry.yaml`, one entry per image with a comment saying what it is.
fn spec_images(info: &[ImageInfo]) -> String {
    let mut out = String::new();
    for i in info {
        let what = match &i.manifest_digest {
            Some(d) if i.platforms.len() > 1 => format!("index {d}"),
            Some(d) if i.from.starts_with("docker-archive:") => {
                format!("Docker 25+ docker save, OCI manifest {d}")
            }
            Some(d) => format!("manifest {d}"),
            None => format!("legacy docker save, image ID {}", i.config_digest),
        };
        out.push_str(&format!(
            "  # {}; {what}\n  - ref: {}\n    from: {}\n",
            i.platforms.join(", "),
            i.reference,
            i.from
        ));
    }
    out.trim_end().to_string()
}

/// The image table of the fixture's README.
fn readme_images(info: &[ImageInfo]) -> String {
    let mut out = String::from("| Image | Platforms |\n|---|---|\n");
    for i in info {
        out.push_str(&format!(
            "| `{}` | {} |\n",
            i.reference,
            i.platforms.join(", ")
        ));
    }
    out.trim_end().to_string()
}

/// Writes the fixture into `dir`, replacing what a previous run left there.
///
/// Refuses a non-empty `dir` that does not hold a generated `ferry.yaml`.
pub fn write(dir: &Path) -> Result<Fixture> {
    let fixture = generate()?;
    if dir.exists() {
        let spec = dir.join("ferry.yaml");
        let ours = fs::read_to_string(&spec)
            .map(|s| s.starts_with(SPEC_MARKER))
            .unwrap_or(false);
        let empty = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !ours && !empty {
            bail!(
                "{} is not empty and has no generated ferry.yaml; refusing to replace it \
                 (choose an empty or new folder)",
                dir.display()
            );
        }
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    for f in &fixture.files {
        let path = dir.join(&f.path);
        let parent = path.parent().expect("fixture files live in a folder");
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        fs::write(&path, &f.data).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(f.mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(fixture)
}

/// How a committed file differs from the generated one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The generator makes it; the committed fixture lacks it.
    Missing(String),
    /// The committed fixture has it; the generator does not make it.
    Extra(String),
    /// Both have it, with different bytes.
    Content(String),
    /// Both have it with the same bytes, but one is executable and the other not.
    Mode {
        /// Path relative to the fixture root.
        path: String,
        /// Mode the generator writes.
        expected: u32,
        /// Mode found on disk.
        found: u32,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(p) => write!(f, "missing:  {p} (the generator makes it)"),
            Difference::Extra(p) => write!(f, "extra:    {p} (the generator does not make it)"),
            Difference::Content(p) => write!(f, "differs:  {p}"),
            Difference::Mode {
                path,
                expected,
                found,
            } => write!(
                f,
                "mode:     {path} is {found:o}, the generator writes {expected:o}"
            ),
        }
    }
}

/// Regenerates the fixture into a temporary folder and compares it with `dir`, file by file.
/// An empty result means `dir` is exactly what the generator makes.
pub fn check(dir: &Path) -> Result<Vec<Difference>> {
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let fresh = tmp.path().join("agent-security");
    write(&fresh)?;
    let want = list(&fresh)?;
    let have = if dir.exists() {
        list(dir)?
    } else {
        BTreeMap::new()
    };
    let mut diffs = Vec::new();
    for (path, (mode, abs)) in &want {
        match have.get(path) {
            None => diffs.push(Difference::Missing(path.clone())),
            Some((found, other)) => {
                let a = fs::read(abs).with_context(|| format!("reading {}", abs.display()))?;
                let b = fs::read(other).with_context(|| format!("reading {}", other.display()))?;
                if a != b {
                    diffs.push(Difference::Content(path.clone()));
                } else if (mode & 0o111 == 0) != (found & 0o111 == 0) {
                    // Git records only the executable bit, so that is all that is compared.
                    diffs.push(Difference::Mode {
                        path: path.clone(),
                        expected: *mode,
                        found: *found,
                    });
                }
            }
        }
    }
    for path in have.keys() {
        if !want.contains_key(path) {
            diffs.push(Difference::Extra(path.clone()));
        }
    }
    Ok(diffs)
}

/// Every non-directory entry under `root`: relative path → (permission bits, absolute path).
fn list(root: &Path) -> Result<BTreeMap<String, (u32, PathBuf)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("inspecting {}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .expect("listed below root")
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, (meta.permissions().mode() & 0o7777, path));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
